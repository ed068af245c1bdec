/* common/rqd_clock.h: seconds on the monotonic clock, for durations and deadlines (never
 * stored: it restarts with the machine), Unix seconds, and the one format of stored
 * times. */
#ifndef RQD_CLOCK_H
#define RQD_CLOCK_H

#include <time.h>

static inline double rqd__clock_seconds(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline double rqd_mono(void) { return rqd__clock_seconds(CLOCK_MONOTONIC); }

/* Unix seconds on the real-time clock: what stats rows and retention ages are kept in. */
static inline double rqd_wall(void) { return rqd__clock_seconds(CLOCK_REALTIME); }

/* RFC 3339 UTC with milliseconds, "2026-12-05T17:02:29.123Z": what every stored time
 * column holds, so that text order is time order. sec + nsec / 1e9 Unix seconds; nsec is
 * truncated to milliseconds. */
void rqd_rfc3339(time_t sec, long nsec, char out[32]);
void rqd_now_rfc3339(char out[32]); /* CLOCK_REALTIME */

#endif
