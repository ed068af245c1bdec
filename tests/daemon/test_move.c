/* tests/daemon/test_move.c: moving an agent (daemon/move.c, daemon/movefile.c) without
 * HTTP: the mark refuses writes and training and survives a reopen; the move file's
 * import is all or nothing under allocation and commit failures; and the decoder, fed
 * every truncation and bit flips with the CRC made valid again, refuses or imports but
 * never reads out of bounds (this suite also runs under ASan+UBSan). */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../daemon/movefile.h"
#include "daemon_tests.h"

/* Rows of the agents table named name in the file (a connection of its own). */
static int rows_named(const test_reg *t, const char *name)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    ck_assert_int_eq(sqlite3_open_v2(t->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM agents WHERE name = ?1", -1,
                                        &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Posts n rows of one stream (every 5th ends an episode) under batch_id. */
static void post(rqd_agent *a, int n, const char *batch_id, const char *env_id)
{
    store_transition tr[64];
    float mem[7 * 64];
    rqd_err err = {0};
    char *answer = NULL;
    double target;
    ck_assert(n <= 64);
    for (int i = 0; i < n; i++) {
        float *m = mem + 7 * i;
        for (int j = 0; j < 7; j++)
            m[j] = 0.01f * (float)(i + j);
        tr[i] = (store_transition){m, m + 3, 1.0f, m + 4, i % 5 == 4, 0, env_id};
    }
    ck_assert_msg(rqd_ingest(a, tr, n, batch_id, &answer, &target, &err) == 0, "%s", err.msg);
    free(answer);
}

/* An agent with a little of everything a move file carries, marked moving; its file. */
static rqd_agent *moving_agent(test_reg *t, const char *name, rqd_buf *file)
{
    rqd_agent *a = dt_create(t->r, name);
    rqd_err err = {0};
    char ep[40];
    float obs[3] = {0.1f, 0.2f, 0.3f}, act[1];
    post(a, 40, "b-1", "e1");
    post(a, 12, "b-2", NULL);
    ck_assert_int_eq(rqd_episode_start(a, obs, REDQ_EXPLORE, ep, act, &err), 0);
    ck_assert_int_eq(rqd_agent_move_begin(a, "elsewhere", &err), 0);
    void *data = NULL;
    size_t len = 0;
    ck_assert_msg(rqd_agent_move_file(a, "here", &data, &len, &err) == 0, "%s", err.msg);
    rqd_buf_init(file, 0);
    ck_assert_int_eq(rqd_buf_append(file, data, len), 0);
    free(data);
    return a;
}

START_TEST(test_moving_refuses_writes_and_training_and_survives_a_reopen)
{
    test_reg t;
    rqd_buf file;
    rqd_err err = {0};
    rqd_waiter w = {0}; /* refused: never registered */
    char *answer = NULL;
    double target;
    store_transition tr = {(float[3]){0}, (float[1]){0}, 0, (float[3]){0}, 0, 0, NULL};

    reg_open(&t, 16);
    rqd_agent *a = moving_agent(&t, "m", &file);
    ck_assert_int_eq(rqd_ingest(a, &tr, 1, NULL, &answer, &target, &err), RQD_EAGAIN);
    ck_assert_ptr_nonnull(strstr(err.msg, "elsewhere"));
    ck_assert_int_eq(rqd_agent_wait(a, &w, RQD_WAIT_TRAIN, 0, 1, 60, &err), RQD_EAGAIN);
    ck_assert_int_eq(rqd_agent_move_begin(a, "other", &err), RQD_ECONFLICT);
    rqd_agent_put(a);
    reg_reopen(&t);
    a = rqd_agent_find(t.r, "m");
    ck_assert(a->moving);
    ck_assert_int_eq(rqd_ingest(a, &tr, 1, NULL, &answer, &target, &err), RQD_EAGAIN);
    ck_assert_int_eq(rqd_agent_move_cancel(a, &err), 0);
    ck_assert_int_eq(rqd_ingest(a, &tr, 1, NULL, &answer, &target, &err), 0);
    free(answer);
    rqd_agent_put(a);
    reg_reopen(&t);
    a = rqd_agent_find(t.r, "m");
    ck_assert(!a->moving);
    rqd_agent_put(a);
    reg_close(&t);
    rqd_buf_free(&file);
}
END_TEST

START_TEST(test_move_import_is_all_or_nothing)
{
    test_reg t;
    rqd_buf file;
    rqd_err err = {0};
    int rc = -1;
    long nth;

    reg_open(&t, 16);
    rqd_agent *src = moving_agent(&t, "m", &file);
    rqd_agent_state want;
    rqd_agent_state_get(src, &want);
    rqd_writer_fail_next(rqd_registry_writer(t.r), SQLITE_IOERR);
    for (nth = 0; rc != 0 && nth < 100000; nth++) {
        rqd_agent *a = NULL;
        fail_alloc_arm(nth);
        rc = rqd_agent_move_import(t.r, "m2", file.data, file.len, &a, &err);
        fail_alloc_disarm();
        if (rc == 0) {
            rqd_agent_state got;
            rqd_agent_state_get(a, &got);
            ck_assert_int_eq(got.status, RQD_AGENT_OK);
            ck_assert_int_eq(got.info.env_steps, want.info.env_steps);
            ck_assert_int_eq(got.info.updates, want.info.updates);
            ck_assert_int_eq(got.info.buffer_len, want.info.buffer_len);
            ck_assert_int_eq(got.episodes_done, want.episodes_done);
            ck_assert_int_eq(got.n_open, want.n_open);
            ck_assert(got.pending == want.pending);
            char *answer = NULL;
            ck_assert_int_eq(rqd_agent_batch_answer(a, "b-2", &answer, &err), 0);
            ck_assert_ptr_nonnull(answer); /* the batch id came along */
            free(answer);
            rqd_agent_put(a);
            break;
        }
        ck_assert_ptr_null(rqd_agent_find(t.r, "m2"));
        ck_assert_msg(rows_named(&t, "m2") == 0, "a failed import (allocation %ld) left its "
                      "row: %s", nth, err.msg);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(nth > 10, "only %ld allocations: the injection missed the import", nth);
    ck_assert_int_eq(rows_named(&t, "m2"), 1);
    rqd_agent_put(src);
    reg_close(&t);
    rqd_buf_free(&file);
}
END_TEST

/* Runs sql on the file behind the registry's back (a connection of its own). */
static void exec_sql(const test_reg *t, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    ck_assert_int_eq(sqlite3_open(t->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 60000);
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s", msg);
    sqlite3_close(db);
}

/* Ended episodes that retention deleted count in state.episodes (and the newest of them
 * may be state.last_return): a move carries them, and the target keeps them across a
 * restart. */
START_TEST(test_move_carries_the_episodes_retention_dropped)
{
    test_reg t;
    rqd_err err = {0};
    rqd_agent_state st;
    void *data = NULL;
    size_t len = 0;

    reg_open(&t, 16);
    rqd_agent *a = dt_create(t.r, "d");
    post(a, 40, "b-1", "e1"); /* 8 ended explore episodes */
    rqd_agent_put(a);
    /* As storage/history.c records deleted episodes; the newest of them ended last. */
    exec_sql(&t, "INSERT OR IGNORE INTO history (agent) SELECT id FROM agents WHERE name = 'd';"
                 "UPDATE history SET episodes_dropped = 1000, last_return = 123.5,"
                 " last_ended_at = '2999-01-01T00:00:00.000Z'"
                 " WHERE agent = (SELECT id FROM agents WHERE name = 'd')");
    reg_reopen(&t);
    a = rqd_agent_find(t.r, "d");
    rqd_agent_state_get(a, &st);
    ck_assert_int_eq(st.episodes_done, 1008);
    ck_assert(st.last_return == 123.5);
    ck_assert_int_eq(rqd_agent_move_begin(a, "elsewhere", &err), 0);
    ck_assert_msg(rqd_agent_move_file(a, "here", &data, &len, &err) == 0, "%s", err.msg);
    rqd_agent_put(a);
    rqd_agent *b = NULL;
    ck_assert_msg(rqd_agent_move_import(t.r, "d2", data, len, &b, &err) == 0, "%s", err.msg);
    free(data);
    rqd_agent_state_get(b, &st);
    ck_assert_int_eq(st.episodes_done, 1008);
    ck_assert(st.last_return == 123.5);
    rqd_agent_put(b);
    reg_reopen(&t);
    b = rqd_agent_find(t.r, "d2");
    rqd_agent_state_get(b, &st);
    ck_assert_int_eq(st.episodes_done, 1008);
    ck_assert(st.last_return == 123.5);
    rqd_agent_put(b);
    reg_close(&t);
}
END_TEST

/* The bytes with their CRC-32 made valid again. */
static void resign(unsigned char *p, size_t len)
{
    uint32_t crc = (uint32_t)crc32(0L, p, (uInt)(len - 4));
    memcpy(p + len - 4, &crc, 4);
}

START_TEST(test_decoder_refuses_every_truncation_and_survives_flips)
{
    test_reg t;
    rqd_buf file;
    rqd_err err = {0};
    rqd_move_file m;

    reg_open(&t, 4096);
    rqd_agent *a = moving_agent(&t, "m", &file);
    rqd_agent_put(a);
    ck_assert_msg(rqd_move_decode(file.data, file.len, &m, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(m.n_batches, 2);
    ck_assert_int_eq(m.n_streams, 1);
    ck_assert_int_eq(m.n_episodes, 11);    /* 10 ended from the stream, 1 open */
    rqd_move_file_free(&m);
    unsigned char *copy = malloc(file.len);
    for (size_t n = 0; n < file.len; n += 1 + n / 64) {   /* every short prefix, then sparser */
        memcpy(copy, file.data, n);
        if (n >= 16)
            resign(copy, n);
        ck_assert_int_eq(rqd_move_decode(copy, n, &m, &err), RQD_EINVAL);
        rqd_move_file_free(&m);
    }
    /* Flips with a valid CRC: the checks, not the checksum, must catch what they break;
     * a file that still decodes is imported (every eighth, for time) and must load. */
    int decoded = 0;
    for (size_t i = 8; i + 4 < file.len; i++) {
        for (int bit = 0; bit < 8; bit += 5) {
            memcpy(copy, file.data, file.len);
            copy[i] ^= (unsigned char)(1u << bit);
            resign(copy, file.len);
            if (rqd_move_decode(copy, file.len, &m, &err) == 0 && decoded++ % 8 == 0) {
                rqd_agent *b = NULL;
                char name[32];
                snprintf(name, sizeof name, "f%zu-%d", i, bit);
                if (rqd_agent_move_import(t.r, name, copy, file.len, &b, &err) == 0) {
                    rqd_agent_put(b);
                    ck_assert_int_eq(rqd_agent_delete(t.r, name, &err), 0);
                }
            }
            rqd_move_file_free(&m);
        }
    }
    free(copy);
    reg_close(&t);
    rqd_buf_free(&file);
}
END_TEST

Suite *suite_move(void)
{
    const TTest *const tests[] = {
        test_moving_refuses_writes_and_training_and_survives_a_reopen,
        test_move_import_is_all_or_nothing,
        test_decoder_refuses_every_truncation_and_survives_flips,
        test_move_carries_the_episodes_retention_dropped,
    };
    return dt_suite("move", 600, tests, (int)(sizeof tests / sizeof tests[0]));
}
