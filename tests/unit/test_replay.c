/* tests/unit/test_replay.c: n-step returns by hand (REDQ.md "n-step returns"), with
 * termination (no bootstrap), truncation (bootstrap) and separate env streams; the ring
 * and its growth with the data. Observations carry the step index so rows can be told
 * apart (S = 1, A = 1). */
#include <math.h>
#include <stdio.h>

#include "suites.h"

static void add(redq__replay *r, int i, float rew, int term, int trunc, const char *id)
{
    float obs = (float)i, act = 0.5f, next = (float)i + 0.5f;
    rqd_err err = {0};
    ck_assert_int_eq(redq__replay_add(r, &obs, &act, rew, &next, term, trunc, id, &err), 0);
}

/* Row layout for S = A = 1: obs, act, R, disc, next. */
static void expect_row(const redq__replay *r, long long i, float obs, double R, double disc,
                       float next)
{
    const float *row = redq__replay_row(r, i);
    ck_assert_msg(row[0] == obs, "row %lld obs %g, want %g", i, row[0], obs);
    ck_assert_msg(fabs(row[2] - R) < 1e-6, "row %lld R %.7g, want %.7g", i, row[2], R);
    ck_assert_msg(fabs(row[3] - disc) < 1e-7, "row %lld disc %.7g, want %.7g", i, row[3], disc);
    ck_assert_msg(row[4] == next, "row %lld next %g, want %g", i, row[4], next);
}

static void run_episode(redq__replay *r, int term)
{
    for (int i = 0; i < 5; i++)
        add(r, i, (float)(i + 1), term && i == 4, !term && i == 4, "e");
}

START_TEST(three_step_returns_with_termination)
{
    redq__replay r;
    ck_assert_int_eq(redq__replay_init(&r, 1, 1, 3, 0.5, 100), 0);
    run_episode(&r, 1);
    ck_assert_int_eq(r.len, 5);
    expect_row(&r, 0, 0, 1 + 0.5 * 2 + 0.25 * 3, 0.125, 2.5f); /* full n: bootstrap s3 */
    expect_row(&r, 1, 1, 2 + 0.5 * 3 + 0.25 * 4, 0.125, 3.5f);
    expect_row(&r, 2, 2, 3 + 0.5 * 4 + 0.25 * 5, 0.0, 4.5f);   /* n' = 3, terminated */
    expect_row(&r, 3, 3, 4 + 0.5 * 5, 0.0, 4.5f);              /* n' = 2 */
    expect_row(&r, 4, 4, 5, 0.0, 4.5f);                        /* n' = 1 */
    ck_assert_int_eq(r.n_streams, 0);                          /* flushed and forgotten */
    redq__replay_free(&r);
}
END_TEST

START_TEST(three_step_returns_with_truncation_bootstrap)
{
    redq__replay r;
    ck_assert_int_eq(redq__replay_init(&r, 1, 1, 3, 0.5, 100), 0);
    run_episode(&r, 0);
    expect_row(&r, 2, 2, 3 + 0.5 * 4 + 0.25 * 5, 0.125, 4.5f);
    expect_row(&r, 3, 3, 4 + 0.5 * 5, 0.25, 4.5f);
    expect_row(&r, 4, 4, 5, 0.5, 4.5f);
    redq__replay_free(&r);
}
END_TEST

START_TEST(one_step_rows_are_immediate)
{
    redq__replay r;
    ck_assert_int_eq(redq__replay_init(&r, 1, 1, 1, 0.99, 100), 0);
    add(&r, 0, 1.0f, 0, 0, NULL);
    add(&r, 1, 2.0f, 1, 0, NULL);
    add(&r, 2, 3.0f, 0, 1, NULL);
    expect_row(&r, 0, 0, 1, 0.99, 0.5f);
    expect_row(&r, 1, 1, 2, 0.0, 1.5f);
    expect_row(&r, 2, 2, 3, 0.99, 2.5f);
    redq__replay_free(&r);
}
END_TEST

START_TEST(env_streams_do_not_mix)
{
    redq__replay r;
    ck_assert_int_eq(redq__replay_init(&r, 1, 1, 2, 0.5, 100), 0);
    /* Interleaved: a0 b10 a1 b11 a2(terminated) */
    add(&r, 0, 1.0f, 0, 0, "a");
    add(&r, 10, 10.0f, 0, 0, "b");
    ck_assert_int_eq(r.len, 0);
    ck_assert_int_eq(r.n_streams, 2);
    add(&r, 1, 2.0f, 0, 0, "a");
    expect_row(&r, 0, 0, 1 + 0.5 * 2, 0.25, 1.5f);
    add(&r, 11, 20.0f, 0, 0, "b");
    expect_row(&r, 1, 10, 10 + 0.5 * 20, 0.25, 11.5f);
    add(&r, 2, 3.0f, 1, 0, "a");
    expect_row(&r, 2, 1, 2 + 0.5 * 3, 0.0, 2.5f);
    expect_row(&r, 3, 2, 3, 0.0, 2.5f);
    ck_assert_int_eq(r.n_streams, 1); /* b is still open */
    redq__replay_free(&r);
}
END_TEST

START_TEST(ring_overwrites_the_oldest_and_grows_with_data)
{
    redq__replay r;
    ck_assert_int_eq(redq__replay_init(&r, 1, 1, 1, 0.9, 5), 0);
    ck_assert_uint_eq(redq__replay_bytes(&r), 0);
    for (int i = 0; i < 7; i++)
        add(&r, i, 0.0f, 0, 0, NULL);
    ck_assert_int_eq(r.len, 5);
    ck_assert_int_eq(r.added, 7);
    float want[5] = {5, 6, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        ck_assert(redq__replay_row(&r, i)[0] == want[i]);
    redq__replay_free(&r);

    /* A million-row capacity costs nothing until rows arrive, then one chunk. */
    ck_assert_int_eq(redq__replay_init(&r, 3, 1, 1, 0.9, 1000000), 0);
    ck_assert_uint_eq(redq__replay_bytes(&r), 0);
    float obs[3] = {0}, act = 0;
    rqd_err err = {0};
    ck_assert_int_eq(redq__replay_add(&r, obs, &act, 0, obs, 0, 0, NULL, &err), 0);
    ck_assert_uint_eq(redq__replay_bytes(&r), REDQ_REPLAY_CHUNK * (2 * 3 + 1 + 2) * sizeof(float));
    redq__replay_free(&r);
}
END_TEST

START_TEST(idle_streams_give_way_when_the_table_is_full)
{
    redq__replay r;
    char id[32];
    ck_assert_int_eq(redq__replay_init(&r, 1, 1, 2, 0.5, 200000), 0);
    for (int i = 0; i < RQD_MAX_STREAMS; i++) {
        snprintf(id, sizeof id, "s%d", i);
        add(&r, i, 1.0f, 0, 0, id);
    }
    ck_assert_int_eq(r.len, 0);
    add(&r, 1, 2.0f, 0, 0, "s1"); /* s1 is active again: s0 is now the idlest */
    ck_assert_int_eq(r.len, 1);
    add(&r, -1, 1.0f, 0, 0, "new");
    ck_assert_int_eq(r.n_streams, RQD_MAX_STREAMS);
    ck_assert_int_eq(r.len, 2);
    expect_row(&r, 1, 0, 1.0, 0.5, 0.5f); /* s0 flushed: n' = 1, bootstrapped */
    redq__replay_free(&r);
}
END_TEST

Suite *suite_replay(void)
{
    Suite *s = suite_create("replay");
    TCase *tc = tcase_create("nstep");
    tcase_add_test(tc, three_step_returns_with_termination);
    tcase_add_test(tc, three_step_returns_with_truncation_bootstrap);
    tcase_add_test(tc, one_step_rows_are_immediate);
    tcase_add_test(tc, env_streams_do_not_mix);
    tcase_add_test(tc, ring_overwrites_the_oldest_and_grows_with_data);
    tcase_add_test(tc, idle_streams_give_way_when_the_table_is_full);
    suite_add_tcase(s, tc);
    return s;
}
