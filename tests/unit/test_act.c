/* tests/unit/test_act.c: actions and their scale (REDQ.md "Actions and their scale"):
 * scaling and clipping both ways, warm-up actions, deterministic eval, exploration noise
 * in explore mode only. */
#include <math.h>
#include <string.h>

#include "../../redq/scale.h"
#include "suites.h"

START_TEST(scaling_maps_both_ways_and_clips)
{
    const float low[2] = {-2.0f, 0.0f}, high[2] = {2.0f, 10.0f};
    float a[2] = {0.5f, -1.0f}, e[2], back[2];
    redq__scale_to_env(e, a, low, high, 2, 1, 1);
    ck_assert(fabsf(e[0] - 1.0f) < 1e-6f && fabsf(e[1] - 0.0f) < 1e-6f);
    redq__scale_from_env(back, e, low, high, 2, 1);
    ck_assert(fabsf(back[0] - 0.5f) < 1e-6f && fabsf(back[1] + 1.0f) < 1e-6f);
    float noisy[2] = {1.7f, -3.0f};
    redq__scale_to_env(e, noisy, low, high, 2, 1, 1); /* clip: to the bounds */
    ck_assert(e[0] == 2.0f && e[1] == 0.0f);
    redq__scale_to_env(e, noisy, low, high, 2, 1, 0); /* null: past them */
    ck_assert(fabsf(e[0] - 3.4f) < 1e-5f && fabsf(e[1] + 10.0f) < 1e-5f);
    float outside[2] = {5.0f, -1.0f};                  /* API.md: clipped into [low, high] */
    redq__scale_from_env(back, outside, low, high, 2, 1);
    ck_assert(back[0] == 1.0f && back[1] == -1.0f);
    redq__scale_to_env(e, a, low, high, 2, 0, 1);     /* no scaling: identity */
    ck_assert(e[0] == 0.5f && e[1] == -1.0f);
}
END_TEST

START_TEST(warmup_actions_are_uniform_in_the_bounds)
{
    redq_config c = test_config(1);
    c.start_timesteps = 10;
    float low = -3.0f, high = 1.0f, obs[3] = {0.1f, 0.2f, 0.3f}, act;
    redq_agent *a = NULL;
    rqd_err err = {0};
    ck_assert_int_eq(redq_agent_new(&c, 3, 1, &low, &high, &a, &err), 0);
    double sum = 0, mn = 1e9, mx = -1e9;
    const int n = 4000;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(redq_agent_act(a, obs, 1, REDQ_EXPLORE, &act, &err), 0);
        ck_assert(act >= low && act <= high);
        sum += act;
        mn = fmin(mn, act);
        mx = fmax(mx, act);
    }
    ck_assert_msg(fabs(sum / n - (-1.0)) < 0.1, "mean %g", sum / n);
    ck_assert(mn < -2.9 && mx > 0.9);
    /* Eval is the policy even during warm-up: the same answer twice. */
    float e1, e2;
    redq_agent_act(a, obs, 1, REDQ_EVAL, &e1, &err);
    redq_agent_act(a, obs, 1, REDQ_EVAL, &e2, &err);
    ck_assert(e1 == e2);
    redq_agent_free(a);
}
END_TEST

START_TEST(eval_is_tanh_mu_scaled)
{
    redq_config c = test_config(2);
    redq_agent *a = test_agent(&c, 3, 2);
    float obs[6] = {0.3f, -0.2f, 1.0f, -1.0f, 0.5f, 0.0f}, act[4], head[8];
    rqd_err err = {0};
    ck_assert_int_eq(redq_agent_act(a, obs, 2, REDQ_EVAL, act, &err), 0);
    redq_policy *p = redq_agent_policy(a);
    ck_assert_int_eq(redq__policy_head(p, obs, 2, head), 0);
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 2; j++) {
            float want = -2.0f + 4.0f * (tanhf(head[b * 4 + j]) + 1.0f) / 2.0f;
            ck_assert_msg(fabsf(act[b * 2 + j] - want) < 1e-6f, "%g vs %g", act[b * 2 + j], want);
        }
    redq_policy_release(p);
    redq_agent_free(a);
}
END_TEST

START_TEST(exploration_noise_only_in_explore_mode)
{
    redq_config c = test_config(1);
    c.deterministic_eval = 0; /* eval samples too, but never gets the noise */
    redq_agent *quiet = test_agent(&c, 3, 1);
    c.noise_sigma = 0.5;
    redq_agent *noisy = test_agent(&c, 3, 1);
    float obs[3] = {0.1f, 0.2f, 0.3f}, q, n;
    rqd_err err = {0};
    for (int i = 0; i < 20; i++) { /* same seed: the same sample draws */
        redq_agent_act(quiet, obs, 1, REDQ_EVAL, &q, &err);
        redq_agent_act(noisy, obs, 1, REDQ_EVAL, &n, &err);
        ck_assert_msg(q == n, "eval %d: %g vs %g", i, q, n);
    }
    int differ = 0;
    for (int i = 0; i < 20; i++) {
        redq_agent_act(quiet, obs, 1, REDQ_EXPLORE, &q, &err);
        redq_agent_act(noisy, obs, 1, REDQ_EXPLORE, &n, &err);
        differ += q != n;
        ck_assert(n >= -2.0f && n <= 2.0f); /* clip keeps noisy actions in bounds */
    }
    ck_assert_int_ge(differ, 15);
    redq_agent_free(quiet);
    redq_agent_free(noisy);
}
END_TEST

START_TEST(explore_samples_vary_eval_does_not)
{
    redq_config c = test_config(1);
    redq_agent *a = test_agent(&c, 3, 1);
    float obs[3] = {0.1f, 0.2f, 0.3f}, x1, x2, e1, e2;
    rqd_err err = {0};
    redq_agent_act(a, obs, 1, REDQ_EXPLORE, &x1, &err);
    redq_agent_act(a, obs, 1, REDQ_EXPLORE, &x2, &err);
    redq_agent_act(a, obs, 1, REDQ_EVAL, &e1, &err);
    redq_agent_act(a, obs, 1, REDQ_EVAL, &e2, &err);
    ck_assert(x1 != x2);
    ck_assert(e1 == e2);
    float bad[3] = {NAN, 0, 0};
    ck_assert_int_eq(redq_agent_act(a, bad, 1, REDQ_EVAL, &e1, &err), RQD_EINVAL);
    redq_agent_free(a);
}
END_TEST

START_TEST(added_actions_are_clipped_and_scaled)
{
    redq_config c = test_config(1);
    redq_agent *a = test_agent(&c, 1, 1); /* bounds [-2, 2] */
    float obs = 0, act = 7.0f, next = 1;
    redq_transition t = {&obs, &act, 1.0f, &next, 1, 1, NULL};
    rqd_err err = {0};
    ck_assert_int_eq(redq_agent_add(a, &t, 1, &err), 0);
    const float *row = redq__replay_row(&a->replay, 0);
    ck_assert(row[1] == 1.0f); /* clipped to high, then mapped to 1 */
    ck_assert(row[3] == 0.0f); /* terminated and truncated: counts as terminated */
    float inf = INFINITY;
    redq_transition bad = {&obs, &act, 1.0f, &inf, 0, 0, NULL};
    ck_assert_int_eq(redq_agent_add(a, &bad, 1, &err), RQD_EINVAL);
    redq_info info;
    redq_agent_info(a, &info);
    ck_assert_int_eq(info.env_steps, 1);
    ck_assert_int_eq(info.buffer_len, 1);
    redq_agent_free(a);
}
END_TEST

Suite *suite_act(void)
{
    Suite *s = suite_create("act");
    TCase *tc = tcase_create("actions");
    tcase_add_test(tc, scaling_maps_both_ways_and_clips);
    tcase_add_test(tc, warmup_actions_are_uniform_in_the_bounds);
    tcase_add_test(tc, eval_is_tanh_mu_scaled);
    tcase_add_test(tc, exploration_noise_only_in_explore_mode);
    tcase_add_test(tc, explore_samples_vary_eval_does_not);
    tcase_add_test(tc, added_actions_are_clipped_and_scaled);
    suite_add_tcase(s, tc);
    return s;
}
