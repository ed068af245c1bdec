/* storage/store.h: redqd's SQLite storage, the whole public surface.
 *
 * One store is one connection to <data-dir>/redqd.db (WAL, foreign_keys=ON,
 * synchronous NORMAL or FULL). The daemon opens one read-write connection for its writer
 * thread and read-only ones for readers; a connection is used by one thread at a time.
 * storage/ knows nothing of HTTP or of redq/: rows are plain structs and blobs.
 *
 * Every function returns RQD_OK or a negative RQD_E* code and fills err: RQD_ENOTFOUND,
 * RQD_EEXIST for a duplicate name, RQD_EIO for SQLite failures (err->msg carries
 * sqlite3_errmsg), RQD_ENOMEM. Writes that must be atomic together are wrapped by the
 * caller in store_begin/store_commit (or savepoints); a single call is atomic by itself.
 * Times are RFC 3339 UTC strings with milliseconds ("2026-11-25T20:14:31.123Z") except
 * stats rows' `time` (Unix seconds, double).
 */
#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/rqd_err.h"

typedef struct store store;

#define STORE_SCHEMA_VERSION 4

/* ------------------------------------------------------------------ connection */

enum { STORE_RW = 0, STORE_RO = 1 };

/* Opens (creating if STORE_RW and absent) the database file at path. STORE_RW runs the
 * schema migrations; a file whose user_version is newer than STORE_SCHEMA_VERSION, that
 * is not a SQLite database, whose application_id is not redqd's, or that fails
 * PRAGMA quick_check (when check is set) is refused with RQD_EIO and a clear message,
 * and nothing is written to it. sync_full selects synchronous=FULL (else NORMAL). */
int store_open(const char *path, int mode, int sync_full, int check, store **out, rqd_err *err);
void store_close(store *s); /* NULL is a no-op */

int store_begin(store *s, rqd_err *err);    /* BEGIN IMMEDIATE */
/* BEGIN (deferred): the reads up to store_rollback see one snapshot of the file. */
int store_read_begin(store *s, rqd_err *err);
int store_commit(store *s, rqd_err *err);
void store_rollback(store *s);              /* never fails; harmless outside a transaction */
int store_savepoint(store *s, rqd_err *err);      /* SAVEPOINT job */
int store_release(store *s, rqd_err *err);        /* RELEASE job */
void store_rollback_to(store *s);                 /* ROLLBACK TO job; RELEASE job */

/* Caps the database file at bytes: PRAGMA max_page_count = bytes / page_size (at least
 * one page; SQLite never sets it below the pages the file already has). 0 removes the cap,
 * restoring SQLite's default maximum. A write that needs a page past the cap fails as on
 * a full disk: RQD_EIO, message "<what>: database or disk is full". The cap belongs to
 * this connection (it is not stored in the file): set it on the read-write one. It counts
 * database pages, so the -wal file may hold a little more until a checkpoint.
 * RQD_EINVAL when bytes < 0. */
int store_set_max_size(store *s, long long bytes, rqd_err *err);

/* Lowers SQLite's limit on the bytes of one value (SQLITE_LIMIT_LENGTH) on this
 * connection, from the default of 1e9 down to at least STORE_MIN_VALUE_LIMIT. Checkpoints
 * go in parts of 16 MiB and every other value is small, so any limit in range works; it
 * lets a test show on a state of a few hundred MB what the default limit does to one of
 * GBs. RQD_EINVAL out of [STORE_MIN_VALUE_LIMIT, STORE_MAX_VALUE_LIMIT]. */
#define STORE_MIN_VALUE_LIMIT (32LL << 20)
#define STORE_MAX_VALUE_LIMIT 1000000000LL /* SQLite's default SQLITE_MAX_LENGTH */
int store_set_max_value(store *s, long long bytes, rqd_err *err);

/* The file's pages: size, count, free ones, and whether free pages can be returned to the
 * file system (auto_vacuum = INCREMENTAL, the mode of files created since schema 4). */
typedef struct {
    int64_t page_size, pages, free_pages;
    int incremental;
} store_space;
int store_space_get(store *s, store_space *out, rqd_err *err);
/* In an incremental file with more than keep free pages: returns up to max_pages of them
 * to the file system (PRAGMA incremental_vacuum), the file shrinking by as many; *freed
 * gets how many. A no-op otherwise (SQLite reuses free pages for new rows either way). */
int store_vacuum_step(store *s, int64_t keep, int64_t max_pages, int64_t *freed, rqd_err *err);

/* PRAGMA integrity_check; RQD_OK when "ok". */
int store_integrity_check(store *s, rqd_err *err);
/* VACUUM INTO path: an online, consistent copy. */
int store_backup(store *s, const char *path, rqd_err *err);

/* Test hook (STYLE R18): the nth statement step from now on (1 = the next) on this
 * connection fails with the given SQLite result code (SQLITE_FULL, SQLITE_IOERR, ...);
 * 0 disables. */
void store_fault_inject(store *s, int nth, int sqlite_rc);

/* Test hook: checkpoint states written from now on, by every connection of this process,
 * are cut into parts of at most bytes (0 restores the default, 16 MiB), so that tests
 * reach many parts with small states. Reading does not depend on it. Set it before the
 * stores are used: it is not synchronised. */
void store_test_part_size(size_t bytes);

/* Test hook: creates the file at path, or brings an older one, to schema version
 * `version` (1 .. STORE_SCHEMA_VERSION) as a redqd of that version would (below 4, with
 * auto_vacuum off), and closes it; a test then fills the old layout with SQL and opens it to see it migrated.
 * RQD_EINVAL for a version out of range. */
int store_test_create_version(const char *path, int version, rqd_err *err);

/* ------------------------------------------------------------------ agents */

typedef struct {
    int64_t id;             /* stable for the agent's life, never handed out again */
    char name[72];
    int obs_dim, act_dim;
    float *low, *high;      /* act_dim floats each; malloc'd, freed by store_agent_rows_free */
    char *config_json;      /* malloc'd */
    char created_at[32];
    int64_t policy_version; /* the highest policy_version ever published (never decreases) */
    int64_t next_ckpt_id;   /* next checkpoint id to hand out (ids are never reused) */
} store_agent_row;

/* *id_out gets a new id, never one of an agent that existed before (deleted ones and
 * across reopens included). RQD_EEXIST if the name is taken. */
int store_agent_insert(store *s, const char *name, int obs_dim, int act_dim, const float *low,
                       const float *high, const char *config_json, int64_t *id_out,
                       rqd_err *err);
int store_agent_set_config(store *s, int64_t id, const char *config_json, rqd_err *err);
/* Raises the stored policy_version to v if v is higher. */
int store_agent_bump_policy(store *s, int64_t id, int64_t v, rqd_err *err);
/* Deletes the agent and every row of it (transitions, checkpoints, stats, episodes,
 * batch ids) in one transaction. RQD_ENOTFOUND if absent. */
int store_agent_delete(store *s, int64_t id, rqd_err *err);
/* All agents in byte order of name; *rows malloc'd (NULL when n = 0). */
int store_agent_list(store *s, store_agent_row **rows, int *n, rqd_err *err);
void store_agent_rows_free(store_agent_row *rows, int n);

/* ------------------------------------------------------------------ transitions */

/* One raw transition as the environment gave it (action in the environment's scale). */
typedef struct {
    const float *obs;      /* [obs_dim] */
    const float *action;   /* [act_dim] */
    float reward;
    const float *next_obs; /* [obs_dim] */
    int terminated, truncated;
    const char *env_id;    /* NULL or "" = default stream */
} store_transition;

/* Appends n transitions with seq first_seq, first_seq+1, ... (seq = the agent's env_steps
 * after the transition, so 1-based). RQD_EEXIST if a seq already exists. */
int store_transitions_append(store *s, int64_t agent, int64_t first_seq,
                             const store_transition *t, int n, int obs_dim, int act_dim,
                             rqd_err *err);
/* Highest seq stored for the agent (0 if none). */
int store_transitions_max_seq(store *s, int64_t agent, int64_t *out, rqd_err *err);
/* Deletes the agent's transitions with seq <= upto, the oldest first, at most max_rows of
 * them (max_rows >= 1); *deleted gets how many: fewer than max_rows means none is left. */
int store_transitions_delete_upto(store *s, int64_t agent, int64_t upto, int max_rows,
                                  int *deleted, rqd_err *err);
/* Calls cb for every transition with seq >= from_seq in ascending seq order; the
 * pointers in *t are valid only during the call. A non-zero return from cb stops the
 * scan and is returned. */
int store_transitions_scan(store *s, int64_t agent, int64_t from_seq, int obs_dim, int act_dim,
                           int (*cb)(void *ctx, int64_t seq, const store_transition *t),
                           void *ctx, rqd_err *err);

/* ------------------------------------------------------------------ batch ids */

/* The stored answer for batch_id (malloc'd JSON text into *answer), or *answer = NULL
 * when the id is unknown. */
int store_batch_get(store *s, int64_t agent, const char *batch_id, char **answer, rqd_err *err);
/* Stores the id with its post order (1, 2, ... per agent) and the time (Unix seconds). */
int store_batch_put(store *s, int64_t agent, const char *batch_id, const char *answer,
                    rqd_err *err);
/* Deletes the agent's oldest ids that are outside its newest `keep` and were stored
 * before `before` (Unix seconds), oldest first, at most max_rows; *deleted gets how many
 * (fewer than max_rows: no other id is past both). */
int store_batch_prune(store *s, int64_t agent, int64_t keep, int64_t before, int max_rows,
                      int *deleted, rqd_err *err);

/* ------------------------------------------------------------------ replay heads */

/* A replay head (redq_agent_head_save's bytes; opaque here) is stored with the agent's
 * env_steps when it was taken (seq) and the rows its learner had assembled (added). The
 * base head, once one is set, is what a restart rebuilds the replay buffer from: the
 * transitions up to its seq may be gone. */
typedef struct {
    int64_t seq;
    int64_t added;
    int base;
    int64_t bytes;
} store_head_info;

/* RQD_EEXIST when the agent has a head at seq. */
int store_head_put(store *s, int64_t agent, int64_t seq, int64_t added, const void *blob,
                   size_t len, rqd_err *err);
/* Ascending by seq, without the blobs; *rows malloc'd (NULL when n = 0). */
int store_head_list(store *s, int64_t agent, store_head_info **rows, int *n, rqd_err *err);
/* The base head: its metadata, and the blob malloc'd into *blob when blob is not NULL.
 * RQD_ENOTFOUND when the agent has none. */
int store_head_base(store *s, int64_t agent, store_head_info *info, void **blob, size_t *len,
                    rqd_err *err);
/* Makes the head at seq the base and deletes every head before it, in one call.
 * RQD_ENOTFOUND when there is no head at seq. */
int store_head_set_base(store *s, int64_t agent, int64_t seq, rqd_err *err);

/* ------------------------------------------------------------------ history retention */

/* An agent's retention (the history_* settings). A stats, evaluation or episode row is past
 * the window when it is outside the newest keep_rows of its table and older than
 * keep_seconds, of those limits that are set; with neither set no row is. */
typedef struct {
    int64_t keep_rows;     /* 0: no count limit */
    double keep_seconds;   /* 0: no age limit */
    int thin;              /* past the window every thin-th stats and evaluation row stays */
    double now;            /* Unix seconds */
} store_retention;

typedef struct {
    int stats, evaluations, episodes; /* rows deleted */
    int more;                         /* a table had more than max_rows past the window */
} store_prune_counts;

/* Applies retention to the agent's stats and evaluations (thinned: of every thin rows past
 * the window, in row order, the first stays) and ended episodes (deleted; open ones stay),
 * walking at most max_rows rows of each from where the previous call stopped (stored:
 * a row is thinned once, whatever the settings later say). The newest episode always
 * stays. Ended explore episodes deleted still count in store_episode_ended. */
int store_history_prune(store *s, int64_t agent, const store_retention *r, int max_rows,
                        store_prune_counts *out, rqd_err *err);

/* The ended explore episodes retention deleted, as store_episode_ended counts them: how
 * many, and the newest one's return and end (ended_at "" when none ended). */
typedef struct {
    int64_t episodes;
    double last_return;
    char ended_at[32];
} store_dropped;

int store_dropped_get(store *s, int64_t agent, store_dropped *out, rqd_err *err);
/* Adds d to the agent's count (a moved agent's); its last return stands when it ended
 * after the one recorded. */
int store_dropped_add(store *s, int64_t agent, const store_dropped *d, rqd_err *err);

/* ------------------------------------------------------------------ checkpoints */

typedef struct {
    int64_t id;             /* per agent, increasing, never reused */
    int64_t updates;
    int64_t env_steps;
    int64_t policy_version;
    double pending_updates; /* updates owed and not yet done when it was taken */
    int automatic;          /* 1: periodic, restore, import or shutdown; 0: by request */
    int64_t bytes;          /* blob size */
    char created_at[32];
} store_ckpt_info;

/* Inserts a checkpoint with the agent's next id (info->id is ignored; *id_out gets it)
 * and, when automatic, deletes the oldest automatic checkpoints beyond keep_auto. The
 * blob may be of any size (it is stored in parts of at most 16 MiB, below SQLite's limit
 * on one value); it is read in place, never copied whole. */
int store_ckpt_insert(store *s, int64_t agent, const store_ckpt_info *info, const void *blob,
                      size_t len, int keep_auto, int64_t *id_out, rqd_err *err);
/* Ascending by id; *rows malloc'd (NULL when n = 0). */
int store_ckpt_list(store *s, int64_t agent, store_ckpt_info **rows, int *n, rqd_err *err);
/* Checkpoint id (or the newest when id < 0): metadata, and the blob malloc'd into *blob
 * when blob is not NULL (one buffer, its parts copied into it). RQD_ENOTFOUND if absent;
 * RQD_EIO ("checkpoint N is damaged") when its stored parts do not make the blob. */
int store_ckpt_get(store *s, int64_t agent, int64_t id, store_ckpt_info *info, void **blob,
                   size_t *len, rqd_err *err);
int store_ckpt_delete(store *s, int64_t agent, int64_t id, rqd_err *err);

/* ------------------------------------------------------------------ stats */

/* A value not known is NaN (stored as NULL). */
typedef struct {
    int64_t row;            /* assigned on insert, increasing across all agents */
    int64_t update;
    int64_t env_steps;
    double time;            /* Unix seconds */
    double actor_loss, critic_loss, alpha, alpha_loss, q_mean, q_std, train_time;
} store_stats_row;

/* Rows with row > 0 keep that number (it must be unused: RQD_EEXIST otherwise); row 0
 * is numbered by SQLite. */
int store_stats_append(store *s, int64_t agent, const store_stats_row *rows, int n,
                       rqd_err *err);
/* A row number above every row ever stored, for a writer that numbers its own rows. */
int store_stats_next_row(store *s, int64_t *out, rqd_err *err);
/* Rows with row > since, ascending, at most limit; *rows malloc'd (NULL when n = 0). */
int store_stats_range(store *s, int64_t agent, int64_t since, int limit, store_stats_row **rows,
                      int *n, rqd_err *err);

/* ------------------------------------------------------------------ episodes */

enum { STORE_EP_EXPLORE = 0, STORE_EP_EVAL = 1 };
enum { STORE_SRC_EPISODES = 0, STORE_SRC_TRANSITIONS = 1 };

typedef struct {
    char id[40];
    int mode;               /* STORE_EP_* */
    double ret;             /* return so far */
    int64_t length;         /* steps so far */
    char started_at[32];
    char ended_at[32];      /* "" while open */
    int abandoned;
    int source;             /* STORE_SRC_*: the episodes API or transitions posts */
    char env_id[136];       /* transitions: the stream's env_id ("" for none) */
    float *last_obs;        /* [obs_dim], malloc'd; NULL on ended episodes in lists */
    float *last_action;     /* [act_dim], malloc'd; NULL on ended episodes in lists */
} store_episode_row;

/* Inserts or replaces the episode (last_obs/last_action stored while it is open). */
int store_episode_put(store *s, int64_t agent, const store_episode_row *e, int obs_dim,
                      int act_dim, rqd_err *err);
/* Newest start first, at most limit (ties broken by insertion order, newest first). */
int store_episode_list(store *s, int64_t agent, int limit, int obs_dim, int act_dim,
                       store_episode_row **rows, int *n, rqd_err *err);
/* Every open episode of the agent, with last_obs and last_action. */
int store_episode_open(store *s, int64_t agent, int obs_dim, int act_dim,
                       store_episode_row **rows, int *n, rqd_err *err);
/* One episode (*row malloc'd, freed with store_episode_rows_free(*row, 1)); RQD_ENOTFOUND. */
int store_episode_get(store *s, int64_t agent, const char *id, int obs_dim, int act_dim,
                      store_episode_row **row, rqd_err *err);
/* Explore episodes that ended (abandoned ones not counted), those retention deleted
 * included, and the return of the one that ended last (NaN when none). */
int store_episode_ended(store *s, int64_t agent, int64_t *count, double *last_return,
                        rqd_err *err);
void store_episode_rows_free(store_episode_row *rows, int n);

/* ------------------------------------------------------------------ transition streams */

/* The episode a transitions stream (agent, env_id) is adding up (API.md "Returns from
 * transitions"): kept in the same transaction as the post that moves it. */
typedef struct {
    char env_id[136];       /* "" for the default stream */
    double ret;
    int64_t length;
    char started_at[32];
} store_stream_row;

/* Inserts or replaces the stream's row. */
int store_stream_put(store *s, int64_t agent, const store_stream_row *row, rqd_err *err);
/* Removes it (its episode ended); no row is not an error. */
int store_stream_delete(store *s, int64_t agent, const char *env_id, rqd_err *err);
/* Every stream of the agent; *rows malloc'd (NULL when n = 0). */
int store_stream_list(store *s, int64_t agent, store_stream_row **rows, int *n, rqd_err *err);

/* ------------------------------------------------------------------ evaluations */

/* An evaluation a client recorded (API.md "Evaluations"). */
typedef struct {
    int64_t row;            /* assigned on insert, increasing across all agents */
    int64_t env_steps, updates, policy_version;
    char time[32];          /* RFC 3339 */
    int n;
    double mean, std, min, max;
    double mean_length;     /* NaN without lengths */
} store_eval_row;

/* Inserts e (its row ignored, *row_out gets it) with the n returns and, when lengths is
 * not NULL, their lengths. */
int store_eval_append(store *s, int64_t agent, const store_eval_row *e, const double *returns,
                      const int64_t *lengths, int64_t *row_out, rqd_err *err);
/* Rows with row > since, ascending, at most limit; *rows malloc'd (NULL when n = 0). */
int store_eval_range(store *s, int64_t agent, int64_t since, int limit, store_eval_row **rows,
                     int *n, rqd_err *err);

/* ------------------------------------------------------------------ moving agents */

/* An agent that is moving to another node (storage/move.c). */
typedef struct {
    int64_t agent;
    int64_t since;          /* Unix seconds */
} store_moving_row;

/* Marks the agent as moving since `since` (Unix seconds, > 0), or clears the mark (0). */
int store_moving_set(store *s, int64_t agent, int64_t since, rqd_err *err);
/* Every agent marked moving; *rows malloc'd (NULL when n = 0). */
int store_moving_list(store *s, store_moving_row **rows, int *n, rqd_err *err);
/* Calls cb for every batch id of the agent with the answer stored for it; a non-zero
 * return from cb stops the scan and is returned. */
int store_batch_scan(store *s, int64_t agent,
                     int (*cb)(void *ctx, const char *batch_id, const char *answer), void *ctx,
                     rqd_err *err);
/* Calls cb for every evaluation of the agent, oldest first, with the returns (and
 * lengths, or NULL) as posted; the pointers are valid only during the call. */
int store_eval_scan(store *s, int64_t agent,
                    int (*cb)(void *ctx, const store_eval_row *e, const double *returns,
                              const int64_t *lengths),
                    void *ctx, rqd_err *err);

#endif
