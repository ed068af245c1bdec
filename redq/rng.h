/* redq/rng.h: the per-agent random generator (STYLE R20).
 *
 * xoshiro256** seeded by splitmix64; normals by Box-Muller with the second value kept
 * for the next call. The whole state (including the kept value) is serialised in a
 * checkpoint, so a restored agent draws exactly what the original would have.
 */
#ifndef REDQ_RNG_H
#define REDQ_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
    uint32_t has_spare; /* a second Box-Muller value is waiting */
    float spare;
} redq_rng;

void redq_rng_seed(redq_rng *r, uint64_t seed, uint64_t stream);
uint64_t redq_rng_next(redq_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float redq_rng_uniform(redq_rng *r);
/* Uniform integer in [0, n), n > 0 (Lemire's multiply; bias below 2^-40 for our n). */
uint64_t redq_rng_below(redq_rng *r, uint64_t n);
/* Standard normal. */
float redq_rng_normal(redq_rng *r);
/* Fills out[0..n) with standard normals. */
void redq_rng_normals(redq_rng *r, float *out, int n);
/* k distinct indices of 0..n-1 (partial Fisher-Yates), 1 <= k <= n <= 64. */
void redq_rng_subset(redq_rng *r, int n, int k, int *out);

#endif
