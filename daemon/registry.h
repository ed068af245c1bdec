/* daemon/registry.h: the named agents a daemon hosts, and every operation on them that
 * the HTTP layer calls: create, find, patch, delete, act, ingest, episodes, training on
 * request, checkpoints, restore, import. api/ parses and validates requests and calls
 * these; they know nothing of HTTP.
 *
 * THREADS
 * -------
 * Every function may be called from any HTTP worker thread.
 * a->mu         guards the agent's learner (core), counters, episodes, waiters and stats
 *               buffer; trainers hold it for one chunk of at most RQD_TRAIN_CHUNK updates.
 * a->ingest_mu  orders the durable writes of transitions and episode steps, so that
 *               their sequence numbers in SQLite match the order the learner saw; held
 *               across the writer's commit, never while holding a->mu.
 * a->act_mu     serialises acts (they draw from the agent's act generator); acting reads
 *               the published policy snapshot and never waits for training.
 * a->core_rw    read-held by whoever uses a->core without a->mu (acts, policy
 *               downloads); write-held by a restore only for the pointer swap.
 * a->prune_mu   a leaf: what the pruning knows of the agent (a->prune), taken by the
 *               loop's prune timer, the writer's callbacks and posts (daemon/prune.c).
 * reg->mu       guards the name table; agents are reference counted (rqd_agent_put).
 * Waiter callbacks run on a trainer thread (or the loop thread for deadlines and
 * shutdown) with no lock held.
 */
#ifndef RQD_REGISTRY_H
#define RQD_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>

#include "../common/rqd_buf.h"
#include "../common/rqd_err.h"
#include "../redq/redq.h"
#include "../storage/store.h"
#include "returns.h"
#include "writer.h"

#define RQD_TRAIN_CHUNK 8        /* updates per lock hold at most ... */
#define RQD_CHUNK_SECONDS 0.002  /* ... and no more than this (past one update) */
#define RQD_POLICY_LEASE 1000    /* policy versions reserved in SQLite ahead of use */

typedef struct rqd_registry rqd_registry;
typedef struct rqd_agent rqd_agent;

enum { RQD_WAIT_SYNC = 0, RQD_WAIT_TRAIN = 1 };

/* An agent's state.status (API.md). Only an ok agent has a learner that requests may
 * use; the others answer 503 unavailable to everything but reads, DELETE and restore. */
enum { RQD_AGENT_OK = 0, RQD_AGENT_LOADING = 1, RQD_AGENT_UNAVAILABLE = 2 };

/* Non-finite updates in a row after which an agent pauses itself (API.md). */
#define RQD_MAX_SKIPPED_RUN 100

/* A request waiting for training progress (owned by the caller, e.g. a suspended HTTP
 * request). cb(w, status) runs once: status 0 when the target was reached (and, for
 * train waits, updates/stats/train_time filled), RQD_ECONFLICT when the agent was
 * deleted or restored, RQD_EUNAVAIL at shutdown, or 1 when its deadline passed. */
typedef struct rqd_waiter {
    struct rqd_waiter *next;
    int kind;
    double target;          /* done_total (sync) or manual_done (train) to reach */
    double deadline;        /* CLOCK_MONOTONIC seconds */
    void (*cb)(struct rqd_waiter *w, int status);
    void *ctx;
    long long updates;      /* train: the agent's updates when done */
    long long env_steps;    /* train: the agent's env_steps when done */
    redq_stats stats;       /* train: the last update's statistics */
    double train_time;      /* train: seconds of this call's updates */
    double time_at_start;   /* train: manual_time when registered */
    store_stats_row row;    /* train: the stats row written for the call (row.row 0: none) */
} rqd_waiter;

typedef struct rqd_episode {
    struct rqd_episode *next;
    char id[40];
    int mode;               /* STORE_EP_* */
    double ret;
    long long length;
    char started_at[32];
    float *last_obs, *last_action; /* one allocation: obs_dim + act_dim floats */
} rqd_episode;

/* What the pruning of an agent's stored data knows (daemon/prune.c); under a->prune_mu. */
typedef struct {
    long long added;        /* the learner's buffer_added after the latest post */
    long long capacity;     /* buffer_size; 0 until the agent is loaded */
    long long due;          /* buffer_added at which a newer head can become the base */
    store_retention keep;   /* the history_* settings (keep.now is set per job) */
    int busy;               /* a job is in flight (at most one per agent) */
    int more_ring;          /* the last job left transitions to delete */
    int more_history;       /* ... or history rows or batch ids past their window */
    double next_check;      /* CLOCK_MONOTONIC seconds: the next look at history */
    double retry_at;        /* after a failed job */
} rqd_prune;

struct rqd_agent {
    rqd_registry *reg;
    char name[72];
    int64_t id;
    int S, A;
    char created_at[32];
    atomic_int refs;
    int deleted;                    /* under mu */
    int queued;                     /* on the trainers' run queue (under reg->run_mu) */

    pthread_mutex_t mu, ingest_mu, act_mu;
    atomic_int mu_wanted;           /* threads other than trainers waiting for mu */
    pthread_rwlock_t core_rw;       /* read: acting outside mu; write: restore's swap */
    redq_agent *core;               /* NULL while loading or when it could not be loaded */
    atomic_int status;              /* RQD_AGENT_*: written under mu, read anywhere */
    char error[256];                /* why it is not ok (under mu) */
    float *low, *high;              /* the action box, act_dim each (GET needs no core) */
    char *config_json;              /* the stored config of an agent without a learner */
    redq_info stored;               /* what is known of an agent without a learner */
    long long skipped_total;        /* updates skipped as non-finite (under mu) */
    int skipped_run;                /* ... in a row; RQD_MAX_SKIPPED_RUN pauses it */
    double pending;                 /* updates owed (API.md pending_updates) */
    double owed_total, done_total;  /* cumulative, for sync waiters */
    long long manual_pending, manual_total, manual_done;
    double manual_time;             /* seconds spent in train-call updates, cumulative */
    rqd_waiter *waiters;

    redq_stats last;                /* latest update's statistics */
    int have_stats;
    double time_since_row;          /* train_time since the previous stats row */
    long long last_row_update;      /* update number of the newest row, -1 if none */
    store_stats_row last_row;       /* the newest row made */
    store_stats_row *rows;          /* rows not yet handed to the writer */
    int n_rows, cap_rows;

    long long last_auto_ckpt;       /* updates at the last automatic checkpoint */
    pthread_mutex_t ckpt_mu;        /* auto_ckpt: set by the writer thread after its
                                       commit (it never takes a->mu) */
    store_ckpt_info auto_ckpt;      /* the newest automatic checkpoint committed */
    int have_auto;
    int have_ckpt;
    store_ckpt_info last_ckpt;
    long long policy_lease;         /* policy versions below this may be published */

    rqd_episode *episodes;          /* open episodes */
    int n_open;
    long long episodes_done;        /* explore episodes that ended */
    rqd_returns returns;            /* transitions streams adding up their episode
                                       (returns.h; under ingest_mu) */
    double last_return;             /* return of the latest ended explore episode (NaN) */

    long long next_head_at;         /* env_steps at which a post stores a replay head
                                       (daemon/prune.c; under ingest_mu) */
    int head_too_big;               /* said once in the log (under ingest_mu) */
    pthread_mutex_t prune_mu;       /* leaf lock: `prune` (set by the writer's callback) */
    rqd_prune prune;

    double ups;                     /* updates per second, smoothed, for logs and metrics */
    long long ups_mark_updates;
    double ups_mark_time;

    /* Moving to another node (daemon/move.c): set with ingest_mu and mu held, read under
     * either. While set, writes are refused (RQD_EAGAIN) and trainers leave it alone. */
    int moving;
    long long moving_since;         /* Unix seconds */
    char moving_to[RQD_MAX_NODE_NAME + 1]; /* "" when not known (set before a restart) */
};

/* Snapshot of an agent's state for GET (taken under mu). */
typedef struct {
    int status;               /* RQD_AGENT_* */
    char error[256];          /* "" when ok */
    long long skipped;        /* state.skipped_updates */
    redq_info info;
    double pending;
    long long episodes_done;
    int n_open;
    int training;
    int have_ckpt;
    store_ckpt_info last_ckpt;
    redq_stats last;
    int have_stats;
    double ups;
    double last_return;
    int moving;               /* state.moving: to, since */
    char moving_to[RQD_MAX_NODE_NAME + 1];
    long long moving_since;
} rqd_agent_state;

typedef struct {
    const char *db_path;
    int sync_full;
    int trainer_threads;
    int max_agents;
    long long max_db_size;    /* bytes; 0 = unlimited */
    long long max_value;      /* SQLite's limit on one value's bytes (store_set_max_value);
                                 0 = SQLite's default */
    rqd_limits limits;        /* what a request may create; stored agents load regardless */
} rqd_registry_opts;

/* Opens the database, lists every stored agent as "loading", and starts the writer and
 * the trainers; rqd_registry_load then reloads each (config, latest checkpoint, replay
 * buffer, counters, open episodes). An agent that cannot be reloaded is kept,
 * unavailable, with the reason (API.md); only a database that cannot be opened fails. */
int rqd_registry_open(const rqd_registry_opts *o, rqd_registry **out, rqd_err *err);
/* Loads the agents rqd_registry_open listed as "loading", one after the other on a
 * thread of its own, while the daemon serves the others; done(arg, n) runs on that
 * thread once all are loaded (not when the registry is shut down first). */
int rqd_registry_load(rqd_registry *r, void (*done)(void *arg, int n), void *arg, rqd_err *err);
/* Agents still loading (GET /v1/health). */
int rqd_registry_loading(rqd_registry *r);
/* From now on waits for training are refused (RQD_EUNAVAIL): shutdown has begun. */
void rqd_registry_refuse_waits(rqd_registry *r);
/* Stops trainers after their current chunk, checkpoints every agent, stops the writer. */
void rqd_registry_shutdown(rqd_registry *r);
void rqd_registry_free(rqd_registry *r);
/* The limits requests are held to (fixed after open). */
const rqd_limits *rqd_registry_limits(const rqd_registry *r);

/* Calls the waiters whose deadline passed (status 1), or all of them with status when
 * status != 1. */
void rqd_registry_wake_waiters(rqd_registry *r, int status, double now);
/* Hands buffered stats rows to the writer (the loop calls it every second), after those
 * whose write failed before (they are kept, up to a bound, until the disk has room). */
void rqd_registry_flush_stats(rqd_registry *r);
/* One progress line per agent that trained since the last call. */
void rqd_registry_log_progress(rqd_registry *r);
/* Posts the pruning jobs that are due (daemon/prune.c): transitions that left a replay
 * buffer, batch ids and history past their window, free pages; the loop calls it every
 * RQD_PRUNE_TICK_MS. */
void rqd_registry_prune(rqd_registry *r);
/* Rows the pruning deleted so far, all agents and tables (for /metrics and tests). */
long long rqd_registry_pruned_rows(rqd_registry *r);
/* fn(arg) is called on the writer thread when a pruning job leaves work behind, so that
 * the loop calls rqd_registry_prune again without waiting for its timer (uv_async_send
 * is the intended fn: it must not block). Set before rqd_registry_load. */
void rqd_registry_on_prune_work(rqd_registry *r, void (*fn)(void *arg), void *arg);

int rqd_registry_count(rqd_registry *r);
/* Stats rows given up because the database refused writes too long (for /metrics). */
long long rqd_registry_stats_dropped(rqd_registry *r);
rqd_writer *rqd_registry_writer(rqd_registry *r);

/* Reads of what only SQLite holds (daemon/reads.c). The rows are malloc'd for the
 * caller, freed as storage/store.h says. */
/* The answer stored under batch_id (NULL when the id is new). */
int rqd_agent_batch_answer(rqd_agent *a, const char *batch_id, char **answer, rqd_err *err);
/* Newest first, at most limit (open ones included). */
int rqd_agent_episodes(rqd_agent *a, int limit, store_episode_row **rows, int *n, rqd_err *err);
/* Rows with row > since, oldest first, at most limit; every row of the updates done
 * before the call is written first (API.md: stats are read-your-writes). */
int rqd_agent_stats(rqd_agent *a, int64_t since, int limit, store_stats_row **rows, int *n,
                    rqd_err *err);
/* Writes the agent's buffered stats rows and waits until every row handed to the writer
 * before the call is committed. */
int rqd_agent_stats_sync(rqd_agent *a, rqd_err *err);
int rqd_agent_checkpoints(rqd_agent *a, store_ckpt_info **rows, int *n, rqd_err *err);
/* Evaluation rows with row > since, oldest first, at most limit. */
int rqd_agent_evaluations(rqd_agent *a, int64_t since, int limit, store_eval_row **rows, int *n,
                          rqd_err *err);
/* Records an evaluation of n returns (lengths may be NULL) against the agent's counters
 * now, durably; *out is the row as stored. */
int rqd_agent_evaluate(rqd_agent *a, const double *returns, const int64_t *lengths, int n,
                       store_eval_row *out, rqd_err *err);

/* ------------------------------------------------------------------ agents */

/* A referenced agent by name, or NULL. */
rqd_agent *rqd_agent_find(rqd_registry *r, const char *name);
void rqd_agent_put(rqd_agent *a);
/* Referenced agents in byte order of name; free the array with rqd_agent_list_free. */
int rqd_agent_list(rqd_registry *r, rqd_agent ***out, int *n);
void rqd_agent_list_free(rqd_agent **v, int n);

int rqd_agent_create(rqd_registry *r, const char *name, int S, int A, const float *low,
                     const float *high, const redq_config *cfg, rqd_agent **out, rqd_err *err);
/* RQD_OK when the agent is ok; otherwise RQD_EUNAVAIL with err saying why (its
 * state.error, or "still loading"). */
int rqd_agent_usable(rqd_agent *a, rqd_err *err);
/* The training mode (REDQ_TRAIN_*), or -1 for an agent without a learner. */
int rqd_agent_training(rqd_agent *a);
/* Updates owed now (state.pending_updates). */
double rqd_agent_pending(rqd_agent *a);
/* Applies a validated config (only PATCH-able settings differ), durably. */
int rqd_agent_patch(rqd_agent *a, const redq_config *cfg, rqd_err *err);
int rqd_agent_delete(rqd_registry *r, const char *name, rqd_err *err);
void rqd_agent_state_get(rqd_agent *a, rqd_agent_state *st);
/* The agent's config as JSON (every effective setting), or NULL out of memory. For an
 * agent without a learner, the stored config as it is. */
cJSON *rqd_agent_config_json(rqd_agent *a);
/* A copy of the agent's config; RQD_EUNAVAIL for an agent without a learner. */
int rqd_agent_config(rqd_agent *a, redq_config *out, rqd_err *err);

/* ------------------------------------------------------------------ data */

int rqd_agent_act(rqd_agent *a, const float *obs, int n, int mode, float *out,
                  long long *version, rqd_err *err);
/* The latest published policy snapshot (release with redq_policy_release). */
redq_policy *rqd_agent_policy(rqd_agent *a);

/* Stores n transitions durably and feeds them to the learner. *answer (malloc'd JSON) is
 * the response body (the stored one for a repeated batch_id). For sync mode *wait_target
 * is the done_total to wait for (or < 0: no wait). */
int rqd_ingest(rqd_agent *a, const store_transition *t, int n, const char *batch_id,
               char **answer, double *wait_target, rqd_err *err);

int rqd_episode_start(rqd_agent *a, const float *obs, int mode, char id_out[40], float *action,
                      rqd_err *err);
/* *done set when the episode ended (ret/length filled), else action filled. */
int rqd_episode_step(rqd_agent *a, const char *id, float reward, const float *obs, int terminated,
                     int truncated, int *done, double *ret, long long *length, float *action,
                     double *wait_target, rqd_err *err);
int rqd_episode_abandon(rqd_agent *a, const char *id, rqd_err *err);

/* ------------------------------------------------------------------ training */

/* Registers w; returns 1 if it was registered (cb comes later), 0 if already satisfied
 * (nothing registered), or an error. For RQD_WAIT_TRAIN, *k updates are added to the
 * agent's on-request work first (RQD_ECONFLICT with fewer than batch_size rows). */
int rqd_agent_wait(rqd_agent *a, rqd_waiter *w, int kind, double target, int k, double timeout,
                   rqd_err *err);

/* ------------------------------------------------------------------ checkpoints */

int rqd_ckpt_create(rqd_agent *a, int automatic, store_ckpt_info *info, rqd_err *err);
/* The checkpoint file (malloc'd *data); with_buffer adds the current replay buffer. */
int rqd_ckpt_download(rqd_agent *a, int64_t id, int with_buffer, void **data, size_t *len,
                      rqd_err *err);
int rqd_ckpt_delete(rqd_agent *a, int64_t id, rqd_err *err);
int rqd_ckpt_restore(rqd_agent *a, int64_t id, rqd_err *err);
int rqd_ckpt_import(rqd_registry *r, const char *name, const void *data, size_t len,
                    rqd_agent **out, rqd_err *err);

/* ------------------------------------------------------------------ moving (move.c) */

/* Starts moving the agent to node `to` (docs/api.md "Moving an agent"): durably marked,
 * from now on it refuses every write with RQD_EAGAIN and trains no more; waiting sync
 * posts are answered (their data is stored) and waiting train calls ended (conflict).
 * Again with the same node (or after a restart) is a no-op; with another, conflict. */
int rqd_agent_move_begin(rqd_agent *a, const char *to, rqd_err *err);
/* Cancels a move: writes and training resume. Not moving is not an error. */
int rqd_agent_move_cancel(rqd_agent *a, rqd_err *err);
/* The move file of a moving agent (malloc'd *data; daemon/movefile.h), stamped with
 * this node's name. RQD_ECONFLICT when it is not moving. */
int rqd_agent_move_file(rqd_agent *a, const char *node, void **data, size_t *len,
                        rqd_err *err);
/* Creates agent `name` from a move file, all or nothing, as its source had it: learner,
 * buffer, owed updates, batch ids, episodes, streams, stats and evaluations. */
int rqd_agent_move_import(rqd_registry *r, const char *name, const void *data, size_t len,
                          rqd_agent **out, rqd_err *err);

/* ------------------------------------------------------------------ scheduling */

/* Puts the agent on the trainers' run queue if it has runnable work. */
void rqd_sched_kick(rqd_agent *a);

/* Takes a->mu anywhere but in a trainer's chunk. A trainer releases a->mu between chunks
 * and takes it again within microseconds (the other trainer picks the requeued agent at
 * once), and mutexes are not fair: a GET, post, PATCH or DELETE waiting for a busy
 * agent could wait tens of seconds. Trainers let these waiters in first (trainer.c). */
static inline void rqd_agent_lock(rqd_agent *a)
{
    atomic_fetch_add(&a->mu_wanted, 1);
    pthread_mutex_lock(&a->mu);
    atomic_fetch_sub(&a->mu_wanted, 1);
}

#endif
