/* api/suspend.c: requests that wait for training (sync-mode posts and episode steps,
 * train calls). They already run on an offload thread, suspended (api/offload.c); each
 * registers a waiter on its agent, which fires when the updates are done, when its
 * deadline passes (the loop's timer), when the agent is deleted or restored, or at
 * shutdown (api_resume_all). The waiter's callback runs on a trainer or the loop thread
 * and only queues the request's continuation on the offload threads.
 *
 * A waiting request holds a connection for up to --sync-timeout, and MHD never times out
 * a suspended one: at most --max-waiting-requests wait at once, past it 429 busy, so that
 * waits cannot take every connection (DELETE, PATCH and acts still get through). */
#include <stdio.h>

#include "internal.h"

int api_wait_slot(api_req *r)
{
    api_server *s = r->srv;
    if (r->wait_slot)
        return 1;
    if (atomic_fetch_add(&s->training_waits, 1) >= s->o.max_waiting) {
        atomic_fetch_sub(&s->training_waits, 1);
        return 0;
    }
    r->wait_slot = 1;
    return 1;
}

void api_wait_slot_release(api_req *r)
{
    if (r->wait_slot) {
        r->wait_slot = 0;
        atomic_fetch_sub(&r->srv->training_waits, 1);
    }
}

int api_wait_busy(api_req *r)
{
    char d[160];
    snprintf(d, sizeof d, "%d requests are already waiting for training, the limit "
             "(--max-waiting-requests); retry later", r->srv->o.max_waiting);
    return api_problem_status(r, 429, "busy", d);
}

static void on_waiter(rqd_waiter *w, int status)
{
    api_req *r = w->ctx;
    r->wake_status = status;
    api_wait_slot_release(r);
    api_offload_again(r, r->cont);
}

int api_wait(api_req *r, rqd_agent *a, int kind, double target, int k,
             int (*cont)(api_req *r))
{
    rqd_err err = {0};
    r->agent = a; /* the caller's reference, released in on_completed */
    r->cont = cont;
    r->w.cb = on_waiter;
    r->w.ctx = r;
    if (!api_wait_slot(r))
        return api_wait_busy(r);
    int rc = rqd_agent_wait(a, &r->w, kind, target, k, r->srv->o.sync_timeout, &err);
    if (rc == 1)
        return API_WAITING; /* from here on r is the waiter's */
    api_wait_slot_release(r);
    /* Not registered: already satisfied (0) or refused; answer now. */
    r->wake_status = rc;
    r->wake_err = err;
    return cont(r);
}

int api_wake_problem(api_req *r)
{
    switch (r->wake_status) {
    case 0:
    case 1:
        return -1;
    case RQD_EUNAVAIL:
        if (r->wake_err.code)
            return api_problem(r, &r->wake_err);
        if (r->agent && rqd_agent_usable(r->agent, &r->wake_err) < 0) /* it stopped itself */
            return api_problem(r, &r->wake_err);
        return api_problem_status(r, 503, "unavailable", "the daemon is shutting down");
    case RQD_ECONFLICT:
        if (r->wake_err.code)
            return api_problem(r, &r->wake_err);
        return api_problem_status(r, 409, "conflict",
                                  "the agent was deleted or restored while this request waited");
    default:
        return api_problem(r, &r->wake_err);
    }
}
