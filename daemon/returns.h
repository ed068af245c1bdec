/* daemon/returns.h: returns from transitions (API.md "Returns from transitions"). Each
 * stream of a transitions post (the agent and its env_id) adds up rewards and steps; a
 * transition with terminated or truncated ends an episode of mode explore, recorded like
 * an episodes-API episode (source "transitions", its env_id).
 *
 * A post is all or nothing (daemon/ingest.c): rqd_returns_prepare works out, before the
 * commit, which episodes end and what each touched stream holds after the post, with
 * every allocation made; rqd_returns_write puts that into the post's transaction; and
 * rqd_returns_apply, after the commit, moves it into the agent's table without
 * allocating. A repeated batch_id never gets here (its stored answer goes back first).
 *
 * THREADS: the table belongs to an agent; plan and apply run under a->ingest_mu (which
 * orders posts), apply also under a->mu; write runs on the writer thread.
 */
#ifndef RQD_RETURNS_H
#define RQD_RETURNS_H

#include "../common/rqd_err.h"
#include "../storage/store.h"

typedef struct rqd_rstream rqd_rstream;

/* An agent's streams with an episode under way: an open-addressing hash table on
 * env_id, at most RQD_MAX_STREAMS (the stream idle the longest gives way past it). */
typedef struct {
    rqd_rstream **slots;
    int cap;                /* a power of two, or 0 */
    int n;
    long long clock;        /* posts seen: how recently a stream was used */
} rqd_returns;

/* What one post does to the streams. */
typedef struct {
    store_episode_row *ended;   /* episodes that end, in the order of the post */
    int n_ended;
    rqd_rstream **after;        /* each touched stream as the post leaves it ... */
    int n_after;
    rqd_rstream **fresh;        /* ... the new ones allocated here, moved into the table */
    int n_fresh;
    rqd_rstream **evicted;      /* streams that give way (deleted with the post) */
    int n_evicted;
    rqd_rstream **grown;        /* the table's next slots, when it must grow */
    int grown_cap;
} rqd_returns_plan;

/* Loads the agent's stored streams (at start). */
int rqd_returns_load(rqd_returns *t, store *s, int64_t agent, rqd_err *err);
void rqd_returns_free(rqd_returns *t);
/* The plan of a post of n transitions made at time now (RFC 3339). RQD_ENOMEM. */
int rqd_returns_prepare(const rqd_returns *t, const store_transition *tr, int n, const char *now,
                     rqd_returns_plan *p, rqd_err *err);
/* Inside the post's transaction: the ended episodes, the touched streams' rows. */
int rqd_returns_write(store *s, int64_t agent, const rqd_returns_plan *p, rqd_err *err);
/* After the commit: the table takes the plan (cannot fail); frees the plan. */
void rqd_returns_apply(rqd_returns *t, rqd_returns_plan *p);
void rqd_returns_plan_free(rqd_returns_plan *p); /* a plan not applied */

#endif
