/* storage/batches.c: batch ids of transition posts and the answer each got, so that a
 * client retrying a post receives the first answer instead of adding the rows twice.
 *
 * The daemon stores a batch id in the transaction that appends its rows. A second put
 * of the same id is RQD_EEXIST, never a replacement: if two posts of one id race, the
 * transaction of the second fails and rolls back its rows, and the first answer stands.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_GET[] = "SELECT answer FROM batches WHERE agent = ?1 AND batch_id = ?2";
static const char SQL_PUT[] = "INSERT INTO batches (agent, batch_id, answer) VALUES (?1, ?2, ?3)";

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
