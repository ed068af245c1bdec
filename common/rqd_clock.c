/* common/rqd_clock.c: stored times (rqd_clock.h). */
#include "rqd_clock.h"

#include <stdio.h>

void rqd_rfc3339(time_t sec, long nsec, char out[32])
{
    struct tm tm;
    char secs[24] = "1970-01-01T00:00:00";

    if (gmtime_r(&sec, &tm) != NULL)
        strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", secs, (int)(nsec / 1000000));
}

void rqd_now_rfc3339(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rqd_rfc3339(ts.tv_sec, ts.tv_nsec, out);
}
