/* tests/unit/test_grad.c: gradients of the critic ensemble, the actor (through the
 * reparameterised sample and the tanh correction) and log_alpha against central finite
 * differences of double-precision reference losses (REDQ.md "Known facts"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "suites.h"

#define S 3
#define A 2
#define FD_H 1e-6
#define TOL 1e-3

static double *to_double(const float *p, size_t n)
{
    double *d = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++)
        d[i] = p[i];
    return d;
}

/* Random observations and actions in xq (and the observations in xp). */
static void random_inputs(redq_agent *a, uint64_t seed)
{
    redq__scratch *s = a->scratch;
    const int B = a->cfg.batch_size, X = S + A;
    redq_rng r;
    redq_rng_seed(&r, seed, 7);
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < X; j++)
            s->xq[b * X + j] = j < S ? redq_rng_normal(&r) : 2.0f * redq_rng_uniform(&r) - 1.0f;
        memcpy(s->xp + b * X, s->xq + b * X, sizeof(float) * S);
    }
    redq_rng_normals(&r, s->eps, B * A);
}

/* ------------------------------------------------------------------ critic */

static double ref_critic_loss(const redq_agent *a, const double *P, const double *x,
                              const float *y)
{
    const int B = a->cfg.batch_size;
    double *q = malloc(sizeof(double) * (size_t)B), loss = 0.0;
    for (int n = 0; n < a->N; n++) {
        ref_mlp(&a->critic_shape, P + (size_t)n * a->critic_shape.total, x, B, q);
        for (int b = 0; b < B; b++)
            loss += (q[b] - y[b]) * (q[b] - y[b]);
    }
    free(q);
    return loss / ((double)a->N * B);
}

START_TEST(critic_gradient_matches_central_difference)
{
    redq_config c = test_config(A);
    redq_agent *a = test_agent(&c, S, A);
    const int B = c.batch_size, X = S + A;
    rqd_err err = {0};
    float y[64];
    double x[64 * X];

    ck_assert_int_eq(redq__scratch_ensure(a, &err), 0);
    random_inputs(a, 1);
    for (int b = 0; b < B; b++)
        y[b] = (float)(b % 3) - 1.0f;
    for (int i = 0; i < B * X; i++)
        x[i] = a->scratch->xq[i];
    double loss = redq__critic_loss_grad(a, y);

    size_t n = a->critic_floats, worst;
    double *P = to_double(a->critic, n), *fd = malloc(sizeof(double) * n);
    double ref = ref_critic_loss(a, P, x, y);
    ck_assert_msg(fabs(loss - ref) <= 1e-5 * fabs(ref), "loss %.9g vs reference %.9g", loss, ref);
    for (size_t i = 0; i < n; i++) {
        double keep = P[i];
        P[i] = keep + FD_H;
        double lp = ref_critic_loss(a, P, x, y);
        P[i] = keep - FD_H;
        double lm = ref_critic_loss(a, P, x, y);
        P[i] = keep;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    double rel = grad_rel_err(a->critic_g, fd, n, &worst);
    ck_assert_msg(rel < TOL, "critic grad rel err %.3g (worst at %zu: %.8g vs fd %.8g)", rel,
                  worst, a->critic_g[worst], fd[worst]);
    free(P);
    free(fd);
    redq_agent_free(a);
}
END_TEST

/* ------------------------------------------------------------------ actor */

/* The actor loss mean_b[alpha logp - mean_n Q_n(s, a~)] in double, eps fixed. */
static double ref_actor_loss(const redq_agent *a, const double *PA, const double *PC,
                             const double *obs, const float *eps, double alpha, double *lp_mean)
{
    const int B = a->cfg.batch_size, X = S + A;
    double head[64 * 2 * A], xa[64 * X], q[64], loss = 0.0, lps = 0.0;

    ref_mlp(&a->actor_shape, PA, obs, B, head);
    for (int b = 0; b < B; b++) {
        double lp = 0.0;
        for (int j = 0; j < S; j++)
            xa[b * X + j] = obs[b * S + j];
        for (int j = 0; j < A; j++) {
            double mu = head[b * 2 * A + j], ls = head[b * 2 * A + A + j];
            ls = ls < -20 ? -20 : ls > 2 ? 2 : ls;
            double e = eps[b * A + j], t = tanh(mu + exp(ls) * e);
            xa[b * X + S + j] = t;
            lp += -0.5 * e * e - ls - 0.5 * log(2 * M_PI) - log(1 - t * t + 1.1920929e-7);
        }
        loss += alpha * lp;
        lps += lp;
    }
    for (int n = 0; n < a->N; n++) {
        ref_mlp(&a->critic_shape, PC + (size_t)n * a->critic_shape.total, xa, B, q);
        for (int b = 0; b < B; b++)
            loss -= q[b] / a->N;
    }
    *lp_mean = lps / B;
    return loss / B;
}

static void check_actor_grad(double log_std_bias)
{
    redq_config c = test_config(A);
    c.alpha_auto = 1;
    redq_agent *a = test_agent(&c, S, A);
    const int B = c.batch_size;
    rqd_err err = {0};
    double obs[64 * S], al, dla, lp_mean;

    a->log_alpha = -0.7;
    /* A large log_std bias pushes log_std past the clamp for one action dimension. */
    a->actor[a->actor_shape.b[a->actor_shape.n - 1] + A] += (float)log_std_bias;
    ck_assert_int_eq(redq__scratch_ensure(a, &err), 0);
    random_inputs(a, 2);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < S; j++)
            obs[b * S + j] = a->scratch->xq[b * (S + A) + j];
    double loss = redq__actor_loss_grad(a, &al, &dla);

    size_t n = a->actor_shape.total, worst;
    double *PA = to_double(a->actor, n), *PC = to_double(a->critic, a->critic_floats);
    double *fd = malloc(sizeof(double) * n), alpha = exp(a->log_alpha);
    double ref = ref_actor_loss(a, PA, PC, obs, a->scratch->eps, alpha, &lp_mean);
    ck_assert_msg(fabs(loss - ref) <= 1e-4 * (fabs(ref) + 1e-3), "loss %.9g vs ref %.9g", loss, ref);
    for (size_t i = 0; i < n; i++) {
        double keep = PA[i];
        PA[i] = keep + FD_H;
        double lp = ref_actor_loss(a, PA, PC, obs, a->scratch->eps, alpha, &lp_mean);
        PA[i] = keep - FD_H;
        double lm = ref_actor_loss(a, PA, PC, obs, a->scratch->eps, alpha, &lp_mean);
        PA[i] = keep;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    double rel = grad_rel_err(a->actor_g, fd, n, &worst);
    ck_assert_msg(rel < TOL, "actor grad rel err %.3g (worst at %zu: %.8g vs fd %.8g)", rel, worst,
                  a->actor_g[worst], fd[worst]);
    if (log_std_bias > 0) {
        size_t k = a->actor_shape.b[a->actor_shape.n - 1] + A;
        ck_assert_msg(a->actor_g[k] == 0.0f && fabs(fd[k]) < 1e-9,
                      "clamped log_std bias: grad %g, fd %g", a->actor_g[k], fd[k]);
    }
    free(PA);
    free(PC);
    free(fd);
    redq_agent_free(a);
}

START_TEST(actor_gradient_matches_central_difference)
{
    check_actor_grad(0.0);
}
END_TEST

START_TEST(actor_gradient_is_zero_through_the_log_std_clamp)
{
    check_actor_grad(25.0); /* that dimension's log_std sits above 2 for every sample */
}
END_TEST

START_TEST(log_alpha_gradient_matches_central_difference)
{
    redq_config c = test_config(A);
    c.alpha_auto = 1;
    redq_agent *a = test_agent(&c, S, A);
    rqd_err err = {0};
    double al, dla, alp, alm, d;
    const double h = 1e-4;

    ck_assert_int_eq(redq__scratch_ensure(a, &err), 0);
    random_inputs(a, 3);
    a->log_alpha = 0.3;
    redq__actor_loss_grad(a, &al, &dla);
    a->log_alpha = 0.3 + h;
    redq__actor_loss_grad(a, &alp, &d);
    a->log_alpha = 0.3 - h;
    redq__actor_loss_grad(a, &alm, &d);
    double fd = (alp - alm) / (2 * h);
    ck_assert_msg(fabs(dla - fd) <= 1e-6 * (fabs(fd) + 1e-6), "dlog_alpha %.9g vs fd %.9g", dla, fd);
    ck_assert(fabs(dla) > 1e-6); /* the check is not vacuous */
    redq_agent_free(a);
}
END_TEST

Suite *suite_grad(void)
{
    Suite *s = suite_create("grad");
    TCase *tc = tcase_create("finite differences");
    tcase_add_test(tc, critic_gradient_matches_central_difference);
    tcase_add_test(tc, actor_gradient_matches_central_difference);
    tcase_add_test(tc, actor_gradient_is_zero_through_the_log_std_clamp);
    tcase_add_test(tc, log_alpha_gradient_matches_central_difference);
    suite_add_tcase(s, tc);
    return s;
}
