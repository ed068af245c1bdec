/* redq/adam.h: Adam over flat arrays (PyTorch's defaults and bias correction), the
 * linear learning-rate schedule, and Polyak averaging. */
#ifndef REDQ_ADAM_H
#define REDQ_ADAM_H

#include <stddef.h>

#define REDQ_ADAM_BETA1 0.9
#define REDQ_ADAM_BETA2 0.999
#define REDQ_ADAM_EPS 1e-8

/* One Adam step number t (>= 1) with learning rate lr on n parameters:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;
 *   w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)      (torch.optim.Adam) */
void redq__adam_step(float *w, const float *g, float *m, float *v, size_t n, double lr, long long t);

/* The same for one double parameter (log_alpha). */
void redq__adam_step1(double *w, double g, double *m, double *v, double lr, long long t);

/* REDQ.md "Learning-rate schedule": lr * max(0, 1 - done / K) for the update that follows
 * `done` finished updates; K = 0 means no schedule. */
double redq__lr_at(double lr, long long done, long long K);

/* REDQ.md step 7: targ <- (1 - tau) targ + tau cur over n values. */
void redq__polyak(float *targ, const float *cur, size_t n, float tau);

#endif
