/* storage/evaluations.c: evaluations clients record (API.md "Evaluations"): the summary
 * the API answers with, and the returns and lengths as posted, for whoever wants the
 * whole distribution later. Paged like stats: row is an AUTOINCREMENT rowid, increasing
 * across agents and never reused. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_INSERT[] =
    "INSERT INTO evaluations (agent, env_steps, updates, policy_version, time, n, mean, std,"
    " min, max, mean_length, returns, lengths) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
    " ?10, ?11, ?12, ?13)";
static const char SQL_RANGE[] =
    "SELECT row, env_steps, updates, policy_version, time, n, mean, std, min, max, mean_length"
    " FROM evaluations WHERE agent = ?1 AND row > ?2 ORDER BY row LIMIT ?3";

int store_eval_append(store *s, int64_t agent, const store_eval_row *e, const double *returns,
                      const int64_t *lengths, int64_t *row_out, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_INSERT, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, e->env_steps);
    sqlite3_bind_int64(st, 3, e->updates);
    sqlite3_bind_int64(st, 4, e->policy_version);
    sqlite3_bind_text(st, 5, e->time, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, e->n);
    store__bind_double(st, 7, e->mean);
    store__bind_double(st, 8, e->std);
    store__bind_double(st, 9, e->min);
    store__bind_double(st, 10, e->max);
    store__bind_double(st, 11, e->mean_length);
    /* Host order: the blobs are an archive of what was posted, read back by this build. */
    src = sqlite3_bind_blob64(st, 12, returns, sizeof *returns * (size_t)e->n, SQLITE_STATIC);
    if (src == SQLITE_OK)
        src = lengths ? sqlite3_bind_blob64(st, 13, lengths, sizeof *lengths * (size_t)e->n,
                                            SQLITE_STATIC)
                      : sqlite3_bind_null(st, 13);
    if (src != SQLITE_OK) {
        rc = store__fail(s, src, err, "append evaluation: bind");
        goto out;
    }
    if ((src = store__step(s, st)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "append evaluation");
        if (rc == RQD_ENOTFOUND)
            rqd_err_set(err, rc, "", "agent %lld not found", (long long)agent);
        goto out;
    }
    if (row_out)
        *row_out = sqlite3_last_insert_rowid(s->db);
out:
    store__done(st);
    return rc;
}

static int read_eval(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    store_eval_row *r = row;

    (void)ctx;
    (void)err;
    r->row = sqlite3_column_int64(st, 0);
    r->env_steps = sqlite3_column_int64(st, 1);
    r->updates = sqlite3_column_int64(st, 2);
    r->policy_version = sqlite3_column_int64(st, 3);
    store__column_text(st, 4, r->time, sizeof r->time);
    r->n = sqlite3_column_int(st, 5);
    r->mean = store__column_double(st, 6);
    r->std = store__column_double(st, 7);
    r->min = store__column_double(st, 8);
    r->max = store__column_double(st, 9);
    r->mean_length = store__column_double(st, 10);
    return RQD_OK;
}

int store_eval_range(store *s, int64_t agent, int64_t since, int limit, store_eval_row **rows,
                     int *n, rqd_err *err)
{
    return store__page(s, SQL_RANGE, agent, since, limit, sizeof **rows, read_eval,
                       "list evaluations", (void **)rows, n, err);
}
