/* tests/unit/test_replay.c: n-step returns by hand (REDQ.md "n-step returns"), with
 * termination (no bootstrap), truncation (bootstrap) and separate env streams; the ring
 * and its growth with the data. Observations carry the step index so rows can be told
 * apart (S = 1, A = 1).
 *
 * Heads (replay.h HEADS): a head taken after h transitions, loaded into an empty replay
 * and fed the transitions after h, gives the same ring, streams and `seen` as never
 * stopping (the saved bytes are equal), with n-step streams, ends and several env ids;
 * a learner resumed so trains to the same bits; an incomplete ring is never read; and a
 * damaged head changes nothing. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

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

/* ------------------------------------------------------------------ heads */

/* Transition i of a fixed sequence, its values in m[5] (obs 2, act 1, next 2): four env
 * streams (one the default), episodes that end by termination or truncation now and
 * then, values that tell the rows apart. */
static redq_transition seq_transition(int i, float m[5])
{
    static const char *const ids[4] = {"a", NULL, "b", "c"};
    uint32_t h = (uint32_t)i * 2654435761u;
    m[0] = (float)i;
    m[1] = (float)(h % 1000) * 0.001f;
    m[2] = (float)((h >> 10) % 200) * 0.01f - 1.0f;
    m[3] = (float)i + 0.5f;
    m[4] = m[1] * 0.5f;
    int term = (h >> 17) % 23 == 0;
    return (redq_transition){m, m + 2, (float)((h >> 3) % 97) * 0.1f - 4.0f, m + 3, term,
                             !term && (h >> 19) % 29 == 0, ids[(h >> 7) % 4]};
}

static void feed(redq__replay *r, int from, int to)
{
    rqd_err err = {0};
    float m[5];
    for (int i = from; i < to; i++) {
        redq_transition t = seq_transition(i, m);
        ck_assert_msg(redq__replay_add(r, t.obs, t.action, t.reward, t.next_obs, t.terminated,
                                       t.truncated, t.env_id, &err) == 0,
                      "add %d: %s", i, err.msg);
    }
}

/* r's complete saved bytes into b (rows and streams). */
static void replay_bytes(const redq__replay *r, rqd_buf *b)
{
    rqd_buf_init(b, 0);
    ck_assert_int_eq(redq__replay_save(r, b), 0);
}

/* For n = 1 and 3 (the loop index picks), heads taken at several points and resumed. */
START_TEST(head_resumes_the_same_ring_streams_and_seen)
{
    enum { CAP = 50, T = 400 };
    const int n = _i == 0 ? 1 : 3;
    const int at[] = {0, 1, 2, 7, 49, 50, 51, 150, 333, 349, 350, 351, 399};
    redq__replay ref;
    rqd_buf want;
    rqd_err err = {0};

    ck_assert_int_eq(redq__replay_init(&ref, 2, 1, n, 0.9, CAP), 0);
    feed(&ref, 0, T);
    replay_bytes(&ref, &want);
    ck_assert(n == 1 || ref.n_streams > 0); /* the test reaches pending n-step queues */
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        redq__replay src, dst;
        rqd_buf head, got;
        ck_assert_int_eq(redq__replay_init(&src, 2, 1, n, 0.9, CAP), 0);
        ck_assert_int_eq(redq__replay_init(&dst, 2, 1, n, 0.9, CAP), 0);
        feed(&src, 0, at[k]);
        long long added_at = src.added;
        rqd_buf_init(&head, 0);
        ck_assert_int_eq(redq__replay_head_save(&src, &head), 0);
        const unsigned char *p = head.data;
        ck_assert_msg(redq__replay_head_load(&dst, &p, head.data + head.len, &err) == 0,
                      "head at %d: %s", at[k], err.msg);
        ck_assert_int_eq(dst.added, added_at);
        ck_assert_int_eq(dst.seen, src.seen);
        ck_assert_int_eq(dst.n_streams, src.n_streams);
        ck_assert_int_eq(dst.len, 0);
        feed(&dst, at[k], T);
        ck_assert_int_eq(dst.added, ref.added);
        ck_assert_int_eq(dst.seen, ref.seen);
        if (added_at == 0 || ref.added - added_at >= CAP) {
            /* Every position was written again (or none was ever lost). */
            ck_assert_int_eq(dst.missing, 0);
            ck_assert_int_eq(dst.len, ref.len);
            replay_bytes(&dst, &got);
            ck_assert_msg(got.len == want.len && memcmp(got.data, want.data, got.len) == 0,
                          "n %d, head after %d transitions: the resumed replay differs", n,
                          at[k]);
            rqd_buf_free(&got);
        } else {
            /* Rows from before the head are still in the live ring: never read here. */
            ck_assert_int_eq(dst.missing, CAP - (ref.added - added_at));
            ck_assert_int_eq(dst.len, 0);
            rqd_buf_init(&got, 0);
            ck_assert_int_eq(redq__replay_save(&dst, &got), RQD_ECONFLICT);
            rqd_buf_free(&got);
        }
        rqd_buf_free(&head);
        redq__replay_free(&src);
        redq__replay_free(&dst);
    }
    rqd_buf_free(&want);
    redq__replay_free(&ref);
}
END_TEST

/* The learner gets the same sequence (obs_dim 2, act_dim 1). */
static void agent_feed(redq_agent *a, int from, int to)
{
    rqd_err err = {0};
    float m[5];
    for (int i = from; i < to; i++) {
        redq_transition t = seq_transition(i, m);
        ck_assert_msg(redq_agent_add(a, &t, 1, &err) == 0, "add %d: %s", i, err.msg);
    }
}

/* A learner given a head and the transitions after it, then trained, has the same bits
 * as one that saw everything: the same batches were drawn from the same ring. */
START_TEST(head_resumed_learner_trains_bit_identically)
{
    enum { T = 300, H = 170 };
    redq_config c = test_config(1);
    c.buffer_size = 100;
    c.estimation_step = _i == 0 ? 1 : 3;
    redq_agent *ref = test_agent(&c, 2, 1), *src = test_agent(&c, 2, 1);
    redq_agent *dst = test_agent(&c, 2, 1);
    redq_stats st;
    rqd_err err = {0};
    rqd_buf head, b1, b2;
    long long added = -1;

    agent_feed(ref, 0, T);
    agent_feed(src, 0, H);
    rqd_buf_init(&head, 0);
    ck_assert_int_eq(redq_agent_head_save(src, &head, &added, &err), 0);
    ck_assert_uint_eq(redq_agent_head_bytes(src), head.len);
    redq_info info;
    redq_agent_info(src, &info);
    ck_assert_int_eq(added, info.buffer_added);
    ck_assert_msg(redq_agent_head_load(dst, head.data, head.len, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(redq_agent_set_env_steps(dst, H), 0);
    agent_feed(dst, H, T);
    redq_agent_info(dst, &info);
    ck_assert_int_eq(info.buffer_missing, 0);
    ck_assert_int_eq(info.buffer_len, 100);
    ck_assert_int_eq(info.env_steps, T);
    ck_assert_int_eq(redq_agent_update(ref, 9, NULL, &st, &err), 0);
    ck_assert_int_eq(redq_agent_update(dst, 9, NULL, &st, &err), 0);
    test_save(ref, 1, &b1);
    test_save(dst, 1, &b2);
    ck_assert_msg(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0,
                  "estimation_step %d: the resumed learner differs", c.estimation_step);
    rqd_buf_free(&b1);
    rqd_buf_free(&b2);
    rqd_buf_free(&head);
    redq_agent_free(ref);
    redq_agent_free(src);
    redq_agent_free(dst);
}
END_TEST

START_TEST(incomplete_ring_is_never_read)
{
    redq_config c = test_config(1);
    c.buffer_size = 64;
    c.batch_size = 4;
    redq_agent *src = test_agent(&c, 2, 1), *dst = test_agent(&c, 2, 1);
    redq_stats st;
    rqd_err err = {0};
    rqd_buf head, out;
    long long added;

    agent_feed(src, 0, 100);
    rqd_buf_init(&head, 0);
    ck_assert_int_eq(redq_agent_head_save(src, &head, &added, &err), 0);
    ck_assert_int_eq(redq_agent_head_load(dst, head.data, head.len, &err), 0);
    agent_feed(dst, 100, 163); /* one row short of the ring */
    redq_info info;
    redq_agent_info(dst, &info);
    ck_assert_int_eq(info.buffer_len, 0);
    ck_assert_int_eq(info.buffer_missing, 1);
    ck_assert_int_eq(redq_agent_update(dst, 1, NULL, &st, &err), RQD_ECONFLICT);
    rqd_buf_init(&out, 0);
    ck_assert_int_eq(redq_agent_save(dst, 1, &out, &err), RQD_ECONFLICT);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_eq(redq_agent_save(dst, 0, &out, &err), 0); /* the learner alone: fine */
    agent_feed(dst, 163, 164);
    redq_agent_info(dst, &info);
    ck_assert_int_eq(info.buffer_len, 64);
    ck_assert_int_eq(info.buffer_missing, 0);
    ck_assert_int_eq(redq_agent_update(dst, 1, NULL, &st, &err), 0);
    rqd_buf_free(&out);
    rqd_buf_free(&head);
    redq_agent_free(src);
    redq_agent_free(dst);
}
END_TEST

/* A bad head (any prefix, a flipped byte, another learner's, trailing bytes, a learner
 * that already holds data) is refused and the learner is as it was. */
START_TEST(bad_heads_are_refused_and_change_nothing)
{
    redq_config c = test_config(1);
    c.buffer_size = 64;
    c.estimation_step = 3;
    redq_agent *src = test_agent(&c, 2, 1), *dst = test_agent(&c, 2, 1);
    rqd_err err = {0};
    rqd_buf head;
    long long added;
    redq_info info;

    agent_feed(src, 0, 90);
    rqd_buf_init(&head, 0);
    ck_assert_int_eq(redq_agent_head_save(src, &head, &added, &err), 0);
    for (size_t n = 0; n < head.len; n++)
        ck_assert_int_eq(redq_agent_head_load(dst, head.data, n, &err), RQD_EINVAL);
    for (size_t i = 0; i < head.len; i += 7) {
        head.data[i] ^= 0x20;
        ck_assert_int_eq(redq_agent_head_load(dst, head.data, head.len, &err), RQD_EINVAL);
        head.data[i] ^= 0x20;
    }
    redq_agent_info(dst, &info);
    ck_assert_int_eq(info.buffer_added, 0);
    ck_assert_int_eq(dst->replay.n_streams, 0);
    /* Another learner's shape. */
    redq_config other = c;
    other.buffer_size = 65;
    redq_agent *o = test_agent(&other, 2, 1);
    ck_assert_int_eq(redq_agent_head_load(o, head.data, head.len, &err), RQD_EINVAL);
    redq_agent_free(o);
    /* Trailing bytes behind a valid checksum: cut the CRC, add a byte, sign again. */
    rqd_buf longer;
    rqd_buf_init(&longer, 0);
    ck_assert_int_eq(rqd_buf_append(&longer, head.data, head.len - 4), 0);
    ck_assert_int_eq(rqd_buf_append(&longer, "x", 1), 0);
    uint32_t crc = (uint32_t)crc32(0L, longer.data, (uInt)longer.len);
    ck_assert_int_eq(rqd_buf_append(&longer, &crc, 4), 0);
    ck_assert_int_eq(redq_agent_head_load(dst, longer.data, longer.len, &err), RQD_EINVAL);
    redq_agent_info(dst, &info);
    ck_assert_int_eq(info.buffer_added, 0);
    rqd_buf_free(&longer);
    /* A learner that holds data already. */
    agent_feed(dst, 0, 1);
    ck_assert_int_eq(redq_agent_head_load(dst, head.data, head.len, &err), RQD_ECONFLICT);
    rqd_buf_free(&head);
    redq_agent_free(src);
    redq_agent_free(dst);
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
    tc = tcase_create("heads");
    tcase_add_loop_test(tc, head_resumes_the_same_ring_streams_and_seen, 0, 2);
    tcase_add_loop_test(tc, head_resumed_learner_trains_bit_identically, 0, 2);
    tcase_add_test(tc, incomplete_ring_is_never_read);
    tcase_add_test(tc, bad_heads_are_refused_and_change_nothing);
    suite_add_tcase(s, tc);
    return s;
}
