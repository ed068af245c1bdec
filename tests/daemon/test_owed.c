/* tests/daemon/test_owed.c: what a post owes the trainers (daemon/registry.c rqd__owed,
 * daemon/ingest.c's admission): nothing in manual mode or before
 * max(start_timesteps, batch_size) transitions, update_per_step for each one after; a post
 * that alone would owe more than max_pending_updates is refused as invalid, one that would
 * take the pending updates past it is refused as busy, and neither stores anything. */
#include <stdlib.h>

#include "daemon_tests.h"

START_TEST(test_owed_per_transition)
{
    redq_config c = dt_config();
    c.start_timesteps = 10;
    c.batch_size = 4;
    c.update_per_step = 0.5;
    c.training = REDQ_TRAIN_ASYNC;
    ck_assert(rqd__owed(&c, 9) == 0.0);  /* the 9th transition: still warming up */
    ck_assert(rqd__owed(&c, 10) == 0.5); /* the 10th is the first that owes */
    ck_assert(rqd__owed(&c, 1000) == 0.5);
    c.start_timesteps = 2; /* the batch must fill first */
    ck_assert(rqd__owed(&c, 3) == 0.0);
    ck_assert(rqd__owed(&c, 4) == 0.5);
    c.update_per_step = 20;
    ck_assert(rqd__owed(&c, 4) == 20.0);
    c.training = REDQ_TRAIN_PAUSED; /* owed all the same, trained once resumed */
    ck_assert(rqd__owed(&c, 4) == 20.0);
    c.training = REDQ_TRAIN_MANUAL; /* only train calls update */
    ck_assert(rqd__owed(&c, 1000) == 0.0);
}
END_TEST

/* Posts n transitions; returns rqd_ingest's code (err filled). */
static int post(rqd_agent *a, int n, rqd_err *err)
{
    store_transition tr[16];
    float m[7] = {0.1f, 0.2f, 0.3f, 0.5f, 0.4f, 0.5f, 0.6f};
    char *answer = NULL;
    double target;
    ck_assert(n <= 16);
    for (int i = 0; i < n; i++)
        tr[i] = (store_transition){m, m + 3, 1.0f, m + 4, 0, 0, NULL};
    int rc = rqd_ingest(a, tr, n, NULL, &answer, &target, err);
    free(answer);
    return rc;
}

START_TEST(test_admission_by_pending_updates)
{
    test_reg t;
    redq_config c = dt_config();
    rqd_err err = {0};

    reg_open(&t, 4);
    c.training = REDQ_TRAIN_PAUSED; /* owes, and no trainer pays it back meanwhile */
    c.start_timesteps = 4;
    c.batch_size = 4;
    c.update_per_step = 0.5;
    c.max_pending_updates = 3;
    rqd_agent *a = dt_create_with(t.r, "p", &c);

    ck_assert_int_eq(post(a, 3, &err), 0); /* transitions 1-3: before the threshold */
    ck_assert(rqd_agent_pending(a) == 0.0);
    ck_assert_int_eq(post(a, 4, &err), 0); /* 4-7 owe 0.5 each */
    ck_assert(rqd_agent_pending(a) == 2.0);
    ck_assert_int_eq(dt_env_steps(a), 7);

    ck_assert_int_eq(post(a, 3, &err), RQD_EBUSY); /* 2 + 1.5 > 3 */
    ck_assert_int_eq(post(a, 7, &err), RQD_EINVAL); /* 3.5 alone > 3 */
    ck_assert_str_eq(err.field, "transitions");
    ck_assert(rqd_agent_pending(a) == 2.0);
    ck_assert_int_eq(dt_env_steps(a), 7); /* neither stored anything */
    ck_assert_int_eq(post(a, 2, &err), 0); /* 2 + 1 = 3: at the bound is allowed */
    ck_assert(rqd_agent_pending(a) == 3.0);
    ck_assert_int_eq(dt_env_steps(a), 9);
    rqd_agent_put(a);
    reg_close(&t);
}
END_TEST

Suite *suite_owed(void)
{
    const TTest *const tests[] = {
        test_owed_per_transition,
        test_admission_by_pending_updates,
    };
    return dt_suite("owed", 120, tests, (int)(sizeof tests / sizeof tests[0]));
}
