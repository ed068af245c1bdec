/* daemon/trainer.c: the trainer threads and the waiters on training progress.
 *
 * THREADS
 * -------
 * rqd_sched_kick()   any thread; puts an agent with runnable work on the run queue once.
 * trainer_main()     each trainer thread: pops the oldest queued agent, runs one chunk of
 *                    at most RQD_TRAIN_CHUNK updates under a->mu, requeues it at the tail
 *                    if work remains (round robin: agents share the trainers fairly), and
 *                    calls the waiters that chunk satisfied with no lock held.
 * OpenBLAS runs single-threaded inside a trainer (main.c sets it); parallelism comes
 * from several agents on several trainers, and, when one agent trains alone, from the
 * pool (daemon/pool.c) spreading its ensemble members over the idle cores.
 */
#include <math.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "log.h"
#include "pool.h"

/* Under a->mu: updates that could run now (train calls first, then what is owed). */
static long long runnable(const rqd_agent *a)
{
    redq_info info;
    if (a->deleted || a->core == NULL || atomic_load(&a->status) != RQD_AGENT_OK || a->moving)
        return 0; /* a moving agent's learner is what its move file carries: frozen */
    redq_agent_info(a->core, &info);
    const redq_config *c = redq_agent_config(a->core);
    if (info.buffer_len < c->batch_size)
        return 0;
    if (a->manual_pending > 0)
        return a->manual_pending;
    if (c->training == REDQ_TRAIN_ASYNC || c->training == REDQ_TRAIN_SYNC)
        return (long long)floor(a->pending);
    return 0;
}

void rqd_sched_kick(rqd_agent *a)
{
    rqd_registry *r = a->reg;
    rqd_agent_lock(a);
    long long k = runnable(a);
    pthread_mutex_unlock(&a->mu);
    if (k <= 0)
        return;
    pthread_mutex_lock(&r->run_mu);
    if (!a->queued && !r->stopping) {
        if (r->q_len == r->q_cap) {
            int cap = r->q_cap ? 2 * r->q_cap : 16;
            rqd_agent **q = malloc((size_t)cap * sizeof *q);
            if (q == NULL) {
                pthread_mutex_unlock(&r->run_mu);
                return;
            }
            for (int i = 0; i < r->q_len; i++)
                q[i] = r->q[(r->q_head + i) % r->q_cap];
            free(r->q);
            r->q = q;
            r->q_cap = cap;
            r->q_head = 0;
        }
        atomic_fetch_add(&a->refs, 1);
        r->q[(r->q_head + r->q_len) % r->q_cap] = a;
        r->q_len++;
        a->queued = 1;
        pthread_cond_signal(&r->run_cv);
    }
    pthread_mutex_unlock(&r->run_mu);
}

rqd_waiter *rqd__take_ready(rqd_agent *a)
{
    rqd_waiter *ready = NULL, **pp = &a->waiters;
    while (*pp) {
        rqd_waiter *w = *pp;
        int due = w->kind == RQD_WAIT_SYNC ? a->done_total >= w->target - 1e-9
                                           : (double)a->manual_done >= w->target;
        if (due) {
            if (w->kind == RQD_WAIT_TRAIN) {
                redq_info info;
                redq_agent_info(a->core, &info);
                w->updates = info.updates;
                w->env_steps = info.env_steps;
                w->stats = a->last;
                w->train_time = a->manual_time - w->time_at_start;
            }
            *pp = w->next;
            w->next = ready;
            ready = w;
        } else {
            pp = &w->next;
        }
    }
    return ready;
}

void rqd__call_waiters(rqd_waiter *w, int status)
{
    while (w) {
        rqd_waiter *next = w->next;
        w->next = NULL;
        w->cb(w, status); /* may free w */
        w = next;
    }
}

/* Under a->mu: one stats row with the latest values (API.md "Training, stats"), numbered
 * now; NULL when there is no memory for it. */
static store_stats_row *add_row(rqd_agent *a, const redq_info *info)
{
    if (a->n_rows == a->cap_rows) {
        int cap = a->cap_rows ? 2 * a->cap_rows : 8;
        store_stats_row *v = realloc(a->rows, (size_t)cap * sizeof *v);
        if (v == NULL)
            return NULL; /* a lost row is better than a stalled trainer; rows are statistics */
        a->rows = v;
        a->cap_rows = cap;
    }
    store_stats_row *row = &a->rows[a->n_rows++];
    row->row = atomic_fetch_add(&a->reg->next_stats_row, 1);
    row->update = info->updates;
    row->env_steps = info->env_steps;
    row->time = rqd_wall();
    row->actor_loss = a->last.actor_loss;
    row->critic_loss = a->last.critic_loss;
    row->alpha = a->last.alpha;
    row->alpha_loss = a->last.alpha_loss;
    row->q_mean = a->last.q_mean;
    row->q_std = a->last.q_std;
    row->train_time = a->time_since_row;
    a->time_since_row = 0;
    a->last_row_update = info->updates;
    a->last_row = *row;
    return row;
}

/* Updates a chunk may run before the next boundary: a stats row every actor_delay
 * updates, an automatic checkpoint every checkpoint_every (API.md: at N, 2N, 3N, ...). */
static long long to_boundary(const redq_config *c, long long updates)
{
    long long k = c->actor_delay - updates % c->actor_delay;
    if (c->checkpoint_every > 0) {
        long long to_ckpt = c->checkpoint_every - updates % c->checkpoint_every;
        if (to_ckpt < k)
            k = to_ckpt;
    }
    return k;
}

/* Under a->mu: counts an update whose critic step was skipped as non-finite (it changed
 * nothing: state.skipped_updates), or whose actor step was. After RQD_MAX_SKIPPED_RUN in
 * a row of either kind the agent stops itself: its data keeps poisoning the batches. */
static void count_skipped(rqd_agent *a, const redq_stats *one)
{
    if (one->skipped == 0 && one->actor_skipped == 0) {
        a->skipped_run = 0;
        return;
    }
    a->skipped_total += one->skipped;
    a->skipped_run++;
    if (a->skipped_run == 1 || a->skipped_run % 10 == 0)
        LOG(LOG_WARNING, "agent %s: %s skipped: its loss or gradients were not finite "
            "(%d in a row, %lld updates skipped in all)", a->name,
            one->skipped ? "update" : "actor step", a->skipped_run, a->skipped_total);
    if (a->skipped_run >= RQD_MAX_SKIPPED_RUN) {
        rqd__agent_fail(a, "paused itself after %d updates in a row whose loss or gradients "
                        "were not finite (its replay data or settings make training diverge); "
                        "restore a checkpoint to bring it back", a->skipped_run);
        LOG(LOG_ERR, "agent %s: %s", a->name, a->error);
    }
}

/* Under a->mu: one chunk, its per-member work spread by ex (NULL: this thread only).
 * Returns the waiters it satisfied; *failed gets every other one when the chunk made the
 * agent unavailable. */
static rqd_waiter *run_chunk(rqd_agent *a, const redq_exec *ex, rqd_waiter **failed)
{
    long long k = runnable(a);
    if (k <= 0)
        return NULL;
    const redq_config *c = redq_agent_config(a->core);
    int manual = a->manual_pending > 0;
    redq_info info;
    redq_agent_info(a->core, &info);
    long long to_row = to_boundary(c, info.updates);
    if (k > to_row)
        k = to_row;
    if (k > RQD_TRAIN_CHUNK)
        k = RQD_TRAIN_CHUNK;
    if (manual && k > a->manual_pending)
        k = a->manual_pending;

    /* One update at a time, and stop early once RQD_CHUNK_SECONDS have passed or a
     * request waits for a->mu: a big network's update takes ~15 ms, and everything
     * else about this agent (posts, GETs, PATCH) waits for the lock meanwhile. */
    redq_stats st, one;
    rqd_err err = {0};
    double t0 = rqd_mono();
    long long done = 0, trained = 0;
    memset(&st, 0, sizeof st);
    while (done < k && atomic_load(&a->status) == RQD_AGENT_OK) {
        if (redq_agent_update(a->core, 1, ex, &one, &err) < 0) {
            LOG(LOG_ERR, "agent %s: update failed: %s", a->name, err.msg);
            break;
        }
        done++; /* a skipped update is done too: what it owed is not owed again */
        count_skipped(a, &one);
        if (one.skipped == 0) {
            double spent = st.train_time + one.train_time;
            int actor = st.actor_updated | one.actor_updated;
            st = one;
            st.train_time = spent;
            st.actor_updated = actor;
            trained++;
        }
        if (atomic_load(&a->mu_wanted) > 0 || rqd_mono() - t0 > RQD_CHUNK_SECONDS)
            break;
    }
    if (done == 0)
        return NULL;
    k = done;
    if (atomic_load(&a->status) != RQD_AGENT_OK) { /* no training will come: answer them */
        *failed = a->waiters;
        a->waiters = NULL;
    }
    if (trained > 0) {
        a->last = st;
        a->have_stats = 1;
        a->time_since_row += st.train_time;
    }
    if (manual) {
        a->manual_pending -= k;
        a->manual_done += k;
        a->manual_time += st.train_time;
    } else {
        a->pending -= (double)k;
        if (a->pending < 1e-9)
            a->pending = 0;
        a->done_total += (double)k;
    }
    redq_agent_info(a->core, &info);
    rqd_waiter *ready = rqd__take_ready(a);
    int train_done = 0;
    for (rqd_waiter *w = ready; w; w = w->next)
        train_done |= w->kind == RQD_WAIT_TRAIN;
    if ((trained > 0 && info.updates % c->actor_delay == 0 && a->last_row_update != info.updates) ||
        (train_done && a->last_row_update != info.updates && a->have_stats))
        add_row(a, &info);
    /* A train call answers the row of its last update (made now or just before). */
    for (rqd_waiter *w = ready; w; w = w->next)
        if (w->kind == RQD_WAIT_TRAIN && a->last_row_update == info.updates)
            w->row = a->last_row;
    rqd__policy_lease(a);
    if (trained > 0 && c->checkpoint_every > 0 && info.updates % c->checkpoint_every == 0 &&
        info.updates != a->last_auto_ckpt)
        rqd__ckpt_auto(a);
    return ready;
}

static void *trainer_main(void *p)
{
    rqd_registry *r = p;
    /* Serving comes first: acts and posts must not queue behind training for a core.
     * Training gets what the HTTP threads leave: SCHED_IDLE for this thread only (with
     * no requests to serve it still has every core it can use); nice +19 if refused. */
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0 &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) != 0)
        LOG(LOG_DEBUG, "trainer: cannot lower its priority");
    pthread_setname_np(pthread_self(), "redqd-trainer");
    for (;;) {
        pthread_mutex_lock(&r->run_mu);
        while (r->q_len == 0 && !r->stopping)
            pthread_cond_wait(&r->run_cv, &r->run_mu);
        if (r->stopping) {
            pthread_mutex_unlock(&r->run_mu);
            return NULL;
        }
        rqd_agent *a = r->q[r->q_head];
        r->q_head = (r->q_head + 1) % r->q_cap;
        r->q_len--;
        a->queued = 0;
        /* Alone (no other agent waiting, no other trainer busy): the idle cores take
         * part of this agent's ensemble. Results are the same bits either way. */
        int alone = r->q_len == 0 && r->busy == 0 && r->pool != NULL;
        r->busy++;
        pthread_mutex_unlock(&r->run_mu);
        redq_exec ex = rqd_pool_exec(r->pool);

        /* Requests waiting for a->mu go first (rqd_agent_lock); bounded, so that a
         * stream of requests slows training down but cannot stop it. */
        for (int spin = 0; atomic_load(&a->mu_wanted) > 0 && spin < 2000; spin++) {
            struct timespec pause = {0, 20 * 1000};
            nanosleep(&pause, NULL);
        }
        rqd_waiter *failed = NULL;
        pthread_mutex_lock(&a->mu); /* the chunk: not rqd_agent_lock */
        rqd_waiter *ready = run_chunk(a, alone ? &ex : NULL, &failed);
        pthread_mutex_unlock(&a->mu);
        pthread_mutex_lock(&r->run_mu);
        r->busy--;
        pthread_mutex_unlock(&r->run_mu);
        rqd__call_waiters(ready, 0);
        rqd__call_waiters(failed, RQD_EUNAVAIL);
        rqd_sched_kick(a); /* to the tail if work remains */
        rqd_agent_put(a);
    }
}

int rqd__trainers_start(rqd_registry *r, int n, rqd_err *err)
{
    r->trainers = calloc((size_t)n, sizeof *r->trainers);
    if (r->trainers == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    /* The pool's workers do trainers' work: they take the trainers' low priority, which
     * new threads inherit from the thread that creates them. */
    struct sched_param keep_sp, idle_sp = {0};
    int keep_policy, lowered = 0;
    if (pthread_getschedparam(pthread_self(), &keep_policy, &keep_sp) == 0)
        lowered = pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle_sp) == 0;
    int prc = n > 1 ? rqd_pool_new(n, &r->pool) : 0;
    if (lowered)
        pthread_setschedparam(pthread_self(), keep_policy, &keep_sp);
    if (prc < 0)
        return rqd_err_set(err, RQD_ENOMEM, "", "cannot start the ensemble worker pool");
    for (int i = 0; i < n; i++) {
        if (pthread_create(&r->trainers[i], NULL, trainer_main, r) != 0)
            return rqd_err_set(err, RQD_EINTERNAL, "", "cannot start trainer threads");
        r->n_trainers++;
    }
    return RQD_OK;
}

void rqd__trainers_stop(rqd_registry *r)
{
    pthread_mutex_lock(&r->run_mu);
    r->stopping = 1;
    pthread_cond_broadcast(&r->run_cv);
    pthread_mutex_unlock(&r->run_mu);
    for (int i = 0; i < r->n_trainers; i++)
        pthread_join(r->trainers[i], NULL);
    r->n_trainers = 0;
    rqd_pool_free(r->pool);
    r->pool = NULL;
    pthread_mutex_lock(&r->run_mu);
    while (r->q_len > 0) {
        rqd_agent *a = r->q[r->q_head];
        r->q_head = (r->q_head + 1) % r->q_cap;
        r->q_len--;
        a->queued = 0;
        rqd_agent_put(a);
    }
    pthread_mutex_unlock(&r->run_mu);
}

int rqd_agent_wait(rqd_agent *a, rqd_waiter *w, int kind, double target, int k, double timeout,
                   rqd_err *err)
{
    int rc = 1;
    rqd_agent_lock(a);
    if (a->deleted) {
        rc = rqd_err_set(err, RQD_ECONFLICT, "", "agent '%s' was deleted", a->name);
    } else if (atomic_load(&a->reg->refuse_waits)) {
        rc = rqd_err_set(err, RQD_EUNAVAIL, "", "the daemon is shutting down");
    } else if (atomic_load(&a->status) != RQD_AGENT_OK) {
        rc = rqd_err_set(err, RQD_EUNAVAIL, "name", "agent '%s' is unavailable: %s", a->name,
                         a->error);
    } else if (a->moving) {
        /* No training until the agent is on its new node: a train call is refused
         * (nothing done, retry there); a sync post stored before the move began is
         * answered now with what it still owes, which the move file carries. */
        rc = kind == RQD_WAIT_TRAIN ? rqd__moving_refuse(a, err) : 0;
    } else if (kind == RQD_WAIT_TRAIN) {
        redq_info info;
        const redq_config *c = redq_agent_config(a->core);
        redq_agent_info(a->core, &info);
        if (info.buffer_len < c->batch_size) {
            rc = rqd_err_set(err, RQD_ECONFLICT, "updates", "the replay buffer holds %lld rows, "
                             "fewer than batch_size %d", info.buffer_len, c->batch_size);
        } else {
            a->manual_pending += k;
            a->manual_total += k;
            target = (double)a->manual_total;
            w->time_at_start = a->manual_time;
        }
    } else if (a->done_total >= target - 1e-9) {
        rc = 0;
    }
    if (rc == 1) {
        w->kind = kind;
        w->target = target;
        w->deadline = rqd_mono() + timeout;
        w->next = a->waiters;
        a->waiters = w;
    }
    pthread_mutex_unlock(&a->mu);
    if (rc == 1)
        rqd_sched_kick(a);
    return rc;
}
