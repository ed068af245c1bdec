/* daemon/pool.h: rqd_pool, a small persistent pthread worker pool that implements the
 * core's redq_exec contract (redq/redq.h): run fn(arg, i) for i in [0, n) and return
 * when every call is done, with the calling thread taking tasks too.
 *
 * It exists so that one agent's update can spread its per-member work (the M target
 * forwards, the N critic steps, the N critic input gradients of the actor step) over
 * two or more cores. That work is called about three times per update and an update
 * takes 0.3 to 15 ms, so a call must cost microseconds, not a thread creation: the
 * workers are created once and park between calls (a short spin, then a condition
 * variable).
 *
 * The pool does not touch OpenBLAS. Every task's GEMMs run on the thread that runs
 * the task, single-threaded as long as the process set OpenBLAS to one thread
 * (openblas_set_num_threads(1) or OPENBLAS_NUM_THREADS=1, STYLE.md), which is what
 * keeps a 2-thread pool from putting 4 threads on 2 cores.
 *
 * THREADS
 * -------
 * rqd_pool_new and rqd_pool_free run on the owner's thread, with no parallel_for in
 * progress. rqd_pool_parallel_for may be called from any thread: one call at a time
 * uses the workers; a call that finds them busy (another thread's call, or a task that
 * calls parallel_for on the same pool) runs its tasks inline on its own thread instead
 * of waiting, so it never deadlocks and never oversubscribes. Tasks of one call run in
 * any order and concurrently; fn must be safe for that (redq's are: each writes only
 * its member's ranges).
 */
#ifndef RQD_POOL_H
#define RQD_POOL_H

#include "../redq/redq.h"

/* Most threads a pool may have (the caller included). More than the cores is never
 * useful; 256 only catches a nonsense setting. */
#define RQD_POOL_MAX_THREADS 256

typedef struct rqd_pool rqd_pool;

/* A pool of 'threads' threads in total, the caller of parallel_for included, so
 * threads - 1 workers are started; threads == 1 starts none and runs every call
 * inline. RQD_EINVAL if threads is outside [1, RQD_POOL_MAX_THREADS], RQD_ENOMEM if
 * memory or threads could not be had (nothing is left running then). The caller frees
 * the pool with rqd_pool_free. */
int rqd_pool_new(int threads, rqd_pool **out);

/* Stops and joins the workers, then frees. NULL is a no-op. */
void rqd_pool_free(rqd_pool *p);

/* The number of threads given to rqd_pool_new (1 for NULL). */
int rqd_pool_threads(const rqd_pool *p);

/* The redq_exec.parallel_for of the pool ctx (an rqd_pool *; NULL runs inline): calls
 * fn(arg, i) once for every i in [0, n) and returns when all calls have returned. */
void rqd_pool_parallel_for(void *ctx, void (*fn)(void *arg, int i), void *arg, int n);

/* An exec for redq_agent_update that uses p (borrowed: p must outlive its use). */
redq_exec rqd_pool_exec(rqd_pool *p);

#endif
