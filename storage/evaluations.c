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

int store_eval_range(store *s, int64_t agent, int64_t since, int limit, store_eval_row **rows,
                     int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    store_eval_row *v = NULL;
    int len = 0, cap = 0, rc = RQD_OK, src;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, SQL_RANGE, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, since);
    sqlite3_bind_int(st, 3, limit);
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        if ((rc = store__grow((void **)&v, &cap, len, sizeof *v, "list evaluations", err)) < 0)
            goto out;
        store_eval_row *r = &v[len++];
        memset(r, 0, sizeof *r);
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
    }
    if (src != SQLITE_DONE)
        rc = store__fail(s, src, err, "list evaluations");
out:
    store__done(st);
    *rows = store__list_end(v, &len, rc);
    *n = len;
    return rc;
}
