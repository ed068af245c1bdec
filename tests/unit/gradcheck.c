/* tests/unit/gradcheck.c: reference MLP in double and the gradient comparison. */
#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_mlp(const redq__mlp *m, const double *p, const double *x, int B, double *y)
{
    double *cur = malloc(sizeof(double) * (size_t)B * (size_t)(m->max_width + m->in[0]));
    double *nxt = malloc(sizeof(double) * (size_t)B * (size_t)(m->max_width + m->in[0]));
    memcpy(cur, x, sizeof(double) * (size_t)B * (size_t)m->in[0]);
    for (int l = 0; l < m->n; l++) {
        int I = m->in[l], O = m->out[l], last = l == m->n - 1;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < O; j++) {
                double s = p[m->b[l] + (size_t)j];
                for (int i = 0; i < I; i++)
                    s += cur[(size_t)b * I + (size_t)i] * p[m->w[l] + (size_t)i * O + (size_t)j];
                nxt[(size_t)b * O + (size_t)j] = !last && s < 0.0 ? 0.0 : s;
            }
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    memcpy(y, cur, sizeof(double) * (size_t)B * (size_t)m->out[m->n - 1]);
    free(cur);
    free(nxt);
}

double grad_rel_err(const float *g, const double *fd, size_t n, size_t *worst)
{
    double maxfd = 0.0, maxerr = 0.0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)g[i] - fd[i]);
        if (fabs(fd[i]) > maxfd)
            maxfd = fabs(fd[i]);
        if (e > maxerr) {
            maxerr = e;
            *worst = i;
        }
    }
    return maxfd > 0.0 ? maxerr / maxfd : maxerr;
}
