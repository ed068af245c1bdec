/* daemon/duties.c: what the main loop's timers do for every agent besides the stats
 * flush (stats_flush.c): waiter deadlines, the progress lines, and refusing waits once
 * shutdown has begun. */
#include <math.h>

#include "internal.h"
#include "log.h"

void rqd_registry_wake_waiters(rqd_registry *r, int status, double now)
{
    rqd_agent **v;
    int n;
    if (rqd_agent_list(r, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        rqd_waiter *due = NULL, **pp;
        rqd_agent_lock(v[i]);
        for (pp = &v[i]->waiters; *pp;) {
            rqd_waiter *w = *pp;
            if (status != 1 || w->deadline <= now) {
                *pp = w->next;
                w->next = due;
                due = w;
            } else {
                pp = &w->next;
            }
        }
        pthread_mutex_unlock(&v[i]->mu);
        rqd__call_waiters(due, status);
    }
    rqd_agent_list_free(v, n);
}

void rqd_registry_refuse_waits(rqd_registry *r)
{
    atomic_store(&r->refuse_waits, 1);
}

void rqd_registry_log_progress(rqd_registry *r)
{
    rqd_agent **v;
    int n;
    double now = rqd_mono();
    if (rqd_agent_list(r, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        rqd_agent *a = v[i];
        redq_info info;
        rqd_agent_lock(a);
        if (a->core == NULL) {
            pthread_mutex_unlock(&a->mu);
            continue;
        }
        redq_agent_info(a->core, &info);
        double dt = now - a->ups_mark_time;
        long long du = info.updates - a->ups_mark_updates;
        if (dt > 0)
            a->ups = (double)du / dt;
        a->ups_mark_time = now;
        a->ups_mark_updates = info.updates;
        double pending = a->pending, loss = a->last.critic_loss, ret = a->last_return;
        int have = a->have_stats;
        pthread_mutex_unlock(&a->mu);
        if (du > 0)
            LOG(LOG_INFO, "agent %s: env_steps %lld, updates %lld (%.1f/s), pending %.0f, "
                "critic_loss %.4g, alpha %.4g, last return %.1f", a->name, info.env_steps,
                info.updates, du / dt, pending, have ? loss : NAN, info.alpha, ret);
    }
    rqd_agent_list_free(v, n);
}
