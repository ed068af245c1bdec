/* storage/move.c: what moving an agent to another node needs of SQLite (docs/api.md
 * "Moving an agent"): the mark of an agent that is moving, and the reads of its rows that
 * no other call makes whole (every batch id with its answer, every evaluation with the
 * returns as posted). The rest of a move file is read and written through the calls of
 * the other files (stats, episodes, streams, checkpoints).
 *
 * The mark is a meta row 'moving:<agent id>' = the Unix second it was set: a moving
 * agent refuses writes until it is deleted or the move is cancelled, across restarts too
 * (a restart that forgot it would accept posts the move has already left behind). A row
 * of meta, rather than a column of agents, needs no schema version; the delete of the
 * agent removes it in the same transaction (daemon/registry.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_MOVING_SET[] =
    "INSERT INTO meta (key, value) VALUES ('moving:' || ?1, ?2)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value";
static const char SQL_MOVING_CLEAR[] = "DELETE FROM meta WHERE key = 'moving:' || ?1";
static const char SQL_MOVING_LIST[] =
    "SELECT CAST(substr(key, 8) AS INTEGER), value FROM meta WHERE key LIKE 'moving:%'";
static const char SQL_BATCHES[] =
    "SELECT batch_id, answer FROM batches WHERE agent = ?1 ORDER BY ord";
static const char SQL_EVALS[] =
    "SELECT row, env_steps, updates, policy_version, time, n, mean, std, min, max, mean_length,"
    " returns, lengths FROM evaluations WHERE agent = ?1 ORDER BY row";

int store_moving_set(store *s, int64_t agent, int64_t since, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, since > 0 ? SQL_MOVING_SET : SQL_MOVING_CLEAR, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    if (since > 0)
        sqlite3_bind_int64(st, 2, since);
    if ((src = store__step(s, st)) != SQLITE_DONE)
        rc = store__fail(s, src, err, since > 0 ? "mark agent moving" : "clear moving mark");
out:
    store__done(st);
    return rc;
}

static int read_moving(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    store_moving_row *r = row;

    (void)ctx;
    (void)err;
    r->agent = sqlite3_column_int64(st, 0);
    r->since = sqlite3_column_int64(st, 1);
    return RQD_OK;
}

int store_moving_list(store *s, store_moving_row **rows, int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, SQL_MOVING_LIST, &st, err)) < 0)
        return rc;
    return store__collect(s, st, sizeof **rows, read_moving, NULL, NULL, "list moving agents",
                          (void **)rows, n, err);
}

int store_batch_scan(store *s, int64_t agent,
                     int (*cb)(void *ctx, const char *batch_id, const char *answer), void *ctx,
                     rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_BATCHES, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(st, 0), *answer = sqlite3_column_text(st, 1);
        if (id == NULL || answer == NULL) {
            rc = rqd_err_set(err, RQD_EIO, "", "scan batch ids: a stored batch id is damaged");
            goto out;
        }
        if ((rc = cb(ctx, (const char *)id, (const char *)answer)) != 0)
            goto out;
    }
    if (src != SQLITE_DONE)
        rc = store__fail(s, src, err, "scan batch ids");
out:
    store__done(st);
    return rc;
}

int store_eval_scan(store *s, int64_t agent,
                    int (*cb)(void *ctx, const store_eval_row *e, const double *returns,
                              const int64_t *lengths),
                    void *ctx, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    double *returns = NULL;
    int64_t *lengths = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_EVALS, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        store_eval_row e;
        memset(&e, 0, sizeof e);
        e.row = sqlite3_column_int64(st, 0);
        e.env_steps = sqlite3_column_int64(st, 1);
        e.updates = sqlite3_column_int64(st, 2);
        e.policy_version = sqlite3_column_int64(st, 3);
        store__column_text(st, 4, e.time, sizeof e.time);
        e.n = sqlite3_column_int(st, 5);
        e.mean = store__column_double(st, 6);
        e.std = store__column_double(st, 7);
        e.min = store__column_double(st, 8);
        e.max = store__column_double(st, 9);
        e.mean_length = store__column_double(st, 10);
        /* The blobs are copied out (aligned for the callback), their length checked. */
        size_t nr = (size_t)(e.n > 0 ? e.n : 0);
        const void *rb = sqlite3_column_blob(st, 11);
        size_t rlen = (size_t)sqlite3_column_bytes(st, 11);
        const void *lb = sqlite3_column_blob(st, 12);
        size_t llen = (size_t)sqlite3_column_bytes(st, 12);
        if (e.n < 1 || rb == NULL || rlen != nr * sizeof *returns ||
            (lb != NULL && llen != nr * sizeof *lengths)) {
            rc = rqd_err_set(err, RQD_EIO, "", "scan evaluations: evaluation %lld is damaged",
                             (long long)e.row);
            goto out;
        }
        free(returns);
        free(lengths);
        lengths = NULL;
        if ((returns = malloc(rlen)) == NULL || (lb && (lengths = malloc(llen)) == NULL)) {
            rc = rqd_err_set(err, RQD_ENOMEM, "", "scan evaluations: out of memory");
            goto out;
        }
        memcpy(returns, rb, rlen);
        if (lb)
            memcpy(lengths, lb, llen);
        if ((rc = cb(ctx, &e, returns, lengths)) != 0)
            goto out;
    }
    if (src != SQLITE_DONE)
        rc = store__fail(s, src, err, "scan evaluations");
out:
    store__done(st);
    free(returns);
    free(lengths);
    return rc;
}
