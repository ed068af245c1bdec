/* clients/mujoco/http.h: the redqd calls redq-mujoco makes (libcurl and cJSON).
 *
 * One rq_client is one keep-alive connection to the daemon; it is not thread-safe (use
 * one per thread). Every call returns RQD_OK or a negative RQD_E* code and fills the
 * caller's rqd_err; an answer of the daemon's that is an error maps to the code of its
 * status (400 RQD_EINVAL, 404 RQD_ENOTFOUND, 409 RQD_EEXIST or RQD_ECONFLICT, 429
 * RQD_EBUSY, 503 RQD_EUNAVAIL, others RQD_EINTERNAL) and the message carries the
 * problem's code and detail. A daemon that cannot be reached is RQD_EIO.
 *
 * Retries. 429 busy (back-pressure) stores nothing, so it is retried after the
 * Retry-After the daemon sends, for up to RQ_BUSY_MAX_WAIT_S. A connection lost before
 * the answer (refused, reset, closed, timed out) and 503 unavailable are retried with
 * backoff (RQ_LOST_ATTEMPTS) only where sending twice is harmless: GETs, acts, the PUT
 * that creates an agent, and transitions posts, which always carry a batch_id (the
 * daemon stores a batch once and answers a repeat as it answered the first). An
 * evaluation post is retried only when the connection could not be opened at all.
 * Until the daemon has answered once, nothing is retried: a wrong --url fails at once.
 */
#ifndef REDQ_MUJOCO_HTTP_H
#define REDQ_MUJOCO_HTTP_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "../../common/rqd_err.h"

/* A daemon restarting after a crash reloads its replay buffers before it listens again:
 * 15 attempts with backoff from 0.2 s doubling to 5 s wait about a minute for it. */
#define RQ_LOST_ATTEMPTS 15
/* Continuous 429s for this long mean the agent does not train (paused, or manual with
 * no one calling train): give up and say so rather than wait forever. */
#define RQ_BUSY_MAX_WAIT_S 600

typedef struct rq_client rq_client; /* opaque */

/* base_url like "http://127.0.0.1:8470" (no trailing /v1); token may be NULL; timeout_s
 * bounds each request (a sync-mode post waits for its updates). */
int rq_client_new(const char *base_url, const char *token, double timeout_s, rq_client **out,
                  rqd_err *err);
void rq_client_free(rq_client *c); /* NULL is a no-op */

/* Requests resent so far: after 429 busy, and after a lost connection or 503. */
void rq_client_retries(const rq_client *c, long *busy, long *lost);

/* ---- agents ---- */

typedef struct {
    int obs_dim, act_dim;
    const double *low, *high; /* the action box, act_dim values each */
    const cJSON *config;      /* the settings to ask for (borrowed); {} for the defaults */
} rq_agent_spec;

/* Creates the agent or reuses one that matches spec: PUT /v1/agents/{name}. A daemon
 * without that route (405) gets POST /v1/agents, and on 409 already_exists the existing
 * agent (GET) is compared with spec: obs_dim, the action box and every setting in
 * spec->config. A mismatch is RQD_EEXIST naming the first difference. *agent_out is the
 * agent as the daemon describes it (caller frees with cJSON_Delete); *created is 1 when
 * this call made it. */
int rq_agent_ensure(rq_client *c, const char *name, const rq_agent_spec *spec,
                    cJSON **agent_out, int *created, rqd_err *err);

/* GET /v1/agents/{name}; *agent_out is freed by the caller with cJSON_Delete. */
int rq_agent_get(rq_client *c, const char *name, cJSON **agent_out, rqd_err *err);

/* ---- acting ---- */

/* One batched act: n observations (n x obs_dim, row-major) give n actions (n x act_dim)
 * in the environment's scale; eval selects the eval policy (mode "eval"). */
int rq_act(rq_client *c, const char *name, const double *obs, int n, int obs_dim, int eval,
           double *act, int act_dim, rqd_err *err);

/* ---- transitions ---- */

typedef struct rq_batch rq_batch; /* transitions waiting to be posted */

/* An empty batch for an agent of these sizes; NULL when out of memory. */
rq_batch *rq_batch_new(int obs_dim, int act_dim);
void rq_batch_free(rq_batch *b); /* NULL is a no-op */
int rq_batch_len(const rq_batch *b);
/* Appends one transition (values copied). env_id names its stream (NULL: none). */
int rq_batch_add(rq_batch *b, const double *obs, const double *action, double reward,
                 const double *next_obs, int terminated, int truncated, const char *env_id,
                 rqd_err *err);

typedef struct {
    int64_t accepted;       /* transitions the daemon took from this post */
    int64_t env_steps;      /* the agent's transitions in all, after it */
    double pending_updates; /* updates owed after it (0 in sync mode once answered) */
} rq_ack;

/* POST /v1/agents/{name}/transitions with batch_id (1 to 128 of [A-Za-z0-9_.:-]); the
 * batch is emptied once the daemon has acknowledged it. */
int rq_transitions_post(rq_client *c, const char *name, rq_batch *b, const char *batch_id,
                        rq_ack *ack, rqd_err *err);

/* ---- evaluations ---- */

/* POST /v1/agents/{name}/evaluations with n returns and their lengths; *row_out is the
 * recorded row. A daemon without the endpoint (404 or 405 on it) is RQD_ENOTFOUND with
 * *row_out = -1, so that the caller can go on printing its evaluations instead. */
int rq_evaluation_post(rq_client *c, const char *name, const double *returns,
                       const int *lengths, int n, int64_t *row_out, rqd_err *err);

#endif
