/* storage/db.c: one connection to redqd.db: opening it (and refusing files that are not
 * ours, newer than us, or damaged), its pragmas, transactions and savepoints, the
 * statement cache, the fault hook every step goes through, integrity checks and backups.
 *
 * OPENING
 * -------
 * A refused file must not be touched, so store_open first only reads: application_id,
 * user_version, whether sqlite_schema has any table, and PRAGMA quick_check when asked.
 * Reading writes nothing to the main file (a WAL-mode file gets its -shm, as any reader
 * does). Only once the file is known to be redqd's (or empty) does a read-write open
 * switch it to WAL, which rewrites the header, and run the migrations (schema.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ steps and errors */

int store__step(store *s, sqlite3_stmt *st)
{
    if (s->fault_nth > 0 && --s->fault_nth == 0) {
        s->last_injected = 1;
        return s->fault_rc;
    }
    s->last_injected = 0;
    return sqlite3_step(st);
}

void store_fault_inject(store *s, int nth, int sqlite_rc)
{
    s->fault_nth = nth > 0 ? nth : 0;
    s->fault_rc = sqlite_rc;
}

int store__fail(store *s, int rc, rqd_err *err, const char *what)
{
    /* An injected code has no sqlite3_errmsg behind it; the generic text stands in. */
    const char *msg = s->last_injected ? sqlite3_errstr(rc) : sqlite3_errmsg(s->db);
    int code = RQD_EIO;

    /* A full database says so in words an operator acts on, whatever sqlite3_errmsg
     * holds: SQLITE_FULL (the disk, or the cap of store_set_max_size), and an I/O error
     * whose system errno is ENOSPC (a write that found no space mid-page). */
    if ((rc & 0xff) == SQLITE_FULL ||
        ((rc & 0xff) == SQLITE_IOERR && !s->last_injected &&
         sqlite3_system_errno(s->db) == ENOSPC))
        msg = sqlite3_errstr(SQLITE_FULL); /* "database or disk is full" */
    s->last_injected = 0;
    switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        code = RQD_EEXIST;
        break;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        code = RQD_ENOTFOUND;
        break;
    default:
        if ((rc & 0xff) == SQLITE_NOMEM)
            code = RQD_ENOMEM;
        break;
    }
    return rqd_err_set(err, code, "", "%s: %s", what, msg);
}

int store__grow(void **v, int *cap, int len, size_t size, const char *what, rqd_err *err)
{
    if (len < *cap)
        return RQD_OK;
    int n = *cap ? 2 * *cap : 8;
    void *grown = realloc(*v, (size_t)n * size);
    if (grown == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "%s: out of memory", what);
    *v = grown;
    *cap = n;
    return RQD_OK;
}

int store__collect(store *s, sqlite3_stmt *st, size_t size, store__read_fn read, void *ctx,
                   void (*release)(void *rows, int n), const char *what, void **rows, int *n,
                   rqd_err *err)
{
    unsigned char *v = NULL;
    int len = 0, cap = 0, rc = RQD_OK, src;

    while ((src = store__step(s, st)) == SQLITE_ROW) {
        if ((rc = store__grow((void **)&v, &cap, len, size, what, err)) < 0)
            break;
        void *row = v + (size_t)len++ * size;
        memset(row, 0, size);
        if ((rc = read(st, row, ctx, err)) < 0)
            break;
    }
    if (rc == RQD_OK && src != SQLITE_DONE)
        rc = store__fail(s, src, err, what);
    store__done(st);
    if (rc < 0 || len == 0) {
        if (release != NULL && len > 0)
            release(v, len);
        else
            free(v);
        v = NULL;
        len = 0;
    }
    *rows = v;
    *n = len;
    return rc;
}

int store__page(store *s, const char *sql, int64_t agent, int64_t since, int limit, size_t size,
                store__read_fn read, const char *what, void **rows, int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, sql, &st, err)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, since);
    sqlite3_bind_int(st, 3, limit);
    return store__collect(s, st, size, read, NULL, NULL, what, rows, n, err);
}

int store__stmt(store *s, const char *sql, sqlite3_stmt **out, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    *out = NULL;
    for (int i = 0; i < s->n_stmts; i++) {
        if (s->stmts[i].sql == sql) {
            *out = s->stmts[i].st;
            goto out;
        }
    }
    if (NEVER(s->n_stmts == STORE__MAX_STMTS)) {
        rc = rqd_err_set(err, RQD_EINTERNAL, "", "statement cache full (%d)", STORE__MAX_STMTS);
        goto out;
    }
    src = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (src != SQLITE_OK) {
        s->last_injected = 0;
        rc = store__fail(s, src, err, "prepare");
        goto out;
    }
    s->stmts[s->n_stmts].sql = sql;
    s->stmts[s->n_stmts].st = st;
    s->n_stmts++;
    *out = st;
    st = NULL;
out:
    sqlite3_finalize(st);
    return rc;
}

void store__done(sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int store__exec(store *s, const char *sql, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    const char *tail = sql;
    int rc = RQD_OK, src;

    while (tail != NULL && *tail != '\0') {
        src = sqlite3_prepare_v2(s->db, tail, -1, &st, &tail);
        if (src != SQLITE_OK) {
            s->last_injected = 0;
            rc = store__fail(s, src, err, "prepare");
            goto out;
        }
        if (st == NULL) /* only whitespace or comments were left */
            break;
        while ((src = store__step(s, st)) == SQLITE_ROW)
            ;
        if (src != SQLITE_DONE) {
            rc = store__fail(s, src, err, "exec");
            goto out;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/* A cached one-row-or-none statement without parameters (BEGIN, COMMIT, ...). */
static int run(store *s, const char *sql, const char *what, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, sql, &st, err)) < 0)
        goto out;
    src = store__step(s, st);
    if (src != SQLITE_DONE && src != SQLITE_ROW)
        rc = store__fail(s, src, err, what);
out:
    store__done(st);
    return rc;
}

/* For paths that must not fail (rollbacks): not subject to the fault hook, errors such
 * as "no transaction is active" ignored. */
static void run_quietly(store *s, const char *sql)
{
    sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ transactions */

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_READ_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_SAVEPOINT[] = "SAVEPOINT job";
static const char SQL_RELEASE[] = "RELEASE job";
static const char SQL_CALL_SAVEPOINT[] = "SAVEPOINT store_call";
static const char SQL_CALL_RELEASE[] = "RELEASE store_call";

int store_begin(store *s, rqd_err *err) { return run(s, SQL_BEGIN, "begin", err); }
int store_read_begin(store *s, rqd_err *err) { return run(s, SQL_READ_BEGIN, "begin", err); }
int store_commit(store *s, rqd_err *err) { return run(s, SQL_COMMIT, "commit", err); }
void store_rollback(store *s) { run_quietly(s, "ROLLBACK"); }
int store_savepoint(store *s, rqd_err *err) { return run(s, SQL_SAVEPOINT, "savepoint", err); }
int store_release(store *s, rqd_err *err) { return run(s, SQL_RELEASE, "release", err); }
void store_rollback_to(store *s) { run_quietly(s, "ROLLBACK TO job; RELEASE job"); }

/* token: 0 nothing opened, 1 our own BEGIN IMMEDIATE, 2 a savepoint in the caller's. */
int store__atomic_begin(store *s, int *token, rqd_err *err)
{
    int outer = sqlite3_get_autocommit(s->db);
    int rc = run(s, outer ? SQL_BEGIN : SQL_CALL_SAVEPOINT, "begin", err);

    *token = rc == RQD_OK ? (outer ? 1 : 2) : 0;
    return rc;
}

int store__atomic_end(store *s, int token, int rc, rqd_err *err)
{
    if (token == 0)
        return rc;
    if (rc == RQD_OK) {
        rc = run(s, token == 1 ? SQL_COMMIT : SQL_CALL_RELEASE, "commit", err);
        if (rc == RQD_OK)
            return rc;
    }
    /* A failed COMMIT may leave the transaction open (SQLITE_BUSY) or already rolled
     * back (SQLITE_FULL, SQLITE_IOERR); either way nothing of this call survives. */
    run_quietly(s, token == 1 ? "ROLLBACK" : "ROLLBACK TO store_call; RELEASE store_call");
    return rc;
}

/* ------------------------------------------------------------------ open and close */

/* The first row of a one-shot query: column 0 as an integer and, when text is not NULL,
 * as text. *found = 0 when there was no row. */
static int query_one(store *s, const char *sql, sqlite3_int64 *iv, char *text, size_t size,
                     int *found, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    *found = 0;
    src = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (src != SQLITE_OK) {
        s->last_injected = 0;
        rc = store__fail(s, src, err, "prepare");
        goto out;
    }
    src = store__step(s, st);
    if (src == SQLITE_ROW) {
        *found = 1;
        if (iv)
            *iv = sqlite3_column_int64(st, 0);
        if (text)
            store__column_text(st, 0, text, size);
    } else if (src != SQLITE_DONE) {
        rc = store__fail(s, src, err, sql);
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/* Reads what decides whether the file may be used, writing nothing: RQD_OK for a redqd
 * database this build can use (or an empty file a read-write open initialises). */
static int inspect(store *s, const char *path, int check, int *fresh, rqd_err *err)
{
    sqlite3_int64 app_id = 0, version = 0, tables = 0;
    char first[160] = "";
    int rc = RQD_OK, found;

    /* The first read of page 1: a file that is not SQLite fails here (SQLITE_NOTADB). */
    if ((rc = query_one(s, "PRAGMA application_id", &app_id, NULL, 0, &found, err)) < 0 ||
        (rc = query_one(s, "PRAGMA user_version", &version, NULL, 0, &found, err)) < 0 ||
        (rc = query_one(s, "SELECT count(*) FROM sqlite_master", &tables, NULL, 0, &found,
                        err)) < 0) {
        /* sqlite3_errmsg says "file is not a database" for SQLITE_NOTADB. */
        rc = rqd_err_set(err, RQD_EIO, "", "%s: %s", path, sqlite3_errmsg(s->db));
        goto out;
    }
    app_id &= 0xffffffff; /* a signed 32-bit header field */
    *fresh = app_id == 0 && tables == 0 && version == 0;
    if (app_id != 0 && app_id != STORE__APPLICATION_ID) {
        rc = rqd_err_set(err, RQD_EIO, "", "%s: not a redqd database (application_id 0x%08llx)",
                         path, (unsigned long long)app_id);
        goto out;
    }
    if (app_id == 0 && (tables > 0 || version != 0)) {
        rc = rqd_err_set(err, RQD_EIO, "", "%s: not a redqd database (another program's tables)",
                         path);
        goto out;
    }
    if (version > STORE_SCHEMA_VERSION) {
        rc = rqd_err_set(err, RQD_EIO, "",
                         "%s: schema version %lld is newer than this build's %d; upgrade redqd",
                         path, (long long)version, STORE_SCHEMA_VERSION);
        goto out;
    }
    if (version == 0 && tables > 0) {
        rc = rqd_err_set(err, RQD_EIO, "",
                         "%s: redqd application_id but no schema version; the file is damaged",
                         path);
        goto out;
    }
    if (check) {
        rc = query_one(s, "PRAGMA quick_check", NULL, first, sizeof first, &found, err);
        for (char *p = first; *p; p++) /* its report spans lines; the message is one */
            if (*p == '\n')
                *p = ' ';
        if (rc == RQD_OK && (!found || strcmp(first, "ok") != 0))
            rc = rqd_err_set(err, RQD_EIO, "", "%s: damaged, quick_check failed: %s", path,
                             first);
        else if (rc < 0)
            rc = rqd_err_set(err, RQD_EIO, "", "%s: quick_check failed: %s", path,
                             sqlite3_errmsg(s->db));
        if (rc < 0)
            goto out;
    }
    if (s->mode == STORE_RO && version < STORE_SCHEMA_VERSION) {
        rc = rqd_err_set(err, RQD_EIO, "",
                         version == 0 ? "%s: no redqd schema (version %lld of %d); open it "
                                        "read-write first"
                                      : "%s: schema version %lld is older than this build's "
                                        "%d; open it read-write to migrate",
                         path, (long long)version, STORE_SCHEMA_VERSION);
        goto out;
    }
out:
    return rc;
}

/* store_open, migrating a read-write connection to schema version target. */
static int open_at(const char *path, int mode, int sync_full, int check, int target,
                   store **out, rqd_err *err)
{
    store *s = NULL;
    char journal[16] = "";
    int rc = RQD_OK, src, found = 0, fresh = 0;
    int flags = (mode == STORE_RO ? SQLITE_OPEN_READONLY
                                  : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX; /* one thread at a time per connection (store.h) */

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "%s: out of memory", path);
        goto out;
    }
    s->mode = mode;
    src = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (src != SQLITE_OK) {
        rc = rqd_err_set(err, src == SQLITE_NOMEM ? RQD_ENOMEM : RQD_EIO, "", "%s: %s", path,
                         s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(src));
        goto out;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE__BUSY_TIMEOUT_MS);
    if ((rc = inspect(s, path, check, &fresh, err)) < 0)
        goto out;
    /* A new file returns the pages that deletes free (schema.c, version 4). SQLite takes
     * the mode only before the first table and before the switch to WAL. Test files made
     * at an older version get the mode those versions gave: none. */
    if (mode == STORE_RW && fresh && target >= 4 &&
        (rc = store__exec(s, "PRAGMA auto_vacuum = INCREMENTAL", err)) < 0)
        goto out;
    /* foreign_keys is a no-op inside a transaction, so it is set here, before any. */
    rc = store__exec(s, sync_full ? "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL"
                                  : "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL",
                     err);
    if (rc < 0)
        goto out;
    if (mode == STORE_RW) {
        rc = query_one(s, "PRAGMA journal_mode = WAL", NULL, journal, sizeof journal, &found,
                       err);
        if (rc == RQD_OK && strcmp(journal, "wal") != 0)
            rc = rqd_err_set(err, RQD_EIO, "", "%s: cannot use WAL (journal_mode is %s)", path,
                             journal);
        if (rc < 0)
            goto out;
        if ((rc = store__migrate(s, path, target, err)) < 0)
            goto out;
    }
    *out = s;
    s = NULL;
out:
    store_close(s);
    return rc;
}

int store_open(const char *path, int mode, int sync_full, int check, store **out, rqd_err *err)
{
    return open_at(path, mode, sync_full, check, STORE_SCHEMA_VERSION, out, err);
}

int store_test_create_version(const char *path, int version, rqd_err *err)
{
    store *s = NULL;
    int rc;

    if (version < 1 || version > STORE_SCHEMA_VERSION)
        return rqd_err_set(err, RQD_EINVAL, "", "schema version %d is not in [1, %d]", version,
                           STORE_SCHEMA_VERSION);
    rc = open_at(path, STORE_RW, 0, 0, version, &s, err);
    store_close(s);
    return rc;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->n_stmts; i++)
        sqlite3_finalize(s->stmts[i].st);
    sqlite3_close_v2(s->db); /* harmless on NULL */
    free(s);
}

/* ------------------------------------------------------------------ size cap */

int store_set_max_value(store *s, long long bytes, rqd_err *err)
{
    if (bytes < STORE_MIN_VALUE_LIMIT || bytes > STORE_MAX_VALUE_LIMIT)
        return rqd_err_set(err, RQD_EINVAL, "", "value limit %lld is not in [%lld, %lld]", bytes,
                           STORE_MIN_VALUE_LIMIT, STORE_MAX_VALUE_LIMIT);
    /* SQLite clamps the new value to its compile-time ceiling: read back what holds. */
    sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, (int)bytes);
    int got = sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1);
    if (got != (int)bytes)
        return rqd_err_set(err, RQD_EIO, "", "SQLite kept its value limit at %d, not %lld", got,
                           bytes);
    return RQD_OK;
}

int store_set_max_size(store *s, long long bytes, rqd_err *err)
{
    sqlite3_int64 page = 0, pages = 0, got = 0;
    char sql[64];
    int rc = RQD_OK, found = 0;

    if (bytes < 0) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "database size cap %lld is negative", bytes);
        goto out;
    }
    /* SQLite has no "reset" for max_page_count, so the value from before the first cap
     * (the build's SQLITE_MAX_PAGE_COUNT) is kept and set again for "no cap". */
    if (s->default_max_pages == 0) {
        if ((rc = query_one(s, "PRAGMA max_page_count", &pages, NULL, 0, &found, err)) < 0)
            goto out;
        s->default_max_pages = found && pages > 0 ? pages : 0xfffffffe; /* SQLite's limit */
    }
    if (bytes == 0) {
        pages = s->default_max_pages;
    } else {
        if ((rc = query_one(s, "PRAGMA page_size", &page, NULL, 0, &found, err)) < 0)
            goto out;
        if (NEVER(!found || page <= 0)) {
            rc = rqd_err_set(err, RQD_EIO, "", "cannot read the page size");
            goto out;
        }
        pages = bytes / page;
        if (pages < 1) /* 0 would only read the setting */
            pages = 1;
        if (pages > s->default_max_pages)
            pages = s->default_max_pages;
    }
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages);
    if ((rc = query_one(s, sql, &got, NULL, 0, &found, err)) < 0)
        goto out;
    /* SQLite raises a cap below the pages in use to that count (got > pages); the file
     * then cannot grow at all, which is what the cap asks. */
    if (NEVER(!found || got < pages))
        rc = rqd_err_set(err, RQD_EIO, "", "max_page_count is %lld after asking for %lld",
                         (long long)got, (long long)pages);
out:
    return rc;
}

/* ------------------------------------------------------------------ space */

int store_space_get(store *s, store_space *out, rqd_err *err)
{
    sqlite3_int64 v[4] = {0, 0, 0, 0};
    static const char *const sql[4] = {"PRAGMA page_size", "PRAGMA page_count",
                                       "PRAGMA freelist_count", "PRAGMA auto_vacuum"};
    int rc = RQD_OK, found = 0;

    for (int i = 0; i < 4 && rc == RQD_OK; i++)
        rc = query_one(s, sql[i], &v[i], NULL, 0, &found, err);
    if (rc == RQD_OK) {
        out->page_size = v[0];
        out->pages = v[1];
        out->free_pages = v[2];
        out->incremental = v[3] == 2;
    }
    return rc;
}

int store_vacuum_step(store *s, int64_t keep, int64_t max_pages, int64_t *freed, rqd_err *err)
{
    store_space before, after;
    char sql[64];
    int rc;

    *freed = 0;
    if ((rc = store_space_get(s, &before, err)) < 0 || !before.incremental ||
        before.free_pages <= keep)
        return rc;
    int64_t n = before.free_pages - keep < max_pages ? before.free_pages - keep : max_pages;
    snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%lld)", (long long)n);
    if ((rc = store__exec(s, sql, err)) < 0 || (rc = store_space_get(s, &after, err)) < 0)
        return rc;
    *freed = before.pages - after.pages;
    return RQD_OK;
}

/* ------------------------------------------------------------------ checks and backups */

int store_integrity_check(store *s, rqd_err *err)
{
    char first[160] = "";
    int found = 0;
    int rc = query_one(s, "PRAGMA integrity_check", NULL, first, sizeof first, &found, err);

    if (rc == RQD_OK && (!found || strcmp(first, "ok") != 0))
        rc = rqd_err_set(err, RQD_EIO, "", "integrity_check: %s", first);
    return rc;
}

int store_backup(store *s, const char *path, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    src = sqlite3_prepare_v2(s->db, "VACUUM INTO ?", -1, &st, NULL);
    if (src != SQLITE_OK) {
        s->last_injected = 0;
        rc = store__fail(s, src, err, "prepare backup");
        goto out;
    }
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    src = store__step(s, st);
    if (src != SQLITE_DONE)
        rc = store__fail(s, src, err, "backup");
out:
    sqlite3_finalize(st);
    return rc;
}
