/* daemon/internal.h: what the files of daemon/ share and nothing else includes. */
#ifndef RQD_DAEMON_INTERNAL_H
#define RQD_DAEMON_INTERNAL_H

#include "../common/rqd_clock.h"
#include "registry.h"

struct rqd_registry {
    pthread_mutex_t mu;             /* the name table */
    rqd_agent **agents;             /* sorted by name (byte order) */
    int n, cap;
    char (*reserved)[72];           /* names being created or imported (under mu): they */
    int n_reserved, cap_reserved;   /* count toward --max-agents and cannot be taken */
    int max_agents;
    rqd_limits limits;
    char *db_path;
    int sync_full;
    long long max_value;            /* --sqlite-max-length, on every connection */
    rqd_writer *writer;

    pthread_mutex_t rd_mu;          /* idle read-only connections */
    store **readers;
    int n_readers, cap_readers;

    pthread_mutex_t run_mu;         /* the trainers' run queue (FIFO: fair) */
    pthread_cond_t run_cv;
    rqd_agent **q;
    int q_head, q_len, q_cap;
    int stopping;
    pthread_t *trainers;
    int n_trainers;
    int busy;                       /* trainers inside a chunk (under run_mu) */
    struct rqd_pool *pool;          /* splits one agent's ensemble when it trains alone */

    pthread_mutex_t stats_mu;       /* stats rows whose write failed (disk full) */
    struct stats_job *stats_retry;  /* oldest first, posted again at the next flush */
    struct stats_job *stats_retry_tail;
    long long stats_retry_rows;
    atomic_llong stats_dropped;     /* rows given up past RQD_STATS_RETRY_ROWS */
    atomic_llong next_stats_row;    /* stats rows are numbered when made (API.md: a train
                                       answer names its row) */
    atomic_int refuse_waits;        /* shutdown has begun */

    int incremental;                /* the file returns free pages (auto_vacuum) */
    atomic_int vacuum_busy;         /* a vacuum step is in flight */
    double vacuum_next;             /* CLOCK_MONOTONIC seconds (the loop thread's) */
    atomic_llong pruned_rows;       /* rows deleted by pruning jobs */
    void (*prune_work)(void *arg);  /* a job left work (rqd_registry_on_prune_work) */
    void *prune_work_arg;

    store_agent_row *load_rows;     /* the agents to load (rqd_registry_load) */
    int n_load_rows;
    pthread_t loader;
    int have_loader;
    atomic_int load_stop;
    void (*loaded_cb)(void *arg, int n);
    void *loaded_arg;
};

/* A connection to the registry's file with its settings (synchronous, --sqlite-max-length);
 * STORE_RW also checks the file (store_open). */
int rqd__store_open(rqd_registry *r, int mode, store **out, rqd_err *err);
/* A read-only connection for the calling thread; give it back with rqd_reader_put.
 * NULL on failure (err filled). */
store *rqd_reader_get(rqd_registry *r, rqd_err *err);
void rqd_reader_put(rqd_registry *r, store *s);
void rqd__stats_retry_free(rqd_registry *r); /* after the writer stopped */

/* A new episode id: 24 lowercase hex characters from /dev/urandom. */
void rqd__episode_id(char out[40]);

/* Updates one transition owes (API.md "Updates are owed only once ..."), given env_steps
 * after it. */
double rqd__owed(const redq_config *c, long long env_steps_after);

/* An rqd_agent around a learner (takes core; NULL: an unavailable agent), with the action
 * box copied, refs = 1, not yet in the table; NULL out of memory (core not taken). */
rqd_agent *rqd__agent_wrap(rqd_registry *r, int64_t id, const char *name, int S, int A,
                           const float *low, const float *high, redq_agent *core,
                           const char *created_at);
void rqd__agent_destroy(rqd_agent *a);
/* Inserts into the sorted table (a reference moves to the table). */
int rqd__table_insert(rqd_registry *r, rqd_agent *a, rqd_err *err);
/* Creation and import in three steps, so that each is all or nothing: reserve the name
 * (refused when taken, being created, or past --max-agents; the table's room is made
 * now), then commit, then publish (cannot fail) or release. */
int rqd__name_reserve(rqd_registry *r, const char *name, rqd_err *err);
void rqd__name_publish(rqd_registry *r, rqd_agent *a);
void rqd__name_release(rqd_registry *r, const char *name);

/* Takes a->ingest_mu, the lock DELETE takes before marking the agent deleted, and fails
 * (releasing it) when the agent was deleted or is not usable: every write about an agent
 * starts here, so none can land after its DELETE (API.md). */
int rqd__write_begin(rqd_agent *a, rqd_err *err);
/* As rqd__write_begin, but an agent that is not ok is allowed (restore, its repair). */
int rqd__write_begin_any(rqd_agent *a, rqd_err *err);
static inline void rqd__write_end(rqd_agent *a) { pthread_mutex_unlock(&a->ingest_mu); }

/* An evaluation on its way to SQLite (daemon/evaluations.c): the row and what was
 * posted (borrowed). */
typedef struct rqd_eval {
    store_eval_row row;
    const double *returns;
    const int64_t *lengths;   /* NULL without lengths */
} rqd_eval;
/* Under a->mu: the row of one eval episode that ended (return, length). */
void rqd__eval_one(rqd_agent *a, const double *ret, const int64_t *length, rqd_eval *e);
/* In a writer job: stores e, its row number into e->row.row. */
int rqd__eval_write(store *s, int64_t agent, const rqd_eval *e, rqd_err *err);

/* Under a->mu: makes the agent unavailable with the reason (state.error). */
void rqd__agent_fail(rqd_agent *a, const char *fmt, ...) RQD_PRINTF(2, 3);

/* Under a->mu: makes sure the stored lease covers the core's policy_version (writes
 * through the writer when it must grow). */
void rqd__policy_lease(rqd_agent *a);
/* Under a->mu: the learner's state (no buffer) into out, with its metadata. */
int rqd__ckpt_blob(rqd_agent *a, int automatic, rqd_buf *out, store_ckpt_info *info,
                   rqd_err *err);
/* Under a->mu: queues an automatic checkpoint (not waited for). */
void rqd__ckpt_auto(rqd_agent *a);

/* Rebuilds the learner's replay buffer (and env_steps, at least floor_steps) from
 * SQLite: from the base replay head if the agent has one, else from the rows its import
 * checkpoint carried if any, then every stored transition after it. A buffer the
 * transitions do not complete (a head without enough after it) is RQD_EIO: the agent
 * cannot be rebuilt. */
typedef struct {
    long long env_steps;    /* the agent's, at least floor_steps */
    long long replayed;     /* transitions read and given to the learner */
    long long from;         /* the env_steps it started from (the base's) */
    long long newest_head;  /* seq of the newest replay head stored, 0 if none */
} rqd_rebuilt;
int rqd__rebuild_buffer(rqd_registry *r, store *s, int64_t agent_id, redq_agent *core,
                        long long floor_steps, rqd_rebuilt *out, rqd_err *err);

/* Replay heads (daemon/prune.c). A post that adds transitions takes one when due, under
 * a->mu (and ingest_mu, which orders posts, so the learner's assembler is then exactly
 * the state after env_steps transitions), writes it in its transaction, and after the
 * commit says so; a post that fails frees it. */
typedef struct {
    int due;                /* a head is to be written */
    long long seq, added;   /* the env_steps it belongs to, the rows assembled by then */
    rqd_buf blob;
} rqd_head;
int rqd__head_take(rqd_agent *a, long long env_steps, rqd_head *h, rqd_err *err);
int rqd__head_write(store *s, int64_t agent, const rqd_head *h, rqd_err *err);
void rqd__head_stored(rqd_agent *a, const rqd_head *h);
void rqd__head_free(rqd_head *h);
/* Under a->mu, after the learner took a post: its ring position, for the pruning. */
void rqd__prune_added(rqd_agent *a);
/* The pruning state of an agent whose learner is new or just loaded (before it is
 * shared, or under a->mu): its buffer, retention, and the newest head stored (seq,
 * or 0 for none). */
void rqd__prune_init(rqd_agent *a, long long newest_head_seq);
/* Under a->mu, after a PATCH: the retention settings, looked at again at once. */
void rqd__prune_config(rqd_agent *a);

/* The open episodes, state.episodes and last_return of a from SQLite (startup, import). */
int rqd__load_episodes(store *s, rqd_agent *a, rqd_err *err);

/* Import of a checkpoint file (checkpoints.c), with what a move file adds (move.c):
 * updates still owed, rows written in the import's transaction, and what the agent
 * loads of them once they are committed and before it is published. */
typedef struct {
    int S, A;               /* the shape the rows are of: the checkpoint's must match */
    double pending;
    int (*write)(store *s, int64_t agent, void *ctx, rqd_err *err);
    void (*loaded)(rqd_agent *a, void *ctx);
    void *ctx;
} rqd_import_extra;
int rqd__ckpt_import(rqd_registry *r, const char *name, const void *data, size_t len,
                     const rqd_import_extra *x, rqd_agent **out, rqd_err *err);

/* Moving (move.c): RQD_EAGAIN naming the node when a is moving (under ingest_mu or
 * mu), else RQD_OK. */
int rqd__moving_refuse(rqd_agent *a, rqd_err *err);
/* At open: the agents marked moving in SQLite are moving again. */
int rqd__moving_restore(rqd_registry *r, store *s, rqd_err *err);

/* Starts and stops the trainer threads. */
int rqd__trainers_start(rqd_registry *r, int n, rqd_err *err);
void rqd__trainers_stop(rqd_registry *r);
/* Takes the waiters due after progress out of a->waiters (under a->mu). */
rqd_waiter *rqd__take_ready(rqd_agent *a);
void rqd__call_waiters(rqd_waiter *w, int status);

#endif
