/* redq/replay.h: the replay buffer and the per-stream n-step assembly (REDQ.md
 * "n-step returns").
 *
 * A row is one assembled transition, obs[S] act[A] R disc next[S] (2S+A+2 floats), where
 * act is in [-1, 1], R the n-step return and disc = gamma^n' (0 when the last step
 * terminated), so that the target is y = R + disc * V'(next). Rows live in chunks of
 * REDQ_REPLAY_CHUNK allocated as data arrives (memory grows with the data, not with
 * buffer_size); once buffer_size rows are held, the oldest is overwritten.
 *
 * With n > 1 each env stream keeps its last < n raw transitions until they can be
 * assembled; a stream whose episode ended is flushed and forgotten.
 */
#ifndef REDQ_REPLAY_H
#define REDQ_REPLAY_H

#include <stddef.h>

#include "../common/rqd_buf.h"
#include "../common/rqd_err.h"
#include "rng.h"

#define REDQ_REPLAY_CHUNK 1024 /* rows per allocation */

typedef struct redq__stream redq__stream;

typedef struct {
    int S, A, n;          /* obs dim, act dim, estimation_step */
    double gamma;
    int row;              /* floats per row: 2S + A + 2 */
    int raw;              /* floats per pending raw transition: 2S + A + 3 */
    long long capacity;   /* buffer_size */
    long long added;      /* rows ever written; the next goes to added % capacity */
    long long len;        /* rows held, min(added, capacity) */
    float **chunks;       /* each REDQ_REPLAY_CHUNK rows */
    long long n_chunks;
    long long chunks_cap;
    redq__stream **tab;   /* stream hash table (chained) */
    int tab_size;
    int n_streams;
    /* Allocated ahead by redq__replay_reserve, so that an add it covered cannot fail:
     * streams (ids of RQD_MAX_ENV_ID bytes), and the tables the next doublings will take
     * (spare_tab[k] holds 2^k slots). */
    redq__stream *spare;
    redq__stream **spare_tab[32];
    long long seen;       /* transitions given to streams, for least-recently-used order */
} redq__replay;

int redq__replay_init(redq__replay *r, int S, int A, int n, double gamma, long long capacity);
void redq__replay_free(redq__replay *r);

/* One raw transition (act already in the network's scale). */
int redq__replay_add(redq__replay *r, const float *obs, const float *act, float rew,
                     const float *next, int terminated, int truncated, const char *env_id,
                     rqd_err *err);

/* 1 if n more raw transitions keep `added` and `seen` within RQD_MAX_COUNTER. */
int redq__replay_room(const redq__replay *r, long long n);

/* Allocates ahead whatever adding n raw transitions with these env_ids (NULL = the
 * default stream) may need, so that those adds cannot fail for memory: chunks for every
 * row they may assemble (n plus the transitions pending in streams), streams for ids not
 * seen, the hash table's growth. Changes nothing a learner can observe. RQD_ENOMEM. */
int redq__replay_reserve(redq__replay *r, const char *const *env_ids, int n);

/* Row i (0 <= i < len), in storage order. */
static inline float *redq__replay_row(const redq__replay *r, long long i)
{
    return r->chunks[i / REDQ_REPLAY_CHUNK] + (size_t)(i % REDQ_REPLAY_CHUNK) * (size_t)r->row;
}

/* Bytes held by rows and pending queues. */
size_t redq__replay_bytes(const redq__replay *r);

/* Serialisation: appended to out / read from *p (advanced), bounds-checked. */
int redq__replay_save(const redq__replay *r, rqd_buf *out);
int redq__replay_load(redq__replay *r, const unsigned char **p, const unsigned char *end,
                      rqd_err *err);

#endif
