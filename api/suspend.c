/* api/suspend.c: requests that wait for training (sync-mode posts and episode steps,
 * train calls). They already run on an offload thread, suspended (api/offload.c); each
 * registers a waiter on its agent, which fires when the updates are done, when its
 * deadline passes (the loop's timer), when the agent is deleted or restored, or at
 * shutdown (api_resume_all). The waiter's callback runs on a trainer or the loop thread
 * and only queues the request's continuation on the offload threads. */
#include "internal.h"

static void on_waiter(rqd_waiter *w, int status)
{
    api_req *r = w->ctx;
    r->wake_status = status;
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
    int rc = rqd_agent_wait(a, &r->w, kind, target, k, r->srv->o.sync_timeout, &err);
    if (rc == 1)
        return API_WAITING; /* from here on r is the waiter's */
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
