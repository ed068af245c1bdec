/* redq/mlp.c: shape, initialisation, forward and backward of a ReLU MLP block. */
#include "mlp.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "linear.h"

void redq__mlp_shape(redq__mlp *m, int in, const int *hidden, int nh, int out)
{
    size_t off = 0;

    assert(nh >= 0 && nh <= RQD_MAX_HIDDEN_LAYERS);
    memset(m, 0, sizeof *m);
    m->n = nh + 1;
    for (int l = 0; l < m->n; l++) {
        m->in[l] = l == 0 ? in : hidden[l - 1];
        m->out[l] = l == nh ? out : hidden[l];
        m->w[l] = off;
        off += (size_t)m->in[l] * (size_t)m->out[l];
        m->b[l] = off;
        off += (size_t)m->out[l];
        if (m->out[l] > m->max_width)
            m->max_width = m->out[l];
    }
    m->total = off;
}

void redq__mlp_init(const redq__mlp *m, float *p, redq_rng *rng)
{
    for (int l = 0; l < m->n; l++) {
        float k = 1.0f / sqrtf((float)m->in[l]);
        size_t nw = (size_t)m->in[l] * (size_t)m->out[l];
        for (size_t i = 0; i < nw; i++)
            p[m->w[l] + i] = k * (2.0f * redq_rng_uniform(rng) - 1.0f);
        for (int i = 0; i < m->out[l]; i++)
            p[m->b[l] + (size_t)i] = k * (2.0f * redq_rng_uniform(rng) - 1.0f);
    }
}

void redq__mlp_forward(const redq__mlp *m, const float *p, const float *x, int ldx, int B,
                       float *const *h, float *y)
{
    const float *in = x;
    int ld = ldx;

    for (int l = 0; l < m->n; l++) {
        int last = l == m->n - 1;
        float *out = last ? y : h[l];
        redq__linear_forward(out, in, ld, p + m->w[l], p + m->b[l], B, m->in[l], m->out[l], !last);
        in = out;
        ld = m->out[l];
    }
}

void redq__mlp_backward(const redq__mlp *m, const float *p, const float *x, int ldx, int B,
                        float *const *h, const float *dy, float *g, float *dx, int lddx, int c0,
                        int nc, float *work0, float *work1)
{
    const float *dz = dy; /* gradient at the output of layer l (pre-activation) */
    float *buf[2] = {work0, work1};

    for (int l = m->n - 1; l >= 0; l--) {
        const float *in = l == 0 ? x : h[l - 1];
        int ldi = l == 0 ? ldx : m->in[l];
        if (g != NULL)
            redq__linear_backward_w(g + m->w[l], g + m->b[l], dz, in, ldi, B, m->in[l], m->out[l]);
        if (l == 0) {
            if (dx != NULL)
                redq__linear_backward_x(dx, lddx, dz, p + m->w[0], m->out[0], B, c0, nc);
            break;
        }
        float *dprev = buf[l & 1];
        redq__linear_backward_x(dprev, m->in[l], dz, p + m->w[l], m->out[l], B, 0, m->in[l]);
        redq__relu_backward(dprev, h[l - 1], (long)B * m->in[l]);
        dz = dprev;
    }
}
