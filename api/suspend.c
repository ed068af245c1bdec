/* api/suspend.c: requests that wait for training (sync-mode posts and episode steps,
 * train calls) are suspended, never blocked (STYLE R10). Each registers a waiter on its
 * agent; the waiter fires when the updates are done, when its deadline passes (the
 * loop's timer), when the agent is deleted or restored, or at shutdown
 * (api_resume_all), and resumes the connection. s->suspended counts them so that
 * shutdown can wait for none to be left before MHD_stop_daemon. */
#include "../daemon/log.h"
#include "internal.h"

void api_wake(api_req *r, int status)
{
    api_server *srv = r->srv; /* once resumed, r may be answered and freed at any moment */
    r->wake_status = status;
    r->woke = 1;
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&srv->suspended, 1);
}

static void on_wake(rqd_waiter *w, int status)
{
    api_wake(w->ctx, status);
}

void api_suspend(api_req *r, rqd_agent *a, int (*after_wake)(api_req *r))
{
    r->agent = a; /* the caller's reference, released in on_completed */
    r->after_wake = after_wake;
    r->waiting = 1;
    r->woke = 0;
    atomic_fetch_add(&r->srv->suspended, 1);
    MHD_suspend_connection(r->conn);
}

int api_wait_or_wake(api_req *r, int kind, double target, int k)
{
    rqd_err err = {0};
    r->w.cb = on_wake;
    r->w.ctx = r;
    int rc = rqd_agent_wait(r->agent, &r->w, kind, target, k, r->srv->o.sync_timeout, &err);
    if (rc == 1)
        return 1;
    /* Not registered: already satisfied (0) or refused; answer on the resumed call. */
    r->wake_err = err;
    api_wake(r, rc);
    return 1;
}

int api_suspend_wait(api_req *r, rqd_agent *a, int kind, double target, int k,
                     int (*after_wake)(api_req *r))
{
    if (atomic_load(&r->srv->stopping)) {
        rqd_agent_put(a);
        return api_problem_status(r, 503, "unavailable", "the daemon is shutting down");
    }
    api_suspend(r, a, after_wake);
    api_wait_or_wake(r, kind, target, k);
    return MHD_YES;
}

int api_wake_problem(api_req *r)
{
    switch (r->wake_status) {
    case 0:
    case 1:
        return -1;
    case RQD_EUNAVAIL:
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
