/* redq/adam.c: Adam, the linear schedule, Polyak averaging, the magnitude scan.
 *
 * These loops touch every parameter of the ensemble once per update (for REDQ's
 * default 10 x [256, 256] critics, 670k floats, 10 MB of traffic), so they are built for
 * AVX2 and AVX-512 as well as the baseline, chosen at load time (target_clones).
 */
#include "adam.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__) /* clang 14 resolves target_clones differently: plain build */
#define CLONES
#else
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

CLONES
void redq__adam_step(float *restrict w, const float *restrict g, float *restrict m,
                     float *restrict v, size_t n, double lr, long long t)
{
    const float b1 = (float)REDQ_ADAM_BETA1, b2 = (float)REDQ_ADAM_BETA2;
    const float step = (float)(lr / (1.0 - pow(REDQ_ADAM_BETA1, (double)t)));
    const float inv_bc2s = (float)(1.0 / sqrt(1.0 - pow(REDQ_ADAM_BETA2, (double)t)));
    const float eps = (float)REDQ_ADAM_EPS;

    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] -= step * mi / (sqrtf(vi) * inv_bc2s + eps);
    }
}

void redq__adam_step1(double *w, double g, double *m, double *v, double lr, long long t)
{
    *m = REDQ_ADAM_BETA1 * *m + (1.0 - REDQ_ADAM_BETA1) * g;
    *v = REDQ_ADAM_BETA2 * *v + (1.0 - REDQ_ADAM_BETA2) * g * g;
    double step = lr / (1.0 - pow(REDQ_ADAM_BETA1, (double)t));
    double bc2s = sqrt(1.0 - pow(REDQ_ADAM_BETA2, (double)t));
    *w -= step * *m / (sqrt(*v) / bc2s + REDQ_ADAM_EPS);
}

double redq__lr_at(double lr, long long done, long long K)
{
    if (K <= 0)
        return lr;
    double f = 1.0 - (double)done / (double)K;
    return f > 0.0 ? lr * f : 0.0;
}

CLONES
void redq__polyak(float *restrict targ, const float *restrict cur, size_t n, float tau)
{
    for (size_t i = 0; i < n; i++)
        targ[i] += tau * (cur[i] - targ[i]);
}

/* |x| as bits orders like |x| itself for finite values, and inf (0x7f800000) and every
 * NaN (above it) sort past them all. */
static uint32_t abs_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & 0x7fffffffu;
}

CLONES
int redq__all_below(const float *restrict x, size_t n, float bound)
{
    uint32_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = abs_bits(x[i]);
        worst = u > worst ? u : worst;
    }
    return worst < abs_bits(bound);
}
