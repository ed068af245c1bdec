/* redq/mlp.h: a ReLU multilayer perceptron over one contiguous parameter block (STYLE R5).
 *
 * The actor (trunk plus its mu|log_std head as one layer of width 2A) and every critic
 * member are such MLPs: ReLU after every layer but the last. A block holds, layer by
 * layer, W[in][out] then b[out]; gradients and both Adam moments use the same layout, so
 * Adam, Polyak averaging and checkpoints are loops over one array.
 */
#ifndef REDQ_MLP_H
#define REDQ_MLP_H

#include <stddef.h>

#include "../common/rqd_limits.h"
#include "rng.h"

#define REDQ_MAX_LAYERS (RQD_MAX_HIDDEN_LAYERS + 1)

typedef struct {
    int n;                        /* layers */
    int in[REDQ_MAX_LAYERS];      /* fan-in of layer l */
    int out[REDQ_MAX_LAYERS];     /* fan-out of layer l */
    size_t w[REDQ_MAX_LAYERS];    /* offset of W_l in the block (floats) */
    size_t b[REDQ_MAX_LAYERS];    /* offset of b_l */
    size_t total;                 /* floats in the block */
    int max_width;                /* largest out[l] */
} redq__mlp;

/* Shape in -> hidden[0] -> ... -> hidden[nh-1] -> out. */
void redq__mlp_shape(redq__mlp *m, int in, const int *hidden, int nh, int out);

/* PyTorch nn.Linear's initialisation: every weight and bias U(-1/sqrt(in), 1/sqrt(in)). */
void redq__mlp_init(const redq__mlp *m, float *p, redq_rng *rng);

/* Forward on B rows of x (ld ldx). h[l] (B, out[l]) receives the post-ReLU output of
 * every hidden layer l < n-1; y (B, out[n-1]) the final linear output. */
void redq__mlp_forward(const redq__mlp *m, const float *p, const float *x, int ldx, int B,
                       float *const *h, float *y);

/* Backward from dy (B, out[n-1]) given the forward's x and h. Overwrites g (the
 * gradient block, or NULL for none) and dx (B, nc) with ld lddx, the gradient of the
 * input columns c0..c0+nc-1 (dx NULL for none). work0 and work1 each hold
 * B * max_width floats; dy is not modified. */
void redq__mlp_backward(const redq__mlp *m, const float *p, const float *x, int ldx, int B,
                        float *const *h, const float *dy, float *g, float *dx, int lddx, int c0,
                        int nc, float *work0, float *work1);

#endif
