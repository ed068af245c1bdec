/* storage/heads.c: replay heads (redq/redq.h "replay heads"), the opaque bytes of a
 * learner's n-step assembler without its rows, stored with the env_steps (seq) and the
 * rows assembled (added) when each was taken. The daemon puts one every so often in the
 * transaction of a post; its pruning makes one the base and deletes the heads before it
 * (store_head_set_base), then the transitions up to the base's seq. A restart rebuilds
 * the buffer from the base head and the transitions after it, so the base is marked and
 * the older heads go in one call: there is never a moment when the transitions before
 * the base are gone and the base is not known.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_PUT[] =
    "INSERT INTO replay_heads (agent, seq, added, state) VALUES (?1, ?2, ?3, ?4)";
static const char SQL_LIST[] =
    "SELECT seq, added, base, length(state) FROM replay_heads WHERE agent = ?1 ORDER BY seq";
static const char SQL_BASE[] =
    "SELECT seq, added, base, length(state), state FROM replay_heads"
    " WHERE agent = ?1 AND base = 1 ORDER BY seq DESC LIMIT 1";
static const char SQL_MARK[] = "UPDATE replay_heads SET base = 1 WHERE agent = ?1 AND seq = ?2";
static const char SQL_DROP_OLDER[] = "DELETE FROM replay_heads WHERE agent = ?1 AND seq < ?2";

int store_head_put(store *s, int64_t agent, int64_t seq, int64_t added, const void *blob,
                   size_t len, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_PUT, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, added);
    if ((src = sqlite3_bind_blob64(st, 4, blob, len, SQLITE_STATIC)) != SQLITE_OK) {
        rc = store__fail(s, src, err, "put replay head: bind");
        goto out;
    }
    if ((src = store__step(s, st)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "put replay head");
        if (rc == RQD_ENOTFOUND)
            rqd_err_set(err, rc, "", "agent %lld not found", (long long)agent);
    }
out:
    store__done(st);
    return rc;
}

static int read_info(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    store_head_info *h = row;

    (void)ctx;
    (void)err;
    h->seq = sqlite3_column_int64(st, 0);
    h->added = sqlite3_column_int64(st, 1);
    h->base = sqlite3_column_int(st, 2);
    h->bytes = sqlite3_column_int64(st, 3);
    return RQD_OK;
}

int store_head_list(store *s, int64_t agent, store_head_info **rows, int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, SQL_LIST, &st, err)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, agent);
    return store__collect(s, st, sizeof **rows, read_info, NULL, NULL, "list replay heads",
                          (void **)rows, n, err);
}

int store_head_base(store *s, int64_t agent, store_head_info *info, void **blob, size_t *len,
                    rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if (blob)
        *blob = NULL;
    if ((rc = store__stmt(s, SQL_BASE, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    src = store__step(s, st);
    if (src == SQLITE_DONE) {
        rc = rqd_err_set(err, RQD_ENOTFOUND, "", "agent %lld has no base replay head",
                         (long long)agent);
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = store__fail(s, src, err, "get replay head");
        goto out;
    }
    read_info(st, info, NULL, NULL);
    if (blob == NULL)
        goto out;
    /* The blob first, then its length (the order sqlite3_column_blob asks for). */
    const void *data = sqlite3_column_blob(st, 4);
    size_t n = (size_t)sqlite3_column_bytes(st, 4);
    if ((*blob = malloc(n > 0 ? n : 1)) == NULL || (data == NULL && n > 0)) {
        free(*blob);
        *blob = NULL;
        rc = rqd_err_set(err, RQD_ENOMEM, "", "get replay head: out of memory");
        goto out;
    }
    if (n > 0)
        memcpy(*blob, data, n);
    *len = n;
out:
    store__done(st);
    return rc;
}

int store_head_set_base(store *s, int64_t agent, int64_t seq, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src, token = 0;

    if ((rc = store__atomic_begin(s, &token, err)) < 0 ||
        (rc = store__stmt(s, SQL_MARK, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, seq);
    if ((src = store__step(s, st)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "set the base replay head");
        goto out;
    }
    if (sqlite3_changes(s->db) != 1) {
        rc = rqd_err_set(err, RQD_ENOTFOUND, "", "agent %lld has no replay head at %lld",
                         (long long)agent, (long long)seq);
        goto out;
    }
    store__done(st);
    if ((rc = store__stmt(s, SQL_DROP_OLDER, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, seq);
    if ((src = store__step(s, st)) != SQLITE_DONE)
        rc = store__fail(s, src, err, "delete older replay heads");
out:
    store__done(st);
    return store__atomic_end(s, token, rc, err);
}
