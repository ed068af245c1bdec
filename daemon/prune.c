/* daemon/prune.c: the stored replay buffer as a ring, and the history's retention
 * (issue 10). What an agent has on disk depends on what it holds (buffer_size, the
 * history_* settings, the batch-id window), not on how long it has run.
 *
 * THE RING
 * --------
 * The database keeps raw transitions; the replay buffer is assembled from them (n-step
 * streams, redq/replay.c). Every max(RQD_HEAD_EVERY_MIN, buffer_size / 8) transitions a
 * post stores a replay head -- the assembler's state without its rows -- in its own
 * transaction, with the env_steps it belongs to (seq) and the rows assembled (added).
 * Replaying the transitions after a head H rebuilds the ring bit for bit once at least
 * buffer_size rows were assembled after it (redq.h "replay heads"), so once the learner's
 * added - H.added >= buffer_size, H can be the base: the newest such head is marked and
 * the heads before it deleted (one call: storage/heads.c), then the transitions up to
 * H.seq go, RQD_PRUNE_ROWS per job. A restart rebuilds from the base (daemon/startup.c)
 * and replays about buffer_size * 9/8 transitions plus what came since the last job. An
 * imported agent's base is its import checkpoint (it carries the rows) until a head
 * past it qualifies. The checkpoints are untouched: the updates owed after a restart are
 * still counted from the newest checkpoint's env_steps.
 *
 * HISTORY AND BATCH IDS
 * ---------------------
 * Every RQD_HISTORY_CHECK_SECONDS (at once after a PATCH) a job also deletes the batch ids
 * past their window (RQD_BATCH_KEEP_POSTS posts and RQD_BATCH_KEEP_SECONDS, API.md) and
 * applies the agent's retention to its stats, evaluations and episodes
 * (storage/history.c), RQD_PRUNE_ROWS rows at most of each.
 *
 * FREE PAGES
 * ----------
 * SQLite reuses the pages deletes free for new rows, so a ring's file stops growing once
 * the ring is full. A file created with auto_vacuum = INCREMENTAL (schema 4 on) also
 * returns what it does not need (a deleted agent, a retention made shorter) to the file
 * system, RQD_VACUUM_STEP_PAGES at a time, keeping the larger of RQD_VACUUM_KEEP_PAGES
 * and an eighth of the file for the churn of the rings. An older file keeps its mode:
 * switching means a VACUUM, a rewrite of the whole file (docs/operations.md says how).
 *
 * THREADS
 * -------
 * rqd_registry_prune()   the loop thread, every RQD_PRUNE_TICK_MS; takes a->prune_mu
 *                        only, so a busy trainer never holds the loop up.
 * do_prune(), do_vacuum() the writer thread, each job in the writer's transaction.
 * prune_done()           the writer thread after the commit: a->prune_mu only (a leaf),
 *                        and the registry's prune_work callback (uv_async_send) when
 *                        a job left work, so that the next comes without a tick's wait.
 * rqd__head_*()          the thread of a post, under a->ingest_mu (and a->mu to take).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "log.h"

static long long head_every(long long buffer_size)
{
    long long e = buffer_size / 8;
    return e > RQD_HEAD_EVERY_MIN ? e : RQD_HEAD_EVERY_MIN;
}

/* ------------------------------------------------------------------ heads */

int rqd__head_take(rqd_agent *a, long long env_steps, rqd_head *h, rqd_err *err)
{
    memset(h, 0, sizeof *h);
    rqd_buf_init(&h->blob, 0);
    if (env_steps < a->next_head_at)
        return RQD_OK;
    size_t bytes = redq_agent_head_bytes(a->core);
    if (bytes > (size_t)RQD_MAX_HEAD_BYTES) {
        if (!a->head_too_big)
            LOG(LOG_WARNING, "agent %s: its replay head (%zu MiB of pending n-step "
                "transitions) is over %lld MiB, so it is not stored and the agent keeps its "
                "transitions until a smaller one is", a->name, bytes >> 20,
                RQD_MAX_HEAD_BYTES >> 20);
        a->head_too_big = 1;
        a->next_head_at = env_steps + head_every(redq_agent_config(a->core)->buffer_size);
        return RQD_OK;
    }
    int rc = redq_agent_head_save(a->core, &h->blob, &h->added, err);
    if (rc < 0)
        return rc;
    h->due = 1;
    h->seq = env_steps;
    return RQD_OK;
}

int rqd__head_write(store *s, int64_t agent, const rqd_head *h, rqd_err *err)
{
    return h->due ? store_head_put(s, agent, h->seq, h->added, h->blob.data, h->blob.len, err)
                  : RQD_OK;
}

void rqd__head_stored(rqd_agent *a, const rqd_head *h)
{
    if (!h->due)
        return;
    pthread_mutex_lock(&a->prune_mu);
    a->next_head_at = h->seq + head_every(a->prune.capacity);
    a->head_too_big = 0;
    /* The new head may qualify as the base once buffer_size more rows are assembled. */
    if (h->added + a->prune.capacity < a->prune.due)
        a->prune.due = h->added + a->prune.capacity;
    pthread_mutex_unlock(&a->prune_mu);
}

void rqd__head_free(rqd_head *h)
{
    rqd_buf_free(&h->blob);
    h->due = 0;
}

void rqd__prune_added(rqd_agent *a)
{
    redq_info info;
    redq_agent_info(a->core, &info);
    pthread_mutex_lock(&a->prune_mu);
    a->prune.added = info.buffer_added;
    pthread_mutex_unlock(&a->prune_mu);
}

/* Under prune_mu. */
static void retention_of(rqd_prune *p, const redq_config *c)
{
    p->keep.keep_rows = c->history_keep_rows;
    p->keep.keep_seconds = c->history_keep_days * 86400.0;
    p->keep.thin = c->history_thin;
}

void rqd__prune_init(rqd_agent *a, long long newest_head_seq)
{
    const redq_config *c = redq_agent_config(a->core);
    redq_info info;
    redq_agent_info(a->core, &info);
    pthread_mutex_lock(&a->prune_mu);
    a->prune.added = info.buffer_added;
    a->prune.capacity = c->buffer_size;
    /* Look at once: a crash may have left a job half done, and a daemon that is
     * restarted often must still get to the history (a look costs a few lookups). */
    a->prune.due = 0;
    a->prune.more_ring = a->prune.more_history = 0;
    a->prune.next_check = 0;
    retention_of(&a->prune, c);
    a->next_head_at = newest_head_seq + head_every(c->buffer_size);
    pthread_mutex_unlock(&a->prune_mu);
}

void rqd__prune_config(rqd_agent *a)
{
    pthread_mutex_lock(&a->prune_mu);
    retention_of(&a->prune, redq_agent_config(a->core));
    a->prune.next_check = 0;
    pthread_mutex_unlock(&a->prune_mu);
}

/* ------------------------------------------------------------------ jobs */

typedef struct {
    rqd_agent *a;            /* referenced */
    int64_t agent;
    int ring, history;       /* what this job does */
    long long added, capacity;
    long long due_before;    /* given back if the job fails */
    store_retention keep;
    double now;              /* Unix seconds */
    /* results */
    long long due;
    int more_ring, more_history;
    long long deleted;
    double seconds;          /* the job's time in the writer's transaction */
} prune_job;

/* The ring: the newest head that qualifies becomes the base, then transitions up to the
 * base go. j->due gets when the next head can qualify. */
static int prune_ring(store *s, prune_job *j, rqd_err *err)
{
    store_head_info *h = NULL;
    int n = 0, base = -1, next = -1, rc, gone = 0;

    if ((rc = store_head_list(s, j->agent, &h, &n, err)) < 0)
        return rc;
    for (int i = 0; i < n; i++) { /* ascending seq, so ascending added */
        if (h[i].base)
            base = i;
        if (j->added - h[i].added >= j->capacity)
            next = i;
    }
    if (next > base) {
        if ((rc = store_head_set_base(s, j->agent, h[next].seq, err)) < 0)
            goto out;
        base = next;
    }
    if (base + 1 < n)
        j->due = h[base + 1].added + j->capacity;
    if (base >= 0) {
        rc = store_transitions_delete_upto(s, j->agent, h[base].seq, RQD_PRUNE_ROWS, &gone, err);
        j->more_ring = gone == RQD_PRUNE_ROWS;
        j->deleted += gone;
    }
out:
    free(h);
    return rc;
}

static int prune_history(store *s, prune_job *j, rqd_err *err)
{
    store_prune_counts c;
    int gone = 0;
    int rc = store_batch_prune(s, j->agent, RQD_BATCH_KEEP_POSTS,
                               (int64_t)j->now - RQD_BATCH_KEEP_SECONDS, RQD_PRUNE_ROWS, &gone,
                               err);
    j->more_history = gone == RQD_PRUNE_ROWS;
    j->deleted += gone;
    if (rc == RQD_OK && (rc = store_history_prune(s, j->agent, &j->keep, RQD_PRUNE_ROWS, &c,
                                                  err)) == RQD_OK) {
        j->more_history |= c.more;
        j->deleted += c.stats + c.evaluations + c.episodes;
    }
    return rc;
}

static int do_prune(store *s, void *arg, rqd_err *err)
{
    prune_job *j = arg;
    double t0 = rqd_mono();
    int rc = RQD_OK;
    j->due = LLONG_MAX;
    j->deleted = 0;
    if (j->ring)
        rc = prune_ring(s, j, err);
    if (rc == RQD_OK && j->history)
        rc = prune_history(s, j, err);
    j->seconds = rqd_mono() - t0;
    return rc;
}

/* The writer thread, after the commit (or the failure) of the job's transaction. */
static void prune_done(void *arg, int rc)
{
    prune_job *j = arg;
    rqd_agent *a = j->a;
    double now = rqd_mono();

    pthread_mutex_lock(&a->prune_mu);
    rqd_prune *p = &a->prune;
    p->busy = 0;
    if (rc < 0) { /* nothing of it happened: try again in a while */
        if (j->due_before < p->due)
            p->due = j->due_before;
        p->more_ring |= j->ring;
        p->retry_at = now + RQD_HISTORY_CHECK_SECONDS;
    } else {
        if (j->ring) {
            if (j->due < p->due) /* a head stored meanwhile may have set it lower */
                p->due = j->due;
            p->more_ring = j->more_ring;
        }
        if (j->history) {
            p->more_history = j->more_history;
            p->next_check = now + RQD_HISTORY_CHECK_SECONDS;
        }
    }
    pthread_mutex_unlock(&a->prune_mu);
    if (rc < 0) {
        LOG(LOG_WARNING, "agent %s: pruning its stored data failed (retried in %d s)", j->a->name,
            RQD_HISTORY_CHECK_SECONDS);
    } else {
        atomic_fetch_add(&a->reg->pruned_rows, j->deleted);
        /* Behind (an agent ingesting faster than one job a tick deletes): the next job
         * now, each still at most RQD_PRUNE_ROWS, queued behind the posts. */
        if ((j->more_ring || j->more_history) && a->reg->prune_work)
            a->reg->prune_work(a->reg->prune_work_arg);
        if (j->deleted > 0) /* bench/bench_longrun.py reads these */
            LOG(LOG_DEBUG, "agent %s: pruned %lld rows in %.2f ms", a->name, j->deleted,
                j->seconds * 1e3);
    }
    rqd_agent_put(a);
    free(j);
}

typedef struct {
    rqd_registry *r;
    int64_t freed;
} vacuum_job;

static int do_vacuum(store *s, void *arg, rqd_err *err)
{
    vacuum_job *j = arg;
    store_space sp;
    int rc = store_space_get(s, &sp, err);
    if (rc == RQD_OK) {
        int64_t keep = sp.pages / 8 > RQD_VACUUM_KEEP_PAGES ? sp.pages / 8 : RQD_VACUUM_KEEP_PAGES;
        rc = store_vacuum_step(s, keep, RQD_VACUUM_STEP_PAGES, &j->freed, err);
    }
    return rc;
}

static void vacuum_done(void *arg, int rc)
{
    vacuum_job *j = arg;
    if (rc == RQD_OK && j->freed > 0)
        LOG(LOG_DEBUG, "returned %lld free pages of the database to the file system",
            (long long)j->freed);
    atomic_store(&j->r->vacuum_busy, 0);
    free(j);
}

/* ------------------------------------------------------------------ the tick */

/* The job due for a, or NULL (a->prune_mu is taken here). */
static prune_job *job_for(rqd_agent *a, double now, double wall)
{
    prune_job *j = NULL;
    pthread_mutex_lock(&a->prune_mu);
    rqd_prune *p = &a->prune;
    int ring = p->more_ring || p->added >= p->due;
    int history = p->more_history || now >= p->next_check;
    if (p->capacity > 0 && !p->busy && now >= p->retry_at && (ring || history) &&
        atomic_load(&a->status) == RQD_AGENT_OK && (j = calloc(1, sizeof *j)) != NULL) {
        j->a = a;
        j->agent = a->id;
        j->ring = ring;
        j->history = history;
        j->added = p->added;
        j->capacity = p->capacity;
        j->due_before = p->due;
        j->keep = p->keep;
        j->keep.now = wall;
        j->now = wall;
        if (ring) { /* taken: the job says what is due next */
            p->due = LLONG_MAX;
            p->more_ring = 0;
        }
        p->busy = 1;
    }
    pthread_mutex_unlock(&a->prune_mu);
    return j;
}

void rqd_registry_prune(rqd_registry *r)
{
    rqd_agent **v;
    int n;
    double now = rqd_mono(), wall = rqd_wall();

    if (rqd_agent_list(r, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        prune_job *j = job_for(v[i], now, wall);
        if (j == NULL)
            continue;
        atomic_fetch_add(&v[i]->refs, 1); /* the job's; prune_done puts it */
        rqd_writer_post(r->writer, do_prune, j, prune_done); /* on failure, done runs now */
    }
    rqd_agent_list_free(v, n);
    if (r->incremental && now >= r->vacuum_next && !atomic_exchange(&r->vacuum_busy, 1)) {
        vacuum_job *j = calloc(1, sizeof *j);
        r->vacuum_next = now + 1.0;
        if (j == NULL) {
            atomic_store(&r->vacuum_busy, 0);
            return;
        }
        j->r = r;
        rqd_writer_post(r->writer, do_vacuum, j, vacuum_done);
    }
}

long long rqd_registry_pruned_rows(rqd_registry *r)
{
    return atomic_load(&r->pruned_rows);
}

void rqd_registry_on_prune_work(rqd_registry *r, void (*fn)(void *arg), void *arg)
{
    r->prune_work = fn;
    r->prune_work_arg = arg;
}
