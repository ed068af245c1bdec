/* storage/transitions.c: the durable copy of every agent's raw transitions: grouped
 * inserts, the highest seq, a streaming scan that reloads the replay ring at start, and
 * bounded deletes of the oldest (the daemon's pruning keeps about buffer_size of them).
 *
 * A row's data blob is obs[obs_dim] | action[act_dim] | reward | next_obs[obs_dim] as
 * little-endian float32 (values.c), so the scan hands back exactly the bits appended.
 * The scan steps one row at a time and decodes into one scratch row: a buffer of
 * millions of transitions is never held in memory twice.
 */
#include <assert.h>
#include <stdlib.h>

#include "internal.h"

static const char SQL_INSERT[] =
    "INSERT INTO transitions (agent, seq, data, terminated, truncated, env_id)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char SQL_MAX_SEQ[] =
    "SELECT coalesce(max(seq), 0) FROM transitions WHERE agent = ?1";
static const char SQL_SCAN[] =
    "SELECT seq, data, terminated, truncated, env_id FROM transitions"
    " WHERE agent = ?1 AND seq >= ?2 ORDER BY seq";

/* The oldest max_rows up to a seq, in two steps: the seq of the last of them (a walk of
 * max_rows index entries), then one range delete up to it, which is about twice as fast
 * as deleting the keys of a subquery one by one (measured). One call holds the writer's
 * transaction; daemon/prune.c keeps it short. */
static const char SQL_CUT[] =
    "SELECT seq FROM transitions WHERE agent = ?1 AND seq <= ?2 ORDER BY seq LIMIT 1"
    " OFFSET ?3";
static const char SQL_DELETE_UPTO[] = "DELETE FROM transitions WHERE agent = ?1 AND seq <= ?2";

/* Floats in one row's blob. */
static size_t row_floats(int obs_dim, int act_dim)
{
    return 2 * (size_t)obs_dim + (size_t)act_dim + 1;
}

int store_transitions_append(store *s, int64_t agent, int64_t first_seq,
                             const store_transition *t, int n, int obs_dim, int act_dim,
                             rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    unsigned char *buf = NULL;          /* one encoded row */
    size_t nf = row_floats(obs_dim, act_dim);
    int rc = RQD_OK, src, token = 0;

    assert(n >= 0 && obs_dim > 0 && act_dim > 0);
    if (n == 0)
        goto out;
    buf = malloc(4 * nf);
    if (buf == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "append transitions: out of memory");
        goto out;
    }
    if ((rc = store__stmt(s, SQL_INSERT, &st, err)) < 0)
        goto out;
    if ((rc = store__atomic_begin(s, &token, err)) < 0)
        goto out;
    for (int i = 0; i < n; i++) {
        const store_transition *x = &t[i];
        int64_t seq = first_seq + i;

        store__floats_encode(buf, x->obs, obs_dim);
        store__floats_encode(buf + 4 * (size_t)obs_dim, x->action, act_dim);
        store__floats_encode(buf + 4 * (nf - (size_t)obs_dim - 1), &x->reward, 1);
        store__floats_encode(buf + 4 * (nf - (size_t)obs_dim), x->next_obs, obs_dim);
        sqlite3_bind_int64(st, 1, agent);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_blob(st, 3, buf, (int)(4 * nf), SQLITE_STATIC);
        sqlite3_bind_int(st, 4, x->terminated != 0);
        sqlite3_bind_int(st, 5, x->truncated != 0);
        if (x->env_id != NULL && x->env_id[0] != '\0')
            sqlite3_bind_text(st, 6, x->env_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 6);
        src = store__step(s, st);
        if (src != SQLITE_DONE) {
            rc = store__fail(s, src, err, "append transitions");
            if (rc == RQD_EEXIST)
                rqd_err_set(err, rc, "", "transition %lld of agent %lld is already stored",
                            (long long)seq, (long long)agent);
            else if (rc == RQD_ENOTFOUND)
                rqd_err_set(err, rc, "", "agent %lld not found", (long long)agent);
            goto out;
        }
        sqlite3_reset(st);
    }
out:
    store__done(st);
    free(buf);
    return store__atomic_end(s, token, rc, err);
}

int store_transitions_max_seq(store *s, int64_t agent, int64_t *out, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    *out = 0;
    if ((rc = store__stmt(s, SQL_MAX_SEQ, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    src = store__step(s, st);
    if (src != SQLITE_ROW) {
        rc = store__fail(s, src, err, "max transition seq");
        goto out;
    }
    *out = sqlite3_column_int64(st, 0);
out:
    store__done(st);
    return rc;
}

int store_transitions_delete_upto(store *s, int64_t agent, int64_t upto, int max_rows,
                                  int *deleted, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int64_t cut = upto;
    int rc = RQD_OK, src, token = 0;

    assert(max_rows >= 1);
    *deleted = 0;
    if ((rc = store__atomic_begin(s, &token, err)) < 0 ||
        (rc = store__stmt(s, SQL_CUT, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, upto);
    sqlite3_bind_int(st, 3, max_rows - 1);
    if ((src = store__step(s, st)) == SQLITE_ROW)
        cut = sqlite3_column_int64(st, 0); /* the max_rows-th: more may follow */
    else if (src != SQLITE_DONE) {
        rc = store__fail(s, src, err, "delete transitions");
        goto out;
    }
    store__done(st);
    if ((rc = store__stmt(s, SQL_DELETE_UPTO, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, cut);
    if ((src = store__step(s, st)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "delete transitions");
        goto out;
    }
    *deleted = sqlite3_changes(s->db);
out:
    store__done(st);
    return store__atomic_end(s, token, rc, err);
}

int store_transitions_scan(store *s, int64_t agent, int64_t from_seq, int obs_dim, int act_dim,
                           int (*cb)(void *ctx, int64_t seq, const store_transition *t),
                           void *ctx, rqd_err *err)
{
    sqlite3_stmt *st = NULL; /* not cached: cb may use the store, even scan it again */
    float *row = NULL;       /* the decoded row that *t points into */
    size_t nf = row_floats(obs_dim, act_dim);
    store_transition t;
    int rc = RQD_OK, src;

    assert(obs_dim > 0 && act_dim > 0);
    row = malloc(4 * nf);
    if (row == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "scan transitions: out of memory");
        goto out;
    }
    src = sqlite3_prepare_v2(s->db, SQL_SCAN, -1, &st, NULL);
    if (src != SQLITE_OK) {
        s->last_injected = 0;
        rc = store__fail(s, src, err, "prepare transition scan");
        goto out;
    }
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, from_seq);
    t.obs = row;
    t.action = row + obs_dim;
    t.next_obs = row + obs_dim + act_dim + 1;
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const unsigned char *data = sqlite3_column_blob(st, 1);

        if ((size_t)sqlite3_column_bytes(st, 1) != 4 * nf) {
            rc = rqd_err_set(err, RQD_EIO, "",
                             "transition %lld of agent %lld: %d bytes stored, %zu expected",
                             (long long)seq, (long long)agent, sqlite3_column_bytes(st, 1),
                             4 * nf);
            goto out;
        }
        store__floats_decode(row, data, (int)nf);
        t.reward = row[obs_dim + act_dim];
        t.terminated = sqlite3_column_int(st, 2);
        t.truncated = sqlite3_column_int(st, 3);
        t.env_id = (const char *)sqlite3_column_text(st, 4); /* NULL: the default stream */
        if ((rc = cb(ctx, seq, &t)) != 0)
            goto out;
    }
    if (src != SQLITE_DONE)
        rc = store__fail(s, src, err, "scan transitions");
out:
    sqlite3_finalize(st);
    free(row);
    return rc;
}
