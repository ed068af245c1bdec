/* daemon/movefile.c: the move file's writer and its checking reader (the layout is in
 * movefile.h). The writer appends to a buffer as the rows are read out of SQLite, so an
 * export holds each row once; the reader checks every field before anything is kept. */
#include "movefile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the move file is written in the host's byte order, which must be little-endian"
#endif

static const char *const tags[] = {"HEAD", "CKPT", "BTCH", "EPIS", "STRM", "STAT", "EVAL"};
enum { SEC_HEAD, SEC_CKPT, SEC_BTCH, SEC_EPIS, SEC_STRM, SEC_STAT, SEC_EVAL, SEC_N };

/* ------------------------------------------------------------------ writing */

static void w_bytes(rqd_move_writer *w, const void *p, size_t n)
{
    if (w->rc == 0)
        w->rc = rqd_buf_append(w->out, p, n);
}

static void w_u8(rqd_move_writer *w, int v)
{
    unsigned char c = (unsigned char)v;
    w_bytes(w, &c, 1);
}

static void w_u32(rqd_move_writer *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_i64(rqd_move_writer *w, int64_t v) { w_bytes(w, &v, 8); }
static void w_f64(rqd_move_writer *w, double v) { w_bytes(w, &v, 8); }

static void w_str(rqd_move_writer *w, const char *s)
{
    size_t n = strlen(s);
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

/* Patches the open section's length (and row count) in place. */
static void close_section(rqd_move_writer *w)
{
    if (w->rc != 0 || w->section == 0)
        return;
    uint64_t len = (uint64_t)(w->out->len - w->section - 8);
    memcpy(w->out->data + w->section, &len, 8);
    if (w->count_at)
        memcpy(w->out->data + w->count_at, &w->count, 8);
    w->section = w->count_at = 0;
    w->count = 0;
}

static void open_section(rqd_move_writer *w, const char tag[4], int rows)
{
    uint64_t zero = 0;
    close_section(w);
    w_bytes(w, tag, 4);
    w->section = w->out->len;
    w_bytes(w, &zero, 8);
    if (rows) {
        w->count_at = w->out->len;
        w_bytes(w, &zero, 8);
    }
}

void rqd_move_w_begin(rqd_move_writer *w, rqd_buf *out, const rqd_move_file *head)
{
    memset(w, 0, sizeof *w);
    w->out = out;
    w->S = head->S;
    w->A = head->A;
    w_bytes(w, RQD_MOVE_MAGIC, 8);
    w_u32(w, RQD_MOVE_VERSION);
    open_section(w, tags[SEC_HEAD], 0);
    w_str(w, head->name);
    w_str(w, head->node);
    w_str(w, head->created_at);
    w_u32(w, (uint32_t)head->S);
    w_u32(w, (uint32_t)head->A);
    w_f64(w, head->pending);
    w_i64(w, head->dropped.episodes);
    w_f64(w, head->dropped.last_return);
    w_str(w, head->dropped.ended_at);
    open_section(w, tags[SEC_CKPT], 0);
    w_bytes(w, head->ckpt, head->ckpt_len);
}

void rqd_move_w_section(rqd_move_writer *w, const char tag[4])
{
    open_section(w, tag, 1);
}

void rqd_move_w_batch(rqd_move_writer *w, const char *batch_id, const char *answer)
{
    w->count++;
    w_str(w, batch_id);
    w_str(w, answer);
}

void rqd_move_w_episode(rqd_move_writer *w, const store_episode_row *e)
{
    int open = e->ended_at[0] == '\0';
    w->count++;
    w_str(w, e->id);
    w_u8(w, e->mode);
    w_u8(w, e->source);
    w_u8(w, e->abandoned != 0);
    w_f64(w, e->ret);
    w_i64(w, e->length);
    w_str(w, e->env_id);
    w_str(w, e->started_at);
    w_str(w, e->ended_at);
    if (open && e->last_obs && e->last_action) {
        w_bytes(w, e->last_obs, sizeof(float) * (size_t)w->S);
        w_bytes(w, e->last_action, sizeof(float) * (size_t)w->A);
    } else if (open && w->rc == 0) {
        w->rc = RQD_EINVAL; /* an open episode without its last step: not movable */
    }
}

void rqd_move_w_stream(rqd_move_writer *w, const store_stream_row *s)
{
    w->count++;
    w_str(w, s->env_id);
    w_f64(w, s->ret);
    w_i64(w, s->length);
    w_str(w, s->started_at);
}

void rqd_move_w_stats(rqd_move_writer *w, const store_stats_row *r)
{
    const double v[] = {r->time, r->actor_loss, r->critic_loss, r->alpha, r->alpha_loss,
                        r->q_mean, r->q_std, r->train_time};
    w->count++;
    w_i64(w, r->update);
    w_i64(w, r->env_steps);
    w_bytes(w, v, sizeof v);
}

void rqd_move_w_eval(rqd_move_writer *w, const store_eval_row *e, const double *returns,
                     const int64_t *lengths)
{
    const double v[] = {e->mean, e->std, e->min, e->max, e->mean_length};
    w->count++;
    w_i64(w, e->env_steps);
    w_i64(w, e->updates);
    w_i64(w, e->policy_version);
    w_str(w, e->time);
    w_u32(w, (uint32_t)e->n);
    w_bytes(w, v, sizeof v);
    w_bytes(w, returns, sizeof *returns * (size_t)e->n);
    w_u8(w, lengths != NULL);
    if (lengths)
        w_bytes(w, lengths, sizeof *lengths * (size_t)e->n);
}

int rqd_move_w_end(rqd_move_writer *w)
{
    close_section(w);
    if (w->rc == 0) {
        uint32_t crc = (uint32_t)crc32(0L, w->out->data, (uInt)0);
        for (size_t at = 0; at < w->out->len;) { /* zlib takes at most UINT_MAX at a time */
            size_t n = w->out->len - at > (1u << 30) ? (1u << 30) : w->out->len - at;
            crc = (uint32_t)crc32(crc, w->out->data + at, (uInt)n);
            at += n;
        }
        w_u32(w, crc);
    }
    return w->rc;
}

/* ------------------------------------------------------------------ reading */

/* A cursor over one section; the first failure sticks (bad, why) and later reads give
 * zeros, so a row is read whole and checked once. */
typedef struct {
    const unsigned char *p, *end;
    const char *bad;          /* what was wrong, or NULL */
} rd;

static int r_take(rd *r, void *out, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        if (!r->bad)
            r->bad = "it ends early";
        memset(out, 0, n);
        return -1;
    }
    memcpy(out, r->p, n);
    r->p += n;
    return 0;
}

static unsigned r_u8(rd *r)
{
    unsigned char c;
    r_take(r, &c, 1);
    return c;
}

static uint32_t r_u32(rd *r)
{
    uint32_t v;
    r_take(r, &v, 4);
    return v;
}

static int64_t r_i64(rd *r)
{
    int64_t v;
    r_take(r, &v, 8);
    return v;
}

static double r_f64(rd *r)
{
    double v;
    r_take(r, &v, 8);
    return v;
}

/* A string of at most cap - 1 bytes without a NUL into out; allowed (if not NULL) lists
 * the characters it may hold besides letters and digits. */
static void r_str(rd *r, char *out, size_t cap, const char *allowed, const char *what)
{
    uint32_t n = r_u32(r);
    out[0] = '\0';
    if (r->bad)
        return;
    if (n >= cap || (size_t)(r->end - r->p) < n) {
        r->bad = what;
        return;
    }
    memcpy(out, r->p, n);
    out[n] = '\0';
    r->p += n;
    if (strlen(out) != n)
        r->bad = what;
    for (uint32_t i = 0; allowed && i < n && !r->bad; i++) {
        char c = out[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(allowed, c)))
            r->bad = what;
    }
}

/* An RFC 3339 time as the daemon writes them ("2026-12-01T10:00:00.000Z"); "" only when
 * empty_ok. */
static void r_time(rd *r, char *out, size_t cap, int empty_ok, const char *what)
{
    r_str(r, out, cap, "-:.TZ+", what);
    size_t n = strlen(out);
    if (!r->bad && !(n == 0 && empty_ok) && (n < 20 || out[4] != '-' || out[10] != 'T'))
        r->bad = what;
}

static void r_floats(rd *r, float *v, size_t n, const char *what)
{
    if (r_take(r, v, sizeof *v * n) < 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            r->bad = what;
            return;
        }
}

static int counter_ok(int64_t v) { return v >= 0 && v <= RQD_MAX_COUNTER; }

/* The row count of a section, refused when the section cannot hold that many rows of at
 * least min_row bytes (nothing is allocated for rows that are not there). */
static int r_count(rd *r, size_t min_row)
{
    int64_t n = r_i64(r);
    if (!r->bad && (n < 0 || n > INT32_MAX || (uint64_t)n > (uint64_t)(r->end - r->p) / min_row))
        r->bad = "its row count does not fit its length";
    return r->bad ? 0 : (int)n;
}

static void read_batches(rd *r, rqd_move_file *m)
{
    int n = r_count(r, 10);
    if (n && (m->batches = calloc((size_t)n, sizeof *m->batches)) == NULL) {
        r->bad = "out of memory";
        return;
    }
    for (int i = 0; i < n && !r->bad; i++) {
        rqd_move_batch *b = &m->batches[m->n_batches];
        char answer[RQD_MOVE_MAX_ANSWER + 1];
        r_str(r, b->id, sizeof b->id, "_.:-", "a batch_id is not 1 to 128 of [A-Za-z0-9_.:-]");
        r_str(r, answer, sizeof answer, NULL, "a batch answer is too long");
        if (!r->bad && (b->id[0] == '\0' || answer[0] != '{'))
            r->bad = "a batch id or its answer is empty";
        if (!r->bad && (b->answer = strdup(answer)) == NULL)
            r->bad = "out of memory";
        if (!r->bad)
            m->n_batches++;
    }
}

static void read_episodes(rd *r, rqd_move_file *m)
{
    int n = r_count(r, 60);
    if (n && (m->episodes = calloc((size_t)n, sizeof *m->episodes)) == NULL) {
        r->bad = "out of memory";
        return;
    }
    for (int i = 0; i < n && !r->bad; i++) {
        store_episode_row *e = &m->episodes[m->n_episodes];
        r_str(r, e->id, sizeof e->id, "_.:-", "an episode id is not of [A-Za-z0-9_.:-]");
        e->mode = (int)r_u8(r);
        e->source = (int)r_u8(r);
        e->abandoned = (int)r_u8(r);
        e->ret = r_f64(r);
        e->length = r_i64(r);
        r_str(r, e->env_id, RQD_MAX_ENV_ID + 1, NULL, "an episode's env_id is too long");
        r_time(r, e->started_at, sizeof e->started_at, 0, "an episode's started_at is not a time");
        r_time(r, e->ended_at, sizeof e->ended_at, 1, "an episode's ended_at is not a time");
        if (!r->bad && (e->id[0] == '\0' || e->mode > STORE_EP_EVAL ||
                        e->source > STORE_SRC_TRANSITIONS || e->abandoned > 1 ||
                        !isfinite(e->ret) || !counter_ok(e->length) ||
                        (e->source == STORE_SRC_EPISODES && e->env_id[0] != '\0')))
            r->bad = "an episode has a field out of its range";
        if (!r->bad && e->ended_at[0] == '\0') { /* open: its last observation and action */
            e->last_obs = malloc(sizeof(float) * (size_t)m->S);
            e->last_action = malloc(sizeof(float) * (size_t)m->A);
            if (e->last_obs == NULL || e->last_action == NULL)
                r->bad = "out of memory";
            else {
                r_floats(r, e->last_obs, (size_t)m->S, "an open episode's last_obs is not finite");
                r_floats(r, e->last_action, (size_t)m->A,
                         "an open episode's last_action is not finite");
            }
        }
        m->n_episodes++; /* counted even when bad: its arrays are freed with the rest */
    }
}

static void read_streams(rd *r, rqd_move_file *m)
{
    int n = r_count(r, 28);
    if (n && (m->streams = calloc((size_t)n, sizeof *m->streams)) == NULL) {
        r->bad = "out of memory";
        return;
    }
    for (int i = 0; i < n && !r->bad; i++) {
        store_stream_row *s = &m->streams[m->n_streams];
        r_str(r, s->env_id, RQD_MAX_ENV_ID + 1, NULL, "a stream's env_id is too long");
        s->ret = r_f64(r);
        s->length = r_i64(r);
        r_time(r, s->started_at, sizeof s->started_at, 0, "a stream's started_at is not a time");
        if (!r->bad && (!isfinite(s->ret) || !counter_ok(s->length)))
            r->bad = "a stream has a field out of its range";
        if (!r->bad)
            m->n_streams++;
    }
}

static void read_stats(rd *r, rqd_move_file *m)
{
    int n = r_count(r, 80);
    if (n && (m->stats = calloc((size_t)n, sizeof *m->stats)) == NULL) {
        r->bad = "out of memory";
        return;
    }
    for (int i = 0; i < n && !r->bad; i++) {
        store_stats_row *s = &m->stats[m->n_stats];
        double v[8];
        s->update = r_i64(r);
        s->env_steps = r_i64(r);
        r_take(r, v, sizeof v);
        s->time = v[0];
        s->actor_loss = v[1];
        s->critic_loss = v[2];
        s->alpha = v[3];
        s->alpha_loss = v[4];
        s->q_mean = v[5];
        s->q_std = v[6];
        s->train_time = v[7];
        if (!r->bad && (!counter_ok(s->update) || !counter_ok(s->env_steps) || !isfinite(s->time)))
            r->bad = "a stats row has a field out of its range";
        if (!r->bad)
            m->n_stats++;
    }
}

static void read_evals(rd *r, rqd_move_file *m)
{
    int n = r_count(r, 90);
    if (n && (m->evals = calloc((size_t)n, sizeof *m->evals)) == NULL) {
        r->bad = "out of memory";
        return;
    }
    for (int i = 0; i < n && !r->bad; i++) {
        rqd_move_eval *e = &m->evals[m->n_evals];
        double v[5];
        e->row.env_steps = r_i64(r);
        e->row.updates = r_i64(r);
        e->row.policy_version = r_i64(r);
        r_time(r, e->row.time, sizeof e->row.time, 0, "an evaluation's time is not a time");
        uint32_t k = r_u32(r);
        r_take(r, v, sizeof v);
        if (!r->bad && (k < 1 || k > 1000 || (size_t)(r->end - r->p) < (size_t)k * 8 ||
                        !counter_ok(e->row.env_steps) || !counter_ok(e->row.updates) ||
                        !counter_ok(e->row.policy_version)))
            r->bad = "an evaluation has a field out of its range";
        if (r->bad)
            break;
        e->row.n = (int)k;
        e->row.mean = v[0];
        e->row.std = v[1];
        e->row.min = v[2];
        e->row.max = v[3];
        e->row.mean_length = v[4];
        m->n_evals++;
        if ((e->returns = malloc(sizeof *e->returns * k)) == NULL) {
            r->bad = "out of memory";
            break;
        }
        r_take(r, e->returns, sizeof *e->returns * k);
        for (uint32_t j = 0; j < k && !r->bad; j++)
            if (!isfinite(e->returns[j]))
                r->bad = "an evaluation's return is not finite";
        unsigned has_lengths = r_u8(r);
        if (!r->bad && has_lengths > 1)
            r->bad = "an evaluation has a field out of its range";
        if (!r->bad && has_lengths) {
            if ((e->lengths = malloc(sizeof *e->lengths * k)) == NULL) {
                r->bad = "out of memory";
                break;
            }
            r_take(r, e->lengths, sizeof *e->lengths * k);
            for (uint32_t j = 0; j < k && !r->bad; j++)
                if (e->lengths[j] < 1 || e->lengths[j] > RQD_MAX_COUNTER)
                    r->bad = "an evaluation's length is not a positive integer";
        }
        if (!r->bad && !(isfinite(e->row.mean) && isfinite(e->row.std) && isfinite(e->row.min) &&
                         isfinite(e->row.max) && (isfinite(e->row.mean_length) ||
                                                  (isnan(e->row.mean_length) && !has_lengths))))
            r->bad = "an evaluation's summary is not finite";
    }
}

int rqd_move_is_file(const void *data, size_t len)
{
    return len >= 8 && memcmp(data, RQD_MOVE_MAGIC, 8) == 0;
}

int rqd_move_decode(const void *data, size_t len, rqd_move_file *m, rqd_err *err)
{
    const unsigned char *p = data, *end = p + len;
    uint32_t version, crc, want;

    memset(m, 0, sizeof *m);
    if (!rqd_move_is_file(data, len) || len < 16)
        return rqd_err_set(err, RQD_EINVAL, "", "not a move file (no REDQMOVE header)");
    memcpy(&version, p + 8, 4);
    if (version != RQD_MOVE_VERSION)
        return rqd_err_set(err, RQD_EINVAL, "", "move file version %u; this redqd reads "
                           "version %u (move between nodes of the same redqd version)",
                           version, RQD_MOVE_VERSION);
    memcpy(&crc, end - 4, 4);
    want = (uint32_t)crc32(0L, p, 0);
    for (size_t at = 0; at < len - 4;) {
        size_t n = len - 4 - at > (1u << 30) ? (1u << 30) : len - 4 - at;
        want = (uint32_t)crc32(want, p + at, (uInt)n);
        at += n;
    }
    if (crc != want)
        return rqd_err_set(err, RQD_EINVAL, "", "the move file is damaged (its CRC-32 does "
                           "not match): download it again");
    p += 12;
    end -= 4;
    for (int sec = 0; sec < SEC_N; sec++) {
        uint64_t slen;
        if ((size_t)(end - p) < 12 || memcmp(p, tags[sec], 4) != 0)
            return rqd_err_set(err, RQD_EINVAL, "", "move file: section %s is missing or out "
                               "of order", tags[sec]);
        memcpy(&slen, p + 4, 8);
        p += 12;
        if (slen > (uint64_t)(end - p))
            return rqd_err_set(err, RQD_EINVAL, "", "move file: section %s runs past the end",
                               tags[sec]);
        rd r = {p, p + slen, NULL};
        switch (sec) {
        case SEC_HEAD:
            r_str(&r, m->name, sizeof m->name, "_.-", "the agent's name is not valid");
            r_str(&r, m->node, sizeof m->node, "_.-", "the node name is not valid");
            r_time(&r, m->created_at, sizeof m->created_at, 0, "created_at is not a time");
            m->S = (int)r_u32(&r);
            m->A = (int)r_u32(&r);
            m->pending = r_f64(&r);
            if (!r.bad && (m->S < 1 || m->S > RQD_MAX_OBS_DIM || m->A < 1 ||
                           m->A > RQD_MAX_ACT_DIM || !isfinite(m->pending) || m->pending < 0 ||
                           m->pending > RQD_MAX_COUNTER))
                r.bad = "obs_dim, act_dim or pending is out of its range";
            m->dropped.episodes = r_i64(&r);
            m->dropped.last_return = r_f64(&r);
            r_time(&r, m->dropped.ended_at, sizeof m->dropped.ended_at, 1,
                   "the dropped episodes' end is not a time");
            if (!r.bad && (!counter_ok(m->dropped.episodes) ||
                           (m->dropped.ended_at[0] != '\0' && !isfinite(m->dropped.last_return))))
                r.bad = "the dropped episodes' count or last return is out of its range";
            break;
        case SEC_CKPT:
            m->ckpt = r.p;
            m->ckpt_len = (size_t)slen;
            r.p = r.end;
            break;
        case SEC_BTCH: read_batches(&r, m); break;
        case SEC_EPIS: read_episodes(&r, m); break;
        case SEC_STRM: read_streams(&r, m); break;
        case SEC_STAT: read_stats(&r, m); break;
        case SEC_EVAL: read_evals(&r, m); break;
        }
        if (!r.bad && r.p != r.end)
            r.bad = "it holds more than its rows";
        if (r.bad) {
            int code = strcmp(r.bad, "out of memory") == 0 ? RQD_ENOMEM : RQD_EINVAL;
            return rqd_err_set(err, code, "", "move file: section %s: %s", tags[sec], r.bad);
        }
        p += slen;
    }
    if (p != end)
        return rqd_err_set(err, RQD_EINVAL, "", "move file: bytes after its last section");
    return RQD_OK;
}

void rqd_move_file_free(rqd_move_file *m)
{
    for (int i = 0; i < m->n_batches; i++)
        free(m->batches[i].answer);
    free(m->batches);
    store_episode_rows_free(m->episodes, m->n_episodes);
    free(m->streams);
    free(m->stats);
    for (int i = 0; i < m->n_evals; i++) {
        free(m->evals[i].returns);
        free(m->evals[i].lengths);
    }
    free(m->evals);
    memset(m, 0, sizeof *m);
}
