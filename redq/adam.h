/* redq/adam.h: Adam over flat arrays (PyTorch's defaults and bias correction), the
 * linear learning-rate schedule, Polyak averaging, and the magnitude scan that decides
 * whether a gradient may be applied at all. */
#ifndef REDQ_ADAM_H
#define REDQ_ADAM_H

#include <stddef.h>

#define REDQ_ADAM_BETA1 0.9
#define REDQ_ADAM_BETA2 0.999
#define REDQ_ADAM_EPS 1e-8

/* The largest gradient an update applies (REDQ.md's steps are skipped past it, like a
 * non-finite one). Adam squares the gradient in float32: past ~1.8e19 the square is
 * infinite and v would stay infinite for good. Below 2^60 the moments stay within
 * |m| <= 2^60 and v <= 2^120 and nothing Adam computes overflows; a sane gradient
 * (inputs within --max-abs-value) is many orders of magnitude below. */
#define REDQ_MAX_GRAD 0x1p60f

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

/* 1 if |x[i]| < bound for each of the n values (a NaN never is; bound may be INFINITY
 * to ask for finite values only). One integer max-reduction over the bit patterns, which
 * vectorises where a chain of isfinite() tests would not. */
int redq__all_below(const float *x, size_t n, float bound);

#endif
