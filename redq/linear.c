/* redq/linear.c: linear-layer kernels over OpenBLAS (one cblas_sgemm per product).
 *
 * Why no fused first critic layer: sgemm_peak on this machine shows one
 * (B, S+A) x (S+A, N*H) product running 3x slower than N separate (B, S+A) x (S+A, H)
 * ones for small S (docs/BENCHMARKS.md), so every member gets its own calls.
 */
#include "linear.h"

#include <cblas.h>
#include <string.h>

/* The element-wise passes below touch every activation of every member each update;
 * built for AVX-512 and AVX2 as well as the baseline, chosen at load time. */
#if defined(__clang__) /* clang 14 resolves target_clones differently: plain build */
#define CLONES
#else
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

CLONES
void redq__bias_act(float *restrict out, const float *restrict b, int B, int Out, int relu)
{
    for (int r = 0; r < B; r++) {
        float *o = out + (long)r * Out;
        if (relu) {
            for (int j = 0; j < Out; j++) {
                float v = o[j] + b[j];
                o[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int j = 0; j < Out; j++)
                o[j] += b[j];
        }
    }
}

void redq__col_sum(float *restrict db, const float *restrict dout, int B, int Out)
{
    memcpy(db, dout, sizeof(float) * (size_t)Out);
    for (int r = 1; r < B; r++) {
        const float *d = dout + (long)r * Out;
        for (int j = 0; j < Out; j++)
            db[j] += d[j];
    }
}

void redq__linear_forward(float *out, const float *in, int ldi, const float *w, const float *b,
                          int B, int In, int Out, int relu)
{
    if (B == 1) { /* one observation (an act): a matrix-vector product, out = wᵀ in */
        cblas_sgemv(CblasRowMajor, CblasTrans, In, Out, 1.0f, w, Out, in, 1, 0.0f, out, 1);
        redq__bias_act(out, b, 1, Out, relu);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, Out, In, 1.0f, in, ldi, w, Out, 0.0f,
                out, Out);
    redq__bias_act(out, b, B, Out, relu); /* one pass, while the output is still in cache */
}

void redq__linear_backward_w(float *dw, float *db, const float *dout, const float *in, int ldi,
                             int B, int In, int Out)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, In, Out, B, 1.0f, in, ldi, dout, Out, 0.0f,
                dw, Out);
    redq__col_sum(db, dout, B, Out);
}

void redq__linear_backward_x(float *din, int lddin, const float *dout, const float *w, int Out,
                             int B, int c0, int nc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, nc, Out, 1.0f, dout, Out,
                w + (long)c0 * Out, Out, 0.0f, din, lddin);
}

CLONES
void redq__relu_backward(float *restrict dz, const float *restrict h, long n)
{
    for (long i = 0; i < n; i++)
        dz[i] = h[i] > 0.0f ? dz[i] : 0.0f;
}

void redq__linear_forward_ref(double *out, const double *in, const float *w, const float *b,
                              int B, int In, int Out, int relu)
{
    for (int r = 0; r < B; r++)
        for (int j = 0; j < Out; j++) {
            double s = b[j];
            for (int i = 0; i < In; i++)
                s += in[(long)r * In + i] * (double)w[(long)i * Out + j];
            out[(long)r * Out + j] = relu && s < 0.0 ? 0.0 : s;
        }
}
