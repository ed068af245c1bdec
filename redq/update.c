/* redq/update.c: one REDQ update (REDQ.md "One critic update" and "Actor and alpha
 * updates"), its scratch, and the loss/gradient functions the tests check against
 * finite differences.
 *
 * THREADS
 * -------
 * Runs on the caller's thread. The per-member phases (target forward of the M drawn
 * members; forward, backward, Adam and Polyak of each of the N members; the critics'
 * input gradient in the actor step) go through redq_exec, so the caller may spread
 * them over its threads. Each task writes only its member's parameter range and its
 * member's scratch; everything else happens between phases, on the caller's thread.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adam.h"
#include "internal.h"

static void run(const redq_exec *ex, void (*fn)(void *, int), void *arg, int n)
{
    if (ex != NULL && ex->parallel_for != NULL) {
        ex->parallel_for(ex->ctx, fn, arg, n);
        return;
    }
    for (int i = 0; i < n; i++)
        fn(arg, i);
}

/* ------------------------------------------------------------------ scratch */

/* Carves n floats out of the block, keeping every array 64-byte aligned. */
static float *carve(float **next, size_t n)
{
    float *p = *next;
    *next += (n + 15) & ~(size_t)15;
    return p;
}

int redq__scratch_ensure(redq_agent *a, rqd_err *err)
{
    const size_t B = (size_t)a->cfg.batch_size, X = (size_t)(a->S + a->A), A = (size_t)a->A;
    const redq__mlp *cm = &a->critic_shape, *am = &a->actor_shape;
    const int nh = a->cfg.n_hidden;
    size_t total = 0, hsum = 0;

    if (a->scratch != NULL)
        return RQD_OK;
    for (int l = 0; l < nh; l++)
        hsum += (size_t)a->cfg.hidden[l];
    /* Counted generously: every array rounded up to 16 floats. */
    size_t arrays = 16 + 2 * (size_t)nh;
    total += B * (3 * X + 5 + (size_t)a->M + hsum + 6 * A + 2 * (size_t)am->max_width);
    total += (size_t)a->N * B * (hsum + 2 + A + 2 * (size_t)cm->max_width);
    total += 16 * (arrays + (size_t)a->N * (6 + (size_t)nh));

    redq__scratch *s = calloc(1, sizeof *s);
    if (s != NULL) {
        s->m = calloc((size_t)a->N, sizeof *s->m);
        s->block = aligned_alloc(64, ((total * sizeof(float)) + 63) & ~(size_t)63);
    }
    if (s == NULL || s->m == NULL || s->block == NULL) {
        redq__scratch_free(s, a->N);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for the update's scratch");
    }
    s->floats = total;
    float *p = s->block;
    s->xq = carve(&p, B * X);
    s->xn = carve(&p, B * X);
    s->xp = carve(&p, B * X);
    s->rew = carve(&p, B);
    s->disc = carve(&p, B);
    s->y = carve(&p, B);
    s->logp_next = carve(&p, B);
    s->logp = carve(&p, B);
    s->qn = carve(&p, B * (size_t)a->M);
    for (int l = 0; l < nh; l++)
        s->ah[l] = carve(&p, B * (size_t)a->cfg.hidden[l]);
    s->head = carve(&p, B * 2 * A);
    s->dhead = carve(&p, B * 2 * A);
    s->eps = carve(&p, B * A);
    s->da = carve(&p, B * A);
    s->work0 = carve(&p, B * (size_t)am->max_width);
    s->work1 = carve(&p, B * (size_t)am->max_width);
    for (int n = 0; n < a->N; n++) {
        redq__member_scratch *m = &s->m[n];
        for (int l = 0; l < nh; l++)
            m->h[l] = carve(&p, B * (size_t)a->cfg.hidden[l]);
        m->q = carve(&p, B);
        m->dq = carve(&p, B);
        m->da = carve(&p, B * A);
        m->work0 = carve(&p, B * (size_t)cm->max_width);
        m->work1 = carve(&p, B * (size_t)cm->max_width);
    }
    if (NEVER((size_t)(p - s->block) > total)) {
        redq__scratch_free(s, a->N);
        return rqd_err_set(err, RQD_EINTERNAL, "", "scratch size miscounted");
    }
    a->scratch = s;
    return RQD_OK;
}

void redq__scratch_free(redq__scratch *s, int N)
{
    (void)N;
    if (s == NULL)
        return;
    free(s->block);
    free(s->m);
    free(s);
}

/* ------------------------------------------------------------------ critic phase */

typedef struct {
    redq_agent *a;
    const float *y;   /* (B) targets */
    const int *subset;
    double lr;        /* critic_lr after the schedule */
    long long t;      /* Adam step number */
} critic_ctx;

/* REDQ.md step 4: only the M drawn target members get a forward pass. */
static void target_task(void *arg, int k)
{
    critic_ctx *c = arg;
    redq_agent *a = c->a;
    const int n = c->subset[k], B = a->cfg.batch_size;
    redq__scratch *s = a->scratch;

    redq__mlp_forward(&a->critic_shape, a->target + (size_t)n * a->critic_shape.total, s->xn,
                      a->S + a->A, B, s->m[n].h, s->qn + (size_t)k * (size_t)B);
}

/* Step 6 for member n: loss and gradient, and whether they may be applied. The scan
 * runs here, on the gradient this task just wrote, so that it is spread over the
 * threads with the rest of the member's work. */
static void critic_grad_task(void *arg, int n)
{
    critic_ctx *c = arg;
    redq_agent *a = c->a;
    const int B = a->cfg.batch_size, X = a->S + a->A;
    const size_t T = a->critic_shape.total, off = (size_t)n * T;
    redq__member_scratch *m = &a->scratch->m[n];
    const float scale = 2.0f / (float)((double)a->N * B); /* d mean_{i,b} (q-y)² / dq */
    double loss = 0.0;

    redq__mlp_forward(&a->critic_shape, a->critic + off, a->scratch->xq, X, B, m->h, m->q);
    for (int b = 0; b < B; b++) {
        float d = m->q[b] - c->y[b];
        loss += (double)d * d;
        m->dq[b] = scale * d;
    }
    m->loss = loss;
    redq__mlp_backward(&a->critic_shape, a->critic + off, a->scratch->xq, X, B, m->h, m->dq,
                       a->critic_g + off, NULL, 0, 0, 0, m->work0, m->work1);
    m->usable = isfinite(loss) && redq__all_below(a->critic_g + off, T, REDQ_MAX_GRAD);
}

/* Step 7 for member n: Adam and Polyak, once every member's gradient is known good. */
static void critic_step_task(void *arg, int n)
{
    critic_ctx *c = arg;
    redq_agent *a = c->a;
    const size_t T = a->critic_shape.total, off = (size_t)n * T;

    redq__adam_step(a->critic + off, a->critic_g + off, a->critic_m + off, a->critic_v + off, T,
                    c->lr, c->t);
    redq__polyak(a->target + off, a->critic + off, T, (float)a->cfg.tau);
}

/* Step 6 for every member; the mean loss into *loss. Returns 1 if every member's loss
 * and gradient may be applied. */
static int critic_grads(redq_agent *a, const redq_exec *ex, critic_ctx *c, double *loss)
{
    double sum = 0.0;
    int usable = 1;
    run(ex, critic_grad_task, c, a->N);
    for (int n = 0; n < a->N; n++) {
        sum += a->scratch->m[n].loss;
        usable &= a->scratch->m[n].usable;
    }
    *loss = sum / ((double)a->N * a->cfg.batch_size);
    return usable;
}

double redq__critic_loss_grad(redq_agent *a, const float *y)
{
    critic_ctx c = {.a = a, .y = y};
    double loss;
    critic_grads(a, NULL, &c, &loss);
    return loss;
}

/* ------------------------------------------------------------------ actor phase */

/* Q_n(s, a~) and dQ_n/da~ scaled for the actor loss's -mean_{n,b} Q term. */
static void actor_q_task(void *arg, int n)
{
    redq_agent *a = arg;
    const int B = a->cfg.batch_size, X = a->S + a->A;
    const size_t off = (size_t)n * a->critic_shape.total;
    redq__member_scratch *m = &a->scratch->m[n];
    const float g = -1.0f / (float)((double)a->N * B);

    redq__mlp_forward(&a->critic_shape, a->critic + off, a->scratch->xp, X, B, m->h, m->q);
    for (int b = 0; b < B; b++)
        m->dq[b] = g;
    /* Gradients reach only the actor: no weight gradients, input columns S.. only. */
    redq__mlp_backward(&a->critic_shape, a->critic + off, a->scratch->xp, X, B, m->h, m->dq, NULL,
                       m->da, a->A, a->S, a->A, m->work0, m->work1);
}

/* Fills a->actor_g; scratch->eps holds the noise, scratch->xq and xp the observations. */
static double actor_phase(redq_agent *a, const redq_exec *ex, double *alpha_loss,
                          double *dlog_alpha)
{
    redq__scratch *s = a->scratch;
    const int B = a->cfg.batch_size, A = a->A, X = a->S + a->A;
    const double alpha = redq__alpha(a);
    const size_t BA = (size_t)B * (size_t)A;

    redq__mlp_forward(&a->actor_shape, a->actor, s->xq, X, B, s->ah, s->head);
    redq__actor_sample(s->head, s->eps, B, A, s->xp + a->S, X, s->logp);
    run(ex, actor_q_task, a, a->N);

    double qsum = 0.0, lpsum = 0.0;
    memcpy(s->da, s->m[0].da, sizeof(float) * BA);
    for (int n = 1; n < a->N; n++)
        for (size_t i = 0; i < BA; i++)
            s->da[i] += s->m[n].da[i];
    for (int n = 0; n < a->N; n++)
        for (int b = 0; b < B; b++)
            qsum += s->m[n].q[b];
    for (int b = 0; b < B; b++)
        lpsum += s->logp[b];
    redq__actor_sample_backward(s->head, s->eps, s->xp + a->S, X, s->da, alpha / B, B, A, s->dhead);
    redq__mlp_backward(&a->actor_shape, a->actor, s->xq, X, B, s->ah, s->dhead, a->actor_g, NULL, 0,
                       0, 0, s->work0, s->work1);
    /* alpha_loss = -mean[log_alpha (log_pi + target_entropy)], log_pi detached. */
    double mean_lp_te = lpsum / B + a->cfg.target_entropy;
    *alpha_loss = -a->log_alpha * mean_lp_te;
    *dlog_alpha = -mean_lp_te;
    return alpha * lpsum / B - qsum / ((double)a->N * B);
}

double redq__actor_loss_grad(redq_agent *a, double *alpha_loss, double *dlog_alpha)
{
    return actor_phase(a, NULL, alpha_loss, dlog_alpha);
}

/* ------------------------------------------------------------------ the update */

/* Step 1: B rows drawn uniformly, spread into the three (B, S+A) inputs. */
static void gather_batch(redq_agent *a)
{
    redq__scratch *s = a->scratch;
    const int S = a->S, A = a->A, X = S + A, B = a->cfg.batch_size;

    for (int b = 0; b < B; b++) {
        long long i = (long long)redq_rng_below(&a->rng_train, (uint64_t)a->replay.len);
        const float *row = redq__replay_row(&a->replay, i);
        memcpy(s->xq + (size_t)b * X, row, sizeof(float) * (size_t)X); /* obs | act */
        memcpy(s->xp + (size_t)b * X, row, sizeof(float) * (size_t)S);
        s->rew[b] = row[X];
        s->disc[b] = row[X + 1];
        memcpy(s->xn + (size_t)b * X, row + X + 2, sizeof(float) * (size_t)S);
    }
}

static void q_stats(const redq_agent *a, double *q_mean, double *q_std)
{
    const int B = a->cfg.batch_size, N = a->N;
    double sum = 0.0, spread = 0.0;
    for (int b = 0; b < B; b++) {
        double m = 0.0, v = 0.0;
        for (int n = 0; n < N; n++)
            m += a->scratch->m[n].q[b];
        m /= N;
        for (int n = 0; n < N; n++) {
            double d = a->scratch->m[n].q[b] - m;
            v += d * d;
        }
        sum += m;
        spread += sqrt(v / N);
    }
    *q_mean = sum / B;
    *q_std = spread / B;
}

/* "Actor and alpha updates", due after this update's critic step. The step is taken
 * whole or not at all: alpha's Adam step is worked out on copies first, and nothing
 * changes unless the actor loss, its every gradient, the alpha loss and the new alpha
 * are usable. Returns 1 if taken. */
static int actor_step(redq_agent *a, const redq_exec *ex, redq_stats *st)
{
    redq__scratch *s = a->scratch;
    const long long t = a->actor_updates + 1;
    const long long done = a->updates - 1; /* the schedule's "done" before this update */
    double alpha_loss, dla;
    double la = a->log_alpha, la_m = a->la_m, la_v = a->la_v;

    redq_rng_normals(&a->rng_train, s->eps, a->cfg.batch_size * a->A);
    double loss = actor_phase(a, ex, &alpha_loss, &dla);
    if (a->cfg.alpha_auto)
        redq__adam_step1(&la, dla, &la_m, &la_v,
                         redq__lr_at(a->cfg.alpha_lr, done, a->cfg.lr_total_updates), t);
    if (!isfinite(loss) || !isfinite(alpha_loss) || !isfinite(la_m) || !isfinite(la_v) ||
        !isfinite(exp(la)) || !redq__all_below(a->actor_g, a->actor_shape.total, REDQ_MAX_GRAD))
        return 0;
    redq__adam_step(a->actor, a->actor_g, a->actor_m, a->actor_v, a->actor_shape.total,
                    redq__lr_at(a->cfg.actor_lr, done, a->cfg.lr_total_updates), t);
    a->actor_updates = t;
    a->last_actor_loss = loss;
    if (a->cfg.alpha_auto) {
        a->log_alpha = la;
        a->la_m = la_m;
        a->la_v = la_v;
        a->last_alpha_loss = alpha_loss;
    }
    a->policy_version++;
    redq__publish_policy(a); /* on failure acting keeps the previous snapshot */
    st->actor_updated = 1;
    return 1;
}

/* What became of one update: a step is skipped for a loss or gradient that is not finite
 * (or too large to apply, REDQ_MAX_GRAD). A skipped critic step leaves everything as it
 * was (the train generator aside) and no actor step follows; a skipped actor step leaves
 * the actor, alpha and their counters, and the critic step before it stands. */
enum { UPDATE_TAKEN, UPDATE_SKIPPED, UPDATE_ACTOR_SKIPPED };

static int update_one(redq_agent *a, const redq_exec *ex, redq_stats *st)
{
    redq__scratch *s = a->scratch;
    const int S = a->S, A = a->A, X = S + A, B = a->cfg.batch_size, M = a->M;
    const double alpha = redq__alpha(a);
    int *subset = s->subset;
    double loss;

    gather_batch(a);                                           /* step 1 */
    redq_rng_subset(&a->rng_train, a->N, M, subset);           /* step 2 */
    redq__mlp_forward(&a->actor_shape, a->actor, s->xn, X, B, s->ah, s->head); /* step 3 */
    redq_rng_normals(&a->rng_train, s->eps, B * A);
    redq__actor_sample(s->head, s->eps, B, A, s->xn + S, X, s->logp_next);

    critic_ctx c = {.a = a, .y = s->y, .subset = subset};
    run(ex, target_task, &c, M);                               /* step 4 */
    for (int b = 0; b < B; b++) {                              /* step 5 */
        double v = s->qn[b];
        for (int k = 1; k < M; k++) {
            double q = s->qn[(size_t)k * B + (size_t)b];
            v = a->cfg.target_mode == REDQ_TARGET_MIN ? (q < v ? q : v) : v + q;
        }
        if (a->cfg.target_mode == REDQ_TARGET_MEAN)
            v /= M;
        s->y[b] = (float)(s->rew[b] + s->disc[b] * (v - alpha * s->logp_next[b]));
    }
    c.lr = redq__lr_at(a->cfg.critic_lr, a->updates, a->cfg.lr_total_updates);
    c.t = a->updates + 1;
    if (!critic_grads(a, ex, &c, &loss))                       /* step 6 */
        return UPDATE_SKIPPED;
    run(ex, critic_step_task, &c, a->N);                       /* step 7 */
    st->critic_loss = loss;
    q_stats(a, &st->q_mean, &st->q_std);
    a->updates++;

    if (a->updates % a->cfg.actor_delay == 0 && !actor_step(a, ex, st))
        return UPDATE_ACTOR_SKIPPED;
    return UPDATE_TAKEN;
}

int redq_agent_update(redq_agent *a, int k, const redq_exec *ex, redq_stats *st, rqd_err *err)
{
    struct timespec t0, t1;
    redq_stats tmp;
    int rc;

    if (st == NULL)
        st = &tmp;
    if (k < 1 || k > RQD_MAX_TRAIN_UPDATES)
        return rqd_err_set(err, RQD_EINVAL, "updates", "updates must be in [1, %d]",
                           RQD_MAX_TRAIN_UPDATES);
    if (a->replay.len < a->cfg.batch_size)
        return rqd_err_set(err, RQD_ECONFLICT, "", "the replay buffer holds %lld rows, fewer "
                           "than batch_size %d", a->replay.len, a->cfg.batch_size);
    /* Skipped updates advance nothing, so these are upper bounds of what k may add. */
    const long long d = a->cfg.actor_delay;
    if (!rqd_count_room(a->updates, k) ||
        !rqd_count_room(a->policy_version, (a->updates + k) / d - a->updates / d))
        return rqd_err_set(err, RQD_ECONFLICT, "updates", "%d more updates would take the "
                           "agent's update count or policy_version past 2^53 - 1", k);
    if ((rc = redq__scratch_ensure(a, err)) < 0)
        return rc;
    memset(st, 0, sizeof *st);
    st->critic_loss = st->q_mean = st->q_std = NAN; /* until an update is taken */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < k; i++) {
        int r = update_one(a, ex, st);
        st->skipped += r == UPDATE_SKIPPED;
        st->actor_skipped += r == UPDATE_ACTOR_SKIPPED;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    st->actor_loss = a->last_actor_loss;
    st->alpha = redq__alpha(a);
    st->alpha_loss = a->cfg.alpha_auto ? a->last_alpha_loss : NAN;
    st->train_time = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return RQD_OK;
}
