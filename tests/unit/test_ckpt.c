/* tests/unit/test_ckpt.c: the saved state: a bit-exact round trip, continuing after a
 * load exactly as if never stopped (REDQ.md "Reproducibility"), refusal of truncated,
 * corrupted and unknown-version blobs, and of blobs with a valid checksum whose values
 * no live agent can hold (made by patching a real saved blob and recomputing the CRC). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "suites.h"

/* A little of everything the agent does: acts, adds, updates. */
static void work(redq_agent *a, uint64_t seed)
{
    float obs[3] = {0.1f, -0.4f, 0.9f}, act[2];
    rqd_err err = {0};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(redq_agent_act(a, obs, 1, REDQ_EXPLORE, act, &err), 0);
    test_fill(a, 13, seed);
    ck_assert_int_eq(redq_agent_update(a, 7, NULL, NULL, &err), 0);
}

static redq_agent *nstep_agent(void)
{
    redq_config c = test_config(2);
    c.estimation_step = 3; /* so that pending n-step queues are part of the state */
    c.alpha_auto = 1;
    return test_agent(&c, 3, 2);
}

START_TEST(round_trip_is_bit_exact)
{
    redq_agent *a = nstep_agent(), *b = NULL;
    rqd_buf s1, s2;
    rqd_err err = {0};
    work(a, 1);
    test_save(a, 1, &s1);
    ck_assert_int_eq(redq_agent_load(s1.data, s1.len, &b, &err), 0);
    test_save(b, 1, &s2);
    ck_assert_uint_eq(s1.len, s2.len);
    ck_assert(memcmp(s1.data, s2.data, s1.len) == 0);
    redq_info ia, ib;
    redq_agent_info(a, &ia);
    redq_agent_info(b, &ib);
    ck_assert(ia.env_steps == ib.env_steps && ia.updates == ib.updates &&
              ia.buffer_len == ib.buffer_len && ia.policy_version == ib.policy_version);
    rqd_buf_free(&s1);
    rqd_buf_free(&s2);
    redq_agent_free(a);
    redq_agent_free(b);
}
END_TEST

START_TEST(continuing_after_a_load_equals_never_stopping)
{
    redq_agent *a = nstep_agent(), *b = NULL;
    rqd_buf s, fa, fb;
    rqd_err err = {0};
    work(a, 2);
    test_save(a, 1, &s);
    ck_assert_int_eq(redq_agent_load(s.data, s.len, &b, &err), 0);
    for (uint64_t k = 3; k < 6; k++) {
        work(a, k);
        work(b, k);
    }
    float obs[3] = {0.5f, 0.5f, -0.5f}, xa[2], xb[2];
    redq_agent_act(a, obs, 1, REDQ_EXPLORE, xa, &err);
    redq_agent_act(b, obs, 1, REDQ_EXPLORE, xb, &err);
    ck_assert(memcmp(xa, xb, sizeof xa) == 0);
    test_save(a, 1, &fa);
    test_save(b, 1, &fb);
    ck_assert(fa.len == fb.len && memcmp(fa.data, fb.data, fa.len) == 0);
    rqd_buf_free(&s);
    rqd_buf_free(&fa);
    rqd_buf_free(&fb);
    redq_agent_free(a);
    redq_agent_free(b);
}
END_TEST

START_TEST(without_buffer_loads_learner_only)
{
    redq_agent *a = nstep_agent(), *b = NULL;
    rqd_buf s;
    rqd_err err = {0};
    work(a, 7);
    test_save(a, 0, &s);
    ck_assert_int_eq(redq_agent_load(s.data, s.len, &b, &err), 0);
    redq_info ib;
    redq_agent_info(b, &ib);
    ck_assert_int_eq(ib.buffer_len, 0);
    ck_assert_int_eq(ib.updates, 7);
    ck_assert(memcmp(a->actor, b->actor, a->actor_shape.total * sizeof(float)) == 0);
    ck_assert(memcmp(a->target, b->target, a->critic_floats * sizeof(float)) == 0);
    rqd_buf_free(&s);
    redq_agent_free(a);
    redq_agent_free(b);
}
END_TEST

START_TEST(truncated_corrupted_and_unknown_version_are_refused)
{
    redq_agent *a = nstep_agent(), *b = NULL;
    rqd_buf s;
    rqd_err err = {0};
    work(a, 8);
    test_save(a, 1, &s);
    for (size_t cut = 0; cut < s.len; cut += s.len / 37 + 1) {
        ck_assert_int_eq(redq_agent_load(s.data, cut, &b, &err), RQD_EINVAL);
        ck_assert_ptr_null(b);
    }
    unsigned char *copy = malloc(s.len);
    for (size_t pos = 0; pos < s.len; pos += s.len / 53 + 1) {
        memcpy(copy, s.data, s.len);
        copy[pos] ^= 0x20;
        ck_assert_msg(redq_agent_load(copy, s.len, &b, &err) == RQD_EINVAL,
                      "flipped byte %zu accepted", pos);
        ck_assert_ptr_null(b);
    }
    memcpy(copy, s.data, s.len);
    copy[8] = 99; /* version 99, with a checksum that matches */
    uint32_t crc = (uint32_t)crc32(0L, copy, (uInt)(s.len - 4));
    memcpy(copy + s.len - 4, &crc, 4);
    ck_assert_int_eq(redq_agent_load(copy, s.len, &b, &err), RQD_EINVAL);
    ck_assert_msg(strstr(err.msg, "version") != NULL, "%s", err.msg);
    free(copy);
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

/* Each limit refuses one past it and names its field; the defaults are the ceilings,
 * and a saved agent past a limit is refused by load_within before anything is built. */
START_TEST(limits_name_field_and_flag)
{
    redq_config c = test_config(2);
    rqd_limits l = RQD_LIMITS_DEFAULT;
    rqd_err err = {0};
    static const struct {
        size_t off;
        long long at;
        const char *field, *flag;
    } cases[] = {
        {offsetof(rqd_limits, obs_dim), 5, "obs_dim", "--max-obs-dim"},
        {offsetof(rqd_limits, act_dim), 2, "action_low", "--max-act-dim"},
        {offsetof(rqd_limits, hidden_layers), 2, "config.hidden_sizes", "--max-hidden-layers"},
        {offsetof(rqd_limits, hidden_width), 16, "config.hidden_sizes", "--max-hidden-width"},
        {offsetof(rqd_limits, ensemble), 3, "config.ensemble_size", "--max-ensemble"},
        {offsetof(rqd_limits, batch), 7, "config.batch_size", "--max-batch"},
    };

    ck_assert_int_eq(redq_limits_check(&l, &c, 5, 2, &err), RQD_OK);
    ck_assert_int_eq(l.obs_dim, RQD_MAX_OBS_DIM);
    ck_assert(l.agent_bytes == (long long)RQD_MAX_AGENT_BYTES);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rqd_limits t = l;
        int *v = (int *)((char *)&t + cases[i].off);
        *v = (int)cases[i].at;
        ck_assert_int_eq(redq_limits_check(&t, &c, 5, 2, &err), RQD_OK); /* at it */
        *v = (int)cases[i].at - 1;
        ck_assert_int_eq(redq_limits_check(&t, &c, 5, 2, &err), RQD_EINVAL);
        ck_assert_str_eq(err.field, cases[i].field);
        ck_assert_msg(strstr(err.msg, cases[i].flag) != NULL, "%s", err.msg);
    }
    rqd_limits t = l;
    t.buffer = c.buffer_size - 1;
    ck_assert_int_eq(redq_limits_check(&t, &c, 5, 2, &err), RQD_EINVAL);
    ck_assert_str_eq(err.field, "config.buffer_size");
    t = l;
    t.agent_bytes = (long long)redq__agent_bytes(&c, 5, 2);
    ck_assert_int_eq(redq_limits_check(&t, &c, 5, 2, &err), RQD_OK);
    t.agent_bytes--;
    ck_assert_int_eq(redq_limits_check(&t, &c, 5, 2, &err), RQD_EINVAL);
    ck_assert_msg(strstr(err.msg, "--max-agent-memory") != NULL, "%s", err.msg);

    redq_agent *a = test_agent(&c, 5, 2), *b = NULL;
    rqd_buf s;
    test_save(a, 1, &s);
    t = l;
    t.obs_dim = 4;
    ck_assert_int_eq(redq_agent_load_within(s.data, s.len, &t, &b, &err), RQD_EINVAL);
    ck_assert_ptr_null(b);
    ck_assert_str_eq(err.field, "obs_dim");
    ck_assert_int_eq(redq_agent_load_within(s.data, s.len, &l, &b, &err), RQD_OK);
    redq_agent_free(b);
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

/* ------------------------------------------------------------------ hand-made blobs */

/* Where each part of a saved blob starts (redq/ckpt.c's layout). */
typedef struct {
    size_t low, high, counters, rng_train, rng_act, alpha, actor, actor_m, actor_v, critic,
        critic_m, critic_v, target, replay, rows, streams;
} blob_layout;

static blob_layout layout_of(const redq_agent *a, const rqd_buf *s)
{
    blob_layout L;
    uint32_t slen;
    const size_t an = a->actor_shape.total * 4, cn = a->critic_floats * 4;
    memcpy(&slen, s->data + 16, 4);
    L.low = 20 + slen + 16;
    L.high = L.low + 4 * (size_t)a->A;
    L.counters = L.high + 4 * (size_t)a->A;
    L.rng_train = L.counters + 32;
    L.rng_act = L.rng_train + 40;
    L.alpha = L.rng_act + 40;
    L.actor = L.alpha + 40;
    L.actor_m = L.actor + an;
    L.actor_v = L.actor_m + an;
    L.critic = L.actor_v + an;
    L.critic_m = L.critic + cn;
    L.critic_v = L.critic_m + cn;
    L.target = L.critic_v + cn;
    L.replay = L.target + cn;
    L.rows = L.replay + 16;
    L.streams = L.rows + (size_t)a->replay.len * (size_t)a->replay.row * 4 + 16;
    return L;
}

/* A copy of the blob with n bytes at off replaced and the checksum made valid again. */
static unsigned char *patched(const rqd_buf *s, size_t off, const void *v, size_t n)
{
    unsigned char *c = malloc(s->len);
    ck_assert(off + n <= s->len - 4);
    memcpy(c, s->data, s->len);
    memcpy(c + off, v, n);
    uint32_t crc = (uint32_t)crc32(0L, c, (uInt)(s->len - 4));
    memcpy(c + s->len - 4, &crc, 4);
    return c;
}

static void expect_refused_with(const rqd_buf *s, size_t off, const void *v, size_t n,
                                const rqd_limits *lim, const char *needle, const char *field)
{
    unsigned char *c = patched(s, off, v, n);
    redq_agent *b = NULL;
    rqd_err err = {0};
    int rc = redq_agent_load_within(c, s->len, lim, &b, &err);
    ck_assert_msg(rc == RQD_EINVAL, "patch at %zu accepted (rc %d), expected \"%s\"", off, rc,
                  needle);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "\"%s\" does not say \"%s\"", err.msg, needle);
    ck_assert_str_eq(err.field, field);
    free(c);
}

static void expect_refused(const rqd_buf *s, size_t off, const void *v, size_t n, const char *needle)
{
    expect_refused_with(s, off, v, n, NULL, needle, "");
}

static redq_agent *load_patched(const rqd_buf *s, size_t off, const void *v, size_t n)
{
    unsigned char *c = patched(s, off, v, n);
    redq_agent *b = NULL;
    rqd_err err = {0};
    ck_assert_msg(redq_agent_load(c, s->len, &b, &err) == 0, "refused: %s", err.msg);
    free(c);
    return b;
}

/* An n-step agent with updates done, a pending stream and a buffer: every part of the
 * format is in its blob. */
static redq_agent *saved_agent(rqd_buf *s)
{
    redq_agent *a = nstep_agent();
    work(a, 11);
    ck_assert(a->replay.n_streams >= 1 && a->replay.len > 0 && a->actor_updates > 0);
    test_save(a, 1, s);
    return a;
}

START_TEST(counters_past_2_53_are_refused)
{
    rqd_buf s;
    redq_agent *a = saved_agent(&s);
    blob_layout L = layout_of(a, &s);
    const long long huge[] = {INT64_MAX, INT64_MAX - 5, (1LL << 62) + 3, RQD_MAX_COUNTER + 1, -1};
    for (int c = 0; c < 4; c++) /* env_steps, updates, actor_updates, policy_version */
        for (size_t h = 0; h < sizeof huge / sizeof huge[0]; h++)
            expect_refused(&s, L.counters + 8 * (size_t)c, &huge[h], 8, "2^53 - 1");
    for (size_t h = 0; h < sizeof huge / sizeof huge[0]; h++) {
        expect_refused(&s, L.replay, &huge[h], 8, "replay buffer header");        /* added */
        expect_refused(&s, L.streams - 16, &huge[h], 8, "replay stream count"); /* seen */
    }
    /* 2^53 - 1 itself is a counter's largest value. */
    long long max = RQD_MAX_COUNTER;
    redq_agent *b = load_patched(&s, L.counters, &max, 8);
    ck_assert(b->env_steps == RQD_MAX_COUNTER);
    redq_agent_free(b);
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

/* At 2^53 - 1 the counters refuse to move on instead of overflowing, and the refused
 * call changes nothing. */
START_TEST(counter_arithmetic_stops_at_2_53)
{
    rqd_buf s, before, after;
    redq_agent *a = saved_agent(&s);
    blob_layout L = layout_of(a, &s);
    rqd_err err = {0};
    long long max = RQD_MAX_COUNTER;

    redq_agent *b = load_patched(&s, L.counters, &max, 8); /* env_steps */
    test_save(b, 1, &before);
    ck_assert_int_eq(redq_agent_act(b, (float[3]){0}, 1, REDQ_EXPLORE, (float[2]){0}, &err), 0);
    float obs[3] = {0}, act[2] = {0};
    redq_transition t = {obs, act, 1.0f, obs, 0, 0, NULL};
    ck_assert_int_eq(redq_agent_add(b, &t, 1, &err), RQD_ECONFLICT);
    ck_assert_str_eq(err.field, "transitions");
    ck_assert_int_eq(redq_agent_set_env_steps(b, RQD_MAX_COUNTER + 1), RQD_EINVAL);
    ck_assert(b->env_steps == RQD_MAX_COUNTER);
    redq_agent_free(b);
    rqd_buf_free(&before);

    /* updates at the maximum: no update; policy_version at it: none with an actor step */
    long long upd[2] = {RQD_MAX_COUNTER, 1};
    b = load_patched(&s, L.counters + 8, upd, 16); /* updates, actor_updates */
    test_save(b, 1, &before);
    ck_assert_int_eq(redq_agent_update(b, 1, NULL, NULL, &err), RQD_ECONFLICT);
    ck_assert_msg(strstr(err.msg, "2^53 - 1") != NULL, "%s", err.msg);
    test_save(b, 1, &after);
    ck_assert(before.len == after.len && memcmp(before.data, after.data, before.len) == 0);
    redq_agent_free(b);
    rqd_buf_free(&before);
    rqd_buf_free(&after);

    b = load_patched(&s, L.counters + 24, &max, 8); /* policy_version */
    ck_assert_int_eq(b->updates % b->cfg.actor_delay, 1); /* the next update steps the actor */
    ck_assert_int_eq(redq_agent_update(b, 1, NULL, NULL, &err), RQD_ECONFLICT);
    ck_assert_int_eq(redq_agent_set_policy_version(b, RQD_MAX_COUNTER + 1), RQD_EINVAL);
    ck_assert(b->policy_version == RQD_MAX_COUNTER && b->updates == a->updates);
    redq_agent_free(b);
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

START_TEST(inconsistent_counters_and_replay_headers_are_refused)
{
    rqd_buf s;
    redq_agent *a = saved_agent(&s);
    blob_layout L = layout_of(a, &s);
    const long long len = a->replay.len, seen = a->replay.seen;

    /* more actor updates than updates / actor_delay allow */
    long long au = a->updates / a->cfg.actor_delay + 1;
    expect_refused(&s, L.counters + 16, &au, 8, "inconsistent");
    /* len above added, len below min(added, buffer_size), added negative */
    long long hdr[][2] = {{len - 1, len}, {len + 1, len - 1}, {-1, 0}, {-len, len}};
    for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++)
        expect_refused(&s, L.replay, hdr[i], 16, "replay buffer header is inconsistent");
    /* a stream count past the streams, a negative one, one past RQD_MAX_STREAMS */
    long long ns[] = {a->replay.n_streams + 1, -1, RQD_MAX_STREAMS + 1};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        expect_refused(&s, L.streams - 8, &ns[i], 8, "replay stream");
    /* the stream's "last" at or past seen, or negative; its length 0 or n */
    uint32_t idlen;
    memcpy(&idlen, s.data + L.streams, 4);
    size_t st = L.streams + 4 + idlen;
    long long last[] = {seen, -1, INT64_MAX};
    for (size_t i = 0; i < sizeof last / sizeof last[0]; i++)
        expect_refused(&s, st, &last[i], 8, "replay stream is inconsistent");
    long long sl[] = {0, a->cfg.estimation_step, INT64_MAX};
    for (size_t i = 0; i < sizeof sl / sizeof sl[0]; i++)
        expect_refused(&s, st + 8, &sl[i], 8, "replay stream");
    rqd_buf_free(&s);
    redq_agent_free(a);

    /* Rows plus pending transitions outnumber the transitions seen: in a full ring,
     * so that the header itself stays consistent. */
    redq_config c = test_config(2);
    c.estimation_step = 3;
    c.buffer_size = 8;
    a = test_agent(&c, 3, 2);
    test_fill(a, 40, 5);
    float obs[3] = {0}, act[2] = {0};
    redq_transition t = {obs, act, 1.0f, obs, 0, 0, NULL};
    rqd_err err = {0};
    ck_assert_int_eq(redq_agent_add(a, &t, 1, &err), 0); /* a pending one, whatever came before */
    test_save(a, 1, &s);
    L = layout_of(a, &s);
    ck_assert(a->replay.len == 8 && a->replay.added > 8 && a->replay.n_streams == 1);
    long long more = a->replay.added + 1;
    expect_refused(&s, L.replay, &more, 8, "replay counters are inconsistent");
    /* a full ring's `added` near 2^63 (its ring position would go negative) */
    long long near[] = {INT64_MAX, INT64_MAX - 7, RQD_MAX_COUNTER + 1};
    for (size_t i = 0; i < sizeof near / sizeof near[0]; i++)
        expect_refused(&s, L.replay, &near[i], 8, "replay buffer header is inconsistent");
    rqd_buf_free(&s);
    redq_agent_free(a);

    /* With n == 1 nothing goes through the streams: seen must stay 0. */
    c = test_config(2);
    a = test_agent(&c, 3, 2);
    test_fill(a, 10, 3);
    test_save(a, 1, &s);
    L = layout_of(a, &s);
    long long one = 1;
    expect_refused(&s, L.streams - 16, &one, 8, "replay stream count");
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

START_TEST(non_finite_state_is_refused)
{
    rqd_buf s;
    redq_agent *a = saved_agent(&s);
    blob_layout L = layout_of(a, &s);
    float bad[] = {NAN, INFINITY, -INFINITY, 0}; /* the last: past the block's range */
    const double dbad[] = {NAN, INFINITY, -INFINITY};
    const struct {
        size_t off;
        float past; /* finite, but more than any live agent holds */
        const char *what;
    } blocks[] = {
        {L.actor, -2e30f, "actor's parameters"},
        {L.actor + 4 * (a->actor_shape.total - 1), 2e30f, "actor's parameters"},
        {L.actor_m + 8, 1e19f, "actor's Adam moments"},
        {L.actor_v + 4, 1e37f, "actor's Adam moments"},
        {L.critic + 4 * (a->critic_floats / 2), 3e38f, "critics' parameters"},
        {L.critic_m, -1e19f, "critics' Adam moments"},
        {L.critic_v + 4 * (a->critic_floats - 1), 3e38f, "critics' Adam moments"},
        {L.target + 12, 1e31f, "target critics"},
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        bad[3] = blocks[i].past;
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
            expect_refused(&s, blocks[i].off, &bad[k], 4, blocks[i].what);
    }
    /* Adam's v is a mean of squares: never negative; m cannot outgrow sqrt(v) */
    float neg = -1e-3f, big_m = 1.0f;
    expect_refused(&s, L.actor_v + 4, &neg, 4, "actor's Adam moments");
    expect_refused(&s, L.critic_v, &neg, 4, "critics' Adam moments");
    float zero = 0.0f;
    memcpy(&big_m, s.data + L.critic_m, 4);
    ck_assert(big_m != 0.0f); /* so that v = 0 under it is inconsistent */
    expect_refused(&s, L.critic_v, &zero, 4, "critics' Adam moments");
    /* log_alpha, its moments, the last losses */
    for (size_t k = 0; k < sizeof dbad / sizeof dbad[0]; k++) {
        expect_refused(&s, L.alpha, &dbad[k], 8, "log_alpha");
        expect_refused(&s, L.alpha + 16, &dbad[k], 8, "log_alpha's Adam moments");
    }
    double big_log_alpha = 800.0, neg_v = -1.0, inf = INFINITY;
    expect_refused(&s, L.alpha, &big_log_alpha, 8, "log_alpha"); /* exp() overflows */
    expect_refused(&s, L.alpha + 16, &neg_v, 8, "log_alpha's Adam moments");
    expect_refused(&s, L.alpha + 24, &inf, 8, "last losses");
    /* a generator stuck at zero, or with a NaN kept normal */
    long long zeros[4] = {0, 0, 0, 0};
    expect_refused(&s, L.rng_train, zeros, 32, "random generator");
    expect_refused(&s, L.rng_act + 36, &bad[0], 4, "random generator");
    /* a replay row and a pending transition */
    expect_refused(&s, L.rows + 4, &bad[0], 4, "replay row 0");
    expect_refused(&s, L.rows + 4 * (size_t)a->replay.row * (size_t)(a->replay.len - 1),
                   &bad[1], 4, "replay row");
    float disc = 1.5f; /* a row's discount is gamma^n' */
    expect_refused(&s, L.rows + 4 * (size_t)(a->S + a->A + 1), &disc, 4, "discount");
    uint32_t idlen;
    memcpy(&idlen, s.data + L.streams, 4);
    size_t q = L.streams + 4 + idlen + 16;
    expect_refused(&s, q, &bad[2], 4, "holds a non-finite value");
    float one = 1.0f; /* a pending transition that terminated */
    expect_refused(&s, q + 4 * (size_t)(2 * a->S + a->A + 1), &one, 4, "ended transition");
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

START_TEST(action_bounds_past_max_abs_value_are_refused)
{
    rqd_buf s;
    redq_agent *a = saved_agent(&s); /* bounds [-2, 2] */
    blob_layout L = layout_of(a, &s);
    rqd_limits lim = RQD_LIMITS_DEFAULT;
    float huge = 3e38f, neg = -2e9f;
    redq_agent *b = NULL;
    rqd_err err = {0};

    expect_refused_with(&s, L.high + 4, &huge, 4, &lim, "--max-abs-value", "action_high");
    expect_refused_with(&s, L.low, &neg, 4, &lim, "--max-abs-value", "action_low");
    lim.max_abs_value = 1.5;
    ck_assert_int_eq(redq_agent_load_within(s.data, s.len, &lim, &b, &err), RQD_EINVAL);
    ck_assert_str_eq(err.field, "action_low");
    ck_assert_ptr_null(b);
    lim.max_abs_value = 2.0; /* at the limit is within it */
    ck_assert_int_eq(redq_agent_load_within(s.data, s.len, &lim, &b, &err), RQD_OK);
    redq_agent_free(b);
    lim.max_abs_value = 0; /* not set by the caller: no bound */
    ck_assert_int_eq(redq_agent_load_within(s.data, s.len, &lim, &b, &err), RQD_OK);
    redq_agent_free(b);
    b = load_patched(&s, L.high + 4, &huge, 4); /* no limits: only finiteness */
    redq_agent_free(b);
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

/* A short blob naming big networks is refused before they are allocated: the loader
 * compares what the config needs with what the blob holds. */
START_TEST(short_blob_with_big_networks_is_refused_before_allocating)
{
    redq_config c = test_config(2);
    redq_agent *a = test_agent(&c, 3, 2), *b = NULL;
    rqd_buf s;
    rqd_err err = {0};
    test_save(a, 0, &s);
    /* hidden_sizes [16, 8] -> [4096, 4096]: same JSON length change is not needed, the
     * loader reads the config before any block */
    char *cfg = strndup((const char *)s.data + 20, *(uint32_t *)(void *)(s.data + 16));
    char *at = strstr(cfg, "[16,8]");
    ck_assert_ptr_nonnull(at);
    rqd_buf t;
    rqd_buf_init(&t, 0);
    size_t pre = (size_t)(at - cfg);
    uint32_t nlen = (uint32_t)(strlen(cfg) - 6 + 11);
    rqd_buf_append(&t, s.data, 16);
    rqd_buf_append(&t, &nlen, 4);
    rqd_buf_append(&t, cfg, pre);
    rqd_buf_append(&t, "[4096,4096]", 11);
    rqd_buf_append(&t, at + 6, strlen(at + 6));
    size_t rest = 20 + strlen(cfg);
    rqd_buf_append(&t, s.data + rest, s.len - 4 - rest);
    uint32_t crc = (uint32_t)crc32(0L, t.data, (uInt)t.len);
    rqd_buf_append(&t, &crc, 4);
    ck_assert_int_eq(redq_agent_load(t.data, t.len, &b, &err), RQD_EINVAL);
    ck_assert_msg(strstr(err.msg, "networks need") != NULL, "%s", err.msg);
    ck_assert_ptr_null(b);
    free(cfg);
    rqd_buf_free(&t);
    rqd_buf_free(&s);
    redq_agent_free(a);
}
END_TEST

/* Whatever a live agent reaches, after updates with and without skips, loads again. */
START_TEST(live_states_always_load)
{
    redq_agent *a = nstep_agent(), *b = NULL;
    rqd_buf s;
    rqd_err err = {0};
    for (uint64_t k = 20; k < 30; k++) {
        work(a, k);
        test_save(a, 1, &s);
        ck_assert_msg(redq_agent_load(s.data, s.len, &b, &err) == 0, "%s", err.msg);
        redq_agent_free(b);
        b = NULL;
        rqd_buf_free(&s);
    }
    redq_agent_free(a);
}
END_TEST

/* redq_state_bytes is the size redq_agent_save writes without the buffer, for shapes of
 * one to three layers, ensembles of 1 to 5, several obs and act dims, before and after
 * work (counters, Adam and buffer change no size); the limit refuses a state one byte
 * past it, naming config.hidden_sizes and --max-import. The defaults refuse REDQ with
 * three layers of 2048 and 10 critics (1379 MiB), computed without allocating. */
START_TEST(state_bytes_is_what_save_writes_and_is_limited)
{
    static const struct {
        int S, A, n_hidden, hidden[3], ensemble;
    } shapes[] = {
        {3, 2, 2, {16, 8}, 3}, {1, 1, 1, {4}, 1}, {11, 5, 3, {9, 17, 3}, 5}, {64, 16, 1, {32}, 2},
    };
    rqd_limits l = RQD_LIMITS_DEFAULT;
    rqd_err err = {0};
    size_t bytes = 0;

    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        redq_config c = test_config(shapes[i].A);
        c.n_hidden = shapes[i].n_hidden;
        memcpy(c.hidden, shapes[i].hidden, sizeof shapes[i].hidden);
        c.ensemble_size = shapes[i].ensemble;
        c.subset_size = shapes[i].ensemble < 2 ? 1 : 2;
        redq_agent *a = test_agent(&c, shapes[i].S, shapes[i].A);
        rqd_buf s;

        ck_assert_int_eq(redq_state_bytes(&c, shapes[i].S, shapes[i].A, &bytes, &err), 0);
        test_save(a, 0, &s);
        ck_assert_msg(s.len == bytes, "shape %zu: saved %zu, computed %zu", i, s.len, bytes);
        rqd_buf_free(&s);
        test_fill(a, 20, i); /* S <= 64, A <= 16 */
        ck_assert_int_eq(redq_agent_update(a, 3, NULL, NULL, &err), 0);
        test_save(a, 0, &s);
        ck_assert_uint_eq(s.len, bytes);
        rqd_buf_free(&s);
        redq_agent_free(a);

        rqd_limits t = l;
        t.state_bytes = (long long)bytes;
        ck_assert_int_eq(redq_limits_check(&t, &c, shapes[i].S, shapes[i].A, &err), RQD_OK);
        t.state_bytes--;
        ck_assert_int_eq(redq_limits_check(&t, &c, shapes[i].S, shapes[i].A, &err), RQD_EINVAL);
        ck_assert_str_eq(err.field, "config.hidden_sizes");
        ck_assert_msg(strstr(err.msg, "--max-import") != NULL, "%s", err.msg);
    }
    /* Small limits print in KiB or bytes: never "1 MiB, over the 0 MiB". */
    redq_config c = test_config(2);
    rqd_limits t = l;
    ck_assert_int_eq(redq_state_bytes(&c, 3, 2, &bytes, &err), 0);
    ck_assert(bytes > 4096 && bytes < 65536);
    t.state_bytes = 4096;
    ck_assert_int_eq(redq_limits_check(&t, &c, 3, 2, &err), RQD_EINVAL);
    ck_assert_msg(strstr(err.msg, "KiB, over the 4 KiB a checkpoint") != NULL, "%s", err.msg);
    t.state_bytes = 1000;
    ck_assert_int_eq(redq_limits_check(&t, &c, 3, 2, &err), RQD_EINVAL);
    ck_assert_msg(strstr(err.msg, "bytes, over the 1000 bytes a checkpoint") != NULL, "%s",
                  err.msg);

    redq_config big = test_config(1);
    redq_config_default(&big, 1);
    big.n_hidden = 3;
    big.hidden[0] = big.hidden[1] = big.hidden[2] = 2048;
    big.ensemble_size = 10;
    ck_assert_int_eq(redq_state_bytes(&big, 3, 1, &bytes, &err), 0);
    ck_assert_msg(bytes > 1000000000u && bytes < (size_t)3 << 29, "%zu", bytes);
    ck_assert_int_eq(l.state_bytes, 1LL << 30);
    ck_assert_int_eq(redq_limits_check(&l, &big, 3, 1, &err), RQD_EINVAL);
    char want[160];
    snprintf(want, sizeof want, "config.hidden_sizes: the learner's state would be %zu MiB, "
             "over the 1024 MiB a checkpoint may have to be imported again (--max-import)",
             (bytes + (1u << 20) - 1) >> 20);
    ck_assert_str_eq(err.msg, want);
    l.state_bytes = 2LL << 30;
    ck_assert_int_eq(redq_limits_check(&l, &big, 3, 1, &err), RQD_OK);
}
END_TEST

Suite *suite_ckpt(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("state");
    tcase_add_test(tc, round_trip_is_bit_exact);
    tcase_add_test(tc, continuing_after_a_load_equals_never_stopping);
    tcase_add_test(tc, without_buffer_loads_learner_only);
    tcase_add_test(tc, truncated_corrupted_and_unknown_version_are_refused);
    tcase_add_test(tc, limits_name_field_and_flag);
    tcase_add_test(tc, state_bytes_is_what_save_writes_and_is_limited);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_add_test(tc, counters_past_2_53_are_refused);
    tcase_add_test(tc, counter_arithmetic_stops_at_2_53);
    tcase_add_test(tc, inconsistent_counters_and_replay_headers_are_refused);
    tcase_add_test(tc, non_finite_state_is_refused);
    tcase_add_test(tc, action_bounds_past_max_abs_value_are_refused);
    tcase_add_test(tc, short_blob_with_big_networks_is_refused_before_allocating);
    tcase_add_test(tc, live_states_always_load);
    suite_add_tcase(s, tc);
    return s;
}
