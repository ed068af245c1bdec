/* redq/linear.h: linear-layer kernels, forward/backward pairs over cblas_sgemm (STYLE R6).
 *
 * Activations are row-major, batch first: a layer in->out on B rows reads in (B,In)
 * with leading dimension ldi and writes out (B,Out) with leading dimension O. A weight
 * is stored [in][out] (the transpose of PyTorch's nn.Linear), its bias [out].
 */
#ifndef REDQ_LINEAR_H
#define REDQ_LINEAR_H

/* out (B,Out) = in (B,In) · w (In,Out) + b (Out), then ReLU when relu. */
void redq__linear_forward(float *out, const float *in, int ldi, const float *w, const float *b,
                          int B, int In, int Out, int relu);

/* Overwrites: dw = inᵀ·dout (In,Out) and db = Σ_b dout (Out), when dw is not NULL. */
void redq__linear_backward_w(float *dw, float *db, const float *dout, const float *in, int ldi,
                             int B, int In, int Out);

/* Overwrites din (B,nc) with ld lddin = dout (B,Out) · w[c0:c0+nc, :]ᵀ: the gradient of
 * the input columns c0..c0+nc-1 only (nc = I for all of them). */
void redq__linear_backward_x(float *din, int lddin, const float *dout, const float *w, int Out,
                             int B, int c0, int nc);

/* out (B,Out) += b, then ReLU when relu: the forward's element-wise pass. */
void redq__bias_act(float *restrict out, const float *restrict b, int B, int Out, int relu);
/* db (Out) = Σ_b dout (B,Out). */
void redq__col_sum(float *restrict db, const float *restrict dout, int B, int Out);

/* dz *= (h > 0), in place over n values: ReLU's backward given its output h. */
void redq__relu_backward(float *restrict dz, const float *restrict h, long n);

/* Double-precision triple loop of the forward; used only by the tests. */
void redq__linear_forward_ref(double *out, const double *in, const float *w, const float *b,
                              int B, int In, int Out, int relu);

#endif
