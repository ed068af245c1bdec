/* api/offload.c: work that would block an HTTP thread runs on offload threads instead.
 *
 * A transitions post waits for its agent's ingest order, for the writer's commit and for
 * the agent's lock (held by a trainer for up to one update); on an HTTP thread, every
 * other connection served by that thread (acts included) would wait with it. So the
 * handler parses and validates on the HTTP thread, then suspends the connection and
 * queues the rest here; the offload thread resumes it when the answer is ready (or
 * registers the request's waiter, for sync mode, which resumes it later).
 *
 * THREADS
 * -------
 * api_offload()       an HTTP thread; suspends r, appends a job, signals.
 * offload_main()      API_OFFLOAD_THREADS threads; run job->work(r), then wake r unless
 *                     work registered a waiter. Stopped by api_offload_stop() after
 *                     every suspended request has been resumed (api_resume_all).
 */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

#define API_OFFLOAD_THREADS 4

typedef struct job {
    api_req *r;
    int (*work)(api_req *r);
    struct job *next;
} job;

struct api_offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    int stopping;
    pthread_t threads[API_OFFLOAD_THREADS];
    int n;
};

static void *offload_main(void *p)
{
    struct api_offload *o = p;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (o->head == NULL && !o->stopping)
            pthread_cond_wait(&o->cv, &o->mu);
        if (o->head == NULL)
            break;
        job *j = o->head;
        o->head = j->next;
        if (o->head == NULL)
            o->tail = NULL;
        pthread_mutex_unlock(&o->mu);
        api_req *r = j->r;
        if (j->work(r) == 0)
            api_wake(r, r->wake_status);
        free(j);
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
    for (; o->n < API_OFFLOAD_THREADS; o->n++)
        if (pthread_create(&o->threads[o->n], NULL, offload_main, o) != 0)
            break;
    if (o->n == 0) {
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

int api_offload(api_req *r, rqd_agent *a, int (*work)(api_req *r), int (*after)(api_req *r))
{
    struct api_offload *o = r->srv->offload;
    job *j = calloc(1, sizeof *j);
    if (atomic_load(&r->srv->stopping) || o == NULL || j == NULL) {
        free(j);
        rqd_agent_put(a);
        return api_problem_status(r, 503, "unavailable", "the daemon is shutting down");
    }
    j->r = r;
    j->work = work;
    api_suspend(r, a, after);
    pthread_mutex_lock(&o->mu);
    if (o->tail)
        o->tail->next = j;
    else
        o->head = j;
    o->tail = j;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    return MHD_YES;
}
