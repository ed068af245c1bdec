/* daemon/pool.c: rqd_pool, the persistent worker pool behind redq_exec (pool.h).
 *
 * One call of rqd_pool_parallel_for is a "job". A job is published in one 64-bit word,
 * claim = generation << 32 | tasks not yet claimed. Threads (workers and the caller)
 * take a task by decrementing the low half with a compare-and-swap that also checks
 * the generation, and run task index remaining - 1. Keeping n inside the word means a
 * thread that comes late never reads another job's n, fn or arg: its swap fails as soon
 * as the generation moved on, and a job's fn and arg cannot change while one of its
 * tasks is still running (the caller waits for all of them). Dynamic claiming, not
 * fixed blocks, because a worker that wakes late (a busy machine, a futex wake of tens
 * of microseconds) then just takes fewer tasks instead of making the caller wait.
 *
 * Parking uses the Dekker pattern on two seq_cst words, so the common case costs no
 * system call: the publisher stores claim then reads 'sleepers'; a worker about to
 * sleep increments 'sleepers' (under the mutex) then re-reads claim. At least one of
 * them sees the other, so a wake-up is never lost and the mutex is only taken when
 * someone really sleeps. The caller's wait for the last task mirrors it with
 * 'caller_sleeping' and 'done'.
 *
 * THREADS
 * -------
 * Workers are started by rqd_pool_new with every signal blocked (signals belong to the
 * daemon's event loop thread) and run worker_main until rqd_pool_free sets 'stop'.
 * 'busy' gives one parallel_for at a time the workers; see pool.h for the rest.
 * Fields below marked (caller) are written only by the thread holding 'busy'.
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* How long a thread spins before it sleeps, in nanoseconds. Between two jobs of one
 * update the caller runs short serial steps (batch gather, the actor forward: tens to a
 * few hundred microseconds); spinning through the short ones saves a futex wake on the
 * critical path, and 100 us costs at most about 2% of a core for a 15 ms update with
 * three jobs. */
#define POOL_SPIN_NS 100000L

struct rqd_pool {
    int threads;                   /* total, the caller included */
    int nworkers;                  /* workers started */
    pthread_t *tids;               /* [nworkers] */

    void (*fn)(void *arg, int i);  /* (caller) the current job */
    void *arg;                     /* (caller) */
    int n;                         /* (caller) its number of tasks */
    uint32_t gen;                  /* (caller) the current job's generation */

    _Atomic uint64_t claim;        /* gen << 32 | tasks not yet claimed */
    _Atomic int done;              /* tasks of the current job that have returned */
    _Atomic int busy;              /* a parallel_for owns the workers */
    _Atomic int stop;              /* rqd_pool_free: workers exit */

    pthread_mutex_t mu;            /* guards the two condition variables' waits */
    pthread_cond_t wake;           /* workers: a new generation (or stop) */
    pthread_cond_t finished;       /* the caller: done reached n */
    _Atomic int sleepers;          /* workers waiting on 'wake' */
    _Atomic int caller_sleeping;   /* the caller waits on 'finished' */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spins until pred(p, x) holds or POOL_SPIN_NS passed; returns whether it holds. The
 * clock is read every 64 rounds, as on some VMs it is a system call. Those rounds also
 * yield: when the machine has more runnable threads than cores, the thread this one
 * waits for may be queued behind it on the same core, and a spin that never yields
 * would keep it off for the whole spin. On an idle core the yield returns at once. */
static int spin_until(rqd_pool *p, int (*pred)(rqd_pool *, uint64_t), uint64_t x)
{
    long long deadline = 0;
    for (unsigned i = 0;; i++) {
        if (pred(p, x))
            return 1;
        if ((i & 63) == 63) {
            long long t = now_ns();
            if (deadline == 0)
                deadline = t + POOL_SPIN_NS;
            else if (t >= deadline)
                return 0;
            sched_yield();
        }
        cpu_relax();
    }
}

/* ------------------------------------------------------------------ running tasks */

/* Takes and runs tasks of generation gen until none is left. */
static void run_tasks(rqd_pool *p, uint32_t gen)
{
    uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(c >> 32) != gen || (uint32_t)c == 0)
            return;
        /* acquire: a won swap makes this job's fn and arg visible. */
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c - 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        p->fn(p->arg, (int)((uint32_t)c - 1));
        /* The job cannot end before this task counts itself, so n is still this job's.
         * The last task to finish wakes a caller that has gone to sleep. */
        int n = p->n;
        if (atomic_fetch_add(&p->done, 1) + 1 == n && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->finished);
            pthread_mutex_unlock(&p->mu);
        }
        c = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
}

/* ------------------------------------------------------------------ workers */

static int new_generation(rqd_pool *p, uint64_t seen)
{
    return (uint32_t)(atomic_load(&p->claim) >> 32) != (uint32_t)seen || atomic_load(&p->stop);
}

/* Returns once the generation differs from seen or the pool stops. */
static void wait_for_job(rqd_pool *p, uint32_t seen)
{
    if (spin_until(p, new_generation, seen))
        return;
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (!new_generation(p, seen))
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg)
{
    rqd_pool *p = arg;
    uint32_t seen = 0; /* the generation of the pool's initial, empty job */

    for (;;) {
        wait_for_job(p, seen);
        if (atomic_load(&p->stop))
            return NULL;
        seen = (uint32_t)(atomic_load(&p->claim) >> 32);
        run_tasks(p, seen);
    }
}

/* ------------------------------------------------------------------ the caller's side */

static int job_done(rqd_pool *p, uint64_t n)
{
    return (uint64_t)atomic_load(&p->done) == n;
}

static void wait_done(rqd_pool *p, int n)
{
    if (spin_until(p, job_done, (uint64_t)n))
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, 1);
    while (!job_done(p, (uint64_t)n))
        pthread_cond_wait(&p->finished, &p->mu);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mu);
}

static void run_inline(void (*fn)(void *, int), void *arg, int n)
{
    for (int i = 0; i < n; i++)
        fn(arg, i);
}

void rqd_pool_parallel_for(void *ctx, void (*fn)(void *arg, int i), void *arg, int n)
{
    rqd_pool *p = ctx;

    /* One task, no workers, or workers owned by another call: this thread does it all. */
    if (p == NULL || p->nworkers == 0 || n <= 1 || atomic_exchange(&p->busy, 1)) {
        run_inline(fn, arg, n);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->gen++;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store(&p->claim, (uint64_t)p->gen << 32 | (uint32_t)n); /* publishes all above */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    run_tasks(p, p->gen);
    wait_done(p, n);
    atomic_store_explicit(&p->busy, 0, memory_order_release);
}

redq_exec rqd_pool_exec(rqd_pool *p)
{
    redq_exec ex = {.parallel_for = rqd_pool_parallel_for, .ctx = p};
    return ex;
}

int rqd_pool_threads(const rqd_pool *p)
{
    return p == NULL ? 1 : p->threads;
}

/* ------------------------------------------------------------------ life cycle */

/* Stops and joins the first 'started' workers. */
static void stop_workers(rqd_pool *p, int started)
{
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++)
        pthread_join(p->tids[i], NULL);
}

/* Starts the workers with every signal blocked, which they inherit: a process signal
 * (SIGTERM, SIGHUP) then reaches a thread that handles it, never a worker mid-GEMM. */
static int start_workers(rqd_pool *p, int count)
{
    sigset_t all, old;
    int started = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (; started < count; started++) {
        if (pthread_create(&p->tids[started], NULL, worker_main, p) != 0)
            break;
        char name[16];
        snprintf(name, sizeof name, "rqd-pool-%d", (started + 1) % 1000); /* < 16 bytes */
        pthread_setname_np(p->tids[started], name); /* for top -H and perf; may fail */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < count) {
        stop_workers(p, started);
        return RQD_ENOMEM;
    }
    p->nworkers = count;
    return RQD_OK;
}

int rqd_pool_new(int threads, rqd_pool **out)
{
    rqd_pool *p = NULL;
    int rc = RQD_OK;

    if (threads < 1 || threads > RQD_POOL_MAX_THREADS)
        return RQD_EINVAL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return RQD_ENOMEM;
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->finished, NULL);
    if (threads > 1) {
        p->tids = calloc((size_t)threads - 1, sizeof *p->tids);
        rc = p->tids == NULL ? RQD_ENOMEM : start_workers(p, threads - 1);
    }
    if (rc < 0) {
        rqd_pool_free(p); /* no workers are running */
        return rc;
    }
    *out = p;
    return RQD_OK;
}

void rqd_pool_free(rqd_pool *p)
{
    if (p == NULL)
        return;
    if (p->nworkers > 0)
        stop_workers(p, p->nworkers);
    pthread_cond_destroy(&p->finished);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}
