/* common/rqd_hist.h: the bucket of a fixed-bound histogram (the HTTP latency and the
 * database commit histograms of /metrics): the first bound v does not exceed, or n for
 * the +Inf bucket past the last one. */
#ifndef RQD_HIST_H
#define RQD_HIST_H

static inline int rqd_hist_bucket(const double *bounds, int n, double v)
{
    int b = 0;
    while (b < n && v > bounds[b])
        b++;
    return b;
}

#endif
