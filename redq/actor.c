/* redq/actor.c: the Gaussian tanh policy's sample, log-probability and their backward
 * (REDQ.md "Networks"). The MLP part is redq/mlp.c; this file owns the head. */
#include <math.h>

#include "internal.h"

static float clamp_log_std(float x)
{
    return x < REDQ_LOG_STD_MIN ? REDQ_LOG_STD_MIN : x > REDQ_LOG_STD_MAX ? REDQ_LOG_STD_MAX : x;
}

/* log_pi(a|s) = Σ_j [-eps_j²/2 - log_std_j - log(2π)/2] - Σ_j log(1 - a_j² + 1.19e-7) */
void redq__actor_sample(const float *head, const float *eps, int B, int A, float *a, int lda,
                        float *logp)
{
    const double half_log_2pi = 0.91893853320467274178;

    for (int b = 0; b < B; b++) {
        const float *mu = head + (long)b * 2 * A, *ls = mu + A;
        const float *e = eps + (long)b * A;
        float *ab = a + (long)b * lda;
        double lp = 0.0;
        for (int j = 0; j < A; j++) {
            float l = clamp_log_std(ls[j]);
            float t = tanhf(mu[j] + expf(l) * e[j]);
            ab[j] = t;
            lp += -0.5 * (double)e[j] * e[j] - l - half_log_2pi;
            lp -= log(1.0 - (double)t * t + REDQ_TANH_EPS);
        }
        logp[b] = (float)lp;
    }
}

/* With u = mu + std eps and a = tanh(u) (eps fixed: reparameterised):
 *   dL/da  = dA + (alpha/B) * 2a / (1 - a² + e)      (the tanh correction in logp)
 *   dL/du  = dL/da * (1 - a²)
 *   dL/dmu = dL/du
 *   dL/dlog_std = dL/du * std * eps - alpha/B        (the -log_std term), 0 where clamped
 * The Gaussian term -eps²/2 does not depend on the parameters once eps is fixed. */
void redq__actor_sample_backward(const float *head, const float *eps, const float *a, int lda,
                                 const float *dA, double alpha_over_B, int B, int A,
                                 float *dhead)
{
    for (int b = 0; b < B; b++) {
        const float *ls = head + (long)b * 2 * A + A;
        const float *e = eps + (long)b * A;
        const float *ab = a + (long)b * lda;
        const float *g = dA + (long)b * A;
        float *dmu = dhead + (long)b * 2 * A, *dls = dmu + A;
        for (int j = 0; j < A; j++) {
            double t = ab[j], one_m = 1.0 - t * t;
            double ga = g[j] + alpha_over_B * 2.0 * t / (one_m + REDQ_TANH_EPS);
            double gu = ga * one_m;
            int inside = ls[j] >= REDQ_LOG_STD_MIN && ls[j] <= REDQ_LOG_STD_MAX;
            dmu[j] = (float)gu;
            dls[j] = inside ? (float)(gu * exp(clamp_log_std(ls[j])) * e[j] - alpha_over_B) : 0.0f;
        }
    }
}
