/* storage/streams.c: the episode each transitions stream is adding up (API.md "Returns
 * from transitions"). One row per stream that has an episode under way, written in the
 * transaction of the post that moved it, so a restart (or a crash) goes on adding up
 * exactly where the last acknowledged post left it. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_PUT[] =
    "INSERT INTO streams (agent, env_id, ret, length, started_at) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (agent, env_id) DO UPDATE SET ret = excluded.ret, length = excluded.length,"
    " started_at = excluded.started_at";
static const char SQL_DELETE[] = "DELETE FROM streams WHERE agent = ?1 AND env_id = ?2";
static const char SQL_LIST[] =
    "SELECT env_id, ret, length, started_at FROM streams WHERE agent = ?1 ORDER BY env_id";

int store_stream_put(store *s, int64_t agent, const store_stream_row *row, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_PUT, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_text(st, 2, row->env_id, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, row->ret);
    sqlite3_bind_int64(st, 4, row->length);
    sqlite3_bind_text(st, 5, row->started_at, -1, SQLITE_STATIC);
    if ((src = store__step(s, st)) != SQLITE_DONE)
        rc = store__fail(s, src, err, "put stream");
out:
    store__done(st);
    return rc;
}

int store_stream_delete(store *s, int64_t agent, const char *env_id, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_DELETE, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_text(st, 2, env_id, -1, SQLITE_STATIC);
    if ((src = store__step(s, st)) != SQLITE_DONE)
        rc = store__fail(s, src, err, "delete stream");
out:
    store__done(st);
    return rc;
}

static int read_stream(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    store_stream_row *r = row;

    (void)ctx;
    (void)err;
    store__column_text(st, 0, r->env_id, sizeof r->env_id);
    r->ret = sqlite3_column_double(st, 1);
    r->length = sqlite3_column_int64(st, 2);
    store__column_text(st, 3, r->started_at, sizeof r->started_at);
    return RQD_OK;
}

int store_stream_list(store *s, int64_t agent, store_stream_row **rows, int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, SQL_LIST, &st, err)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, agent);
    return store__collect(s, st, sizeof **rows, read_stream, NULL, NULL, "list streams",
                          (void **)rows, n, err);
}
