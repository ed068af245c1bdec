/* storage/episodes.c: episode rows: running totals while an episode is open (with the
 * last observation and action, so a restarted daemon can resume it), the final row when
 * it ends, newest-first listings for /episodes.
 *
 * A put is an upsert on (agent, id): the first put gives the episode its seq (per-agent
 * insertion order, which breaks ties between equal start times), later puts keep it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_PUT[] =
    "INSERT INTO episodes (agent, id, seq, mode, ret, length, started_at, ended_at,"
    " abandoned, last_obs, last_action, source, env_id) VALUES (?1, ?2,"
    " (SELECT coalesce(max(seq), 0) + 1 FROM episodes WHERE agent = ?1),"
    " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    " ON CONFLICT (agent, id) DO UPDATE SET mode = excluded.mode, ret = excluded.ret,"
    " length = excluded.length, started_at = excluded.started_at,"
    " ended_at = excluded.ended_at, abandoned = excluded.abandoned,"
    " last_obs = excluded.last_obs, last_action = excluded.last_action";
#define SQL_COLUMNS                                                                        \
    "SELECT id, mode, ret, length, started_at, ended_at, abandoned, last_obs, last_action," \
    " source, env_id" \
    " FROM episodes WHERE agent = ?1"
/* A negative LIMIT is no limit in SQLite. */
static const char SQL_LIST[] = SQL_COLUMNS " ORDER BY started_at DESC, seq DESC LIMIT ?2";
static const char SQL_OPEN[] = SQL_COLUMNS " AND ended_at IS NULL ORDER BY seq";
static const char SQL_ONE[] = SQL_COLUMNS " AND id = ?2";
/* Explore episodes that ended (not abandoned): how many, and the newest one's return. */
#define ENDED_EXPLORE " FROM episodes WHERE agent = ?1 AND ended_at IS NOT NULL AND mode = 0" \
                      " AND abandoned = 0"
/* Those retention deleted (storage/history.c) count too, and the newest of them stands
 * in for the last return when it ended after every episode left. */
static const char SQL_ENDED[] =
    "SELECT count(*) + coalesce((SELECT episodes_dropped FROM history WHERE agent = ?1), 0),"
    " (SELECT ret FROM (SELECT ret, ended_at, 1 AS k, seq" ENDED_EXPLORE
    "  UNION ALL SELECT last_return, last_ended_at, 0, 0 FROM history"
    "  WHERE agent = ?1 AND last_ended_at IS NOT NULL)"
    "  ORDER BY ended_at DESC, k DESC, seq DESC LIMIT 1)"
    ENDED_EXPLORE;

int store_episode_put(store *s, int64_t agent, const store_episode_row *e, int obs_dim,
                      int act_dim, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int open = e->ended_at[0] == '\0';
    int rc = RQD_OK, src;

    if (strnlen(e->id, sizeof e->id) == sizeof e->id) {
        rc = rqd_err_set(err, RQD_EINVAL, "episode_id", "episode id longer than %zu bytes",
                         sizeof e->id - 1);
        goto out;
    }
    if ((rc = store__stmt(s, SQL_PUT, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, e->mode);
    store__bind_double(st, 4, e->ret);
    sqlite3_bind_int64(st, 5, e->length);
    sqlite3_bind_text(st, 6, e->started_at, -1, SQLITE_STATIC);
    if (open)
        sqlite3_bind_null(st, 7);
    else
        sqlite3_bind_text(st, 7, e->ended_at, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 8, e->abandoned != 0);
    if ((src = store__bind_floats(st, 9, open ? e->last_obs : NULL, obs_dim)) != SQLITE_OK ||
        (src = store__bind_floats(st, 10, open ? e->last_action : NULL, act_dim)) != SQLITE_OK) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "put episode: %s", sqlite3_errstr(src));
        goto out;
    }
    sqlite3_bind_int(st, 11, e->source);
    if (e->source == STORE_SRC_TRANSITIONS)
        sqlite3_bind_text(st, 12, e->env_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 12);
    if ((src = store__step(s, st)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "put episode");
        if (rc == RQD_ENOTFOUND)
            rqd_err_set(err, rc, "", "agent %lld not found", (long long)agent);
    }
out:
    store__done(st);
    return rc;
}

void store_episode_rows_free(store_episode_row *rows, int n)
{
    if (rows == NULL)
        return;
    for (int i = 0; i < n; i++) {
        free(rows[i].last_obs);
        free(rows[i].last_action);
    }
    free(rows);
}

struct dims {
    int obs_dim, act_dim;
};

static int read_episode(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    store_episode_row *r = row;
    const struct dims *d = ctx;
    int rc;

    store__column_text(st, 0, r->id, sizeof r->id);
    r->mode = sqlite3_column_int(st, 1);
    r->ret = store__column_double(st, 2);
    r->length = sqlite3_column_int64(st, 3);
    store__column_text(st, 4, r->started_at, sizeof r->started_at);
    store__column_text(st, 5, r->ended_at, sizeof r->ended_at);
    r->abandoned = sqlite3_column_int(st, 6);
    r->source = sqlite3_column_int(st, 9);
    store__column_text(st, 10, r->env_id, sizeof r->env_id);
    if ((rc = store__column_floats(st, 7, d->obs_dim, &r->last_obs, "episode last_obs",
                                   err)) < 0)
        return rc;
    return store__column_floats(st, 8, d->act_dim, &r->last_action, "episode last_action",
                                err);
}

static void release_episodes(void *rows, int n)
{
    store_episode_rows_free(rows, n);
}

/* The rows of SQL_LIST (with limit), SQL_OPEN or SQL_ONE (with id). */
static int read_rows(store *s, const char *sql, int64_t agent, int limit, const char *id,
                     int obs_dim, int act_dim, store_episode_row **rows, int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    struct dims d = {obs_dim, act_dim};
    int rc;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, sql, &st, err)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, agent);
    if (sql == SQL_LIST)
        sqlite3_bind_int(st, 2, limit);
    else if (sql == SQL_ONE)
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    return store__collect(s, st, sizeof **rows, read_episode, &d, release_episodes,
                          "list episodes", (void **)rows, n, err);
}

int store_episode_list(store *s, int64_t agent, int limit, int obs_dim, int act_dim,
                       store_episode_row **rows, int *n, rqd_err *err)
{
    return read_rows(s, SQL_LIST, agent, limit, NULL, obs_dim, act_dim, rows, n, err);
}

int store_episode_open(store *s, int64_t agent, int obs_dim, int act_dim,
                       store_episode_row **rows, int *n, rqd_err *err)
{
    return read_rows(s, SQL_OPEN, agent, -1, NULL, obs_dim, act_dim, rows, n, err);
}

int store_episode_get(store *s, int64_t agent, const char *id, int obs_dim, int act_dim,
                      store_episode_row **row, rqd_err *err)
{
    int n = 0;
    int rc = read_rows(s, SQL_ONE, agent, 1, id, obs_dim, act_dim, row, &n, err);
    if (rc == RQD_OK && n == 0)
        rc = rqd_err_set(err, RQD_ENOTFOUND, "episode_id", "no episode %s", id);
    return rc;
}

int store_episode_ended(store *s, int64_t agent, int64_t *count, double *last_return,
                        rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    *count = 0;
    *last_return = NAN;
    if ((rc = store__stmt(s, SQL_ENDED, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    if ((src = store__step(s, st)) != SQLITE_ROW) {
        rc = store__fail(s, src, err, "count episodes");
        goto out;
    }
    *count = sqlite3_column_int64(st, 0);
    *last_return = store__column_double(st, 1);
out:
    store__done(st);
    return rc;
}
