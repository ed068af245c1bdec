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
    ck_assert_int_eq(dt_env_steps(fresh), 0);
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

/* Posts the n rows of tr with the nth allocation failing, nth = 0, 1, ... (0: none, but
 * the commit fails: the writer is armed here) until the post succeeds; after every failed
 * attempt unchanged(t, a, nth, err) checks that nothing was stored or learnt. Returns how
 * many attempts failed. */
typedef void (*unchanged_fn)(test_reg *t, rqd_agent *a, long nth, const rqd_err *err);

static long post_until_it_succeeds(test_reg *t, rqd_agent *a, const store_transition *tr,
                                   int n, const char *batch_id, unchanged_fn unchanged)
{
    rqd_err err = {0};
    double target;
    int rc = -1;
    long nth;

    rqd_writer_fail_next(rqd_registry_writer(t->r), SQLITE_FULL);
    for (nth = 0; rc != 0 && nth < 1000; nth++) {
        char *answer = NULL;
        fail_alloc_arm(nth);
        rc = rqd_ingest(a, tr, n, batch_id, &answer, &target, &err);
        long failed = fail_alloc_disarm();
        if (rc == 0) {
            ck_assert_msg(failed == 0, "the post succeeded though allocation %ld failed", nth);
            free(answer);
            break;
        }
        ck_assert_ptr_null(answer);
        unchanged(t, a, nth, &err);
    }
    ck_assert_int_eq(rc, 0);
    return nth;
}

static void post_left_nothing(test_reg *t, rqd_agent *a, long nth, const rqd_err *err)
{
    ck_assert_int_eq(dt_env_steps(a), 1020);
    ck_assert_msg(stored_max_seq(t, a->id) == 1020, "a failed post (allocation %ld) stored "
                  "its rows: %s", nth, err->msg);
}

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

    reg_open(&t, 16);
    rqd_agent *a = dt_create(t.r, "p");
    rows_of(tr, mem, N);
    for (int i = 0; i < 1020 / N + 1; i++) { /* 1020 rows, then 4 more: 1020 */
        char *answer = NULL;
        ck_assert_int_eq(rqd_ingest(a, tr, i < 1020 / N ? N : 1020 % N, NULL, &answer, &target,
                                    &err), 0);
        free(answer);
    }
    ck_assert_int_eq(dt_env_steps(a), 1020);
    long long before = dt_env_steps(a);
    ck_assert(post_until_it_succeeds(&t, a, tr, N, "batch", post_left_nothing) > 1);
    ck_assert_int_eq(dt_env_steps(a), before + N);
    ck_assert_int_eq(stored_max_seq(&t, a->id), before + N);
    rqd_agent_state st;
    rqd_agent_state_get(a, &st);
    ck_assert_int_eq(st.info.buffer_len, before + N);
    rqd_agent_put(a);
    reg_close(&t);
}
END_TEST

/* ------------------------------------------------------------------ the stored ring */

/* An agent of obs 3, act 1 with a small ring (3-step returns, so heads carry pending
 * transitions), on its own. */
static rqd_agent *ring_agent(rqd_registry *r, const char *name, long long buffer_size)
{
    redq_config c = dt_config();
    float low[1] = {-1}, high[1] = {1};
    rqd_agent *a = NULL;
    rqd_err err = {0};
    c.buffer_size = buffer_size;
    c.estimation_step = 3;
    ck_assert_msg(rqd_agent_create(r, name, 3, 1, low, high, &c, &a, &err) == 0, "%s", err.msg);
    return a;
}

/* n transitions posted, env ids in turn and an episode end now and then. */
static void post_rows(rqd_agent *a, int n, int chunk)
{
    store_transition tr[64];
    float mem[7 * 64];
    static const char *const ids[3] = {"x", NULL, "y"};
    rqd_err err = {0};
    double target;
    ck_assert(chunk <= 64);
    for (int done = 0; done < n; done += chunk) {
        int k = n - done < chunk ? n - done : chunk;
        rows_of(tr, mem, k);
        for (int i = 0; i < k; i++) {
            tr[i].env_id = ids[(done + i) % 3];
            tr[i].terminated = (done + i) % 97 == 0;
            mem[7 * i] = (float)(done + i); /* rows told apart */
        }
        char *answer = NULL;
        ck_assert_msg(rqd_ingest(a, tr, k, NULL, &answer, &target, &err) == 0, "%s", err.msg);
        free(answer);
    }
}

static long long stored_count(const test_reg *t, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    ck_assert_int_eq(sqlite3_open_v2(t->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Runs the pruning until it has nothing left to do (each round waits for the writer). */
static void prune_until_idle(test_reg *t, rqd_agent *a)
{
    rqd_err err = {0};
    long long before = -1;
    for (int i = 0; i < 200 && rqd_registry_pruned_rows(t->r) != before; i++) {
        before = rqd_registry_pruned_rows(t->r);
        for (int k = 0; k < 3; k++) { /* a job, then the one its result makes due */
            rqd_registry_prune(t->r);
            ck_assert_int_eq(rqd_agent_stats_sync(a, &err), 0); /* FIFO: after the jobs */
        }
    }
}

/* The learner's state with its buffer, as a download of its checkpoint gives it. */
static void buffer_bytes(rqd_agent *a, int64_t ckpt, rqd_buf *out)
{
    void *data = NULL;
    size_t len = 0;
    rqd_err err = {0};
    ck_assert_msg(rqd_ckpt_download(a, ckpt, 1, &data, &len, &err) == 0, "%s", err.msg);
    out->data = data;
    out->len = len;
}

/* The stored buffer is a ring: after pruning the file holds about buffer_size
 * transitions, a restart rebuilds the same replay buffer bit for bit from the base head,
 * and training goes on identically. */
START_TEST(test_pruned_ring_restarts_identically)
{
    enum { CAP = 300, EVERY = 256, CHUNK = 37 };
    test_reg t;
    store_ckpt_info ck;
    rqd_err err = {0};
    rqd_buf b0, b1;

    reg_open(&t, 16);
    rqd_agent *a = ring_agent(t.r, "ring", CAP);
    int64_t id = a->id;
    post_rows(a, 2000, CHUNK);
    prune_until_idle(&t, a);
    long long kept = stored_count(&t, "SELECT count(*) FROM transitions");
    /* The base is the newest head buffer_size rows old: at most CAP + EVERY + a post + the
     * n-step lag after it. */
    ck_assert_msg(kept >= CAP && kept <= CAP + EVERY + CHUNK + 2, "%lld transitions kept", kept);
    ck_assert_int_eq(stored_count(&t, "SELECT count(*) FROM replay_heads WHERE base = 1"), 1);
    ck_assert_int_le(stored_count(&t, "SELECT count(*) FROM replay_heads"), 3);
    ck_assert_int_eq(stored_count(&t, "SELECT max(seq) FROM transitions"), 2000);
    ck_assert_int_eq(rqd_ckpt_create(a, 0, &ck, &err), 0);
    buffer_bytes(a, ck.id, &b0);
    rqd_agent_put(a);

    reg_reopen(&t);
    a = rqd_agent_find(t.r, "ring");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(atomic_load(&a->status), RQD_AGENT_OK);
    ck_assert_int_eq(dt_env_steps(a), 2000);
    buffer_bytes(a, ck.id, &b1);
    ck_assert_msg(b0.len == b1.len && memcmp(b0.data, b1.data, b0.len) == 0,
                  "the rebuilt replay buffer differs");
    rqd_buf_free(&b0);
    rqd_buf_free(&b1);
    /* It goes on: more rows, more pruning, another restart, the same again. */
    post_rows(a, 700, CHUNK);
    prune_until_idle(&t, a);
    ck_assert_int_le(stored_count(&t, "SELECT count(*) FROM transitions"),
                     CAP + EVERY + CHUNK + 2);
    buffer_bytes(a, ck.id, &b0);
    rqd_agent_put(a);
    reg_reopen(&t);
    a = rqd_agent_find(t.r, "ring");
    ck_assert_int_eq(dt_env_steps(a), 2700);
    buffer_bytes(a, ck.id, &b1);
    ck_assert(b0.len == b1.len && memcmp(b0.data, b1.data, b0.len) == 0);
    ck_assert_int_eq(a->id, id);
    rqd_buf_free(&b0);
    rqd_buf_free(&b1);
    rqd_agent_put(a);
    reg_close(&t);
}
END_TEST

static void head_post_left_nothing(test_reg *t, rqd_agent *a, long nth, const rqd_err *err)
{
    ck_assert_int_eq(dt_env_steps(a), 256);
    ck_assert_int_eq(stored_max_seq(t, a->id), 256);
    ck_assert_msg(stored_count(t, "SELECT count(*) FROM replay_heads") == 0,
                  "a failed post (allocation %ld) stored its head: %s", nth, err->msg);
}

/* A post that stores a replay head: rows, head and learner, or none of them, under
 * allocation failures at every step and a failed commit. */
START_TEST(test_post_with_a_head_is_all_or_nothing)
{
    enum { N = 8 };
    test_reg t;
    store_transition tr[N];
    float mem[7 * N];

    reg_open(&t, 16);
    rqd_agent *a = ring_agent(t.r, "h", 300);
    post_rows(a, 256, 32); /* the next post is at the first head's mark (256) */
    ck_assert_int_eq(stored_count(&t, "SELECT count(*) FROM replay_heads"), 0);
    rows_of(tr, mem, N);
    ck_assert(post_until_it_succeeds(&t, a, tr, N, "hb", head_post_left_nothing) > 1);
    ck_assert_int_eq(stored_count(&t, "SELECT seq FROM replay_heads"), 256);
    ck_assert_int_eq(dt_env_steps(a), 256 + N);
    /* The next head is a full interval later. */
    post_rows(a, 255, 51);
    ck_assert_int_eq(stored_count(&t, "SELECT count(*) FROM replay_heads"), 1);
    post_rows(a, 1, 1);
    ck_assert_int_eq(stored_count(&t, "SELECT max(seq) FROM replay_heads"), 256 + N + 255);
    rqd_agent_put(a);
    reg_close(&t);
}
END_TEST

Suite *suite_registry(void)
{
    const TTest *const tests[] = {
        test_write_after_delete_lands_nowhere,
        test_max_agents_holds_under_concurrent_creates,
        test_max_agents_holds_under_concurrent_imports,
        test_create_is_all_or_nothing,
        test_import_is_all_or_nothing,
        test_post_is_all_or_nothing,
        test_pruned_ring_restarts_identically,
        test_post_with_a_head_is_all_or_nothing,
    };
    return dt_suite("registry", 300, tests, (int)(sizeof tests / sizeof tests[0]));
}
