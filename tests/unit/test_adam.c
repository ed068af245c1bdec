/* tests/unit/test_adam.c: Adam and the linear learning-rate schedule against hand
 * computations (torch.optim.Adam's defaults: betas 0.9, 0.999, eps 1e-8). */
#include <math.h>

#include "../../redq/adam.h"
#include "suites.h"

START_TEST(adam_matches_hand_computation)
{
    float w[2] = {0.5f, -1.0f}, m[2] = {0}, v[2] = {0};
    const float g[3][2] = {{0.1f, -2.0f}, {0.3f, 1.0f}, {-0.2f, 0.5f}};
    double W[2] = {0.5, -1.0}, M[2] = {0}, Vv[2] = {0};
    const double lr = 0.01;
    for (int t = 1; t <= 3; t++) {
        redq__adam_step(w, g[t - 1], m, v, 2, lr, t);
        for (int i = 0; i < 2; i++) {
            M[i] = 0.9 * M[i] + 0.1 * g[t - 1][i];
            Vv[i] = 0.999 * Vv[i] + 0.001 * (double)g[t - 1][i] * g[t - 1][i];
            double mhat = M[i] / (1 - pow(0.9, t)), vhat = Vv[i] / (1 - pow(0.999, t));
            W[i] -= lr * mhat / (sqrt(vhat) + 1e-8);
            ck_assert_msg(fabs(w[i] - W[i]) < 1e-6, "t=%d w[%d] %.9g vs %.9g", t, i, w[i], W[i]);
        }
    }
    /* The first step moves every parameter by lr, whatever its gradient's size. */
    ck_assert(fabs((0.5 - 0.01) - (double)(0.5f - 0.01f)) < 1e-7);
    double la = 0.0, lm = 0.0, lv = 0.0;
    redq__adam_step1(&la, 3.0, &lm, &lv, 0.001, 1);
    ck_assert(fabs(la + 0.001) < 1e-9);
}
END_TEST

START_TEST(linear_schedule_decays_to_zero)
{
    ck_assert(redq__lr_at(3e-4, 0, 0) == 3e-4);       /* no schedule */
    ck_assert(redq__lr_at(3e-4, 12345, 0) == 3e-4);
    ck_assert(redq__lr_at(1.0, 0, 100) == 1.0);
    ck_assert(fabs(redq__lr_at(1.0, 25, 100) - 0.75) < 1e-12);
    ck_assert(redq__lr_at(1.0, 100, 100) == 0.0);
    ck_assert(redq__lr_at(1.0, 250, 100) == 0.0);
}
END_TEST

START_TEST(scheduled_agent_stops_learning_at_k)
{
    redq_config c = test_config(1);
    c.lr_total_updates = 4;
    c.actor_delay = 1;
    redq_agent *a = test_agent(&c, 3, 1);
    rqd_err err = {0};
    test_fill(a, 30, 1);
    ck_assert_int_eq(redq_agent_update(a, 4, NULL, NULL, &err), 0);
    float c0 = a->critic[0], a0 = a->actor[0];
    ck_assert_int_eq(redq_agent_update(a, 3, NULL, NULL, &err), 0); /* lr is 0 from here */
    ck_assert(a->critic[0] == c0 && a->actor[0] == a0);
    redq_agent_free(a);
}
END_TEST

START_TEST(polyak_is_exact)
{
    float t[3] = {1.0f, 2.0f, -1.0f}, c[3] = {3.0f, 2.0f, 1.0f};
    redq__polyak(t, c, 3, 0.5f);
    ck_assert(t[0] == 2.0f && t[1] == 2.0f && t[2] == 0.0f);
    redq__polyak(t, c, 3, 1.0f);
    ck_assert(t[0] == 3.0f && t[2] == 1.0f);
}
END_TEST

Suite *suite_adam(void)
{
    Suite *s = suite_create("adam");
    TCase *tc = tcase_create("optimiser");
    tcase_add_test(tc, adam_matches_hand_computation);
    tcase_add_test(tc, linear_schedule_decays_to_zero);
    tcase_add_test(tc, scheduled_agent_stops_learning_at_k);
    tcase_add_test(tc, polyak_is_exact);
    suite_add_tcase(s, tc);
    return s;
}
