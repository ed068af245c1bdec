/* common/rqd_clock.h: seconds on the monotonic clock, for durations and deadlines (never
 * stored: it restarts with the machine). */
#ifndef RQD_CLOCK_H
#define RQD_CLOCK_H

#include <time.h>

static inline double rqd_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
