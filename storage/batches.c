/* storage/batches.c: batch ids of transition posts and the answer each got, so that a
 * client retrying a post receives the first answer instead of adding the rows twice.
 *
 * The daemon stores a batch id in the transaction that appends its rows. A second put
 * of the same id is RQD_EEXIST, never a replacement: if two posts of one id race, the
 * transaction of the second fails and rolls back its rows, and the first answer stands.
 *
 * Ids are kept for a window (API.md: the newest 100 000 posts and 24 hours at least), not
 * forever: each carries its post order `ord` (dense per agent: max + 1, through the index
 * batches_by_ord) and its time, and store_batch_prune deletes from the oldest while both
 * are past the window. Order and time grow together, so the walk stops at the first id
 * still inside it, having read at most max_rows index entries.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static const char SQL_GET[] = "SELECT answer FROM batches WHERE agent = ?1 AND batch_id = ?2";
static const char SQL_PUT[] =
    "INSERT INTO batches (agent, batch_id, answer, ord, created) VALUES (?1, ?2, ?3,"
    " (SELECT coalesce(max(ord), 0) + 1 FROM batches WHERE agent = ?1), ?4)";
static const char SQL_MAX_ORD[] = "SELECT coalesce(max(ord), 0) FROM batches WHERE agent = ?1";
static const char SQL_OLDEST[] =
    "SELECT ord, created FROM batches WHERE agent = ?1 ORDER BY ord LIMIT ?2";
static const char SQL_DELETE_UPTO[] = "DELETE FROM batches WHERE agent = ?1 AND ord <= ?2";

int store_batch_get(store *s, int64_t agent, const char *batch_id, char **answer, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    const unsigned char *text = NULL;
    int rc = RQD_OK, src;

    *answer = NULL;
    if ((rc = store__stmt(s, SQL_GET, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_text(st, 2, batch_id, -1, SQLITE_STATIC);
    src = store__step(s, st);
    if (src == SQLITE_DONE)
        goto out;
    if (src != SQLITE_ROW) {
        rc = store__fail(s, src, err, "get batch id");
        goto out;
    }
    text = sqlite3_column_text(st, 0);
    if ((*answer = strdup(text ? (const char *)text : "")) == NULL)
        rc = rqd_err_set(err, RQD_ENOMEM, "", "get batch id: out of memory");
out:
    store__done(st);
    return rc;
}

int store_batch_put(store *s, int64_t agent, const char *batch_id, const char *answer,
                    rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_PUT, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_text(st, 2, batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, answer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    src = store__step(s, st);
    if (src != SQLITE_DONE) {
        rc = store__fail(s, src, err, "put batch id");
        if (rc == RQD_EEXIST)
            rqd_err_set(err, rc, "batch_id", "batch id \"%.80s\" is already stored", batch_id);
        else if (rc == RQD_ENOTFOUND)
            rqd_err_set(err, rc, "", "agent %lld not found", (long long)agent);
    }
out:
    store__done(st);
    return rc;
}

int store_batch_prune(store *s, int64_t agent, int64_t keep, int64_t before, int max_rows,
                      int *deleted, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int64_t newest = 0, upto = -1;
    int rc = RQD_OK, src, n = 0, token = 0;

    assert(max_rows >= 1 && keep >= 0);
    *deleted = 0;
    if ((rc = store__atomic_begin(s, &token, err)) < 0 ||
        (rc = store__stmt(s, SQL_MAX_ORD, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    if ((src = store__step(s, st)) != SQLITE_ROW) {
        rc = store__fail(s, src, err, "prune batch ids");
        goto out;
    }
    newest = sqlite3_column_int64(st, 0);
    store__done(st);
    if ((rc = store__stmt(s, SQL_OLDEST, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int(st, 2, max_rows);
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        int64_t ord = sqlite3_column_int64(st, 0);
        if (ord > newest - keep || sqlite3_column_int64(st, 1) >= before)
            break;
        upto = ord;
        n++;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = store__fail(s, src, err, "prune batch ids");
        goto out;
    }
    store__done(st);
    st = NULL;
    if (n == 0)
        goto out;
    if ((rc = store__stmt(s, SQL_DELETE_UPTO, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, upto);
    if ((src = store__step(s, st)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "prune batch ids");
        goto out;
    }
    *deleted = sqlite3_changes(s->db);
out:
    store__done(st);
    return store__atomic_end(s, token, rc, err);
}
