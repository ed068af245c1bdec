/* redq/rng.c: xoshiro256** (Blackman and Vigna), splitmix64 seeding, Box-Muller. */
#include "rng.h"

#include <assert.h>
#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* Each (seed, stream) pair gets its own splitmix64 sequence, so an agent's training and
 * acting generators are independent yet both follow from its one seed. */
void redq_rng_seed(redq_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0.0f;
}

uint64_t redq_rng_next(redq_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float redq_rng_uniform(redq_rng *r)
{
    return (float)(redq_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t redq_rng_below(redq_rng *r, uint64_t n)
{
    assert(n > 0);
    return (uint64_t)(((unsigned __int128)redq_rng_next(r) * n) >> 64);
}

float redq_rng_normal(redq_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* u1 in (0, 1] so that log(u1) is finite. */
    double u1 = ((double)(redq_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(redq_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    double rad = sqrt(-2.0 * log(u1));
    double th = 2.0 * M_PI * u2;
    r->spare = (float)(rad * sin(th));
    r->has_spare = 1;
    return (float)(rad * cos(th));
}

void redq_rng_normals(redq_rng *r, float *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = redq_rng_normal(r);
}

void redq_rng_subset(redq_rng *r, int n, int k, int *out)
{
    int idx[64];
    assert(n >= 1 && n <= 64 && k >= 1 && k <= n);
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)redq_rng_below(r, (uint64_t)(n - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        out[i] = idx[i];
    }
}
