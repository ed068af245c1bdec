/* daemon/writer.h: the SQLite writer thread (DESIGN.md "Storage", STYLE R11).
 *
 * THREADS
 * -------
 * rqd_writer_run()/post()  any thread; take w->mu, append a job, signal the writer.
 * the writer thread        owns the one read-write connection; takes every queued job,
 *                          runs them in one transaction (each in its own savepoint, so a
 *                          failing job rolls back alone) and commits once: group commit.
 * job completion           rqd_writer_run() returns after the COMMIT that holds its job;
 *                          a posted job's free function runs on the writer thread.
 */
#ifndef RQD_WRITER_H
#define RQD_WRITER_H

#include "../common/rqd_err.h"
#include "../storage/store.h"

typedef struct rqd_writer rqd_writer;
typedef int (*rqd_write_fn)(store *s, void *arg, rqd_err *err);

/* Takes ownership of s (closed by rqd_writer_free). */
int rqd_writer_start(store *s, rqd_writer **out, rqd_err *err);
/* Runs fn in the writer's next transaction and returns once it is committed (durable):
 * fn's code, or the commit's failure. RQD_EUNAVAIL after stop. */
int rqd_writer_run(rqd_writer *w, rqd_write_fn fn, void *arg, rqd_err *err);
/* Queues fn without waiting; done(arg, rc) runs on the writer thread once fn's
 * transaction has committed (rc 0) or failed (rc < 0), and owns arg from then on. */
int rqd_writer_post(rqd_writer *w, rqd_write_fn fn, void *arg, void (*done)(void *arg, int rc));
/* Test hook (STYLE R18): the first statement of the next batch fails with sqlite_rc
 * (SQLITE_FULL, SQLITE_IOERR, ...), so that batch fails as a whole. */
void rqd_writer_fail_next(rqd_writer *w, int sqlite_rc);
/* Runs the queued jobs, stops the thread; later calls answer RQD_EUNAVAIL. */
void rqd_writer_stop(rqd_writer *w);
void rqd_writer_free(rqd_writer *w);

/* Write transactions so far and their durations (for /metrics): bucket[i] counts those
 * that took at most rqd_commit_bounds[i] seconds and more than the bound before it;
 * bucket[RQD_COMMIT_BUCKETS] those past the last bound. */
#define RQD_COMMIT_BUCKETS 10
extern const double rqd_commit_bounds[RQD_COMMIT_BUCKETS];
typedef struct {
    long long commits, failures;
    double seconds;
    long long bucket[RQD_COMMIT_BUCKETS + 1];
} rqd_writer_counts;
void rqd_writer_stats(rqd_writer *w, rqd_writer_counts *out);

#endif
