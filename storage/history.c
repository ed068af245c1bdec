/* storage/history.c: retention of an agent's history (the history_* settings): stats and
 * evaluation rows past the window are thinned, ended episodes past it deleted.
 *
 * Each table is walked in its own order (stats and evaluations by row, episodes by seq)
 * from a mark kept in the agent's `history` row (schema.c, version 4): the rows up to the
 * mark have been dealt with and are never visited again, so a kept row stays kept
 * whatever the settings say later, and one call reads at most max_rows rows of a table.
 *
 * Stats and evaluations: the count of rows past the mark is kept by triggers, so "outside
 * the newest keep_rows" is `counted - keep_rows` rows from the mark, without a count(*).
 * The walk takes whole groups of `thin` rows and keeps the first of each: rows past the
 * window are kept at every thin-th position of the agent's own sequence (stats row
 * numbers are shared by all agents, so a modulo of them would not be). It stops at the
 * first row inside the age limit. Rows of one agent are numbered in time order. (A stats
 * row whose write was retried after a full disk may land below the mark: it is counted
 * but never walked, so the count is one high and one more old row is thinned. Harmless.)
 *
 * Episodes: seq numbers an agent's episodes densely from 1 (the newest is never deleted,
 * so max + 1 never reuses one), so "outside the newest keep_rows" is seq <= max -
 * keep_rows. The walk stops at the first ended episode inside the age limit; an open one
 * is passed and stays. One that ends after the mark passed it is found by a second walk
 * below the mark, which reads only such episodes and the open ones (at most
 * --max-open-episodes). A deleted explore episode that ended (not abandoned) is counted
 * in history.episodes_dropped with the newest one's return, so that state.episodes and
 * state.last_return (store_episode_ended) stay what they were.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static const char SQL_ENSURE[] = "INSERT OR IGNORE INTO history (agent) VALUES (?1)";
static const char SQL_STATE[] =
    "SELECT stats_rows, stats_mark, evals_rows, evals_mark, episodes_mark,"
    " coalesce(last_ended_at, '') FROM history WHERE agent = ?1";

/* A table thinned along its rows. */
typedef struct {
    const char *what;
    const char *walk;    /* ?1 agent, ?2 mark, ?3 limit: row, time */
    const char *drop;    /* ?1 agent, rows in (?2, ?3) */
    const char *advance; /* ?1 agent, ?2 rows walked, ?3 new mark */
    int text_time;       /* time is RFC 3339 text (else Unix seconds) */
} curve;

static const char SQL_STATS_WALK[] =
    "SELECT row, time FROM stats WHERE agent = ?1 AND row > ?2 ORDER BY row LIMIT ?3";
static const char SQL_STATS_DROP[] =
    "DELETE FROM stats WHERE agent = ?1 AND row > ?2 AND row < ?3";
static const char SQL_STATS_ADVANCE[] =
    "UPDATE history SET stats_rows = stats_rows - ?2, stats_mark = ?3 WHERE agent = ?1";
static const char SQL_EVALS_WALK[] =
    "SELECT row, time FROM evaluations WHERE agent = ?1 AND row > ?2 ORDER BY row LIMIT ?3";
static const char SQL_EVALS_DROP[] =
    "DELETE FROM evaluations WHERE agent = ?1 AND row > ?2 AND row < ?3";
static const char SQL_EVALS_ADVANCE[] =
    "UPDATE history SET evals_rows = evals_rows - ?2, evals_mark = ?3 WHERE agent = ?1";

static const curve STATS = {"stats", SQL_STATS_WALK, SQL_STATS_DROP, SQL_STATS_ADVANCE, 0};
static const curve EVALS = {"evaluations", SQL_EVALS_WALK, SQL_EVALS_DROP, SQL_EVALS_ADVANCE, 1};

static const char SQL_EP_MAX[] = "SELECT coalesce(max(seq), 0) FROM episodes WHERE agent = ?1";
static const char SQL_EP_WALK[] =
    "SELECT seq, mode, abandoned, ret, ended_at FROM episodes"
    " WHERE agent = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4";
static const char SQL_EP_WALK_ENDED[] =
    "SELECT seq, mode, abandoned, ret, ended_at FROM episodes"
    " WHERE agent = ?1 AND seq > ?2 AND seq <= ?3 AND ended_at IS NOT NULL ORDER BY seq"
    " LIMIT ?4";
static const char SQL_EP_DROP[] =
    "DELETE FROM episodes WHERE agent = ?1 AND seq > ?2 AND seq <= ?3"
    " AND ended_at IS NOT NULL";
static const char SQL_EP_ADVANCE[] =
    "UPDATE history SET episodes_mark = max(episodes_mark, ?2),"
    " episodes_dropped = episodes_dropped + ?3 WHERE agent = ?1";
static const char SQL_EP_LAST[] =
    "UPDATE history SET last_return = ?2, last_ended_at = ?3 WHERE agent = ?1";

/* Unix seconds t as every stored time is written (rqd_rfc3339). */
static void rfc3339(double t, char out[32])
{
    double sec = floor(t);
    rqd_rfc3339((time_t)sec, (long)((t - sec) * 1e9), out);
}

/* Whether a row of time column col is inside the age limit (cutoff set). */
static int recent(sqlite3_stmt *st, int col, int text, double cutoff, const char *cutoff_text)
{
    if (text) {
        const unsigned char *t = sqlite3_column_text(st, col);
        return t != NULL && strcmp((const char *)t, cutoff_text) >= 0;
    }
    return sqlite3_column_type(st, col) != SQLITE_NULL && sqlite3_column_double(st, col) >= cutoff;
}

/* Runs a cached statement of three integer parameters (and the agent as ?1) to its end;
 * *changes gets the rows it changed. */
static int run3(store *s, const char *sql, int64_t agent, int64_t a, int64_t b, int *changes,
                const char *what, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = store__stmt(s, sql, &st, err), src;

    if (rc == RQD_OK) {
        sqlite3_bind_int64(st, 1, agent);
        sqlite3_bind_int64(st, 2, a);
        sqlite3_bind_int64(st, 3, b);
        if ((src = store__step(s, st)) != SQLITE_DONE)
            rc = store__fail(s, src, err, what);
        else if (changes)
            *changes += sqlite3_changes(s->db);
    }
    store__done(st);
    return rc;
}

/* Thins one curve table: walks up to `todo` rows after mark (stopping at the first inside
 * the age limit), takes whole groups of thin, keeps the first row of each group and
 * deletes the others (all of them when thin is 0), then moves the mark past them.
 * *deleted gets the rows deleted. */
static int thin_curve(store *s, const curve *c, int64_t agent, int64_t mark, int64_t todo,
                      const store_retention *r, const char *cutoff_text, int *deleted,
                      int *full, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int64_t *rows = NULL, n = 0;
    const int64_t group = r->thin > 1 ? r->thin : 1;
    int rc = RQD_OK, src;

    *deleted = 0;
    *full = 0;
    todo -= todo % group;
    if (todo <= 0)
        goto out;
    if ((rows = malloc(sizeof *rows * (size_t)todo)) == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "%s retention: out of memory", c->what);
        goto out;
    }
    /* Read first, delete after: the walk's cursor never sees its own deletes. */
    if ((rc = store__stmt(s, c->walk, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, mark);
    sqlite3_bind_int64(st, 3, todo);
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        if (r->keep_seconds > 0 &&
            recent(st, 1, c->text_time, r->now - r->keep_seconds, cutoff_text))
            break;
        rows[n++] = sqlite3_column_int64(st, 0);
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = store__fail(s, src, err, c->what);
        goto out;
    }
    store__done(st);
    st = NULL;
    *full = n == todo;
    n -= n % group; /* a group cut by the age limit waits */
    if (n == 0)
        goto out;
    /* Delete between the rows kept: positions 0, thin, 2 thin, ... (none when thin is 0,
     * all when it is 1). */
    int64_t lo = mark;
    for (int64_t i = 0; r->thin != 1 && i <= n; i += group) {
        int keep = i < n && r->thin >= 1;
        int64_t hi = i < n ? rows[i] : rows[n - 1] + 1;
        if (i < n && !keep)
            continue;
        if (hi > lo + 1 && (rc = run3(s, c->drop, agent, lo, hi, deleted, c->what, err)) < 0)
            goto out;
        lo = hi;
    }
    rc = run3(s, c->advance, agent, n, rows[n - 1], NULL, c->what, err);
out:
    store__done(st);
    free(rows);
    return rc;
}

/* The episodes state the walks carry between them. */
typedef struct {
    int64_t dropped;          /* ended explore episodes deleted */
    double last_return;       /* the newest of them by ended_at, when last_ended_at[0] */
    char last_ended_at[32];
} ep_tally;

/* Walks episodes with seq in (lo, hi] (only ended ones when ended_only), at most max_rows:
 * an open one is passed, an ended one inside the age limit stops the walk (or is passed,
 * below the mark, where order means nothing), the others are deleted and tallied.
 * *walked_to gets the seq the walk reached (lo if none), *full whether it read max_rows. */
static int walk_episodes(store *s, int64_t agent, int64_t lo, int64_t hi, int ended_only,
                         int max_rows, const store_retention *r, const char *cutoff_text,
                         ep_tally *t, int64_t *walked_to, int *full, int *deleted,
                         rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int64_t *gone = NULL, reach = lo;
    int n = 0, read = 0, stopped = 0, rc = RQD_OK, src;

    *walked_to = lo;
    *full = 0;
    if (hi <= lo)
        return RQD_OK;
    if ((gone = malloc(sizeof *gone * (size_t)max_rows)) == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "episode retention: out of memory");
    if ((rc = store__stmt(s, ended_only ? SQL_EP_WALK_ENDED : SQL_EP_WALK, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, lo);
    sqlite3_bind_int64(st, 3, hi);
    sqlite3_bind_int(st, 4, max_rows);
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const unsigned char *ended = sqlite3_column_text(st, 4);
        read++;
        if (ended != NULL && r->keep_seconds > 0 &&
            strcmp((const char *)ended, cutoff_text) >= 0) {
            if (!ended_only) {
                stopped = 1;
                break;
            }
            continue;
        }
        reach = seq;
        if (ended == NULL)
            continue;
        gone[n++] = seq;
        /* Explore (0), not abandoned: what state.episodes counts. */
        if (sqlite3_column_int(st, 1) == 0 && sqlite3_column_int(st, 2) == 0) {
            t->dropped++;
            if (strcmp((const char *)ended, t->last_ended_at) > 0) {
                snprintf(t->last_ended_at, sizeof t->last_ended_at, "%s", (const char *)ended);
                t->last_return = sqlite3_column_type(st, 3) == SQLITE_NULL
                                     ? NAN : sqlite3_column_double(st, 3);
            }
        }
    }
    if (src != SQLITE_DONE && src != SQLITE_ROW) {
        rc = store__fail(s, src, err, "episode retention");
        goto out;
    }
    store__done(st);
    st = NULL;
    /* Below the mark the rows deleted are scattered among open ones: one by one. */
    for (int i = 0; i < n; i++) {
        int64_t a = ended_only ? gone[i] - 1 : lo, b = ended_only ? gone[i] : reach;
        if ((rc = run3(s, SQL_EP_DROP, agent, a, b, deleted, "episode retention", err)) < 0)
            goto out;
        if (!ended_only)
            break; /* one range holds them all */
    }
    *walked_to = reach;
    *full = !stopped && read == max_rows;
out:
    store__done(st);
    free(gone);
    return rc;
}

int store_history_prune(store *s, int64_t agent, const store_retention *r, int max_rows,
                        store_prune_counts *out, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int64_t count[2], mark[2], ep_mark, ep_max = 0;
    char cutoff_text[32] = "", last_ended[32] = "";
    ep_tally t = {0, NAN, ""};
    int rc = RQD_OK, src, token = 0, full = 0;

    assert(max_rows >= 1 && r->thin >= 0);
    memset(out, 0, sizeof *out);
    if (r->keep_rows <= 0 && r->keep_seconds <= 0)
        return RQD_OK; /* keep everything */
    if (r->keep_seconds > 0)
        rfc3339(r->now - r->keep_seconds, cutoff_text);
    if ((rc = store__atomic_begin(s, &token, err)) < 0 ||
        (rc = run3(s, SQL_ENSURE, agent, 0, 0, NULL, "history", err)) < 0 ||
        (rc = store__stmt(s, SQL_STATE, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    if ((src = store__step(s, st)) != SQLITE_ROW) {
        rc = store__fail(s, src, err, "history");
        goto out;
    }
    count[0] = sqlite3_column_int64(st, 0);
    mark[0] = sqlite3_column_int64(st, 1);
    count[1] = sqlite3_column_int64(st, 2);
    mark[1] = sqlite3_column_int64(st, 3);
    ep_mark = sqlite3_column_int64(st, 4);
    store__column_text(st, 5, last_ended, sizeof last_ended);
    store__done(st);
    st = NULL;

    const curve *curves[2] = {&STATS, &EVALS};
    int *deleted[2] = {&out->stats, &out->evaluations};
    for (int i = 0; i < 2; i++) {
        int64_t past = r->keep_rows > 0 ? count[i] - r->keep_rows : count[i];
        int64_t todo = past < max_rows ? past : max_rows;
        if ((rc = thin_curve(s, curves[i], agent, mark[i], todo, r, cutoff_text, deleted[i],
                             &full, err)) < 0)
            goto out;
        out->more |= full && past > todo;
    }

    /* Episodes: the newest always stays (it keeps seq dense, see the top). */
    if ((rc = store__stmt(s, SQL_EP_MAX, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    if ((src = store__step(s, st)) != SQLITE_ROW) {
        rc = store__fail(s, src, err, "episode retention");
        goto out;
    }
    ep_max = sqlite3_column_int64(st, 0);
    store__done(st);
    st = NULL;
    int64_t edge = ep_max - (r->keep_rows > 0 ? r->keep_rows : 1), reach = ep_mark, below;
    int full_below = 0; /* the walk below the mark: bounded by the open episodes anyway */
    if ((rc = walk_episodes(s, agent, ep_mark, edge, 0, max_rows, r, cutoff_text, &t, &reach,
                            &full, &out->episodes, err)) < 0 ||
        (rc = walk_episodes(s, agent, 0, ep_mark < edge ? ep_mark : edge, 1, max_rows, r,
                            cutoff_text, &t, &below, &full_below, &out->episodes, err)) < 0)
        goto out;
    out->more |= full;
    if ((rc = run3(s, SQL_EP_ADVANCE, agent, reach, t.dropped, NULL, "episode retention",
                   err)) < 0)
        goto out;
    if (t.last_ended_at[0] != '\0' && strcmp(t.last_ended_at, last_ended) > 0) {
        if ((rc = store__stmt(s, SQL_EP_LAST, &st, err)) < 0)
            goto out;
        sqlite3_bind_int64(st, 1, agent);
        store__bind_double(st, 2, t.last_return);
        sqlite3_bind_text(st, 3, t.last_ended_at, -1, SQLITE_STATIC);
        if ((src = store__step(s, st)) != SQLITE_DONE)
            rc = store__fail(s, src, err, "episode retention");
    }
out:
    store__done(st);
    return store__atomic_end(s, token, rc, err);
}

static const char SQL_DROPPED[] =
    "SELECT episodes_dropped, last_return, coalesce(last_ended_at, '') FROM history"
    " WHERE agent = ?1";
static const char SQL_DROPPED_ADD[] =
    "UPDATE history SET episodes_dropped = episodes_dropped + ?2,"
    " last_return = CASE WHEN ?4 > coalesce(last_ended_at, '') THEN ?3 ELSE last_return END,"
    " last_ended_at = nullif(max(coalesce(last_ended_at, ''), ?4), '') WHERE agent = ?1";

int store_dropped_get(store *s, int64_t agent, store_dropped *out, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc, src;

    memset(out, 0, sizeof *out);
    out->last_return = NAN;
    if ((rc = store__stmt(s, SQL_DROPPED, &st, err)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, agent);
    src = store__step(s, st);
    if (src == SQLITE_ROW) {
        out->episodes = sqlite3_column_int64(st, 0);
        out->last_return = store__column_double(st, 1);
        store__column_text(st, 2, out->ended_at, sizeof out->ended_at);
    } else if (src != SQLITE_DONE) { /* no row: nothing was ever dropped */
        rc = store__fail(s, src, err, "read dropped episodes");
    }
    store__done(st);
    return rc;
}

int store_dropped_add(store *s, int64_t agent, const store_dropped *d, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc, src;

    if ((rc = run3(s, SQL_ENSURE, agent, 0, 0, NULL, "history", err)) < 0 ||
        (rc = store__stmt(s, SQL_DROPPED_ADD, &st, err)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, d->episodes);
    store__bind_double(st, 3, d->last_return);
    sqlite3_bind_text(st, 4, d->ended_at, -1, SQLITE_STATIC);
    if ((src = store__step(s, st)) != SQLITE_DONE)
        rc = store__fail(s, src, err, "add dropped episodes");
    store__done(st);
    return rc;
}
