/* api/offload.c: requests that may wait run on offload threads, never on an HTTP thread.
 *
 * One rule for every route (api/routes.c marks them `wait`): a request that may wait --
 * for the writer's commit, an agent's ingest order or its lock (held by a trainer for up
 * to one update), or for training -- is suspended (MHD suspend/resume) once its body is
 * complete, and its handler runs here. On an HTTP thread such a wait would hold up every
 * other connection that thread serves, acts included.
 *
 * A handler on an offload thread runs with r->deferred set: api_queue keeps its answer in
 * r->resp instead of queuing it, and the connection is resumed; the HTTP thread queues the
 * kept answer when MHD calls it back (on_request). A handler that waits for training
 * registers a waiter (api/suspend.c) and returns API_WAITING; the waiter's callback queues
 * the handler's continuation here again, so that a continuation that commits (a train
 * call's stats row) never runs on a trainer thread either.
 *
 * Suspended requests are counted (srv->suspended); shutdown (api_resume_all) waits for
 * the count to reach zero before MHD_stop_daemon, which libmicrohttpd requires. Those in
 * an offloaded step are bounded by the connections MHD accepts and last one commit;
 * those waiting for training may wait up to --sync-timeout, and are capped
 * (api/suspend.c).
 *
 * THREADS
 * -------
 * api_offload()      an HTTP thread; suspends r, appends it, signals.
 * api_offload_again() any thread (a waiter's callback); appends r, already suspended.
 * offload_main()     API_OFFLOAD_THREADS threads; run each request's step, then resume it
 *                    unless the step left it to a waiter. Stopped by api_offload_stop()
 *                    after MHD is stopped (no request can be queued any more).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "../daemon/log.h"
#include "internal.h"

/* Most offloaded work waits on the writer's group commit, which takes many jobs at once:
 * more threads than cores let more of them join one commit. */
#define API_OFFLOAD_THREADS 8

struct api_offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    api_req *head, *tail;     /* linked through r->queue_next (no allocation to fail) */
    int stopping;
    pthread_t threads[API_OFFLOAD_THREADS];
    int n;
};

void api_resume(api_req *r, int result)
{
    api_server *srv = r->srv; /* once resumed, r may be answered and freed at any moment */
    r->result = result;
    r->deferred = 0;
    r->ready = 1;
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&srv->suspended, 1);
}

static void *offload_main(void *p)
{
    struct api_offload *o = p;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (o->head == NULL && !o->stopping)
            pthread_cond_wait(&o->cv, &o->mu);
        if (o->head == NULL)
            break;
        api_req *r = o->head;
        o->head = r->queue_next;
        if (o->head == NULL)
            o->tail = NULL;
        r->queue_next = NULL;
        pthread_mutex_unlock(&o->mu);
        int (*step)(api_req *) = r->step;
        r->step = NULL;
        r->deferred = 1;
        int res = step(r);
        if (res != API_WAITING) /* else a waiter owns r now: not to be touched */
            api_resume(r, res);
        pthread_mutex_lock(&o->mu);
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

int api_offload_start(api_server *s)
{
    struct api_offload *o = calloc(1, sizeof *o);
    if (o == NULL)
        return RQD_ENOMEM;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    for (; o->n < API_OFFLOAD_THREADS; o->n++) {
        if (pthread_create(&o->threads[o->n], NULL, offload_main, o) != 0)
            break;
        char name[16];
        snprintf(name, sizeof name, "redqd-offload%d", o->n);
        pthread_setname_np(o->threads[o->n], name);
    }
    if (o->n == 0) {
        pthread_mutex_destroy(&o->mu);
        pthread_cond_destroy(&o->cv);
        free(o);
        return RQD_ENOMEM;
    }
    s->offload = o;
    return RQD_OK;
}

void api_offload_stop(api_server *s)
{
    struct api_offload *o = s ? s->offload : NULL;
    if (o == NULL)
        return;
    pthread_mutex_lock(&o->mu);
    o->stopping = 1;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    for (int i = 0; i < o->n; i++)
        pthread_join(o->threads[i], NULL);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    free(o);
    s->offload = NULL;
}

void api_offload_again(api_req *r, int (*step)(api_req *r))
{
    struct api_offload *o = r->srv->offload;
    r->step = step;
    pthread_mutex_lock(&o->mu);
    if (o->tail)
        o->tail->queue_next = r;
    else
        o->head = r;
    o->tail = r;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

int api_offload(api_req *r, int (*step)(api_req *r))
{
    api_server *s = r->srv;
    if (atomic_load(&s->stopping) || s->offload == NULL)
        return api_problem_status(r, 503, "unavailable", "the daemon is shutting down");
    atomic_fetch_add(&s->suspended, 1);
    r->waiting = 1;
    r->ready = 0;
    MHD_suspend_connection(r->conn);
    api_offload_again(r, step);
    return MHD_YES;
}
