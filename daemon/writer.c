/* daemon/writer.c: the writer thread and its group commit (THREADS in writer.h). */
#include "../common/rqd_clock.h"
#include "../common/rqd_hist.h"
#include "writer.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

typedef struct job {
    rqd_write_fn fn;
    void *arg;
    void (*done_fn)(void *arg, int rc);
    int waited;        /* a rqd_writer_run caller waits on 'done' */
    int done;
    int rc;
    rqd_err err;
    struct job *next;
} job;

struct rqd_writer {
    store *s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;   /* the writer: jobs queued or stopping */
    pthread_cond_t done;   /* waiters: some job finished */
    job *head, *tail;
    int stopping, started;
    int fail_next;         /* test hook: the next batch's first step fails with this code */
    rqd_writer_counts counts;
};

const double rqd_commit_bounds[RQD_COMMIT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                      0.025,  0.05,  0.1,    0.5,   2.5};

/* Returns 0, or -1 when the transaction failed; *dt gets its duration. */
static int run_batch(rqd_writer *w, job *batch, double *dt)
{
    rqd_err err = {0};
    double t0 = rqd_mono();
    int rc = store_begin(w->s, &err);

    for (job *j = batch; j; j = j->next) {
        if (rc < 0) {
            j->rc = rc;
            j->err = err;
            continue;
        }
        if ((j->rc = store_savepoint(w->s, &j->err)) == 0) {
            j->rc = j->fn(w->s, j->arg, &j->err);
            if (j->rc < 0)
                store_rollback_to(w->s);
            else
                j->rc = store_release(w->s, &j->err);
        }
        /* A storage failure (disk full, I/O error) may have rolled back the whole
         * transaction under us: then nothing of this batch is committed, and every job
         * fails with it rather than a later savepoint committing on its own. */
        if (j->rc == RQD_EIO || j->rc == RQD_ENOMEM) {
            rc = j->rc;
            err = j->err;
            store_rollback(w->s);
            for (job *k = batch; k; k = k->next) {
                k->rc = rc;
                k->err = err;
            }
            break;
        }
    }
    if (rc == 0 && (rc = store_commit(w->s, &err)) < 0) {
        store_rollback(w->s);
        for (job *j = batch; j; j = j->next)
            if (j->rc == 0) {
                j->rc = rc;
                j->err = err;
            }
    }
    if (rc < 0)
        LOG(LOG_ERR, "database write failed: %s", err.msg);
    *dt = rqd_mono() - t0;
    return rc < 0 ? -1 : 0;
}

static void *writer_main(void *p)
{
    rqd_writer *w = p;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->wake, &w->mu);
        if (w->head == NULL && w->stopping)
            break;
        job *batch = w->head;
        w->head = w->tail = NULL;
        if (w->fail_next) {
            store_fault_inject(w->s, 1, w->fail_next);
            w->fail_next = 0;
        }
        pthread_mutex_unlock(&w->mu);
        double dt;
        int failed = run_batch(w, batch, &dt) < 0;
        pthread_mutex_lock(&w->mu);
        int b = rqd_hist_bucket(rqd_commit_bounds, RQD_COMMIT_BUCKETS, dt);
        w->counts.commits++;
        w->counts.failures += failed;
        w->counts.seconds += dt;
        w->counts.bucket[b]++;
        for (job *j = batch, *next; j; j = next) {
            next = j->next;
            if (j->waited) {
                j->done = 1;
            } else {
                if (j->done_fn)
                    j->done_fn(j->arg, j->rc);
                free(j);
            }
        }
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int rqd_writer_start(store *s, rqd_writer **out, rqd_err *err)
{
    rqd_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    w->s = s;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        free(w);
        return rqd_err_set(err, RQD_EINTERNAL, "", "cannot start the writer thread");
    }
    w->started = 1;
    *out = w;
    return RQD_OK;
}

static int enqueue(rqd_writer *w, job *j)
{
    if (w->stopping)
        return RQD_EUNAVAIL;
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->wake);
    return RQD_OK;
}

int rqd_writer_run(rqd_writer *w, rqd_write_fn fn, void *arg, rqd_err *err)
{
    job j = {.fn = fn, .arg = arg, .waited = 1};
    int rc;

    pthread_mutex_lock(&w->mu);
    if ((rc = enqueue(w, &j)) < 0) {
        pthread_mutex_unlock(&w->mu);
        return rqd_err_set(err, rc, "", "the daemon is shutting down");
    }
    while (!j.done)
        pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
    if (j.rc < 0 && err)
        *err = j.err;
    return j.rc;
}

int rqd_writer_post(rqd_writer *w, rqd_write_fn fn, void *arg, void (*done)(void *arg, int rc))
{
    job *j = calloc(1, sizeof *j);
    int rc;
    if (j == NULL) {
        if (done)
            done(arg, RQD_ENOMEM);
        return RQD_ENOMEM;
    }
    j->fn = fn;
    j->arg = arg;
    j->done_fn = done;
    pthread_mutex_lock(&w->mu);
    rc = enqueue(w, j);
    pthread_mutex_unlock(&w->mu);
    if (rc < 0) {
        if (done)
            done(arg, rc);
        free(j);
    }
    return rc;
}

void rqd_writer_stop(rqd_writer *w)
{
    if (w == NULL || !w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void rqd_writer_free(rqd_writer *w)
{
    if (w == NULL)
        return;
    rqd_writer_stop(w);
    store_close(w->s);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    free(w);
}

void rqd_writer_stats(rqd_writer *w, rqd_writer_counts *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->counts;
    pthread_mutex_unlock(&w->mu);
}

void rqd_writer_fail_next(rqd_writer *w, int sqlite_rc)
{
    pthread_mutex_lock(&w->mu);
    w->fail_next = sqlite_rc;
    pthread_mutex_unlock(&w->mu);
}
