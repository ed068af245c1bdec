/* tests/unit/test_linear.c: the linear kernels against naive double loops, including
 * leading dimensions wider than the rows and the input-column slice of the backward. */
#include <math.h>
#include <stdlib.h>

#include "../../redq/linear.h"
#include "suites.h"

static void fill(float *v, int n, redq_rng *r)
{
    for (int i = 0; i < n; i++)
        v[i] = redq_rng_normal(r);
}

START_TEST(forward_matches_reference)
{
    const int B = 5, I = 7, O = 4, ld = 9;
    float in[5 * 9], w[7 * 4], b[4], out[5 * 4];
    double din[5 * 7], ref[5 * 4];
    redq_rng r;
    redq_rng_seed(&r, 1, 1);
    fill(in, B * ld, &r);
    fill(w, I * O, &r);
    fill(b, O, &r);
    for (int relu = 0; relu <= 1; relu++) {
        redq__linear_forward(out, in, ld, w, b, B, I, O, relu);
        for (int x = 0; x < B; x++)
            for (int i = 0; i < I; i++)
                din[x * I + i] = in[x * ld + i];
        redq__linear_forward_ref(ref, din, w, b, B, I, O, relu);
        for (int i = 0; i < B * O; i++)
            ck_assert_msg(fabs(out[i] - ref[i]) < 1e-5, "out[%d] %g vs %g", i, out[i], ref[i]);
    }
}
END_TEST

START_TEST(backward_matches_reference)
{
    const int B = 6, I = 5, O = 3, ld = 8, c0 = 2, nc = 3;
    float in[6 * 8], w[5 * 3], dout[6 * 3], dw[5 * 3], db[3], dx[6 * 3];
    redq_rng r;
    redq_rng_seed(&r, 2, 1);
    fill(in, B * ld, &r);
    fill(w, I * O, &r);
    fill(dout, B * O, &r);
    redq__linear_backward_w(dw, db, dout, in, ld, B, I, O);
    redq__linear_backward_x(dx, nc, dout, w, O, B, c0, nc);
    for (int i = 0; i < I; i++)
        for (int j = 0; j < O; j++) {
            double s = 0;
            for (int x = 0; x < B; x++)
                s += (double)in[x * ld + i] * dout[x * O + j];
            ck_assert_msg(fabs(dw[i * O + j] - s) < 1e-5, "dw[%d][%d]", i, j);
        }
    for (int j = 0; j < O; j++) {
        double s = 0;
        for (int x = 0; x < B; x++)
            s += dout[x * O + j];
        ck_assert(fabs(db[j] - s) < 1e-5);
    }
    for (int x = 0; x < B; x++)
        for (int k = 0; k < nc; k++) {
            double s = 0;
            for (int j = 0; j < O; j++)
                s += (double)dout[x * O + j] * w[(c0 + k) * O + j];
            ck_assert_msg(fabs(dx[x * nc + k] - s) < 1e-5, "dx[%d][%d]", x, k);
        }
}
END_TEST

START_TEST(mlp_init_is_pytorch_uniform)
{
    redq__mlp m;
    int hidden[2] = {32, 16};
    redq__mlp_shape(&m, 10, hidden, 2, 3);
    float *p = malloc(sizeof(float) * m.total);
    redq_rng r;
    redq_rng_seed(&r, 3, 1);
    redq__mlp_init(&m, p, &r);
    for (int l = 0; l < m.n; l++) {
        float k = 1.0f / sqrtf((float)m.in[l]), mx = 0;
        for (size_t i = m.w[l]; i < m.b[l] + (size_t)m.out[l]; i++) {
            ck_assert(fabsf(p[i]) <= k);
            mx = fabsf(p[i]) > mx ? fabsf(p[i]) : mx;
        }
        ck_assert_msg(mx > 0.8f * k, "layer %d: largest |w| %g of bound %g", l, mx, k);
    }
    ck_assert_uint_eq(m.total, 10 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3);
    free(p);
}
END_TEST

Suite *suite_linear(void)
{
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, forward_matches_reference);
    tcase_add_test(tc, backward_matches_reference);
    tcase_add_test(tc, mlp_init_is_pytorch_uniform);
    suite_add_tcase(s, tc);
    return s;
}
