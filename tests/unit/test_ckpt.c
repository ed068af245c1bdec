/* tests/unit/test_ckpt.c: the saved state: a bit-exact round trip, continuing after a
 * load exactly as if never stopped (REDQ.md "Reproducibility"), and refusal of truncated,
 * corrupted and unknown-version blobs. */
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
    return s;
}
