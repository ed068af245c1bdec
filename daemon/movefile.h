/* daemon/movefile.h: the move file, everything an agent takes to another node (docs/api.md
 * "Moving an agent"): its learner with the replay buffer (a checkpoint file, redq's
 * format), the updates it still owes, and what SQLite holds of it beside the learner --
 * batch ids with their answers (so that a retry after the move is still answered once),
 * episodes (open ones with their last observation and action, so that they go on),
 * transitions streams, stats rows and evaluations.
 *
 * Layout (little-endian), version 2 (1 lacked the dropped episodes):
 *   "REDQMOVE" u32 version
 *   sections, in this order, each: 4-byte tag, u64 length, payload
 *     HEAD  str name, str node, str created_at, u32 obs_dim, u32 act_dim, f64 pending,
 *           i64 dropped episodes, f64 their last return, str its end ("" when none)
 *           (ended explore episodes retention deleted: state.episodes counts them)
 *     CKPT  the checkpoint file with its buffer ("REDQCKPT", redq/ckpt.c)
 *     BTCH  u64 n, n x (str batch_id, str answer)
 *     EPIS  u64 n, n x (str id, u8 mode, u8 source, u8 abandoned, f64 return, i64 length,
 *           str env_id, str started_at, str ended_at ("" while open), and while open
 *           f32 last_obs[obs_dim], f32 last_action[act_dim]), oldest first
 *     STRM  u64 n, n x (str env_id, f64 return, i64 length, str started_at)
 *     STAT  u64 n, n x (i64 update, i64 env_steps, f64 time, f64 x 7 values), oldest first
 *     EVAL  u64 n, n x (i64 env_steps, updates, policy_version, str time, u32 n,
 *           f64 mean, std, min, max, mean_length, f64 returns[n], u8 has_lengths,
 *           i64 lengths[n] when it has them), oldest first
 *   u32 CRC-32 (zlib) of every byte before it
 * A string is u32 length and bytes (no NUL). The decoder trusts nothing: a wrong tag,
 * order, length, count, string or value is refused naming the section, and nothing is
 * allocated for rows the file is too short to hold.
 */
#ifndef RQD_MOVEFILE_H
#define RQD_MOVEFILE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/rqd_buf.h"
#include "../common/rqd_err.h"
#include "../common/rqd_limits.h"
#include "../storage/store.h"

#define RQD_MOVE_MAGIC "REDQMOVE"
#define RQD_MOVE_VERSION 2u
/* Largest answer stored with a batch id: the daemon's are under 100 bytes. */
#define RQD_MOVE_MAX_ANSWER 4096

typedef struct {
    char id[RQD_MAX_BATCH_ID + 1];
    char *answer;                     /* malloc'd */
} rqd_move_batch;

typedef struct {
    store_eval_row row;
    double *returns;                  /* [row.n], malloc'd */
    int64_t *lengths;                 /* [row.n], malloc'd, or NULL */
} rqd_move_eval;

/* A decoded move file. ckpt points into the bytes it was decoded from. */
typedef struct {
    char name[72];
    char node[RQD_MAX_NODE_NAME + 1];  /* the node it comes from */
    char created_at[32];
    int S, A;
    double pending;                    /* updates owed at the move */
    store_dropped dropped;             /* episodes retention deleted */
    const void *ckpt;
    size_t ckpt_len;
    rqd_move_batch *batches;
    int n_batches;
    store_episode_row *episodes;       /* oldest first */
    int n_episodes;
    store_stream_row *streams;
    int n_streams;
    store_stats_row *stats;            /* oldest first; row numbers are the target's */
    int n_stats;
    rqd_move_eval *evals;              /* oldest first */
    int n_evals;
} rqd_move_file;

/* 1 when data starts as a move file does (PUT .../checkpoint takes either kind). */
int rqd_move_is_file(const void *data, size_t len);
/* Decodes and checks data into m (freed with rqd_move_file_free, whatever the result);
 * RQD_EINVAL naming what is wrong. */
int rqd_move_decode(const void *data, size_t len, rqd_move_file *m, rqd_err *err);
void rqd_move_file_free(rqd_move_file *m);

/* Writing one: the header and checkpoint, then each section's rows in the order above,
 * then the end. Errors (RQD_ENOMEM, RQD_ETOOBIG) stick: every call after one is a no-op,
 * and rqd_move_w_end returns it. */
typedef struct {
    rqd_buf *out;
    int rc;
    size_t section;                    /* offset of the open section's length */
    uint64_t count;                    /* rows in the open section */
    size_t count_at;
    int S, A;
} rqd_move_writer;

void rqd_move_w_begin(rqd_move_writer *w, rqd_buf *out, const rqd_move_file *head);
void rqd_move_w_section(rqd_move_writer *w, const char tag[4]);
void rqd_move_w_batch(rqd_move_writer *w, const char *batch_id, const char *answer);
void rqd_move_w_episode(rqd_move_writer *w, const store_episode_row *e);
void rqd_move_w_stream(rqd_move_writer *w, const store_stream_row *s);
void rqd_move_w_stats(rqd_move_writer *w, const store_stats_row *r);
void rqd_move_w_eval(rqd_move_writer *w, const store_eval_row *e, const double *returns,
                     const int64_t *lengths);
int rqd_move_w_end(rqd_move_writer *w);

#endif
