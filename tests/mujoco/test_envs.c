/* tests/mujoco/test_envs.c: the locomotion tasks of redq-mujoco (clients/mujoco/env.c).
 *
 * Checks each model against the facts it was written from (masses, gears, ranges), the
 * task rules (observation without x, reward formula, termination, time limit), the
 * returns of a zero and of a uniform random policy, and determinism under a seed. The
 * return bands are wide on purpose: they tell a Hopper that falls over and a cheetah
 * that pays its control cost from a broken model, not one physics build from another.
 * Reference values (Gymnasium v4 with its own XML): a random Hopper scores about 20 in
 * about 20 steps, a random HalfCheetah about -280 over 1000 steps.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mujoco/mujoco.h>

#include "../../clients/mujoco/env.h"

#define MAXD 32

static loco_env *make(const char *task, uint64_t seed)
{
    loco_env *e = NULL;
    rqd_err err = {0};
    ck_assert_msg(loco_env_new(task, seed, &e, &err) == RQD_OK, "%s: %s", task, err.msg);
    return e;
}

/* The test's own action source: xorshift64, uniform in [-1, 1]. */
static double uniform_action(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return 2.0 * ((double)(*s >> 11) * 0x1.0p-53) - 1.0;
}

typedef struct {
    double ret;
    int len, terminated, truncated;
} episode;

/* One episode; random actions when rng != NULL, zero actions otherwise. */
static episode run_episode(loco_env *e, uint64_t *rng)
{
    double obs[MAXD], a[MAXD] = {0};
    episode ep = {0};
    loco_env_reset(e, obs);
    while (!ep.terminated && !ep.truncated) {
        for (int i = 0; rng && i < loco_env_act_dim(e); i++)
            a[i] = uniform_action(rng);
        ep.ret += loco_env_step(e, a, obs, &ep.terminated, &ep.truncated);
        ep.len++;
    }
    return ep;
}

static episode mean_of(loco_env *e, uint64_t *rng, int n)
{
    episode m = {0};
    for (int i = 0; i < n; i++) {
        episode ep = run_episode(e, rng);
        m.ret += ep.ret / n;
        m.len += ep.len;
        m.terminated += ep.terminated;
    }
    m.len /= n;
    return m;
}

START_TEST(dims_and_action_box)
{
    static const struct { const char *task; int obs, act; } want[] = {
        {"hopper", 11, 3}, {"halfcheetah", 17, 6}};
    for (size_t k = 0; k < 2; k++) {
        loco_env *e = make(want[k].task, 1);
        double lo[MAXD], hi[MAXD];
        const mjModel *m = loco_env_model(e);
        ck_assert_int_eq(loco_env_obs_dim(e), want[k].obs);
        ck_assert_int_eq(loco_env_act_dim(e), want[k].act);
        ck_assert_int_eq(loco_env_obs_dim(e), m->nq - 1 + m->nv); /* x left out */
        loco_env_action_box(e, lo, hi);
        for (int i = 0; i < want[k].act; i++) {
            ck_assert(lo[i] == -1.0);
            ck_assert(hi[i] == 1.0);
        }
        loco_env_free(e);
    }
}
END_TEST

START_TEST(unknown_task)
{
    loco_env *e = (loco_env *)1;
    rqd_err err = {0};
    ck_assert_int_eq(loco_env_new("walker", 0, &e, &err), RQD_EINVAL);
    ck_assert_ptr_null(e);
    ck_assert_str_eq(err.field, "env");
    loco_env_free(NULL);
}
END_TEST

/* Hopper: capsules of density 1000 (torso 0.40 x r0.05, thigh 0.45 x r0.05, leg 0.50 x
 * r0.04, foot 0.39 x r0.06), gears 200, ranges -150..0, -150..0, -45..45 degrees. */
START_TEST(hopper_model_facts)
{
    loco_env *e = make("hopper", 1);
    const mjModel *m = loco_env_model(e);
    static const double mass[] = {3.6652, 4.0579, 2.7814, 5.3156};
    static const double range[][2] = {{-150, 0}, {-150, 0}, {-45, 45}};
    ck_assert_int_eq(m->nbody, 5);
    for (int b = 1; b < 5; b++)
        ck_assert_double_eq_tol(m->body_mass[b], mass[b - 1], 1e-3);
    ck_assert_int_eq(m->nu, 3);
    for (int i = 0; i < 3; i++) {
        int j = m->actuator_trnid[2 * i];
        ck_assert_double_eq_tol(m->actuator_gear[6 * i], 200.0, 1e-12);
        ck_assert_double_eq_tol(m->jnt_range[2 * j] * 180 / M_PI, range[i][0], 1e-9);
        ck_assert_double_eq_tol(m->jnt_range[2 * j + 1] * 180 / M_PI, range[i][1], 1e-9);
    }
    ck_assert_double_eq_tol(m->opt.timestep, 0.002, 1e-15);
    loco_env_free(e);
}
END_TEST

/* HalfCheetah: 14 kg in all, gears 120/90/60 (back) and 120/60/30 (front). */
START_TEST(halfcheetah_model_facts)
{
    loco_env *e = make("halfcheetah", 1);
    const mjModel *m = loco_env_model(e);
    static const double gear[] = {120, 90, 60, 120, 60, 30};
    double total = 0.0;
    for (int b = 0; b < m->nbody; b++)
        total += m->body_mass[b];
    ck_assert_double_eq_tol(total, 14.0, 1e-9);
    for (int i = 0; i < 6; i++)
        ck_assert_double_eq_tol(m->actuator_gear[6 * i], gear[i], 1e-12);
    ck_assert_double_eq_tol(m->opt.timestep, 0.01, 1e-15);
    loco_env_free(e);
}
END_TEST

/* The first observation is the torso height (Hopper: 1.25 + reset noise), not x. */
START_TEST(observation_starts_at_height)
{
    double obs[MAXD];
    loco_env *h = make("hopper", 3), *c = make("halfcheetah", 3);
    loco_env_reset(h, obs);
    ck_assert_double_eq_tol(obs[0], 1.25, 0.005 + 1e-12);
    loco_env_reset(c, obs);
    ck_assert_double_le(fabs(obs[0]), 0.1 + 1e-12); /* rootz displacement, noise only */
    loco_env_free(h);
    loco_env_free(c);
}
END_TEST

/* reward = dx / dt + healthy bonus - w |a|^2, with the action as given (not clipped). */
START_TEST(reward_formula)
{
    static const struct { const char *task; double dt, bonus, w; } t[] = {
        {"hopper", 0.008, 1.0, 1e-3}, {"halfcheetah", 0.05, 0.0, 0.1}};
    for (size_t k = 0; k < 2; k++) {
        loco_env *e = make(t[k].task, 5);
        double obs[MAXD], a[MAXD];
        uint64_t rng = 99;
        int term = 0, trunc = 0;
        loco_env_reset(e, obs);
        for (int s = 0; s < 5 && !term; s++) {
            double sq = 0.0, x0 = loco_env_x(e), r;
            for (int i = 0; i < loco_env_act_dim(e); i++) {
                a[i] = 1.5 * uniform_action(&rng); /* some outside the box */
                sq += a[i] * a[i];
            }
            r = loco_env_step(e, a, obs, &term, &trunc);
            ck_assert_double_eq_tol(r, (loco_env_x(e) - x0) / t[k].dt + t[k].bonus - t[k].w * sq,
                                    1e-9);
        }
        loco_env_free(e);
    }
}
END_TEST

/* A Hopper that does nothing topples (terminated well before the time limit) and earns
 * about the healthy bonus per step; a cheetah that does nothing stays put. */
START_TEST(zero_policy_returns)
{
    loco_env *h = make("hopper", 11), *c = make("halfcheetah", 11);
    episode mh = mean_of(h, NULL, 5), mc = mean_of(c, NULL, 3);
    ck_assert_int_eq(mh.terminated, 5);
    ck_assert_int_ge(mh.len, 50);
    ck_assert_int_le(mh.len, 500);
    ck_assert_double_ge(mh.ret, 0.8 * mh.len);
    ck_assert_double_le(mh.ret, 1.2 * mh.len);
    ck_assert_int_eq(mc.terminated, 0);
    ck_assert_int_eq(mc.len, LOCO_MAX_STEPS);
    ck_assert_double_le(fabs(mc.ret), 5.0);
    loco_env_free(h);
    loco_env_free(c);
}
END_TEST

/* Uniform random actions: Hopper falls within tens of steps with a small positive
 * return; HalfCheetah pays about 0.1 x 6 x 1/3 = 0.2 of control cost per step. */
START_TEST(random_policy_returns)
{
    loco_env *h = make("hopper", 12), *c = make("halfcheetah", 12);
    uint64_t rng = 2024;
    episode mh = mean_of(h, &rng, 20), mc = mean_of(c, &rng, 5);
    ck_assert_int_eq(mh.terminated, 20);
    ck_assert_int_le(mh.len, 100);
    ck_assert_double_ge(mh.ret, 0.0);
    ck_assert_double_le(mh.ret, 100.0);
    ck_assert_int_eq(mc.len, LOCO_MAX_STEPS);
    ck_assert_double_ge(mc.ret, -450.0);
    ck_assert_double_le(mc.ret, -150.0);
    loco_env_free(h);
    loco_env_free(c);
}
END_TEST

/* The 1000th step of an episode that did not end is truncated, never terminated. */
START_TEST(time_limit_truncates)
{
    loco_env *c = make("halfcheetah", 4);
    double obs[MAXD], a[MAXD] = {0};
    int term = 0, trunc = 0;
    loco_env_reset(c, obs);
    for (int s = 1; s <= LOCO_MAX_STEPS; s++) {
        loco_env_step(c, a, obs, &term, &trunc);
        ck_assert_int_eq(term, 0);
        ck_assert_int_eq(trunc, s == LOCO_MAX_STEPS);
    }
    loco_env_free(c);
}
END_TEST

/* One seed and one action sequence give the same observations bit for bit, across
 * several episodes (the reset noise included); another seed starts elsewhere. */
START_TEST(deterministic_for_a_seed)
{
    for (int k = 0; loco_task_names[k] != NULL; k++) {
        loco_env *a = make(loco_task_names[k], 42), *b = make(loco_task_names[k], 42),
                 *o = make(loco_task_names[k], 43);
        const int S = loco_env_obs_dim(a), A = loco_env_act_dim(a);
        double oa[MAXD], ob[MAXD], oo[MAXD], act[MAXD];
        uint64_t rng = 7;
        for (int ep = 0; ep < 3; ep++) {
            int ta = 0, tr = 0, tb = 0, trb = 0;
            loco_env_reset(a, oa);
            loco_env_reset(b, ob);
            loco_env_reset(o, oo);
            ck_assert(memcmp(oa, ob, S * sizeof *oa) == 0);
            ck_assert(memcmp(oa, oo, S * sizeof *oa) != 0);
            for (int s = 0; s < 300 && !ta && !tr; s++) {
                for (int i = 0; i < A; i++)
                    act[i] = uniform_action(&rng);
                double ra = loco_env_step(a, act, oa, &ta, &tr);
                double rb = loco_env_step(b, act, ob, &tb, &trb);
                ck_assert(memcmp(&ra, &rb, sizeof ra) == 0);
                ck_assert(memcmp(oa, ob, S * sizeof *oa) == 0);
                ck_assert_int_eq(ta, tb);
            }
        }
        loco_env_free(a);
        loco_env_free(b);
        loco_env_free(o);
    }
}
END_TEST

static Suite *suite_envs(void)
{
    Suite *s = suite_create("mujoco_envs");
    TCase *tc = tcase_create("tasks");
    tcase_add_test(tc, dims_and_action_box);
    tcase_add_test(tc, unknown_task);
    tcase_add_test(tc, hopper_model_facts);
    tcase_add_test(tc, halfcheetah_model_facts);
    tcase_add_test(tc, observation_starts_at_height);
    tcase_add_test(tc, reward_formula);
    tcase_add_test(tc, zero_policy_returns);
    tcase_add_test(tc, random_policy_returns);
    tcase_add_test(tc, time_limit_truncates);
    tcase_add_test(tc, deterministic_for_a_seed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite_envs());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
