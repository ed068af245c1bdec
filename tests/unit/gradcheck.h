/* tests/unit/gradcheck.h: double-precision reference networks and the comparison of an
 * analytic gradient with central finite differences (kann's kad_check_grad idea). */
#ifndef TESTS_GRADCHECK_H
#define TESTS_GRADCHECK_H

#include <stddef.h>

#include "../../redq/mlp.h"

/* y (B, out) = the MLP with double parameters p (the block layout of m) on x (B, in0). */
void ref_mlp(const redq__mlp *m, const double *p, const double *x, int B, double *y);

/* Compares g (n floats) with fd (n doubles): returns max|g - fd| / max|fd| and writes the
 * worst index. */
double grad_rel_err(const float *g, const double *fd, size_t n, size_t *worst);

#endif
