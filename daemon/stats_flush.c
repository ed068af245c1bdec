/* daemon/stats_flush.c: the stats rows' way to SQLite. Trainers buffer each agent's rows
 * (rqd_agent.rows); the main loop's flush hands them to the writer once a second, a
 * failed write keeps them for the next flush, and rqd_agent_stats_sync waits until an
 * agent's rows so far are committed (a train answer names its row). */
#include <stdlib.h>

#include "internal.h"
#include "log.h"

/* Stats rows whose write failed (the disk full, an I/O error) are kept and written
 * again at the next flush, before newer ones, so that the stats table has no hole once
 * space returns. At most this many wait (about 25 MiB); past it the oldest are given up,
 * counted in redqd_stats_rows_dropped_total and logged. */
#define RQD_STATS_RETRY_ROWS (1 << 18)

typedef struct stats_job {
    struct stats_job *next;
    rqd_registry *reg;
    int64_t agent;
    store_stats_row *rows;
    int n;
} stats_job;

static int do_stats(store *s, void *arg, rqd_err *err)
{
    stats_job *j = arg;
    return store_stats_append(s, j->agent, j->rows, j->n, err);
}

static void stats_job_free(stats_job *j)
{
    free(j->rows);
    free(j);
}

/* The writer's callback: a job that failed for want of space or I/O is kept for the next
 * flush; one refused otherwise (the agent was deleted) goes. */
static void stats_done(void *arg, int rc)
{
    stats_job *j = arg;
    rqd_registry *r = j->reg;
    long long dropped = 0;

    if (rc != RQD_EIO) {
        stats_job_free(j);
        return;
    }
    pthread_mutex_lock(&r->stats_mu);
    j->next = NULL;
    if (r->stats_retry_tail)
        r->stats_retry_tail->next = j;
    else
        r->stats_retry = j;
    r->stats_retry_tail = j;
    r->stats_retry_rows += j->n;
    while (r->stats_retry_rows > RQD_STATS_RETRY_ROWS && r->stats_retry != j) {
        stats_job *old = r->stats_retry;
        r->stats_retry = old->next;
        r->stats_retry_rows -= old->n;
        dropped += old->n;
        stats_job_free(old);
    }
    pthread_mutex_unlock(&r->stats_mu);
    if (dropped > 0) {
        atomic_fetch_add(&r->stats_dropped, dropped);
        LOG(LOG_WARNING, "%lld stats rows given up: the database has refused writes for a "
            "while (more than %d rows waiting)", dropped, RQD_STATS_RETRY_ROWS);
    }
}

void rqd__stats_retry_free(rqd_registry *r)
{
    while (r->stats_retry) {
        stats_job *j = r->stats_retry;
        r->stats_retry = j->next;
        stats_job_free(j);
    }
    r->stats_retry_tail = NULL;
    r->stats_retry_rows = 0;
}

long long rqd_registry_stats_dropped(rqd_registry *r)
{
    return atomic_load(&r->stats_dropped);
}

/* Under a->mu: hands the agent's buffered rows to the writer. Queued under the lock, so
 * that the writer gets each agent's rows in the order they were made, and a flush that
 * waits (rqd_agent_stats_sync) comes after every row posted before it. */
static void post_rows(rqd_agent *a)
{
    if (a->n_rows == 0)
        return;
    stats_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return; /* kept for the next flush */
    j->reg = a->reg;
    j->agent = a->id;
    j->rows = a->rows;
    j->n = a->n_rows;
    a->rows = NULL;
    a->n_rows = a->cap_rows = 0;
    rqd_writer_post(a->reg->writer, do_stats, j, stats_done);
}

void rqd_registry_flush_stats(rqd_registry *r)
{
    rqd_agent **v;
    int n;

    /* The rows that failed before go first (the writer's queue is FIFO). */
    pthread_mutex_lock(&r->stats_mu);
    stats_job *retry = r->stats_retry;
    r->stats_retry = r->stats_retry_tail = NULL;
    r->stats_retry_rows = 0;
    pthread_mutex_unlock(&r->stats_mu);
    while (retry) {
        stats_job *next = retry->next;
        rqd_writer_post(r->writer, do_stats, retry, stats_done);
        retry = next;
    }
    if (rqd_agent_list(r, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        rqd_agent_lock(v[i]);
        post_rows(v[i]);
        pthread_mutex_unlock(&v[i]->mu);
    }
    rqd_agent_list_free(v, n);
}

static int do_nothing(store *s, void *arg, rqd_err *err)
{
    (void)s;
    (void)arg;
    (void)err;
    return RQD_OK;
}

int rqd_agent_stats_sync(rqd_agent *a, rqd_err *err)
{
    rqd_agent_lock(a);
    post_rows(a);
    pthread_mutex_unlock(&a->mu);
    /* The writer's queue is FIFO: once this empty job has committed, every row posted
     * before it has too (or waits in the retry list, when the disk is full). */
    return rqd_writer_run(a->reg->writer, do_nothing, NULL, err);
}
