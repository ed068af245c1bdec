/* storage/stats.c: per-update training statistics: appending rows and reading them back
 * in ranges for /stats (the caller renders JSON or CSV).
 *
 * stats.row is an AUTOINCREMENT rowid, increasing across agents and never reused, so a
 * client polls with since = the last row it saw. The daemon numbers rows when they are
 * made (a train call answers its row's number before the row is written), from
 * store_stats_next_row; a row given as 0 is numbered by SQLite. A value not known (NaN)
 * is NULL.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_INSERT[] =
    "INSERT INTO stats (agent, update_no, env_steps, time, actor_loss, critic_loss, alpha,"
    " alpha_loss, q_mean, q_std, train_time, row) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
    " ?10, ?11, ?12)";
/* Past every row ever made, deleted agents' included (AUTOINCREMENT's record). */
static const char SQL_NEXT_ROW[] =
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'stats'), 0),"
    " coalesce((SELECT max(row) FROM stats), 0)) + 1";
/* A negative LIMIT is no limit in SQLite. */
static const char SQL_RANGE[] =
    "SELECT row, update_no, env_steps, time, actor_loss, critic_loss, alpha, alpha_loss,"
    " q_mean, q_std, train_time FROM stats WHERE agent = ?1 AND row > ?2 ORDER BY row"
    " LIMIT ?3";

int store_stats_append(store *s, int64_t agent, const store_stats_row *rows, int n,
                       rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src, token = 0;

    assert(n >= 0);
    if (n == 0)
        goto out;
    if ((rc = store__stmt(s, SQL_INSERT, &st, err)) < 0)
        goto out;
    if ((rc = store__atomic_begin(s, &token, err)) < 0)
        goto out;
    for (int i = 0; i < n; i++) {
        const store_stats_row *r = &rows[i];

        sqlite3_bind_int64(st, 1, agent);
        sqlite3_bind_int64(st, 2, r->update);
        sqlite3_bind_int64(st, 3, r->env_steps);
        store__bind_double(st, 4, r->time);
        store__bind_double(st, 5, r->actor_loss);
        store__bind_double(st, 6, r->critic_loss);
        store__bind_double(st, 7, r->alpha);
        store__bind_double(st, 8, r->alpha_loss);
        store__bind_double(st, 9, r->q_mean);
        store__bind_double(st, 10, r->q_std);
        store__bind_double(st, 11, r->train_time);
        if (r->row > 0)
            sqlite3_bind_int64(st, 12, r->row);
        else
            sqlite3_bind_null(st, 12);
        if ((src = store__step(s, st)) != SQLITE_DONE) {
            rc = store__fail(s, src, err, "append stats");
            if (rc == RQD_ENOTFOUND)
                rqd_err_set(err, rc, "", "agent %lld not found", (long long)agent);
            goto out;
        }
        sqlite3_reset(st);
    }
out:
    store__done(st);
    return store__atomic_end(s, token, rc, err);
}

static int read_stats(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    store_stats_row *r = row;

    (void)ctx;
    (void)err;
    r->row = sqlite3_column_int64(st, 0);
    r->update = sqlite3_column_int64(st, 1);
    r->env_steps = sqlite3_column_int64(st, 2);
    r->time = store__column_double(st, 3);
    r->actor_loss = store__column_double(st, 4);
    r->critic_loss = store__column_double(st, 5);
    r->alpha = store__column_double(st, 6);
    r->alpha_loss = store__column_double(st, 7);
    r->q_mean = store__column_double(st, 8);
    r->q_std = store__column_double(st, 9);
    r->train_time = store__column_double(st, 10);
    return RQD_OK;
}

int store_stats_range(store *s, int64_t agent, int64_t since, int limit, store_stats_row **rows,
                      int *n, rqd_err *err)
{
    return store__page(s, SQL_RANGE, agent, since, limit, sizeof **rows, read_stats, "stats range",
                       (void **)rows, n, err);
}

int store_stats_next_row(store *s, int64_t *out, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    *out = 1;
    if ((rc = store__stmt(s, SQL_NEXT_ROW, &st, err)) < 0)
        goto out;
    if ((src = store__step(s, st)) != SQLITE_ROW) {
        rc = store__fail(s, src, err, "next stats row");
        goto out;
    }
    *out = sqlite3_column_int64(st, 0);
out:
    store__done(st);
    return rc;
}
