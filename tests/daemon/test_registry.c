/* tests/daemon/test_registry.c: the registry's promises that HTTP tests cannot pin down
 * deterministically (issue 9): a write that races its agent's DELETE lands nowhere,
 * --max-agents holds under concurrent creates and imports, and create, import and a
 * transitions post are all or nothing under allocation and commit failures. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_tests.h"

/* ------------------------------------------------------------------ helpers */

/* The agents the database file holds (a fresh read-only connection). */
static int stored_agents(const test_reg *t, store_agent_row **rows)
{
    store *s = NULL;
    rqd_err err = {0};
    int n = 0;
    ck_assert_msg(store_open(t->db, STORE_RO, 0, 0, &s, &err) == 0, "%s", err.msg);
    ck_assert_msg(store_agent_list(s, rows, &n, &err) == 0, "%s", err.msg);
    store_close(s);
    return n;
}

static int stored_has(const test_reg *t, const char *name, int64_t *id)
{
    store_agent_row *rows = NULL;
    int n = stored_agents(t, &rows), found = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].name, name) == 0) {
            found = 1;
            if (id)
                *id = rows[i].id;
        }
    store_agent_rows_free(rows, n);
    return found;
}

static int64_t stored_max_seq(const test_reg *t, int64_t id)
{
    store *s = NULL;
    rqd_err err = {0};
    int64_t seq = -1;
    ck_assert(store_open(t->db, STORE_RO, 0, 0, &s, &err) == 0);
    ck_assert(store_transitions_max_seq(s, id, &seq, &err) == 0);
    store_close(s);
    return seq;
}

static long long env_steps_of(rqd_agent *a)
{
    rqd_agent_state st;
    rqd_agent_state_get(a, &st);
    return st.info.env_steps;
}

/* n transitions for an agent of obs 3, act 1, in one array (rows point into mem). */
static void rows_of(store_transition *t, float *mem, int n)
{
    for (int i = 0; i < n; i++) {
        float *m = mem + 7 * i;
        for (int j = 0; j < 7; j++)
            m[j] = 0.01f * (float)(i + j);
        t[i] = (store_transition){m, m + 3, 0.5f, m + 4, 0, 0, NULL};
    }
}

/* ------------------------------------------------------------------ races with DELETE */

/* Issue 9: a request that found its agent before a DELETE (and a new agent of the same
 * name) must not write into the new agent: every write checks, under the lock DELETE
 * takes, that its agent still exists. */
START_TEST(test_write_after_delete_lands_nowhere)
{
    test_reg t;
    rqd_err err = {0};
    store_ckpt_info ck;
    store_transition tr[4];
    float mem[28];
    char answer_id[40];
    float act[1], obs[3] = {0.1f, 0.2f, 0.3f};
    char *answer = NULL;
    double target;

    reg_open(&t, 16);
    rqd_agent *old = dt_create(t.r, "x");
    ck_assert_int_eq(rqd_ckpt_create(old, 0, &ck, &err), 0);
    int64_t old_id = old->id;
    ck_assert_int_eq(rqd_agent_delete(t.r, "x", &err), 0);
    rqd_agent *fresh = dt_create(t.r, "x");
    ck_assert_msg(fresh->id != old_id, "agent id %lld was reused", (long long)old_id);

    redq_config cfg;
    ck_assert_int_eq(rqd_agent_config(old, &cfg, &err), 0);
    cfg.training = REDQ_TRAIN_PAUSED;
    cfg.update_per_step = 3;
    ck_assert_int_eq(rqd_agent_patch(old, &cfg, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(rqd_ckpt_create(old, 0, &ck, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(rqd_ckpt_restore(old, ck.id, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(rqd_episode_start(old, obs, REDQ_EXPLORE, answer_id, act, &err),
                     RQD_ENOTFOUND);
    rows_of(tr, mem, 4);
    ck_assert_int_eq(rqd_ingest(old, tr, 4, "b1", &answer, &target, &err), RQD_ENOTFOUND);
    ck_assert_ptr_null(answer);

    /* The new agent is untouched, in memory and on disk. */
    redq_config now;
    ck_assert_int_eq(rqd_agent_config(fresh, &now, &err), 0);
    ck_assert_int_eq(now.training, REDQ_TRAIN_MANUAL);
    ck_assert(now.update_per_step == 1);
    ck_assert_int_eq(env_steps_of(fresh), 0);
    ck_assert_int_eq(stored_max_seq(&t, fresh->id), 0);
    int64_t id = 0;
    ck_assert(stored_has(&t, "x", &id));
    ck_assert_int_eq(id, fresh->id);
    rqd_agent_put(old);
    rqd_agent_put(fresh);

    /* Ids are not reused after a restart either. */
    reg_reopen(&t);
    ck_assert_int_eq(rqd_agent_delete(t.r, "x", &err), 0);
    rqd_agent *third = dt_create(t.r, "x");
    ck_assert_msg(third->id > id, "id %lld after %lld", (long long)third->id, (long long)id);
    rqd_agent_put(third);
    reg_close(&t);
}
END_TEST

/* ------------------------------------------------------------------ --max-agents */

typedef struct {
    test_reg *t;
    int i;
    int rc;
    const void *blob; /* import this instead of creating */
    size_t len;
} create_arg;

static void *create_thread(void *p)
{
    create_arg *c = p;
    char name[16];
    rqd_err err = {0};
    rqd_agent *a = NULL;
    redq_config cfg = dt_config();
    float low[1] = {-1}, high[1] = {1};
    snprintf(name, sizeof name, "c%d", c->i);
    c->rc = c->blob ? rqd_ckpt_import(c->t->r, name, c->blob, c->len, &a, &err)
                    : rqd_agent_create(c->t->r, name, 3, 1, low, high, &cfg, &a, &err);
    rqd_agent_put(a);
    return NULL;
}

static void race_creates(const void *blob, size_t len)
{
    enum { THREADS = 12, MAX = 3 };
    test_reg t;
    pthread_t th[THREADS];
    create_arg args[THREADS];
    int ok = 0;

    reg_open(&t, MAX);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (create_arg){&t, i, 1, blob, len};
        ck_assert_int_eq(pthread_create(&th[i], NULL, create_thread, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (args[i].rc == 0)
            ok++;
        else
            ck_assert_int_eq(args[i].rc, RQD_EINVAL); /* the limit, named */
    }
    ck_assert_int_eq(ok, MAX);
    ck_assert_int_eq(rqd_registry_count(t.r), MAX);
    store_agent_row *rows = NULL;
    int n = stored_agents(&t, &rows);
    store_agent_rows_free(rows, n);
    ck_assert_int_eq(n, MAX);
    reg_close(&t);
}

START_TEST(test_max_agents_holds_under_concurrent_creates)
{
    race_creates(NULL, 0);
}
END_TEST

START_TEST(test_max_agents_holds_under_concurrent_imports)
{
    redq_config cfg = dt_config();
    float low[1] = {-1}, high[1] = {1};
    redq_agent *core = NULL;
    rqd_err err = {0};
    rqd_buf b;
    rqd_buf_init(&b, 0);
    ck_assert_int_eq(redq_agent_new(&cfg, 3, 1, low, high, &core, &err), 0);
    ck_assert_int_eq(redq_agent_save(core, 1, &b, &err), 0);
    redq_agent_free(core);
    race_creates(b.data, b.len);
    rqd_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ all or nothing */

/* Create with the nth allocation failing, n = 1, 2, ... until it succeeds: every failed
 * attempt leaves nothing (not listed, not stored, the name free for the next); then a
 * failed commit leaves nothing either. */
START_TEST(test_create_is_all_or_nothing)
{
    test_reg t;
    redq_config cfg = dt_config();
    float low[1] = {-1}, high[1] = {1};
    int rc = -1;
    long nth;

    reg_open(&t, 16);
    rqd_writer_fail_next(rqd_registry_writer(t.r), SQLITE_FULL);
    for (nth = 0; rc != 0 && nth < 10000; nth++) {
        rqd_err err = {0};
        rqd_agent *a = NULL;
        fail_alloc_arm(nth); /* 0: no allocation fails, but the commit does (above) */
        rc = rqd_agent_create(t.r, "y", 3, 1, low, high, &cfg, &a, &err);
        long failed = fail_alloc_disarm();
        if (rc == 0) {
            ck_assert_int_eq(failed, 0);
            ck_assert(stored_has(&t, "y", NULL));
            rqd_agent_put(a);
            break;
        }
        ck_assert_ptr_null(a);
        ck_assert_ptr_null(rqd_agent_find(t.r, "y"));
        ck_assert_msg(!stored_has(&t, "y", NULL), "a failed create (allocation %ld) left its "
                      "row: %s", nth, err.msg);
        ck_assert_int_eq(rqd_registry_count(t.r), 0);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(nth > 2, "only %ld allocations: the injection did not reach the create", nth);
    reg_reopen(&t);
    rqd_agent *a = rqd_agent_find(t.r, "y");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(atomic_load(&a->status), RQD_AGENT_OK);
    rqd_agent_put(a);
    reg_close(&t);
}
END_TEST

START_TEST(test_import_is_all_or_nothing)
{
    test_reg t;
    redq_config cfg = dt_config();
    float low[1] = {-1}, high[1] = {1};
    redq_agent *core = NULL;
    rqd_err err = {0};
    rqd_buf b;
    int rc = -1;
    long nth;

    rqd_buf_init(&b, 0);
    ck_assert_int_eq(redq_agent_new(&cfg, 3, 1, low, high, &core, &err), 0);
    ck_assert_int_eq(redq_agent_save(core, 1, &b, &err), 0);
    redq_agent_free(core);
    reg_open(&t, 16);
    rqd_writer_fail_next(rqd_registry_writer(t.r), SQLITE_IOERR);
    for (nth = 0; rc != 0 && nth < 10000; nth++) {
        rqd_agent *a = NULL;
        fail_alloc_arm(nth);
        rc = rqd_ckpt_import(t.r, "imp", b.data, b.len, &a, &err);
        fail_alloc_disarm();
        if (rc == 0) {
            rqd_agent_put(a);
            break;
        }
        ck_assert_ptr_null(rqd_agent_find(t.r, "imp"));
        ck_assert_msg(!stored_has(&t, "imp", NULL), "a failed import (allocation %ld) left "
                      "its row: %s", nth, err.msg);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert(nth > 2);
    ck_assert(stored_has(&t, "imp", NULL));
    reg_close(&t);
    rqd_buf_free(&b);
}
END_TEST

/* A transitions post: stored and learnt from, or neither. The 1025th row needs a new
 * chunk of the replay buffer, so a post crossing it allocates. */
START_TEST(test_post_is_all_or_nothing)
{
    enum { N = 8 };
    test_reg t;
    store_transition tr[N];
    float mem[7 * N];
    rqd_err err = {0};
    double target;
    int rc = -1;
    long nth;

    reg_open(&t, 16);
    rqd_agent *a = dt_create(t.r, "p");
    rows_of(tr, mem, N);
    for (int i = 0; i < 1020 / N + 1; i++) { /* 1020 rows, then 4 more: 1020 */
        char *answer = NULL;
        ck_assert_int_eq(rqd_ingest(a, tr, i < 1020 / N ? N : 1020 % N, NULL, &answer, &target,
                                    &err), 0);
        free(answer);
    }
    ck_assert_int_eq(env_steps_of(a), 1020);
    long long before = env_steps_of(a);
    rqd_writer_fail_next(rqd_registry_writer(t.r), SQLITE_FULL);
    for (nth = 0; rc != 0 && nth < 1000; nth++) {
        char *answer = NULL;
        fail_alloc_arm(nth);
        rc = rqd_ingest(a, tr, N, "batch", &answer, &target, &err);
        long failed = fail_alloc_disarm();
        if (rc == 0) {
            ck_assert_msg(failed == 0, "the post succeeded though allocation %ld failed", nth);
            free(answer);
            break;
        }
        ck_assert_ptr_null(answer);
        ck_assert_int_eq(env_steps_of(a), before);
        ck_assert_msg(stored_max_seq(&t, a->id) == before, "a failed post (allocation %ld) "
                      "stored its rows: %s", nth, err.msg);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert(nth > 1);
    ck_assert_int_eq(env_steps_of(a), before + N);
    ck_assert_int_eq(stored_max_seq(&t, a->id), before + N);
    rqd_agent_state st;
    rqd_agent_state_get(a, &st);
    ck_assert_int_eq(st.info.buffer_len, before + N);
    rqd_agent_put(a);
    reg_close(&t);
}
END_TEST

Suite *suite_registry(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registry");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_write_after_delete_lands_nowhere);
    tcase_add_test(tc, test_max_agents_holds_under_concurrent_creates);
    tcase_add_test(tc, test_max_agents_holds_under_concurrent_imports);
    tcase_add_test(tc, test_create_is_all_or_nothing);
    tcase_add_test(tc, test_import_is_all_or_nothing);
    tcase_add_test(tc, test_post_is_all_or_nothing);
    suite_add_tcase(s, tc);
    return s;
}
