/* tests/unit/test_store.c: storage/ against a real SQLite file in a fresh temporary
 * directory per test (a checked fixture, so each test's directory is made and removed in
 * its own forked child).
 *
 * What is shown: a file is created, reopened with its rows, and refused (untouched, byte
 * for byte) when it is newer, not SQLite, another program's, or corrupt; every table
 * round trips exactly (floats bit for bit, NaN <-> NULL); ids and orders are as store.h
 * promises; deleting an agent removes every row of it and nothing of another's; a backup
 * opens with the same rows; faults injected at every step of an append or a checkpoint
 * insert (SQLite's do_faultsim_test, STYLE R18) leave only the rows from before; and a
 * read-only connection sees what a read-write one commits, and only that.
 */
#include <check.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../storage/store.h"

/* ------------------------------------------------------------------ fixture and helpers */

static char dir[256];  /* this test's temporary directory */
static char path[300]; /* dir/redqd.db */

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/redqd-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/redqd.db", dir);
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[600];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void in_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static store *open_at(const char *p, int mode)
{
    store *s = NULL;
    rqd_err err = {0};
    int rc = store_open(p, mode, 0, 1, &s, &err);
    ck_assert_msg(rc == RQD_OK, "store_open %s: %d %s", p, rc, err.msg);
    ck_assert_ptr_nonnull(s);
    return s;
}

static store *open_rw(void) { return open_at(path, STORE_RW); }

static const float LOW[2] = {-2.0f, -1.0f}, HIGH[2] = {2.0f, 1.0f};

static int64_t add_agent(store *s, const char *name, int obs_dim)
{
    int64_t id = 0;
    rqd_err err = {0};
    int rc = store_agent_insert(s, name, obs_dim, 2, LOW, HIGH, "{\"gamma\":0.99}", &id, &err);
    ck_assert_msg(rc == RQD_OK, "insert %s: %d %s", name, rc, err.msg);
    ck_assert_int_gt(id, 0);
    return id;
}

/* The first column of the first row of sql on a separate plain connection (-1: none). */
static long long raw_int(const char *p, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    ck_assert_int_eq(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_exec(const char *p, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
                  msg ? msg : "");
    sqlite3_close(db);
}

/* A file's bytes and modification time, to show that a refused file was not touched. */
typedef struct {
    unsigned char *bytes;
    size_t len;
    struct timespec mtime;
} snapshot;

static snapshot snap(const char *p)
{
    snapshot sn = {0};
    struct stat stt;
    FILE *f = fopen(p, "rb");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(stat(p, &stt), 0);
    sn.len = (size_t)stt.st_size;
    sn.mtime = stt.st_mtim;
    sn.bytes = malloc(sn.len + 1);
    ck_assert_ptr_nonnull(sn.bytes);
    ck_assert_uint_eq(fread(sn.bytes, 1, sn.len, f), sn.len);
    fclose(f);
    return sn;
}

static void assert_unchanged(const char *p, snapshot *before)
{
    snapshot now = snap(p);
    ck_assert_uint_eq(now.len, before->len);
    ck_assert_msg(memcmp(now.bytes, before->bytes, now.len) == 0, "%s was modified", p);
    ck_assert_msg(now.mtime.tv_sec == before->mtime.tv_sec &&
                      now.mtime.tv_nsec == before->mtime.tv_nsec,
                  "%s mtime changed", p);
    free(now.bytes);
    free(before->bytes);
    before->bytes = NULL;
}

/* store_open must refuse p in both modes with RQD_EIO and a message containing want. */
static void assert_refused(const char *p, const char *want)
{
    for (int mode = STORE_RW; mode <= STORE_RO; mode++) {
        store *s = (store *)&s; /* not NULL, so that the test sees it cleared */
        rqd_err err = {0};
        int rc = store_open(p, mode, 0, 1, &s, &err);
        ck_assert_msg(rc == RQD_EIO, "mode %d: rc %d (%s), want io_error", mode, rc, err.msg);
        ck_assert_ptr_null(s);
        ck_assert_msg(strstr(err.msg, want) != NULL, "message \"%s\" lacks \"%s\"", err.msg,
                      want);
        ck_assert_msg(strstr(err.msg, "redqd.db") != NULL || strstr(err.msg, p) != NULL,
                      "message \"%s\" does not name the file", err.msg);
    }
}

/* Transitions: observation i of a row carries the seq so rows can be told apart. */
enum { S = 3, A = 2 };

typedef struct {
    float obs[S], act[A], rew, next[S];
    store_transition t;
} trow;

static void make_row(trow *r, int64_t seq)
{
    for (int i = 0; i < S; i++) {
        r->obs[i] = (float)seq + 0.25f * (float)i;
        r->next[i] = -(float)seq - 0.5f * (float)i;
    }
    r->act[0] = 0.125f * (float)seq;
    r->act[1] = -1.0f;
    r->rew = 1.0f / (float)seq;
    r->t = (store_transition){r->obs, r->act, r->rew, r->next, (int)(seq % 7 == 0),
                              (int)(seq % 5 == 0), seq % 2 ? "x" : NULL};
}

static int append(store *s, int64_t agent, int64_t first, int n, rqd_err *err)
{
    trow *rows = calloc((size_t)n, sizeof *rows);
    store_transition *t = calloc((size_t)n, sizeof *t);
    int rc;

    ck_assert(rows && t);
    for (int i = 0; i < n; i++) {
        make_row(&rows[i], first + i);
        t[i] = rows[i].t;
    }
    rc = store_transitions_append(s, agent, first, t, n, S, A, err);
    free(rows);
    free(t);
    return rc;
}

static void append_ok(store *s, int64_t agent, int64_t first, int n)
{
    rqd_err err = {0};
    int rc = append(s, agent, first, n, &err);
    ck_assert_msg(rc == RQD_OK, "append %lld+%d: %d %s", (long long)first, n, rc, err.msg);
}

/* What a scan delivered, copied out of the callback. */
typedef struct {
    int n, stop_at;
    int64_t seq[64];
    float data[64][2 * S + A + 1];
    int term[64], trunc[64];
    char env[64][8];
    int env_null[64];
} scan_log;

static int collect(void *ctx, int64_t seq, const store_transition *t)
{
    scan_log *l = ctx;
    int i = l->n++;

    ck_assert_int_lt(i, 64);
    l->seq[i] = seq;
    memcpy(l->data[i], t->obs, sizeof(float) * S);
    memcpy(l->data[i] + S, t->action, sizeof(float) * A);
    l->data[i][S + A] = t->reward;
    memcpy(l->data[i] + S + A + 1, t->next_obs, sizeof(float) * S);
    l->term[i] = t->terminated;
    l->trunc[i] = t->truncated;
    l->env_null[i] = t->env_id == NULL;
    snprintf(l->env[i], sizeof l->env[i], "%s", t->env_id ? t->env_id : "");
    return l->n == l->stop_at ? 42 : 0;
}

static int count_rows(store *s, int64_t agent)
{
    scan_log *l = calloc(1, sizeof *l);
    rqd_err err = {0};
    int n;

    ck_assert_int_eq(store_transitions_scan(s, agent, 0, S, A, collect, l, &err), 0);
    for (int i = 0; i < l->n; i++) /* ascending, 1..n, each as made */
        ck_assert_int_eq(l->seq[i], i + 1);
    n = l->n;
    free(l);
    return n;
}

static int64_t max_seq(store *s, int64_t agent)
{
    int64_t m = -1;
    rqd_err err = {0};
    ck_assert_int_eq(store_transitions_max_seq(s, agent, &m, &err), 0);
    return m;
}

static int64_t ckpt(store *s, int64_t agent, int automatic, int keep, const char *blob)
{
    store_ckpt_info info = {.updates = 100, .env_steps = 200, .policy_version = 7,
                            .pending_updates = 1.5, .automatic = automatic};
    int64_t id = 0;
    rqd_err err = {0};
    int rc = store_ckpt_insert(s, agent, &info, blob, strlen(blob), keep, &id, &err);
    ck_assert_msg(rc == RQD_OK, "ckpt insert: %d %s", rc, err.msg);
    return id;
}

/* Checkpoint ids of agent, ascending, as "1,2,4". */
static void ckpt_ids(store *s, int64_t agent, char *out, size_t size)
{
    store_ckpt_info *rows = NULL;
    int n = -1;
    size_t len = 0;
    rqd_err err = {0};

    ck_assert_int_eq(store_ckpt_list(s, agent, &rows, &n, &err), 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%lld", i ? "," : "",
                                (long long)rows[i].id);
    free(rows);
}

static void assert_time(const char *t)
{
    ck_assert_msg(strlen(t) == 24 && t[4] == '-' && t[10] == 'T' && t[19] == '.' &&
                      t[23] == 'Z',
                  "\"%s\" is not RFC 3339 with milliseconds", t);
}

/* ------------------------------------------------------------------ open and refuse */

START_TEST(open_creates_then_reopens_with_rows)
{
    store *s = open_rw();
    store_agent_row *rows = NULL;
    int n = 0;
    rqd_err err = {0};

    int64_t id = add_agent(s, "pendulum", S);
    append_ok(s, id, 1, 4);
    store_close(s);
    ck_assert_int_eq(raw_int(path, "PRAGMA application_id"), 0x72716464);
    ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM pragma_journal_mode WHERE "
                                   "journal_mode = 'wal'"),
                     1);

    ck_assert_int_eq(store_open(path, STORE_RW, 1, 1, &s, &err), 0); /* synchronous=FULL */
    ck_assert_int_eq(store_agent_list(s, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(rows[0].name, "pendulum");
    ck_assert_int_eq(rows[0].id, id);
    ck_assert_int_eq(max_seq(s, id), 4);
    ck_assert_int_eq(store_integrity_check(s, &err), 0);
    store_agent_rows_free(rows, n);
    store_close(s);
    store_close(NULL); /* a no-op */
}
END_TEST

START_TEST(open_refuses_newer_schema_untouched)
{
    store *s = open_rw();
    add_agent(s, "a", S);
    store_close(s);
    char want[96];
    raw_exec(path, "PRAGMA user_version = 7");
    snapshot before = snap(path);
    snprintf(want, sizeof want, "schema version 7 is newer than this build's %d; upgrade redqd",
             STORE_SCHEMA_VERSION);
    assert_refused(path, want);
    assert_unchanged(path, &before);
}
END_TEST

START_TEST(open_refuses_garbage_untouched)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 300; i++)
        fputs("this is a text file and certainly no database\n", f);
    fclose(f);
    snapshot before = snap(path);
    assert_refused(path, "file is not a database");
    assert_unchanged(path, &before);
}
END_TEST

START_TEST(open_refuses_foreign_database_untouched)
{
    raw_exec(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
                   "INSERT INTO notes (body) VALUES ('keep me')");
    snapshot before = snap(path);
    assert_refused(path, "not a redqd database");
    assert_unchanged(path, &before);

    /* Another program's application_id, even with no tables yet. */
    char other[300];
    in_dir(other, sizeof other, "other.db");
    raw_exec(other, "PRAGMA application_id = 42; PRAGMA user_version = 1");
    before = snap(other);
    assert_refused(other, "application_id 0x0000002a");
    assert_unchanged(other, &before);
}
END_TEST

START_TEST(open_refuses_corrupt_file_untouched)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    for (int i = 0; i < 40; i++)
        append_ok(s, id, 1 + 50 * i, 50); /* 2000 rows: a multi-level b-tree */
    store_close(s);

    long long page = raw_int(path, "PRAGMA page_size");
    long long root =
        raw_int(path, "SELECT rootpage FROM sqlite_master WHERE name = 'transitions'");
    ck_assert_int_gt(root, 1);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, (long)((root - 1) * page), SEEK_SET), 0);
    for (long long i = 0; i < page; i++)
        fputc(0xA5, f);
    fclose(f);

    snapshot before = snap(path);
    assert_refused(path, "quick_check failed");
    assert_unchanged(path, &before);

    /* Without the check it opens; integrity_check then finds the damage. */
    rqd_err err = {0};
    ck_assert_int_eq(store_open(path, STORE_RW, 0, 0, &s, &err), 0);
    ck_assert_int_eq(store_integrity_check(s, &err), RQD_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "integrity_check"));
    store_close(s);
}
END_TEST

START_TEST(open_read_only_needs_an_existing_current_file)
{
    store *s = (store *)&s;
    rqd_err err = {0};

    ck_assert_int_eq(store_open(path, STORE_RO, 0, 1, &s, &err), RQD_EIO);
    ck_assert_ptr_null(s);
    ck_assert_int_ne(access(path, F_OK), 0); /* not created */

    raw_exec(path, "PRAGMA user_version = 0"); /* an empty SQLite file */
    ck_assert_int_eq(store_open(path, STORE_RO, 0, 1, &s, &err), RQD_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "read-write first"));
    s = open_rw(); /* an empty file is initialised */
    add_agent(s, "a", S);
    store_close(s);

    /* With no writer open (no -wal, no -shm) a reader still opens it. */
    store_agent_row *rows = NULL;
    int n = 0;
    s = open_at(path, STORE_RO);
    ck_assert_int_eq(store_agent_list(s, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 1);
    store_agent_rows_free(rows, n);
    store_close(s);
}
END_TEST

START_TEST(read_only_connection_sees_committed_rows_only)
{
    store *w = open_rw(), *r = NULL;
    int64_t id = add_agent(w, "a", S), dummy = 0;
    rqd_err err = {0};

    r = open_at(path, STORE_RO);
    append_ok(w, id, 1, 3);
    ck_assert_int_eq(max_seq(r, id), 3);
    ck_assert_int_eq(store_begin(w, &err), 0);
    append_ok(w, id, 4, 3);
    ck_assert_int_eq(max_seq(w, id), 6);
    ck_assert_int_eq(max_seq(r, id), 3); /* not committed yet */
    ck_assert_int_eq(store_commit(w, &err), 0);
    ck_assert_int_eq(max_seq(r, id), 6);
    ck_assert_int_eq(count_rows(r, id), 6);

    ck_assert_int_eq(store_agent_insert(r, "b", S, A, LOW, HIGH, "{}", &dummy, &err), RQD_EIO);
    store_close(r);
    store_close(w);
}
END_TEST

/* ------------------------------------------------------------------ agents */

START_TEST(agents_insert_duplicate_and_list_in_byte_order)
{
    store *s = open_rw();
    store_agent_row *rows = NULL;
    int64_t id = 0;
    int n = -1;
    rqd_err err = {0};

    ck_assert_int_eq(store_agent_list(s, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(rows);

    int64_t a = add_agent(s, "a", 3), b = add_agent(s, "B", 4), ab = add_agent(s, "ab", 5);
    ck_assert_int_eq(store_agent_insert(s, "a", 1, 2, LOW, HIGH, "{}", &id, &err), RQD_EEXIST);
    ck_assert_str_eq(err.field, "name");
    char longname[100];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(store_agent_insert(s, longname, 1, 2, LOW, HIGH, "{}", &id, &err),
                     RQD_EINVAL);

    ck_assert_int_eq(store_agent_list(s, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(rows[0].name, "B"); /* 'B' 0x42 < 'a' 0x61 */
    ck_assert_str_eq(rows[1].name, "a");
    ck_assert_str_eq(rows[2].name, "ab");
    ck_assert_int_eq(rows[0].id, b);
    ck_assert_int_eq(rows[1].id, a);
    ck_assert_int_eq(rows[2].id, ab);
    ck_assert_int_eq(rows[0].obs_dim, 4);
    ck_assert_int_eq(rows[0].act_dim, 2);
    ck_assert(memcmp(rows[0].low, LOW, sizeof LOW) == 0);
    ck_assert(memcmp(rows[0].high, HIGH, sizeof HIGH) == 0);
    ck_assert_str_eq(rows[0].config_json, "{\"gamma\":0.99}");
    assert_time(rows[0].created_at);
    ck_assert_int_eq(rows[0].policy_version, 0);
    ck_assert_int_eq(rows[0].next_ckpt_id, 1);
    store_agent_rows_free(rows, n);
    store_close(s);
}
END_TEST

START_TEST(agents_config_and_policy_version_never_decreases)
{
    store *s = open_rw();
    store_agent_row *rows = NULL;
    int n = 0;
    rqd_err err = {0};
    int64_t id = add_agent(s, "a", S);

    ck_assert_int_eq(store_agent_set_config(s, id, "{\"tau\":0.01}", &err), 0);
    ck_assert_int_eq(store_agent_bump_policy(s, id, 5, &err), 0);
    ck_assert_int_eq(store_agent_bump_policy(s, id, 3, &err), 0);
    ck_assert_int_eq(store_agent_list(s, &rows, &n, &err), 0);
    ck_assert_str_eq(rows[0].config_json, "{\"tau\":0.01}");
    ck_assert_int_eq(rows[0].policy_version, 5);
    store_agent_rows_free(rows, n);
    ck_assert_int_eq(store_agent_bump_policy(s, id, 9, &err), 0);
    ck_assert_int_eq(store_agent_list(s, &rows, &n, &err), 0);
    ck_assert_int_eq(rows[0].policy_version, 9);
    store_agent_rows_free(rows, n);

    ck_assert_int_eq(store_agent_set_config(s, id + 100, "{}", &err), RQD_ENOTFOUND);
    ck_assert_int_eq(store_agent_bump_policy(s, id + 100, 1, &err), RQD_ENOTFOUND);
    store_close(s);
}
END_TEST

/* Puts one row into every per-agent table. */
static void fill_agent(store *s, int64_t id)
{
    float obs[S] = {1, 2, 3}, act[A] = {0.5f, -0.5f};
    store_stats_row st = {.update = 1, .env_steps = 2, .time = 3, .alpha = 0.2};
    store_episode_row ep = {.id = "ep", .started_at = "2026-01-01T00:00:00.000Z",
                            .last_obs = obs, .last_action = act};
    rqd_err err = {0};

    append_ok(s, id, 1, 5);
    ckpt(s, id, 1, 3, "state");
    ck_assert_int_eq(store_stats_append(s, id, &st, 1, &err), 0);
    ck_assert_int_eq(store_episode_put(s, id, &ep, S, A, &err), 0);
    ck_assert_int_eq(store_batch_put(s, id, "b1", "{\"accepted\":5}", &err), 0);
    ck_assert_int_eq(store_head_put(s, id, 5, 5, "head", 4, &err), 0);
    store_eval_row ev = {.env_steps = 5, .n = 1, .time = "2026-01-01T00:00:00.000Z"};
    double ret = 1.0;
    ck_assert_int_eq(store_eval_append(s, id, &ev, &ret, NULL, NULL, &err), 0);
}

static long long rows_of(int64_t id, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE agent = %lld", table,
             (long long)id);
    return raw_int(path, sql);
}

START_TEST(agent_delete_removes_every_row_of_it_only)
{
    static const char *const tables[] = {"transitions", "checkpoints", "stats", "episodes",
                                         "batches", "replay_heads", "evaluations", "history"};
    store *s = open_rw();
    rqd_err err = {0};
    int64_t gone = add_agent(s, "gone", S), kept = add_agent(s, "kept", S);

    fill_agent(s, gone);
    fill_agent(s, kept);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        ck_assert_int_gt(rows_of(gone, tables[i]), 0);
    ck_assert_int_eq(store_agent_delete(s, gone, &err), 0);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        ck_assert_msg(rows_of(gone, tables[i]) == 0, "%s rows left", tables[i]);
        ck_assert_msg(rows_of(kept, tables[i]) > 0, "%s rows of the other agent lost",
                      tables[i]);
    }
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM agents"), 1);
    ck_assert_int_eq(count_rows(s, kept), 5);
    ck_assert_int_eq(store_agent_delete(s, gone, &err), RQD_ENOTFOUND);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ transitions */

START_TEST(transitions_round_trip_bit_for_bit)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    uint32_t nan_payload = 0x7fc12345u, snan = 0xff800001u;
    float odd[S + A + 1 + S];
    rqd_err err = {0};

    /* Values whose bits a careless conversion would change. */
    memcpy(&odd[0], &nan_payload, 4);
    odd[1] = -0.0f;
    odd[2] = FLT_TRUE_MIN; /* a denormal */
    odd[3] = INFINITY;
    memcpy(&odd[4], &snan, 4);
    odd[5] = -FLT_MAX; /* reward */
    odd[6] = FLT_MIN;
    odd[7] = 0.1f;
    odd[8] = -INFINITY;
    store_transition t[3] = {
        {odd, odd + S, odd[S + A], odd + S + A + 1, 1, 0, NULL},
        {odd, odd + S, 0.5f, odd + S + A + 1, 0, 1, "x"},
        {odd, odd + S, -0.0f, odd + S + A + 1, 1, 1, ""},
    };
    ck_assert_int_eq(store_transitions_append(s, id, 1, t, 3, S, A, &err), 0);

    scan_log *l = calloc(1, sizeof *l);
    ck_assert_int_eq(store_transitions_scan(s, id, 0, S, A, collect, l, &err), 0);
    ck_assert_int_eq(l->n, 3);
    for (int i = 0; i < 3; i++) {
        float want[2 * S + A + 1];
        memcpy(want, odd, sizeof want);
        want[S + A] = t[i].reward;
        ck_assert_int_eq(l->seq[i], i + 1);
        ck_assert_msg(memcmp(l->data[i], want, sizeof want) == 0, "row %d bits differ", i);
        ck_assert_int_eq(l->term[i], t[i].terminated);
        ck_assert_int_eq(l->trunc[i], t[i].truncated);
    }
    ck_assert(l->env_null[0]);
    ck_assert(!l->env_null[1]);
    ck_assert_str_eq(l->env[1], "x");
    ck_assert(l->env_null[2]); /* "" is the default stream too */
    free(l);

    /* The same bytes again after a reopen. */
    store_close(s);
    s = open_rw();
    l = calloc(1, sizeof *l);
    ck_assert_int_eq(store_transitions_scan(s, id, 2, S, A, collect, l, &err), 0);
    ck_assert_int_eq(l->n, 2);
    ck_assert(memcmp(l->data[0], odd, sizeof(float) * S) == 0);
    free(l);
    store_close(s);
}
END_TEST

START_TEST(transitions_from_seq_max_seq_and_stop)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S), other = add_agent(s, "b", S);
    scan_log *l = calloc(1, sizeof *l);
    rqd_err err = {0};

    ck_assert_int_eq(max_seq(s, id), 0);
    append_ok(s, id, 1, 6);
    append_ok(s, id, 7, 4);
    append_ok(s, other, 1, 20);
    ck_assert_int_eq(max_seq(s, id), 10);
    ck_assert_int_eq(max_seq(s, other), 20);

    ck_assert_int_eq(store_transitions_scan(s, id, 7, S, A, collect, l, &err), 0);
    ck_assert_int_eq(l->n, 4);
    for (int i = 0; i < 4; i++) {
        trow want;
        make_row(&want, 7 + i);
        ck_assert_int_eq(l->seq[i], 7 + i);
        ck_assert(memcmp(l->data[i], want.obs, sizeof want.obs) == 0);
        ck_assert(l->data[i][S + A] == want.rew);
        ck_assert_int_eq(l->env_null[i], want.t.env_id == NULL);
    }

    memset(l, 0, sizeof *l);
    l->stop_at = 2; /* the callback returns 42 on the second row */
    ck_assert_int_eq(store_transitions_scan(s, id, 1, S, A, collect, l, &err), 42);
    ck_assert_int_eq(l->n, 2);
    memset(l, 0, sizeof *l);
    ck_assert_int_eq(store_transitions_scan(s, id, 11, S, A, collect, l, &err), 0);
    ck_assert_int_eq(l->n, 0);
    free(l);
    store_close(s);
}
END_TEST

START_TEST(transitions_duplicate_seq_refuses_the_whole_call)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    rqd_err err = {0};

    append_ok(s, id, 1, 5);
    ck_assert_int_eq(append(s, id, 4, 3, &err), RQD_EEXIST); /* 4 and 5 exist, 6 does not */
    ck_assert_ptr_nonnull(strstr(err.msg, "already stored"));
    ck_assert_int_eq(max_seq(s, id), 5);
    ck_assert_int_eq(count_rows(s, id), 5);
    ck_assert_int_eq(append(s, id + 99, 1, 2, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(store_transitions_append(s, id, 6, NULL, 0, S, A, &err), 0);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ batch ids */

START_TEST(batch_ids_store_the_first_answer)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    char *answer = (char *)"x";
    rqd_err err = {0};

    ck_assert_int_eq(store_batch_get(s, a, "k1", &answer, &err), 0);
    ck_assert_ptr_null(answer);
    ck_assert_int_eq(store_batch_put(s, a, "k1", "{\"accepted\":3}", &err), 0);
    ck_assert_int_eq(store_batch_put(s, a, "k1", "{\"accepted\":4}", &err), RQD_EEXIST);
    ck_assert_int_eq(store_batch_get(s, a, "k1", &answer, &err), 0);
    ck_assert_str_eq(answer, "{\"accepted\":3}");
    free(answer);
    ck_assert_int_eq(store_batch_get(s, b, "k1", &answer, &err), 0); /* per agent */
    ck_assert_ptr_null(answer);
    ck_assert_int_eq(store_batch_put(s, b, "k1", "{}", &err), 0);
    ck_assert_int_eq(store_batch_put(s, a + 99, "k1", "{}", &err), RQD_ENOTFOUND);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ checkpoints */

START_TEST(ckpt_ids_increase_and_are_never_reused)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    store_ckpt_info info;
    store_agent_row *agents = NULL;
    void *blob = NULL;
    size_t len = 0;
    int n = 0;
    char ids[64];
    rqd_err err = {0};

    ck_assert_int_eq(store_ckpt_get(s, id, -1, &info, NULL, NULL, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(ckpt(s, id, 0, 2, "one"), 1);
    ck_assert_int_eq(ckpt(s, id, 0, 2, "two"), 2);
    ck_assert_int_eq(ckpt(s, id, 0, 2, "three"), 3);
    ck_assert_int_eq(store_ckpt_delete(s, id, 3, &err), 0);
    ck_assert_int_eq(store_ckpt_delete(s, id, 3, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(ckpt(s, id, 0, 2, "four"), 4); /* not 3 again */
    ckpt_ids(s, id, ids, sizeof ids);
    ck_assert_str_eq(ids, "1,2,4");
    ck_assert_int_eq(store_agent_list(s, &agents, &n, &err), 0);
    ck_assert_int_eq(agents[0].next_ckpt_id, 5);
    store_agent_rows_free(agents, n);

    ck_assert_int_eq(store_ckpt_get(s, id, -1, &info, &blob, &len, &err), 0);
    ck_assert_int_eq(info.id, 4);
    ck_assert_uint_eq(len, 4);
    ck_assert(memcmp(blob, "four", 4) == 0);
    free(blob);
    ck_assert_int_eq(store_ckpt_get(s, id, 2, &info, &blob, &len, &err), 0);
    ck_assert_int_eq(info.id, 2);
    ck_assert_int_eq(info.updates, 100);
    ck_assert_int_eq(info.env_steps, 200);
    ck_assert_int_eq(info.policy_version, 7);
    ck_assert(info.pending_updates == 1.5);
    ck_assert_int_eq(info.automatic, 0);
    ck_assert_int_eq(info.bytes, 3);
    assert_time(info.created_at);
    ck_assert(len == 3 && memcmp(blob, "two", 3) == 0);
    free(blob);
    ck_assert_int_eq(store_ckpt_get(s, id, 3, &info, &blob, &len, &err), RQD_ENOTFOUND);
    ck_assert_ptr_null(blob);
    ck_assert_int_eq(store_ckpt_get(s, id, 1, &info, NULL, NULL, &err), 0);
    ck_assert_int_eq(info.bytes, 3);

    /* A larger blob with every byte value, NaN pending, a given created_at. */
    unsigned char big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 131 + 7);
    store_ckpt_info in = {.pending_updates = NAN, .automatic = 1,
                          .created_at = "2026-11-25T20:14:31.123Z"};
    int64_t got = 0;
    ck_assert_int_eq(store_ckpt_insert(s, id, &in, big, sizeof big, 5, &got, &err), 0);
    ck_assert_int_eq(got, 5);
    ck_assert_int_eq(store_ckpt_get(s, id, 5, &info, &blob, &len, &err), 0);
    ck_assert(len == sizeof big && memcmp(blob, big, len) == 0);
    ck_assert(isnan(info.pending_updates));
    ck_assert_str_eq(info.created_at, "2026-11-25T20:14:31.123Z");
    free(blob);
    ck_assert_int_eq(store_ckpt_insert(s, id + 9, &in, big, 1, 5, &got, &err), RQD_ENOTFOUND);
    store_close(s);
}
END_TEST

START_TEST(ckpt_prune_keeps_newest_automatic_and_all_manual)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S), other = add_agent(s, "b", S);
    char ids[64];

    ckpt(s, other, 1, 2, "o1");
    ckpt(s, other, 1, 2, "o2");
    ckpt(s, id, 1, 2, "a1");
    ckpt(s, id, 0, 2, "m2");
    ckpt(s, id, 1, 2, "a3");
    ckpt(s, id, 1, 2, "a4"); /* autos 1, 3, 4: 1 goes */
    ckpt_ids(s, id, ids, sizeof ids);
    ck_assert_str_eq(ids, "2,3,4");
    ckpt(s, id, 0, 2, "m5"); /* manual: prunes nothing */
    ckpt(s, id, 0, 2, "m6");
    ckpt_ids(s, id, ids, sizeof ids);
    ck_assert_str_eq(ids, "2,3,4,5,6");
    ckpt(s, id, 1, 2, "a7"); /* autos 3, 4, 7: 3 goes */
    ckpt_ids(s, id, ids, sizeof ids);
    ck_assert_str_eq(ids, "2,4,5,6,7");
    ckpt(s, id, 1, 0, "a8"); /* keep_auto 0: nothing pruned */
    ckpt_ids(s, id, ids, sizeof ids);
    ck_assert_str_eq(ids, "2,4,5,6,7,8");
    ckpt_ids(s, other, ids, sizeof ids);
    ck_assert_str_eq(ids, "1,2");
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ checkpoint parts */

/* len bytes that differ with the seed and the position (every byte value occurs). */
static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *b = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(i * 131 + seed * 17 + i / 251);
    return b;
}

static long long parts_of(int64_t agent, int64_t ckpt_id, const char *what)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM checkpoint_parts WHERE agent = %lld AND ckpt = "
             "%lld", what, (long long)agent, (long long)ckpt_id);
    return raw_int(path, sql);
}

/* Checkpoint id of agent has exactly the bytes b[len], as get returns them. */
static void assert_state(store *s, int64_t agent, int64_t id, const unsigned char *b,
                         size_t len)
{
    store_ckpt_info info;
    void *got = NULL;
    size_t n = 0;
    rqd_err err = {0};
    int rc = store_ckpt_get(s, agent, id, &info, &got, &n, &err);

    ck_assert_msg(rc == RQD_OK, "get %lld: %d %s", (long long)id, rc, err.msg);
    ck_assert_int_eq(info.id, id);
    ck_assert_int_eq(info.bytes, (int64_t)len);
    ck_assert_uint_eq(n, len);
    ck_assert_msg(len == 0 || memcmp(got, b, len) == 0, "checkpoint %lld differs",
                  (long long)id);
    free(got);
}

/* With parts of 7 bytes, states of 0 to 1000 bytes are cut into ceil(len / 7) rows of at
 * most 7 and come back byte for byte, the newest too and after a reopen; deleting,
 * pruning and deleting the agent take their parts along, and nothing of another agent's. */
START_TEST(ckpt_state_in_parts_round_trips_and_cascades)
{
    static const size_t lens[] = {0, 1, 6, 7, 8, 14, 15, 1000};
    enum { NL = sizeof lens / sizeof lens[0] };
    unsigned char *b[NL];
    int64_t ids[NL];
    store_ckpt_info info = {.updates = 3};
    rqd_err err = {0};
    char list[64];

    store_test_part_size(7);
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), other = add_agent(s, "other", S);
    int64_t kept = ckpt(s, other, 0, 1, "other's state, three parts");
    for (int i = 0; i < NL; i++) {
        b[i] = pattern(lens[i], (unsigned)i);
        ck_assert_int_eq(store_ckpt_insert(s, a, &info, b[i], lens[i], 0, &ids[i], &err), 0);
        ck_assert_int_eq(parts_of(a, ids[i], "count(*)"), (long long)(lens[i] + 6) / 7);
        if (lens[i] > 0) {
            long long longest = lens[i] < 7 ? (long long)lens[i] : 7;
            ck_assert_int_eq(parts_of(a, ids[i], "max(length(data))"), longest);
            ck_assert_int_eq(parts_of(a, ids[i], "max(part)"), (long long)(lens[i] - 1) / 7);
        }
    }
    for (int i = 0; i < NL; i++)
        assert_state(s, a, ids[i], b[i], lens[i]);
    void *newest = NULL;
    size_t n = 0;
    ck_assert_int_eq(store_ckpt_get(s, a, -1, &info, &newest, &n, &err), 0);
    ck_assert(info.id == ids[NL - 1] && n == 1000 && memcmp(newest, b[NL - 1], n) == 0);
    free(newest);
    store_close(s);

    store_test_part_size(0); /* reading does not depend on the size they were cut to */
    s = open_rw();
    for (int i = 0; i < NL; i++)
        assert_state(s, a, ids[i], b[i], lens[i]);
    ck_assert_int_eq(store_ckpt_delete(s, a, ids[NL - 1], &err), 0);
    ck_assert_int_eq(parts_of(a, ids[NL - 1], "count(*)"), 0);
    ck_assert_int_eq(store_ckpt_get(s, a, ids[NL - 1], NULL, &newest, &n, &err), RQD_ENOTFOUND);

    /* Pruning: automatic ones past keep_auto go with their parts (the manual ones stay). */
    store_test_part_size(7);
    info.automatic = 1;
    int64_t auto1 = 0, auto2 = 0;
    ck_assert_int_eq(store_ckpt_insert(s, a, &info, b[NL - 1], 1000, 1, &auto1, &err), 0);
    ck_assert_int_eq(parts_of(a, auto1, "count(*)"), 143);
    ck_assert_int_eq(store_ckpt_insert(s, a, &info, b[6], 15, 1, &auto2, &err), 0);
    ck_assert_int_eq(parts_of(a, auto1, "count(*)"), 0);
    ck_assert_int_eq(parts_of(a, auto2, "count(*)"), 3);
    ckpt_ids(s, a, list, sizeof list);
    ck_assert_str_eq(list, "1,2,3,4,5,6,7,10");

    ck_assert_int_eq(store_agent_delete(s, a, &err), 0);
    ck_assert_int_eq(rows_of(a, "checkpoint_parts"), 0);
    ck_assert_int_eq(parts_of(other, kept, "count(*)"), 4);
    assert_state(s, other, kept, (const unsigned char *)"other's state, three parts", 26);
    ck_assert_int_eq(store_integrity_check(s, &err), 0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    store_close(s);
    for (int i = 0; i < NL; i++)
        free(b[i]);
}
END_TEST

/* A state whose parts were damaged in the file (one missing, one too long, one extra,
 * the size changed, to 1 PB too) is refused as damaged, RQD_EIO naming the checkpoint,
 * before anything of its size is allocated and never reassembled from what is left; its
 * metadata still reads, and a sound one beside it does too. */
START_TEST(ckpt_damaged_parts_are_refused)
{
    static const char *const damage[] = {
        "DELETE FROM checkpoint_parts WHERE ckpt = 1 AND part = 1",
        "DELETE FROM checkpoint_parts WHERE ckpt = 1 AND part = 2",
        "UPDATE checkpoint_parts SET data = x'00112233445566778899' WHERE ckpt = 1 AND part = 0",
        "UPDATE checkpoint_parts SET data = x'00' WHERE ckpt = 1 AND part = 2",
        "INSERT INTO checkpoint_parts VALUES (1, 1, 3, x'00')",
        "INSERT INTO checkpoint_parts VALUES (1, 1, 7, x'00')",
        "UPDATE checkpoint_parts SET part = 5 WHERE ckpt = 1 AND part = 1",
        "UPDATE checkpoints SET bytes = 21 WHERE id = 1",
        "UPDATE checkpoints SET bytes = -1 WHERE id = 1",
        "UPDATE checkpoints SET bytes = 1099511627776000 WHERE id = 1",
        "DELETE FROM checkpoint_parts WHERE ckpt = 1",
    };
    const char *state = "twenty bytes, three.";
    store_ckpt_info info;
    void *blob = (void *)&blob;
    size_t len = 1;
    rqd_err err = {0};
    int rc;

    store_test_part_size(7);
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S);
    ck_assert_int_eq(ckpt(s, a, 0, 0, state), 1);
    ck_assert_int_eq(ckpt(s, a, 0, 0, "sound"), 2);
    store_close(s);
    raw_exec(path, "PRAGMA foreign_keys = OFF");
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        char copy[300];
        in_dir(copy, sizeof copy, "damaged.db");
        unlink(copy);
        s = open_rw();
        ck_assert_int_eq(store_backup(s, copy, &err), 0);
        store_close(s);
        raw_exec(copy, damage[i]);
        s = open_at(copy, STORE_RW);
        rc = store_ckpt_get(s, a, 1, &info, &blob, &len, &err);
        ck_assert_msg(rc == RQD_EIO, "%s: rc %d (%s)", damage[i], rc, err.msg);
        ck_assert_msg(strstr(err.msg, "checkpoint 1 is damaged") != NULL, "%s: %s", damage[i],
                      err.msg);
        ck_assert_ptr_null(blob);
        ck_assert_uint_eq(len, 0);
        ck_assert_int_eq(store_ckpt_get(s, a, 1, &info, NULL, NULL, &err), 0);
        assert_state(s, a, 2, (const unsigned char *)"sound", 5);
        store_close(s);
        blob = (void *)&blob;
        len = 1;
    }
}
END_TEST

/* ------------------------------------------------------------------ agent ids */

/* Deleting the newest agent does not give its id to the next one, in the same session
 * or after a reopen; a refused insert (duplicate name) changes nothing. */
START_TEST(agent_ids_are_never_reused)
{
    store *s = open_rw();
    int64_t id = 0;
    rqd_err err = {0};

    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    ck_assert_int_gt(b, a);
    ck_assert_int_eq(store_agent_delete(s, b, &err), 0);
    int64_t c = add_agent(s, "c", S);
    ck_assert_int_gt(c, b);
    ck_assert_int_eq(store_agent_insert(s, "c", S, 2, LOW, HIGH, "{}", &id, &err), RQD_EEXIST);
    store_close(s);

    s = open_rw();
    ck_assert_int_eq(store_agent_delete(s, c, &err), 0);
    int64_t d = add_agent(s, "d", S);
    ck_assert_int_eq(d, c + 1);
    ck_assert_int_eq(store_agent_delete(s, d, &err), 0);
    ck_assert_int_eq(store_agent_delete(s, a, &err), 0); /* no agent left at all */
    store_close(s);
    s = open_rw();
    ck_assert_int_eq(add_agent(s, "e", S), d + 1);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ migration */

/* One version-1 checkpoint row, its state in the checkpoints.state column. */
static void v1_ckpt(int64_t agent, int64_t id, int automatic, const void *state, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO checkpoints (agent, id, updates, "
                                        "env_steps, policy_version, pending, automatic, bytes, "
                                        "created_at, state) VALUES (?1, ?2, ?2 * 10, ?2 * 20, "
                                        "?2, NULL, ?3, ?4, '2026-01-02T03:04:05.678Z', ?5)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_int(st, 3, automatic);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)len);
    if (len == 0)
        sqlite3_bind_zeroblob(st, 5, 0);
    else
        sqlite3_bind_blob(st, 5, state, (int)len, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A file of schema version 1 (states in checkpoints.state, ids from the rowid) opens
 * migrated to version 2: every state is in parts, byte for byte, with its metadata; the
 * state column is gone; ids go on after the highest agent id; and the new layout works
 * (insert, prune, delete). A read-only open of the old file is refused untouched. */
START_TEST(migrate_v1_moves_states_into_parts)
{
    static const size_t lens[] = {0, 5, 64, 65, 70000};
    enum { NL = sizeof lens / sizeof lens[0] };
    unsigned char *b[NL];
    store *s = NULL;
    rqd_err err = {0};

    ck_assert_int_eq(store_test_create_version(path, 0, &err), RQD_EINVAL);
    ck_assert_int_eq(store_test_create_version(path, STORE_SCHEMA_VERSION + 1, &err),
                     RQD_EINVAL);
    ck_assert_int_eq(store_test_create_version(path, 1, &err), 0);
    ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), 1);
    raw_exec(path, "INSERT INTO agents (id, name, obs_dim, act_dim, config, created_at, "
                   "next_ckpt_id) VALUES (2, 'two', 3, 2, '{}', '2026-01-01T00:00:00.000Z', "
                   "9), (5, 'five', 3, 2, '{}', '2026-01-01T00:00:00.000Z', 2)");
    for (int i = 0; i < NL; i++) {
        b[i] = pattern(lens[i], (unsigned)i + 40);
        v1_ckpt(2, 3 + i, i % 2, b[i], lens[i]);
    }
    v1_ckpt(5, 1, 1, "five's", 6);
    snapshot before = snap(path);
    s = (store *)&s;
    ck_assert_int_eq(store_open(path, STORE_RO, 0, 1, &s, &err), RQD_EIO);
    ck_assert_msg(strstr(err.msg, "older") != NULL, "%s", err.msg);
    assert_unchanged(path, &before);

    store_test_part_size(64);
    s = open_rw();
    ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM pragma_table_info('checkpoints') "
                                   "WHERE name = 'state'"), 0);
    for (int i = 0; i < NL; i++) {
        store_ckpt_info info;
        ck_assert_int_eq(parts_of(2, 3 + i, "count(*)"), (long long)(lens[i] + 63) / 64);
        assert_state(s, 2, 3 + i, b[i], lens[i]);
        ck_assert_int_eq(store_ckpt_get(s, 2, 3 + i, &info, NULL, NULL, &err), 0);
        ck_assert_int_eq(info.updates, (3 + i) * 10);
        ck_assert_int_eq(info.env_steps, (3 + i) * 20);
        ck_assert_int_eq(info.policy_version, 3 + i);
        ck_assert(isnan(info.pending_updates));
        ck_assert_int_eq(info.automatic, i % 2);
        ck_assert_str_eq(info.created_at, "2026-01-02T03:04:05.678Z");
    }
    assert_state(s, 5, 1, (const unsigned char *)"five's", 6);
    ck_assert_int_eq(store_integrity_check(s, &err), 0);

    /* Ids go on after 5; checkpoint ids after the stored next_ckpt_id. */
    ck_assert_int_eq(add_agent(s, "six", S), 6);
    ck_assert_int_eq(ckpt(s, 2, 1, 1, "newest auto"), 9); /* prunes autos 4 and 6 */
    char list[64];
    ckpt_ids(s, 2, list, sizeof list);
    ck_assert_str_eq(list, "3,5,7,9");
    ck_assert_int_eq(parts_of(2, 4, "count(*)") + parts_of(2, 6, "count(*)"), 0);
    ck_assert_int_eq(store_agent_delete(s, 2, &err), 0);
    ck_assert_int_eq(rows_of(2, "checkpoint_parts"), 0);
    assert_state(s, 5, 1, (const unsigned char *)"five's", 6);
    store_close(s);

    s = open_rw(); /* current now: opened without migrating again */
    ck_assert_int_eq(store_agent_delete(s, 6, &err), 0); /* the newest: its id stays used */
    ck_assert_int_eq(add_agent(s, "seven", S), 7);
    store_close(s);
    for (int i = 0; i < NL; i++)
        free(b[i]);
}
END_TEST

/* ------------------------------------------------------------------ stats */

START_TEST(stats_range_since_limit_and_nan)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    store_stats_row in[4], *rows = NULL;
    int n = -1;
    rqd_err err = {0};

    for (int i = 0; i < 4; i++)
        in[i] = (store_stats_row){.update = i + 1, .env_steps = 10 * (i + 1),
                                  .time = 1700000000.25 + i, .actor_loss = -1.5 * i,
                                  .critic_loss = 0.1 * i, .alpha = i % 2 ? NAN : 0.2,
                                  .alpha_loss = NAN, .q_mean = 3.0, .q_std = 0.5,
                                  .train_time = 0.001};
    ck_assert_int_eq(store_stats_append(s, a, in, 2, &err), 0);
    ck_assert_int_eq(store_stats_append(s, b, in, 1, &err), 0);
    ck_assert_int_eq(store_stats_append(s, a, in + 2, 2, &err), 0);
    ck_assert_int_eq(store_stats_append(s, a + 99, in, 1, &err), RQD_ENOTFOUND);

    ck_assert_int_eq(store_stats_range(s, a, 0, -1, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            ck_assert_int_gt(rows[i].row, rows[i - 1].row);
        ck_assert_int_eq(rows[i].update, i + 1);
        ck_assert_int_eq(rows[i].env_steps, 10 * (i + 1));
        ck_assert(rows[i].time == in[i].time);
        ck_assert(rows[i].actor_loss == in[i].actor_loss);
        ck_assert(rows[i].critic_loss == in[i].critic_loss);
        ck_assert(i % 2 ? isnan(rows[i].alpha) : rows[i].alpha == 0.2);
        ck_assert(isnan(rows[i].alpha_loss));
        ck_assert(rows[i].q_mean == 3.0 && rows[i].q_std == 0.5 && rows[i].train_time == 0.001);
    }
    ck_assert_int_eq(rows[2].row, rows[1].row + 2); /* b's row lies between */
    int64_t second = rows[1].row;
    free(rows);

    ck_assert_int_eq(store_stats_range(s, a, second, 10, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(rows[0].update, 3);
    free(rows);
    ck_assert_int_eq(store_stats_range(s, a, 0, 3, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 3);
    free(rows);
    ck_assert_int_eq(store_stats_range(s, a, 0, 0, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(rows);
    store_close(s);

    /* NaN is NULL in the file. */
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM stats WHERE alpha_loss IS NULL"), 5);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM stats WHERE alpha IS NULL"), 2);
}
END_TEST

/* ------------------------------------------------------------------ episodes */

static store_episode_row episode(const char *id, const char *start, const char *end,
                                 float *obs, float *act)
{
    store_episode_row e = {.mode = STORE_EP_EXPLORE, .ret = 1.5, .length = 10,
                           .last_obs = obs, .last_action = act};
    snprintf(e.id, sizeof e.id, "%s", id);
    snprintf(e.started_at, sizeof e.started_at, "%s", start);
    snprintf(e.ended_at, sizeof e.ended_at, "%s", end);
    return e;
}

START_TEST(episodes_put_list_order_and_open)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    float obs[S] = {0.1f, -0.0f, 3e-39f}, act[A] = {1.0f, -2.0f};
    const char *t1 = "2026-01-01T00:00:00.000Z", *t2 = "2026-01-01T00:00:05.000Z";
    store_episode_row e, *rows = NULL;
    int n = -1;
    rqd_err err = {0};

    e = episode("e1", t1, "", obs, act);
    ck_assert_int_eq(store_episode_put(s, id, &e, S, A, &err), 0);
    e = episode("e2", t2, "", obs, act);
    e.mode = STORE_EP_EVAL;
    e.ret = NAN;
    ck_assert_int_eq(store_episode_put(s, id, &e, S, A, &err), 0);
    e = episode("e3", t2, "", obs, act); /* same start as e2, inserted later */
    ck_assert_int_eq(store_episode_put(s, id, &e, S, A, &err), 0);
    e = episode("e1", t1, "2026-01-01T00:00:09.000Z", obs, act); /* e1 ends */
    e.length = 200;
    e.abandoned = 1;
    ck_assert_int_eq(store_episode_put(s, id, &e, S, A, &err), 0);
    e = episode("e2", t2, "", obs, act); /* an update keeps e2's insertion order */
    e.mode = STORE_EP_EVAL;
    e.length = 11;
    e.ret = NAN;
    ck_assert_int_eq(store_episode_put(s, id, &e, S, A, &err), 0);

    ck_assert_int_eq(store_episode_list(s, id, -1, S, A, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(rows[0].id, "e3");
    ck_assert_str_eq(rows[1].id, "e2");
    ck_assert_str_eq(rows[2].id, "e1");
    ck_assert_int_eq(rows[1].mode, STORE_EP_EVAL);
    ck_assert(isnan(rows[1].ret));
    ck_assert_int_eq(rows[1].length, 11);
    ck_assert_str_eq(rows[1].ended_at, "");
    ck_assert_ptr_nonnull(rows[1].last_obs);
    ck_assert_str_eq(rows[2].ended_at, "2026-01-01T00:00:09.000Z");
    ck_assert_str_eq(rows[2].started_at, t1);
    ck_assert_int_eq(rows[2].length, 200);
    ck_assert_int_eq(rows[2].abandoned, 1);
    ck_assert(rows[2].ret == 1.5);
    ck_assert_ptr_null(rows[2].last_obs); /* ended: not kept */
    ck_assert_ptr_null(rows[2].last_action);
    store_episode_rows_free(rows, n);

    ck_assert_int_eq(store_episode_list(s, id, 2, S, A, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(rows[0].id, "e3");
    ck_assert_str_eq(rows[1].id, "e2");
    store_episode_rows_free(rows, n);

    ck_assert_int_eq(store_episode_open(s, id, S, A, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(rows[0].id, "e2"); /* insertion order */
    ck_assert_str_eq(rows[1].id, "e3");
    for (int i = 0; i < n; i++) {
        ck_assert(memcmp(rows[i].last_obs, obs, sizeof obs) == 0);
        ck_assert(memcmp(rows[i].last_action, act, sizeof act) == 0);
    }
    store_episode_rows_free(rows, n);

    ck_assert_int_eq(store_episode_list(s, id + 9, 10, S, A, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(rows);
    store_episode_rows_free(NULL, 0);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ backup */

START_TEST(backup_opens_with_the_same_rows)
{
    store *s = open_rw(), *b = NULL;
    int64_t id = add_agent(s, "a", S);
    char copy[300];
    store_agent_row *rows = NULL;
    store_stats_row *stats = NULL;
    void *blob = NULL;
    size_t len = 0;
    int n = 0;
    rqd_err err = {0};

    fill_agent(s, id);
    append_ok(s, id, 6, 10);
    in_dir(copy, sizeof copy, "backup.db");
    ck_assert_int_eq(store_backup(s, copy, &err), 0);
    ck_assert_int_eq(store_backup(s, copy, &err), RQD_EIO); /* never overwrites */
    ck_assert_int_eq(store_integrity_check(s, &err), 0);
    ck_assert_int_eq(store_begin(s, &err), 0); /* not inside a transaction */
    char copy2[300];
    in_dir(copy2, sizeof copy2, "backup2.db");
    ck_assert_int_eq(store_backup(s, copy2, &err), RQD_EIO);
    store_rollback(s);
    store_close(s);

    b = open_at(copy, STORE_RW);
    ck_assert_int_eq(store_integrity_check(b, &err), 0);
    ck_assert_int_eq(store_agent_list(b, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(rows[0].name, "a");
    store_agent_rows_free(rows, n);
    ck_assert_int_eq(count_rows(b, id), 15);
    ck_assert_int_eq(store_ckpt_get(b, id, -1, NULL, &blob, &len, &err), 0);
    ck_assert(len == 5 && memcmp(blob, "state", 5) == 0);
    free(blob);
    ck_assert_int_eq(store_stats_range(b, id, 0, -1, &stats, &n, &err), 0);
    ck_assert_int_eq(n, 1);
    free(stats);
    store_close(b);
}
END_TEST

/* ------------------------------------------------------------------ size cap */

/* Rows counted by a scan (count_rows keeps at most 64). */
static int count_cb(void *ctx, int64_t seq, const store_transition *t)
{
    (void)seq;
    (void)t;
    ++*(int *)ctx;
    return 0;
}

static int count_all(store *s, int64_t agent)
{
    rqd_err err = {0};
    int n = 0;
    ck_assert_int_eq(store_transitions_scan(s, agent, 0, S, A, count_cb, &n, &err), 0);
    return n;
}

/* Bytes the database takes now (page_count * page_size, the WAL's pages included). */
static long long db_bytes(void)
{
    return raw_int(path, "PRAGMA page_count") * raw_int(path, "PRAGMA page_size");
}

static void assert_full(int rc, const rqd_err *err, const char *what)
{
    ck_assert_msg(rc == RQD_EIO, "%s: rc %d (%s), want io_error", what, rc, err->msg);
    ck_assert_msg(strstr(err->msg, "database or disk is full") != NULL,
                  "%s: message \"%s\" does not say the database is full", what, err->msg);
}

/* SQLite's limit on one value, lowered to its floor on a connection: a 40 MiB state goes in
 * (16 MiB parts) and comes back byte for byte, also on a read-only connection with the same
 * limit; cut into one 40 MiB part instead, the same insert is refused and stores nothing,
 * so the limit is in force. Out-of-range limits are refused. */
START_TEST(lowered_value_limit_takes_parts_and_refuses_one_big_value)
{
    const size_t len = (size_t)40 << 20;
    unsigned char *b = pattern(len, 5);
    store_ckpt_info info = {.updates = 1};
    rqd_err err = {0};
    int64_t id = 0, refused = 0;

    store *s = open_rw();
    ck_assert_int_eq(store_set_max_value(s, STORE_MIN_VALUE_LIMIT - 1, &err), RQD_EINVAL);
    ck_assert_int_eq(store_set_max_value(s, STORE_MAX_VALUE_LIMIT + 1, &err), RQD_EINVAL);
    ck_assert_int_eq(store_set_max_value(s, STORE_MIN_VALUE_LIMIT, &err), 0);
    int64_t a = add_agent(s, "a", S);
    ck_assert_int_eq(store_ckpt_insert(s, a, &info, b, len, 0, &id, &err), 0);
    ck_assert_int_eq(parts_of(a, id, "count(*)"), 3);
    assert_state(s, a, id, b, len);

    store_test_part_size(len);
    ck_assert_int_lt(store_ckpt_insert(s, a, &info, b, len, 0, &refused, &err), 0);
    store_test_part_size(0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM checkpoints"), 1);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM checkpoint_parts"), 3);
    store_close(s);

    s = open_at(path, STORE_RO);
    ck_assert_int_eq(store_set_max_value(s, STORE_MIN_VALUE_LIMIT, &err), 0);
    assert_state(s, a, id, b, len);
    store_close(s);
    free(b);
}
END_TEST

/* A cap at the current size: what fits in the pages there still goes in, an append that
 * needs new pages fails as "full" and leaves every earlier row; raising the cap (and
 * removing it) lets the same append through. The cap is the connection's, not the file's. */
START_TEST(max_size_refuses_growth_and_raising_it_lets_the_same_append_in)
{
    enum { BIG = 2000 }; /* about 200 KiB of rows: many new pages */
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    long long cap;
    rqd_err err = {0};

    ck_assert_int_eq(store_set_max_size(s, -1, &err), RQD_EINVAL);
    append_ok(s, id, 1, 5);
    cap = db_bytes();
    ck_assert_int_eq(store_set_max_size(s, cap, &err), 0);
    append_ok(s, id, 6, 1); /* fits in a page the file has */
    assert_full(append(s, id, 7, BIG, &err), &err, "append past the cap");
    ck_assert_msg(strstr(err.msg, "append transitions") != NULL, "\"%s\"", err.msg);
    ck_assert_int_eq(max_seq(s, id), 6);
    ck_assert_int_eq(count_all(s, id), 6);
    ck_assert_int_le(db_bytes(), cap);

    /* As the writer runs it: a batch transaction with the append in a savepoint. After
     * the failure the batch is rolled back whole; nothing of it remains. */
    ck_assert_int_eq(store_begin(s, &err), 0);
    ck_assert_int_eq(store_savepoint(s, &err), 0);
    assert_full(append(s, id, 7, BIG, &err), &err, "append in a batch");
    store_rollback_to(s);
    store_rollback(s);
    ck_assert_int_eq(count_all(s, id), 6);

    /* A checkpoint blob bigger than the room left fails the same way, id not consumed. */
    {
        size_t len = 64 * 1024;
        char *blob = calloc(1, len);
        store_ckpt_info info = {.updates = 1};
        int64_t got = 0;
        char ids[64];
        ck_assert_ptr_nonnull(blob);
        assert_full(store_ckpt_insert(s, id, &info, blob, len, 5, &got, &err), &err,
                    "checkpoint past the cap");
        free(blob);
        ckpt_ids(s, id, ids, sizeof ids);
        ck_assert_str_eq(ids, "");
    }

    /* Space returns: a larger cap, the same append. */
    ck_assert_int_eq(store_set_max_size(s, cap + (1 << 20), &err), 0);
    append_ok(s, id, 7, BIG);
    ck_assert_int_eq(count_all(s, id), 6 + BIG);

    /* A cap below what the file holds: nothing more grows it; 0 removes the cap. */
    ck_assert_int_eq(store_set_max_size(s, 4096, &err), 0);
    assert_full(append(s, id, 7 + BIG, BIG, &err), &err, "append under a cap below the size");
    ck_assert_int_eq(max_seq(s, id), 6 + BIG);
    ck_assert_int_eq(store_set_max_size(s, 0, &err), 0);
    append_ok(s, id, 7 + BIG, BIG);
    ck_assert_int_eq(store_integrity_check(s, &err), 0);
    store_close(s);

    /* The cap lived in that connection only: a new one grows the file freely. */
    s = open_rw();
    ck_assert_int_eq(count_all(s, id), 6 + 2 * BIG);
    append_ok(s, id, 7 + 2 * BIG, BIG);
    ck_assert_int_eq(max_seq(s, id), 6 + 3 * BIG);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ injected faults */

static const int fault_codes[] = {SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM};

/* Faults at every step of appending 6..10 inside store_begin/commit, then rollback: only
 * rows 1..5 remain after each, and the append goes through once no fault is due. */
START_TEST(fault_in_transaction_append_leaves_previous_rows)
{
    int code = fault_codes[_i];
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    int nth, rc = -1;
    rqd_err err = {0};

    append_ok(s, id, 1, 5);
    for (nth = 1; nth < 100; nth++) {
        ck_assert_int_eq(store_begin(s, &err), 0);
        store_fault_inject(s, nth, code);
        rc = append(s, id, 6, 5, &err);
        store_fault_inject(s, 0, 0);
        if (rc == RQD_OK)
            break;
        ck_assert_int_eq(rc, code == SQLITE_NOMEM ? RQD_ENOMEM : RQD_EIO);
        ck_assert_msg(strstr(err.msg, sqlite3_errstr(code)) != NULL, "message \"%s\"", err.msg);
        store_rollback(s);
        ck_assert_int_eq(max_seq(s, id), 5);
        ck_assert_int_eq(count_rows(s, id), 5);
    }
    ck_assert_int_eq(rc, RQD_OK);
    ck_assert_int_ge(nth, 7); /* savepoint, five inserts, release: each one failed once */
    ck_assert_int_eq(store_commit(s, &err), 0);
    ck_assert_int_eq(count_rows(s, id), 10);
    store_close(s);
    s = open_rw();
    ck_assert_int_eq(count_rows(s, id), 10);
    store_close(s);
}
END_TEST

/* The same without an outer transaction: a call is atomic by itself. */
START_TEST(fault_in_single_append_applies_nothing)
{
    int code = fault_codes[_i];
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    int nth, rc = -1;
    rqd_err err = {0};

    append_ok(s, id, 1, 5);
    for (nth = 1; nth < 100; nth++) {
        store_fault_inject(s, nth, code);
        rc = append(s, id, 6, 5, &err);
        store_fault_inject(s, 0, 0);
        if (rc == RQD_OK)
            break;
        ck_assert_int_eq(rc, code == SQLITE_NOMEM ? RQD_ENOMEM : RQD_EIO);
        ck_assert_int_eq(max_seq(s, id), 5);
        ck_assert_int_eq(count_rows(s, id), 5);
    }
    ck_assert_int_eq(rc, RQD_OK);
    ck_assert_int_ge(nth, 7);
    ck_assert_int_eq(count_rows(s, id), 10);
    store_close(s);
}
END_TEST

/* Faults at every step of an automatic checkpoint insert that also prunes, its state in
 * two parts: after the rollback the same checkpoints exist, with their blobs, and the
 * next id is unchanged. */
START_TEST(fault_in_ckpt_insert_leaves_nothing_half_applied)
{
    int code = fault_codes[_i];
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S), got = 0;
    store_ckpt_info info = {.automatic = 1};
    store_agent_row *agents = NULL;
    void *blob = NULL;
    size_t len = 0;
    char ids[64];
    int nth, n = 0, rc = -1;
    rqd_err err = {0};

    store_test_part_size(1);
    ckpt(s, id, 1, 2, "a1");
    ckpt(s, id, 1, 2, "a2");
    for (nth = 1; nth < 100; nth++) {
        ck_assert_int_eq(store_begin(s, &err), 0);
        store_fault_inject(s, nth, code);
        rc = store_ckpt_insert(s, id, &info, "a3", 2, 2, &got, &err);
        store_fault_inject(s, 0, 0);
        if (rc == RQD_OK)
            break;
        ck_assert_int_eq(rc, code == SQLITE_NOMEM ? RQD_ENOMEM : RQD_EIO);
        store_rollback(s);
        ckpt_ids(s, id, ids, sizeof ids);
        ck_assert_str_eq(ids, "1,2");
        ck_assert_int_eq(store_ckpt_get(s, id, 1, NULL, &blob, &len, &err), 0);
        ck_assert(len == 2 && memcmp(blob, "a1", 2) == 0);
        free(blob);
        ck_assert_int_eq(store_agent_list(s, &agents, &n, &err), 0);
        ck_assert_int_eq(agents[0].next_ckpt_id, 3);
        store_agent_rows_free(agents, n);
    }
    ck_assert_int_eq(rc, RQD_OK);
    ck_assert_int_ge(nth, 7); /* savepoint, next id (2), insert, 2 parts, prune, release */
    ck_assert_int_eq(store_commit(s, &err), 0);
    ck_assert_int_eq(got, 3);
    ckpt_ids(s, id, ids, sizeof ids);
    ck_assert_str_eq(ids, "2,3");
    store_close(s);
}
END_TEST

START_TEST(fault_at_commit_and_savepoints)
{
    store *s = open_rw();
    int64_t id = add_agent(s, "a", S);
    store_stats_row row = {.update = 1, .alpha = NAN};
    store_stats_row *rows = NULL;
    int n = 0;
    rqd_err err = {0};

    /* A failed COMMIT, then rollback: nothing of the transaction. */
    ck_assert_int_eq(store_begin(s, &err), 0);
    append_ok(s, id, 1, 3);
    ck_assert_int_eq(store_stats_append(s, id, &row, 1, &err), 0);
    store_fault_inject(s, 1, SQLITE_IOERR);
    ck_assert_int_eq(store_commit(s, &err), RQD_EIO);
    store_rollback(s);
    ck_assert_int_eq(max_seq(s, id), 0);
    ck_assert_int_eq(store_stats_range(s, id, 0, -1, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 0);

    /* ROLLBACK TO job discards the savepoint's rows only; RELEASE keeps them. */
    ck_assert_int_eq(store_begin(s, &err), 0);
    append_ok(s, id, 1, 3);
    ck_assert_int_eq(store_savepoint(s, &err), 0);
    append_ok(s, id, 4, 3);
    store_fault_inject(s, 2, SQLITE_FULL); /* fails the stats insert */
    ck_assert_int_eq(store_stats_append(s, id, &row, 1, &err), RQD_EIO);
    store_rollback_to(s);
    ck_assert_int_eq(max_seq(s, id), 3);
    ck_assert_int_eq(store_savepoint(s, &err), 0);
    append_ok(s, id, 4, 2);
    ck_assert_int_eq(store_release(s, &err), 0);
    ck_assert_int_eq(store_commit(s, &err), 0);
    ck_assert_int_eq(count_rows(s, id), 5);
    ck_assert_int_eq(store_stats_range(s, id, 0, -1, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 0);
    store_rollback(s);    /* harmless outside a transaction */
    store_rollback_to(s); /* likewise without a savepoint */
    append_ok(s, id, 6, 1);
    ck_assert_int_eq(count_rows(s, id), 6);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ the ring (issue 10) */

/* A new file returns the pages a big delete frees; a file made by an older version keeps
 * its mode (switching needs a VACUUM) and reuses them for new rows instead. */
START_TEST(new_files_return_freed_pages_old_ones_reuse_them)
{
    rqd_err err = {0};
    store_space sp;
    int64_t freed = -1;

    for (int old = 0; old < 2; old++) {
        if (old) {
            teardown();
            setup();
            ck_assert_int_eq(store_test_create_version(path, 3, &err), 0);
        }
        store *s = open_rw();
        int64_t id = add_agent(s, "a", S);
        ck_assert_int_eq(store_space_get(s, &sp, &err), 0);
        ck_assert_int_eq(sp.incremental, !old);
        for (int k = 0; k < 20; k++)
            append_ok(s, id, 1 + 1000 * k, 1000);
        ck_assert_int_eq(store_space_get(s, &sp, &err), 0);
        int64_t full = sp.pages;
        int deleted = 0;
        ck_assert_int_eq(store_transitions_delete_upto(s, id, 19000, 100000, &deleted, &err), 0);
        ck_assert_int_eq(deleted, 19000);
        ck_assert_int_eq(store_space_get(s, &sp, &err), 0);
        ck_assert_int_gt(sp.free_pages, full / 2);
        ck_assert_int_eq(store_vacuum_step(s, 16, 1 << 20, &freed, &err), 0);
        ck_assert_int_eq(store_space_get(s, &sp, &err), 0);
        if (!old) {
            ck_assert_int_gt(freed, full / 2);
            ck_assert_int_le(sp.free_pages, 16); /* keep: what it leaves for new rows */
            ck_assert_int_eq(sp.pages, full - freed);
        } else {
            ck_assert_int_eq(freed, 0);
            ck_assert_int_eq(sp.pages, full);
            /* The free pages take new rows: the file does not grow. */
            for (int k = 0; k < 15; k++)
                append_ok(s, id, 20001 + 1000 * k, 1000);
            ck_assert_int_eq(store_space_get(s, &sp, &err), 0);
            ck_assert_int_eq(sp.pages, full);
        }
        ck_assert_int_eq(store_integrity_check(s, &err), 0);
        store_close(s);
    }
}
END_TEST

START_TEST(transitions_delete_upto_in_bounded_batches)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    scan_log *l = calloc(1, sizeof *l);
    rqd_err err = {0};
    int got[4];

    append_ok(s, a, 1, 50);
    append_ok(s, b, 1, 50);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(store_transitions_delete_upto(s, a, 30, 12, &got[i], &err), 0);
    ck_assert(got[0] == 12 && got[1] == 12 && got[2] == 6 && got[3] == 0);
    ck_assert_int_eq(store_transitions_scan(s, a, 0, S, A, collect, l, &err), 0);
    ck_assert_int_eq(l->n, 20);
    ck_assert_int_eq(l->seq[0], 31);
    ck_assert_int_eq(max_seq(s, a), 50);
    ck_assert_int_eq(count_rows(s, b), 50); /* the other agent's rows stay */
    free(l);
    store_close(s);
}
END_TEST

START_TEST(heads_put_list_base_and_cascade)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    store_head_info info, *rows = NULL;
    unsigned char *big = pattern(100000, 7);
    void *blob = NULL;
    size_t len = 0;
    int n = -1;
    rqd_err err = {0};

    ck_assert_int_eq(store_head_base(s, a, &info, &blob, &len, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(store_head_put(s, a, 100, 90, "h100", 4, &err), 0);
    ck_assert_int_eq(store_head_put(s, a, 300, 280, big, 100000, &err), 0);
    ck_assert_int_eq(store_head_put(s, a, 200, 190, "h200", 4, &err), 0);
    ck_assert_int_eq(store_head_put(s, b, 100, 100, "b", 1, &err), 0);
    ck_assert_int_eq(store_head_put(s, a, 200, 1, "x", 1, &err), RQD_EEXIST);
    ck_assert_int_eq(store_head_put(s, a + 99, 1, 1, "x", 1, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(store_head_list(s, a, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 3);
    ck_assert(rows[0].seq == 100 && rows[1].seq == 200 && rows[2].seq == 300);
    ck_assert(rows[2].added == 280 && rows[2].bytes == 100000 && !rows[2].base);
    free(rows);
    /* No base until one is set; then the older heads are gone, in the same call. */
    ck_assert_int_eq(store_head_set_base(s, a, 250, &err), RQD_ENOTFOUND);
    ck_assert_int_eq(store_head_list(s, a, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 3);
    free(rows);
    ck_assert_int_eq(store_head_set_base(s, a, 300, &err), 0);
    ck_assert_int_eq(store_head_base(s, a, &info, &blob, &len, &err), 0);
    ck_assert(info.seq == 300 && info.added == 280 && info.base && len == 100000);
    ck_assert(memcmp(blob, big, len) == 0);
    free(blob);
    ck_assert_int_eq(store_head_list(s, a, &rows, &n, &err), 0);
    ck_assert_int_eq(n, 1);
    free(rows);
    ck_assert_int_eq(store_head_list(s, b, &rows, &n, &err), 0); /* b's stays */
    ck_assert_int_eq(n, 1);
    free(rows);
    /* A newer base replaces it. */
    ck_assert_int_eq(store_head_put(s, a, 400, 380, "h400", 4, &err), 0);
    ck_assert_int_eq(store_head_set_base(s, a, 400, &err), 0);
    ck_assert_int_eq(store_head_base(s, a, &info, NULL, NULL, &err), 0);
    ck_assert_int_eq(info.seq, 400);
    ck_assert_int_eq(store_agent_delete(s, a, &err), 0);
    ck_assert_int_eq(rows_of(a, "replay_heads"), 0);
    free(big);
    store_close(s);
}
END_TEST

/* Batch ids: the newest `keep` and those younger than `before` stay; the oldest go first,
 * a bounded number per call; order goes on after a prune. */
START_TEST(batch_ids_are_kept_for_a_window)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    char id[16], *answer = NULL;
    int got[4];
    rqd_err err = {0};
    int64_t now = (int64_t)time(NULL);

    for (int i = 1; i <= 30; i++) {
        snprintf(id, sizeof id, "k%d", i);
        ck_assert_int_eq(store_batch_put(s, a, id, id, &err), 0);
        ck_assert_int_eq(store_batch_put(s, b, id, id, &err), 0);
    }
    ck_assert_int_eq(raw_int(path, "SELECT max(ord) FROM batches WHERE agent = 1"), 30);
    /* All of them are younger than a day: nothing goes. */
    ck_assert_int_eq(store_batch_prune(s, a, 10, now - 86400, 100, &got[0], &err), 0);
    ck_assert_int_eq(got[0], 0);
    /* Aged by hand: the oldest 20 go, 7 at a time; the newest 10 stay. */
    raw_exec(path, "UPDATE batches SET created = created - 90000");
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(store_batch_prune(s, a, 10, now - 86400, 7, &got[i], &err), 0);
    ck_assert(got[0] == 7 && got[1] == 7 && got[2] == 6 && got[3] == 0);
    for (int i = 1; i <= 30; i++) {
        snprintf(id, sizeof id, "k%d", i);
        ck_assert_int_eq(store_batch_get(s, a, id, &answer, &err), 0);
        ck_assert_msg((answer != NULL) == (i > 20), "id %s kept: %d", id, answer != NULL);
        free(answer);
    }
    ck_assert_int_eq(rows_of(b, "batches"), 30); /* per agent */
    /* New ids go on from the newest order; a young id stops the walk however old the
     * count says it is. */
    ck_assert_int_eq(store_batch_put(s, a, "k31", "k31", &err), 0);
    ck_assert_int_eq(raw_int(path, "SELECT ord FROM batches WHERE batch_id = 'k31' AND "
                                   "agent = 1"), 31);
    ck_assert_int_eq(store_batch_prune(s, a, 1, now - 86400, 100, &got[0], &err), 0);
    ck_assert_int_eq(got[0], 10); /* k21..k30 are old; k31 is young (and the newest) */
    ck_assert_int_eq(rows_of(a, "batches"), 1);
    store_close(s);
}
END_TEST

/* n stats rows for agent a at times t0, t0 + 1, ..., each with another agent's row
 * between (stats row numbers are shared), update numbers first, first + 1, ... */
static void stats_rows(store *s, int64_t a, int64_t other, int n, int first, double t0)
{
    rqd_err err = {0};
    for (int i = 0; i < n; i++) {
        store_stats_row r = {.update = first + i, .env_steps = first + i, .time = t0 + i,
                             .alpha = 0.2, .actor_loss = NAN, .critic_loss = 1,
                             .alpha_loss = NAN, .q_mean = 0, .q_std = 0, .train_time = 0};
        ck_assert_int_eq(store_stats_append(s, a, &r, 1, &err), 0);
        ck_assert_int_eq(store_stats_append(s, other, &r, 1, &err), 0);
    }
}

/* The update numbers of a's stats rows, as "1,11,21". */
static void stats_updates(store *s, int64_t a, char *out, size_t size)
{
    store_stats_row *rows = NULL;
    int n = 0;
    size_t len = 0;
    rqd_err err = {0};
    ck_assert_int_eq(store_stats_range(s, a, 0, -1, &rows, &n, &err), 0);
    out[0] = '\0';
    for (int i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%lld", i ? "," : "",
                                (long long)rows[i].update);
    free(rows);
}

static store_prune_counts prune(store *s, int64_t a, int64_t keep_rows, double keep_s, int thin,
                                double now, int max_rows)
{
    store_retention r = {keep_rows, keep_s, thin, now};
    store_prune_counts c;
    rqd_err err = {0};
    int rc = store_history_prune(s, a, &r, max_rows, &c, &err);
    ck_assert_msg(rc == RQD_OK, "history prune: %d %s", rc, err.msg);
    return c;
}

START_TEST(history_thins_stats_rows_past_the_window)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    char got[512];
    const double t0 = 1.7e9;

    stats_rows(s, a, b, 45, 1, t0);
    /* Keep everything (no limit) is the default: nothing happens. */
    ck_assert_int_eq(prune(s, a, 0, 0, 10, t0 + 100, 1000).stats, 0);
    /* The newest 20 whole; past them every 10th of a's own rows (b's rows between do not
     * shift it); a group of 10 cut by the window waits: rows 1..20 done, 21..25 wait. */
    store_prune_counts c = prune(s, a, 20, 0, 10, t0 + 100, 1000);
    ck_assert_int_eq(c.stats, 18);
    ck_assert_int_eq(c.more, 0);
    stats_updates(s, a, got, sizeof got);
    ck_assert_str_eq(got, "1,11,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,"
                          "41,42,43,44,45");
    ck_assert_int_eq(raw_int(path, "SELECT stats_rows FROM history WHERE agent = 1"), 25);
    /* Again: nothing more (a kept row is never thinned twice). */
    ck_assert_int_eq(prune(s, a, 20, 0, 10, t0 + 100, 1000).stats, 0);
    /* Five more rows complete the group 21..30. */
    stats_rows(s, a, b, 5, 46, t0 + 45);
    ck_assert_int_eq(prune(s, a, 20, 0, 10, t0 + 100, 1000).stats, 9);
    stats_updates(s, a, got, sizeof got);
    ck_assert_str_eq(got, "1,11,21,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,"
                          "50");
    ck_assert_int_eq(rows_of(b, "stats"), 50); /* b's are b's */
    /* A time limit too: rows of the last 15 s stay whatever the count says. */
    stats_rows(s, a, b, 30, 51, t0 + 50);  /* times t0+50 .. t0+79 */
    c = prune(s, a, 5, 15, 10, t0 + 80, 1000); /* window: newest 5 or t >= t0+65 */
    stats_updates(s, a, got, sizeof got);
    ck_assert_str_eq(got, "1,11,21,31,41,51,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,"
                          "77,78,79,80");
    ck_assert_int_eq(c.stats, 27); /* 31..60 thinned; 61..65 wait for their group */
    /* thin 0 drops what is past; a bounded walk says there is more. */
    c = prune(s, a, 5, 0, 0, t0 + 80, 4);
    ck_assert_int_eq(c.stats, 4);
    ck_assert_int_eq(c.more, 1);
    stats_updates(s, a, got, sizeof got);
    ck_assert_str_eq(got, "1,11,21,31,41,51,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80");
    store_close(s);
}
END_TEST

START_TEST(history_thins_evaluations)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S);
    rqd_err err = {0};
    double ret = 1.0;

    for (int i = 0; i < 30; i++) {
        store_eval_row e = {.env_steps = i, .n = 1, .mean = i};
        snprintf(e.time, sizeof e.time, "2026-01-01T00:00:%02d.000Z", i);
        ck_assert_int_eq(store_eval_append(s, a, &e, &ret, NULL, NULL, &err), 0);
    }
    /* 2026-01-01T00:00:30Z is 1767225630; the last 10 s and the newest 5 stay. */
    store_prune_counts c = prune(s, a, 5, 10, 4, 1767225630.0, 1000);
    ck_assert_int_eq(c.evaluations, 15); /* rows 0..19: groups of 4, the first stays */
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM evaluations"), 15);
    ck_assert_int_eq(raw_int(path, "SELECT group_concat(env_steps) = '0,4,8,12,16,20,21,22,23,"
                                   "24,25,26,27,28,29' FROM evaluations"), 1);
    store_close(s);
}
END_TEST

/* Ended episodes past the window go; open ones stay (and go once they end); the counts
 * state.episodes is made of do not change. */
START_TEST(history_drops_ended_episodes_and_keeps_counting)
{
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S);
    float obs[S] = {0}, act[A] = {0};
    int64_t count0, count1;
    double last0, last1;
    rqd_err err = {0};
    char id[16], end[32];

    for (int i = 1; i <= 30; i++) {
        snprintf(id, sizeof id, "e%02d", i);
        snprintf(end, sizeof end, "2026-01-01T00:%02d:00.000Z", i);
        store_episode_row e = episode(id, "2026-01-01T00:00:00.000Z", i == 3 ? "" : end,
                                      obs, act);
        e.ret = i;
        e.mode = i % 7 == 0 ? STORE_EP_EVAL : STORE_EP_EXPLORE;
        e.abandoned = i % 11 == 0;
        ck_assert_int_eq(store_episode_put(s, a, &e, S, A, &err), 0);
    }
    ck_assert_int_eq(store_episode_ended(s, a, &count0, &last0, &err), 0);
    store_prune_counts c = prune(s, a, 5, 0, 10, 2e9, 1000);
    ck_assert_int_eq(c.episodes, 24); /* e01..e25 but the open e03 */
    ck_assert_int_eq(store_episode_ended(s, a, &count1, &last1, &err), 0);
    ck_assert_int_eq(count1, count0);
    ck_assert(last1 == last0 && last1 == 30);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM episodes"), 6);
    /* e03 ends later: found below the mark. */
    store_episode_row e3 = episode("e03", "2026-01-01T00:00:00.000Z",
                                   "2026-01-01T01:00:00.000Z", obs, act);
    e3.ret = 3;
    ck_assert_int_eq(store_episode_put(s, a, &e3, S, A, &err), 0);
    ck_assert_int_eq(store_episode_ended(s, a, &count0, &last0, &err), 0);
    ck_assert(count0 == count1 + 1 && last0 == 3); /* it ended last */
    c = prune(s, a, 5, 0, 10, 2e9, 1000);
    ck_assert_int_eq(c.episodes, 1);
    ck_assert_int_eq(store_episode_ended(s, a, &count1, &last1, &err), 0);
    ck_assert(count1 == count0 && last1 == 3);
    /* Days only: everything that ended more than the window ago, but never the newest. */
    c = prune(s, a, 0, 60, 10, 1767225600.0 + 40 * 60, 1000); /* cutoff 00:39 */
    ck_assert_int_eq(c.episodes, 4); /* e26..e29 */
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM episodes"), 1);
    ck_assert_int_eq(store_episode_ended(s, a, &count1, &last1, &err), 0);
    ck_assert(count1 == count0 && last1 == 3);
    /* seq goes on after the newest: the next episode is e31's 31st. */
    store_episode_row e31 = episode("e31", "2026-01-02T00:00:00.000Z", "", obs, act);
    ck_assert_int_eq(store_episode_put(s, a, &e31, S, A, &err), 0);
    ck_assert_int_eq(raw_int(path, "SELECT seq FROM episodes WHERE id = 'e31'"), 31);
    store_close(s);
}
END_TEST

/* A version 3 file: its batch ids get an order and a time, its history rows the counts. */
START_TEST(migrate_v3_numbers_batch_ids_and_counts_history)
{
    rqd_err err = {0};
    ck_assert_int_eq(store_test_create_version(path, 3, &err), 0);
    raw_exec(path, "INSERT INTO meta (key, value) VALUES ('x', 0);"
                   "INSERT INTO agents (id, name, obs_dim, act_dim, config, created_at) VALUES"
                   " (1, 'a', 3, 2, '{}', '2026-01-01T00:00:00.000Z'),"
                   " (2, 'b', 3, 2, '{}', '2026-01-01T00:00:00.000Z');"
                   "INSERT INTO batches (agent, batch_id, answer) VALUES (1, 'z', '1'),"
                   " (1, 'y', '2'), (2, 'x', '3');"
                   "INSERT INTO stats (agent, update_no, env_steps) VALUES (1, 1, 1), (1, 2, 2),"
                   " (2, 1, 1);"
                   "INSERT INTO evaluations (agent, env_steps, updates, policy_version, time, n)"
                   " VALUES (2, 1, 1, 1, 't', 1)");
    store *s = open_rw();
    ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), 4);
    ck_assert_int_eq(raw_int(path, "SELECT group_concat(batch_id || ord, ',') = 'y1,z2' FROM "
                                   "(SELECT * FROM batches WHERE agent = 1 ORDER BY ord)"), 1);
    ck_assert_int_eq(raw_int(path, "SELECT min(created) >= strftime('%s', 'now') - 60 FROM "
                                   "batches"), 1);
    ck_assert_int_eq(raw_int(path, "SELECT stats_rows * 10 + evals_rows FROM history WHERE "
                                   "agent = 1"), 20);
    ck_assert_int_eq(raw_int(path, "SELECT stats_rows * 10 + evals_rows FROM history WHERE "
                                   "agent = 2"), 11);
    char *answer = NULL;
    ck_assert_int_eq(store_batch_get(s, 1, "z", &answer, &err), 0);
    ck_assert_str_eq(answer, "1");
    free(answer);
    ck_assert_int_eq(store_batch_put(s, 1, "w", "4", &err), 0);
    ck_assert_int_eq(raw_int(path, "SELECT ord FROM batches WHERE batch_id = 'w'"), 3);
    ck_assert_int_eq(store_integrity_check(s, &err), 0);
    store_close(s);
}
END_TEST

/* Faults at every step of the pruning writes: each call is all or nothing. */
START_TEST(fault_in_pruning_leaves_nothing_half_applied)
{
    int code = fault_codes[_i];
    store *s = open_rw();
    int64_t a = add_agent(s, "a", S), b = add_agent(s, "b", S);
    rqd_err err = {0};
    int nth, rc = -1;

    append_ok(s, a, 1, 20);
    stats_rows(s, a, b, 30, 1, 1.7e9);
    ck_assert_int_eq(store_head_put(s, a, 5, 5, "h5", 2, &err), 0);
    ck_assert_int_eq(store_head_put(s, a, 10, 10, "h10", 3, &err), 0);
    for (nth = 1; nth < 100; nth++) {
        store_prune_counts c;
        store_retention r = {5, 0, 10, 2e9};
        ck_assert_int_eq(store_begin(s, &err), 0);
        store_fault_inject(s, nth, code);
        rc = store_head_set_base(s, a, 10, &err);
        if (rc == RQD_OK)
            rc = store_history_prune(s, a, &r, 1000, &c, &err);
        store_fault_inject(s, 0, 0);
        if (rc == RQD_OK)
            break;
        ck_assert_int_eq(rc, code == SQLITE_NOMEM ? RQD_ENOMEM : RQD_EIO);
        store_rollback(s);
        ck_assert_int_eq(rows_of(a, "replay_heads"), 2);
        ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM replay_heads WHERE base = 1"), 0);
        ck_assert_int_eq(rows_of(a, "stats"), 30);
        ck_assert_int_eq(raw_int(path, "SELECT stats_rows + stats_mark FROM history WHERE "
                                       "agent = 1"), 30);
    }
    ck_assert_int_eq(rc, RQD_OK);
    ck_assert_int_ge(nth, 6);
    ck_assert_int_eq(store_commit(s, &err), 0);
    ck_assert_int_eq(rows_of(a, "replay_heads"), 1);
    ck_assert_int_eq(rows_of(a, "stats"), 2 + 10); /* 1, 11; 21..25 wait; the newest 5 */
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------------ suite */

Suite *suite_store(void)
{
    Suite *su = suite_create("store");
    struct {
        const char *name;
        const TTest *test;
        int loop; /* 0: once, else _i in [0, loop) */
    } cases[] = {
        {"open", open_creates_then_reopens_with_rows, 0},
        {"refuse_newer", open_refuses_newer_schema_untouched, 0},
        {"refuse_garbage", open_refuses_garbage_untouched, 0},
        {"refuse_foreign", open_refuses_foreign_database_untouched, 0},
        {"refuse_corrupt", open_refuses_corrupt_file_untouched, 0},
        {"read_only", open_read_only_needs_an_existing_current_file, 0},
        {"two_connections", read_only_connection_sees_committed_rows_only, 0},
        {"agents", agents_insert_duplicate_and_list_in_byte_order, 0},
        {"agent_updates", agents_config_and_policy_version_never_decreases, 0},
        {"agent_delete", agent_delete_removes_every_row_of_it_only, 0},
        {"transitions_bits", transitions_round_trip_bit_for_bit, 0},
        {"transitions_scan", transitions_from_seq_max_seq_and_stop, 0},
        {"transitions_dup", transitions_duplicate_seq_refuses_the_whole_call, 0},
        {"batches", batch_ids_store_the_first_answer, 0},
        {"ckpt_ids", ckpt_ids_increase_and_are_never_reused, 0},
        {"ckpt_prune", ckpt_prune_keeps_newest_automatic_and_all_manual, 0},
        {"ckpt_parts", ckpt_state_in_parts_round_trips_and_cascades, 0},
        {"ckpt_damaged", ckpt_damaged_parts_are_refused, 0},
        {"agent_ids", agent_ids_are_never_reused, 0},
        {"migrate_v1", migrate_v1_moves_states_into_parts, 0},
        {"stats", stats_range_since_limit_and_nan, 0},
        {"episodes", episodes_put_list_order_and_open, 0},
        {"backup", backup_opens_with_the_same_rows, 0},
        {"max_size", max_size_refuses_growth_and_raising_it_lets_the_same_append_in, 0},
        {"fault_txn_append", fault_in_transaction_append_leaves_previous_rows, 3},
        {"fault_single_append", fault_in_single_append_applies_nothing, 3},
        {"fault_ckpt", fault_in_ckpt_insert_leaves_nothing_half_applied, 3},
        {"fault_commit_savepoint", fault_at_commit_and_savepoints, 0},
        {"space", new_files_return_freed_pages_old_ones_reuse_them, 0},
        {"transitions_delete", transitions_delete_upto_in_bounded_batches, 0},
        {"heads", heads_put_list_base_and_cascade, 0},
        {"batch_window", batch_ids_are_kept_for_a_window, 0},
        {"history_stats", history_thins_stats_rows_past_the_window, 0},
        {"history_evaluations", history_thins_evaluations, 0},
        {"history_episodes", history_drops_ended_episodes_and_keeps_counting, 0},
        {"migrate_v3", migrate_v3_numbers_batch_ids_and_counts_history, 0},
        {"fault_pruning", fault_in_pruning_leaves_nothing_half_applied, 3},
        {"value_limit", lowered_value_limit_takes_parts_and_refuses_one_big_value, 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        if (cases[i].loop)
            tcase_add_loop_test(tc, cases[i].test, 0, cases[i].loop);
        else
            tcase_add_test(tc, cases[i].test);
        suite_add_tcase(su, tc);
    }
    return su;
}
