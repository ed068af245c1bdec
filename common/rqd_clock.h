/* common/rqd_clock.h: seconds on the monotonic clock, for durations and deadlines (never
 * stored: it restarts with the machine), and the one format of stored times. */
#ifndef RQD_CLOCK_H
#define RQD_CLOCK_H

#include <time.h>

static inline double rqd_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* RFC 3339 UTC with milliseconds, "2026-12-05T17:02:29.123Z": what every stored time
 * column holds, so that text order is time order. sec + nsec / 1e9 Unix seconds; nsec is
 * truncated to milliseconds. */
void rqd_rfc3339(time_t sec, long nsec, char out[32]);
void rqd_now_rfc3339(char out[32]); /* CLOCK_REALTIME */

#endif
