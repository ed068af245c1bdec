/* redq/replay.c: chunked ring of assembled rows and the n-step streams feeding it. */
#include "replay.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rqd_limits.h"
#include "adam.h"
#include "serial.h"

struct redq__stream {
    char *id;            /* malloc'd env_id */
    long long last;      /* r->seen when it last received a transition */
    int len;             /* pending raw transitions, < n */
    float *q;            /* [n][raw] */
    redq__stream *next;  /* hash chain */
};

int redq__replay_init(redq__replay *r, int S, int A, int n, double gamma, long long capacity)
{
    memset(r, 0, sizeof *r);
    r->S = S;
    r->A = A;
    r->n = n;
    r->gamma = gamma;
    r->row = 2 * S + A + 2;
    r->raw = 2 * S + A + 3;
    r->capacity = capacity;
    r->tab_size = 16;
    r->tab = calloc((size_t)r->tab_size, sizeof *r->tab);
    return r->tab ? RQD_OK : RQD_ENOMEM;
}

static void stream_free(redq__stream *s)
{
    if (s == NULL)
        return;
    free(s->id);
    free(s->q);
    free(s);
}

void redq__replay_free(redq__replay *r)
{
    if (r == NULL)
        return;
    for (long long i = 0; i < r->n_chunks; i++)
        free(r->chunks[i]);
    free(r->chunks);
    for (int i = 0; r->tab && i < r->tab_size; i++)
        for (redq__stream *s = r->tab[i], *nx; s; s = nx) {
            nx = s->next;
            stream_free(s);
        }
    free(r->tab);
    for (redq__stream *s = r->spare, *nx; s; s = nx) {
        nx = s->next;
        stream_free(s);
    }
    for (int k = 0; k < 32; k++)
        free(r->spare_tab[k]);
    memset(r, 0, sizeof *r);
}

/* Allocates the next chunk (REDQ_REPLAY_CHUNK rows, or fewer for the ring's last). */
static int add_chunk(redq__replay *r)
{
    long long c = r->n_chunks;
    if (r->n_chunks == r->chunks_cap) {
        long long cap = r->chunks_cap ? r->chunks_cap * 2 : 8;
        float **nc = realloc(r->chunks, (size_t)cap * sizeof *nc);
        if (nc == NULL)
            return RQD_ENOMEM;
        r->chunks = nc;
        r->chunks_cap = cap;
    }
    long long rows = r->capacity - c * REDQ_REPLAY_CHUNK;
    if (rows > REDQ_REPLAY_CHUNK)
        rows = REDQ_REPLAY_CHUNK;
    float *chunk = malloc((size_t)rows * (size_t)r->row * sizeof(float));
    if (chunk == NULL)
        return RQD_ENOMEM;
    r->chunks[r->n_chunks++] = chunk;
    return RQD_OK;
}

/* Writes one assembled row at the ring position, allocating its chunk on first use. */
static int push_row(redq__replay *r, const float *obs, const float *act, float R, float disc,
                    const float *next)
{
    long long pos = r->added % r->capacity;
    if (pos / REDQ_REPLAY_CHUNK >= r->n_chunks && add_chunk(r) < 0)
        return RQD_ENOMEM;
    float *row = redq__replay_row(r, pos);
    memcpy(row, obs, sizeof(float) * (size_t)r->S);
    memcpy(row + r->S, act, sizeof(float) * (size_t)r->A);
    row[r->S + r->A] = R;
    row[r->S + r->A + 1] = disc;
    memcpy(row + r->S + r->A + 2, next, sizeof(float) * (size_t)r->S);
    r->added++;
    if (r->len < r->capacity)
        r->len++;
    return RQD_OK;
}

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static redq__stream **stream_slot(redq__replay *r, const char *id)
{
    redq__stream **pp = &r->tab[hash_id(id) & (uint64_t)(r->tab_size - 1)];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int log2_of(int size)
{
    int k = 0;
    while ((1 << k) < size)
        k++;
    return k;
}

static int grow_table(redq__replay *r)
{
    int size = r->tab_size * 2, k = log2_of(size);
    redq__stream **tab = r->spare_tab[k]; /* a reserved one, or a new one */
    r->spare_tab[k] = NULL;
    if (tab == NULL && (tab = calloc((size_t)size, sizeof *tab)) == NULL)
        return RQD_ENOMEM;
    for (int i = 0; i < r->tab_size; i++)
        for (redq__stream *s = r->tab[i], *nx; s; s = nx) {
            nx = s->next;
            uint64_t h = hash_id(s->id) & (uint64_t)(size - 1);
            s->next = tab[h];
            tab[h] = s;
        }
    free(r->tab);
    r->tab = tab;
    r->tab_size = size;
    return RQD_OK;
}

/* A stream with room for any id and a full queue, not in the table. */
static redq__stream *stream_alloc(const redq__replay *r)
{
    redq__stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->id = malloc(RQD_MAX_ENV_ID + 1);
    s->q = malloc(sizeof(float) * (size_t)r->n * (size_t)r->raw);
    if (s->id == NULL || s->q == NULL) {
        stream_free(s);
        return NULL;
    }
    return s;
}

static redq__stream *stream_new(redq__replay *r, const char *id)
{
    redq__stream *s = r->spare;
    if (s != NULL)
        r->spare = s->next;
    else if ((s = stream_alloc(r)) == NULL)
        return NULL;
    s->next = NULL;
    s->last = 0;
    s->len = 0;
    snprintf(s->id, RQD_MAX_ENV_ID + 1, "%s", id); /* the caller checked its length */
    return s;
}

static int cmp_ids(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int redq__replay_reserve(redq__replay *r, const char *const *env_ids, int n)
{
    const char **fresh = NULL;
    long long pending = 0;
    int n_fresh = 0, rc = RQD_OK;

    if (r->n > 1) {
        for (int i = 0; i < r->tab_size; i++)
            for (redq__stream *s = r->tab[i]; s; s = s->next)
                pending += s->len;
        /* The ids without a stream, each once. */
        if ((fresh = malloc(sizeof *fresh * (size_t)(n > 0 ? n : 1))) == NULL)
            return RQD_ENOMEM;
        for (int i = 0; i < n; i++) {
            const char *id = env_ids[i] ? env_ids[i] : "";
            if (*stream_slot(r, id) == NULL)
                fresh[n_fresh++] = id;
        }
        qsort(fresh, (size_t)n_fresh, sizeof *fresh, cmp_ids);
        int u = 0;
        for (int i = 0; i < n_fresh; i++)
            if (u == 0 || strcmp(fresh[u - 1], fresh[i]) != 0)
                fresh[u++] = fresh[i];
        n_fresh = u;
    }
    /* Rows: each transition assembles at most one, and so may each pending one (an
     * episode's end or an eviction flushes them). Chunks are used in order. */
    long long rows = r->added + n + pending;
    long long chunks = rows < r->capacity ? rows : r->capacity;
    chunks = (chunks + REDQ_REPLAY_CHUNK - 1) / REDQ_REPLAY_CHUNK;
    while (rc == RQD_OK && r->n_chunks < chunks)
        rc = add_chunk(r);
    /* Streams and the table's growth, met as the adds will meet them (an add evicts at
     * RQD_MAX_STREAMS, then grows the table when it is full). */
    int have = 0, size = r->tab_size, ns = r->n_streams;
    for (redq__stream *s = r->spare; s; s = s->next)
        have++;
    for (int i = 0; rc == RQD_OK && i < n_fresh; i++) {
        if (ns >= RQD_MAX_STREAMS)
            ns--;
        if (ns >= size) {
            size *= 2;
            int k = log2_of(size);
            if (r->spare_tab[k] == NULL &&
                (r->spare_tab[k] = calloc((size_t)size, sizeof(redq__stream *))) == NULL)
                rc = RQD_ENOMEM;
        }
        ns++;
        if (rc == RQD_OK && have-- <= 0) {
            redq__stream *s = stream_alloc(r);
            if (s == NULL) {
                rc = RQD_ENOMEM;
            } else {
                s->next = r->spare;
                r->spare = s;
            }
        }
    }
    free(fresh);
    return rc;
}

/* Emits the pending transition at index i of s, summing rewards up to index last. */
static int emit(redq__replay *r, const redq__stream *s, int i, int last)
{
    const int S = r->S, A = r->A;
    const float *first = s->q + (size_t)i * (size_t)r->raw;
    const float *end = s->q + (size_t)last * (size_t)r->raw;
    double R = 0.0, g = 1.0;

    for (int k = i; k <= last; k++) {
        R += g * s->q[(size_t)k * (size_t)r->raw + (size_t)(S + A)];
        g *= r->gamma;
    }
    int terminated = end[2 * S + A + 1] != 0.0f;
    return push_row(r, first, first + S, (float)R, terminated ? 0.0f : (float)g, end + S + A + 1);
}

/* Emits every pending step of s as if its episode had been truncated there (each gets
 * the n' < n it has, bootstrapped), and forgets s. */
static int flush_stream(redq__replay *r, redq__stream **pp)
{
    redq__stream *s = *pp;
    int rc = RQD_OK;
    for (int i = 0; i < s->len && rc == RQD_OK; i++)
        rc = emit(r, s, i, s->len - 1);
    *pp = s->next;
    stream_free(s);
    r->n_streams--;
    return rc;
}

/* The stream table is full: the stream idle the longest gives way (flushed as if
 * truncated). Deterministic, so a replay of the same transitions evicts the same one. */
static int evict_idle_stream(redq__replay *r)
{
    redq__stream **oldest = NULL;
    for (int i = 0; i < r->tab_size; i++)
        for (redq__stream **pp = &r->tab[i]; *pp; pp = &(*pp)->next)
            if (oldest == NULL || (*pp)->last < (*oldest)->last)
                oldest = pp;
    return oldest ? flush_stream(r, oldest) : RQD_OK;
}

/* With n == 1 a transition is one row. With n > 1 every transition counts in `seen`
 * and makes at most one row, once (rows + pending <= seen, checked on load), so `seen`
 * bounds `added`. */
int redq__replay_room(const redq__replay *r, long long n)
{
    return r->n == 1 ? rqd_count_room(r->added, n) : rqd_count_room(r->seen, n);
}

int redq__replay_add(redq__replay *r, const float *obs, const float *act, float rew,
                     const float *next, int terminated, int truncated, const char *env_id,
                     rqd_err *err)
{
    const int S = r->S, A = r->A;
    int rc;

    if (!redq__replay_room(r, 1))
        return rqd_err_set(err, RQD_ECONFLICT, "transitions", "the replay buffer's counters "
                           "are at 2^53 - 1");
    if (r->n == 1) /* REDQ.md: y = r + gamma (1 - terminated) V' */
        return push_row(r, obs, act, rew, terminated ? 0.0f : (float)r->gamma, next);

    const char *id = env_id ? env_id : "";
    redq__stream **pp = stream_slot(r, id);
    if (*pp == NULL) {
        if (r->n_streams >= RQD_MAX_STREAMS) {
            if ((rc = evict_idle_stream(r)) < 0)
                return rqd_err_set(err, rc, "", "out of memory");
            pp = stream_slot(r, id);
        }
        if (r->n_streams >= r->tab_size) {
            if ((rc = grow_table(r)) < 0)
                return rqd_err_set(err, rc, "", "out of memory");
            pp = stream_slot(r, id);
        }
        if ((*pp = stream_new(r, id)) == NULL)
            return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        r->n_streams++;
    }
    redq__stream *s = *pp;
    s->last = r->seen++;
    float *q = s->q + (size_t)s->len * (size_t)r->raw;
    memcpy(q, obs, sizeof(float) * (size_t)S);
    memcpy(q + S, act, sizeof(float) * (size_t)A);
    q[S + A] = rew;
    memcpy(q + S + A + 1, next, sizeof(float) * (size_t)S);
    q[2 * S + A + 1] = terminated ? 1.0f : 0.0f;
    q[2 * S + A + 2] = truncated ? 1.0f : 0.0f;
    s->len++;

    if (terminated || truncated) { /* the episode ended: every pending step gets n' < n */
        if ((rc = flush_stream(r, pp)) < 0)
            return rqd_err_set(err, rc, "", "out of memory");
    } else if (s->len == r->n) {
        if ((rc = emit(r, s, 0, r->n - 1)) < 0)
            return rqd_err_set(err, rc, "", "out of memory");
        memmove(s->q, s->q + r->raw, sizeof(float) * (size_t)(r->n - 1) * (size_t)r->raw);
        s->len--;
    }
    return RQD_OK;
}

size_t redq__replay_bytes(const redq__replay *r)
{
    size_t b = (size_t)r->n_chunks * REDQ_REPLAY_CHUNK * (size_t)r->row * sizeof(float);
    b += (size_t)r->n_streams * ((size_t)r->n * (size_t)r->raw * sizeof(float) + 64);
    return b;
}

int redq__replay_save(const redq__replay *r, rqd_buf *out)
{
    int rc = RQD_OK;

    rc |= redq__put_i64(out, r->added);
    rc |= redq__put_i64(out, r->len);
    for (long long i = 0; i < r->len && rc == RQD_OK; i++)
        rc = redq__put_f32s(out, redq__replay_row(r, i), (size_t)r->row);
    rc |= redq__put_i64(out, r->seen);
    rc |= redq__put_i64(out, r->n_streams);
    for (int i = 0; i < r->tab_size && rc == RQD_OK; i++)
        for (redq__stream *s = r->tab[i]; s && rc == RQD_OK; s = s->next) {
            rc |= redq__put_str(out, s->id);
            rc |= redq__put_i64(out, s->last);
            rc |= redq__put_i64(out, s->len);
            rc |= redq__put_f32s(out, s->q, (size_t)s->len * (size_t)r->raw);
        }
    return rc ? RQD_ENOMEM : RQD_OK;
}

/* A stored row or pending transition as the assembly makes them: every value finite,
 * a row's discount gamma^n' in [0, 1], a pending transition neither terminated nor
 * truncated (those are flushed at once). */
static int row_ok(const redq__replay *r, const float *row)
{
    const int X = r->S + r->A;
    return redq__all_below(row, (size_t)r->row, INFINITY) && row[X + 1] >= 0.0f &&
           row[X + 1] <= 1.0f;
}

static int pending_ok(const redq__replay *r, const float *q, long long len)
{
    const int flags = 2 * r->S + r->A + 1;
    for (long long i = 0; i < len; i++, q += r->raw)
        if (!redq__all_below(q, (size_t)flags, INFINITY) || q[flags] != 0.0f ||
            q[flags + 1] != 0.0f)
            return 0;
    return 1;
}

int redq__replay_load(redq__replay *r, const unsigned char **p, const unsigned char *end,
                      rqd_err *err)
{
    long long added, len, ns, pending = 0;

    if (redq__get_i64(p, end, &added) || redq__get_i64(p, end, &len))
        return rqd_err_set(err, RQD_EINVAL, "", "replay buffer is truncated");
    /* len = min(added, buffer_size), as push_row keeps it. */
    if (added < 0 || added > RQD_MAX_COUNTER ||
        len != (added < r->capacity ? added : r->capacity))
        return rqd_err_set(err, RQD_EINVAL, "", "replay buffer header is inconsistent (%lld "
                           "rows of %lld added, buffer_size %lld)", len, added, r->capacity);
    if ((size_t)(end - *p) / sizeof(float) / (size_t)r->row < (size_t)len)
        return rqd_err_set(err, RQD_EINVAL, "", "replay buffer is truncated");
    /* Re-push in storage order from position 0, then set the ring position. */
    r->added = 0;
    r->len = 0;
    for (long long i = 0; i < len; i++) {
        float tmp[2 * RQD_MAX_OBS_DIM + RQD_MAX_ACT_DIM + 2]; /* the blob may be unaligned */
        memcpy(tmp, *p, sizeof(float) * (size_t)r->row);
        *p += sizeof(float) * (size_t)r->row;
        if (!row_ok(r, tmp))
            return rqd_err_set(err, RQD_EINVAL, "", "replay row %lld holds a non-finite value "
                               "or a discount outside [0, 1]", i);
        if (push_row(r, tmp, tmp + r->S, tmp[r->S + r->A], tmp[r->S + r->A + 1],
                     tmp + r->S + r->A + 2) < 0)
            return rqd_err_set(err, RQD_ENOMEM, "", "out of memory loading the replay buffer");
    }
    r->added = added;
    if (redq__get_i64(p, end, &r->seen) || redq__get_i64(p, end, &ns))
        return rqd_err_set(err, RQD_EINVAL, "", "replay buffer is truncated");
    /* With n == 1 nothing goes through the streams. */
    if (r->seen < 0 || r->seen > RQD_MAX_COUNTER || ns < 0 || ns > RQD_MAX_STREAMS ||
        (r->n == 1 && (ns > 0 || r->seen > 0)))
        return rqd_err_set(err, RQD_EINVAL, "", "replay stream count is inconsistent");
    for (long long k = 0; k < ns; k++) {
        char id[RQD_MAX_ENV_ID + 1];
        long long sl, last;
        if (redq__get_str(p, end, id, sizeof id) || redq__get_i64(p, end, &last) ||
            redq__get_i64(p, end, &sl) || sl < 1 || sl >= r->n || last < 0 || last >= r->seen)
            return rqd_err_set(err, RQD_EINVAL, "", "replay stream is inconsistent");
        /* Before allocating: the queue's data must be there. */
        if ((size_t)(end - *p) / sizeof(float) / (size_t)r->raw < (size_t)sl)
            return rqd_err_set(err, RQD_EINVAL, "", "replay stream is truncated");
        redq__stream **pp = stream_slot(r, id);
        if (*pp != NULL)
            return rqd_err_set(err, RQD_EINVAL, "", "replay stream '%s' appears twice", id);
        if (r->n_streams >= r->tab_size && grow_table(r) < 0)
            return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        pp = stream_slot(r, id);
        redq__stream *s = stream_new(r, id);
        if (s == NULL)
            return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        *pp = s;
        r->n_streams++;
        s->len = (int)sl;
        s->last = last;
        if (redq__get_f32s(p, end, s->q, (size_t)sl * (size_t)r->raw))
            return rqd_err_set(err, RQD_EINVAL, "", "replay stream is truncated");
        if (!pending_ok(r, s->q, sl))
            return rqd_err_set(err, RQD_EINVAL, "", "replay stream '%s' holds a non-finite "
                               "value or an ended transition", id);
        pending += sl;
    }
    /* Every row and every pending transition went through a stream once (n > 1). */
    if (r->n > 1 && added + pending > r->seen)
        return rqd_err_set(err, RQD_EINVAL, "", "replay counters are inconsistent (%lld rows "
                           "added and %lld pending, but %lld transitions seen)", added,
                           pending, r->seen);
    return RQD_OK;
}
