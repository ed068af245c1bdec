/* redq/internal.h: the agent's layout, shared by the files of redq/ and by the unit
 * tests; nothing outside redq/ and tests/ includes it. */
#ifndef REDQ_INTERNAL_H
#define REDQ_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "mlp.h"
#include "redq.h"
#include "replay.h"
#include "rng.h"

/* Generator streams derived from the one seed (rng.c). */
enum { REDQ_STREAM_INIT = 1, REDQ_STREAM_TRAIN = 2, REDQ_STREAM_ACT = 3 };

/* REDQ.md "Networks": log_std clamp and the tanh-correction epsilon (float32's). */
#define REDQ_LOG_STD_MIN (-20.0f)
#define REDQ_LOG_STD_MAX 2.0f
#define REDQ_TANH_EPS 1.1920929e-7f

/* One critic member's scratch for a batch: forward activations and backward buffers. */
typedef struct {
    float *h[RQD_MAX_HIDDEN_LAYERS]; /* (B, hidden[l]) post-ReLU */
    float *q;                        /* (B) */
    float *dq;                       /* (B) */
    float *da;                       /* (B, A): dQ/da of this member, actor step */
    float *work0, *work1;            /* (B, max hidden) */
    double loss;                     /* Σ_b (q - y)² of the last critic step */
    int usable;                      /* its loss and gradient may be applied */
} redq__member_scratch;

/* Everything an update writes besides parameters; allocated at the first update. */
typedef struct {
    float *block;                    /* one allocation; every pointer below is inside it */
    size_t floats;
    float *xq;                       /* (B, S+A): obs | act of the batch */
    float *xn;                       /* (B, S+A): next obs | a' ~ pi(next obs) */
    float *xp;                       /* (B, S+A): obs | a~ ~ pi(obs), actor step */
    float *rew, *disc, *y;           /* (B) */
    float *logp_next, *logp;         /* (B) */
    float *qn;                       /* (M, B): target Q of the drawn members */
    float *ah[RQD_MAX_HIDDEN_LAYERS];/* actor trunk activations (B, hidden[l]) */
    float *head, *dhead;             /* (B, 2A): mu | log_std (raw, before the clamp) */
    float *eps;                      /* (B, A) */
    float *da;                       /* (B, A): summed over members, actor step */
    float *work0, *work1;            /* (B, max width) for the actor's backward */
    redq__member_scratch *m;         /* [N], separately allocated */
    int subset[RQD_MAX_ENSEMBLE];    /* the target members drawn by the last update */
} redq__scratch;

struct redq_policy {
    atomic_int refs;
    long long version;
    int S, A;
    redq__mlp shape;   /* the actor's */
    float *low, *high; /* [A] each, inside the same allocation */
    int scaling, clip;
    float *params;     /* shape.total floats, inside the same allocation */
};

struct redq_agent {
    redq_config cfg;
    int S, A, N, M;
    float *low, *high;          /* [A] each */
    redq__mlp actor_shape;      /* S -> hidden -> 2A (mu | log_std) */
    redq__mlp critic_shape;     /* one member: S+A -> hidden -> 1 */
    size_t critic_floats;       /* N * critic_shape.total */

    /* Parameters, gradients and Adam moments (STYLE R5: one block each). A member's
     * parameters are one contiguous range [n * critic_shape.total, ...), so per-member
     * tasks (Adam, Polyak, threads) each own a single range. */
    float *actor, *actor_g, *actor_m, *actor_v;
    float *critic, *critic_g, *critic_m, *critic_v, *target;
    double log_alpha, la_m, la_v; /* alpha = exp(log_alpha) when cfg.alpha_auto */

    long long env_steps, updates, actor_updates, policy_version;
    redq_rng rng_train;         /* init, batches, subsets, policy noise in updates */
    redq_rng rng_act;           /* explore actions and warm-up draws */
    redq__replay replay;
    redq__scratch *scratch;     /* NULL until the first update */
    double last_actor_loss, last_alpha_loss; /* NaN until the first actor update */

    /* The latest published actor (the agent holds one reference). Lock-free, so that an
     * act never waits for the (possibly low-priority) thread that publishes: an
     * acquirer counts itself in 'acquiring' around its load and increment, and the
     * publisher releases the old snapshot only once no acquirer is in that window. */
    _Atomic(redq_policy *) policy;
    atomic_int acquiring;
};

double redq__alpha(const redq_agent *a);

/* scratch.c-like helpers in update.c */
int redq__scratch_ensure(redq_agent *a, rqd_err *err);
void redq__scratch_free(redq__scratch *s, int N);

/* The critic loss of REDQ.md step 6 for the batch in scratch->xq against targets y (B),
 * and its gradient into a->critic_g (overwritten); serial over members. Returns the
 * loss. Used by the update and by the gradient tests. */
double redq__critic_loss_grad(redq_agent *a, const float *y);

/* The actor loss of "Actor and alpha updates" on scratch->xq's observations with the
 * noise in scratch->eps (filled by the caller), its gradient into a->actor_g, and the
 * alpha loss gradient d/dlog_alpha into *dlog_alpha. Returns the actor loss; *alpha_loss
 * receives the alpha loss. Serial over members. */
double redq__actor_loss_grad(redq_agent *a, double *alpha_loss, double *dlog_alpha);

/* Samples a (ld lda) and logp from the actor's head (B, 2A) and noise eps (B, A). */
void redq__actor_sample(const float *head, const float *eps, int B, int A, float *a, int lda,
                        float *logp);
/* Backward of the sample: dA (B, A) is d(loss)/da from the critics; adds the entropy
 * term alpha/B * logp's gradient and writes dhead (B, 2A) (the clamp masks log_std). */
void redq__actor_sample_backward(const float *head, const float *eps, const float *a, int lda,
                                 const float *dA, double alpha_over_B, int B, int A,
                                 float *dhead);

/* head (n, 2A) = the snapshot's actor on n observations. */
int redq__policy_head(const redq_policy *p, const float *obs, int n, float *head);

/* Publishes a new snapshot of the actor under the current policy_version: RQD_EINVAL
 * (the previous snapshot stays) if a parameter is not finite, RQD_ENOMEM. */
int redq__publish_policy(redq_agent *a);

/* RQD_EUNAVAIL naming "obs" unless all n x A actions are finite: no act answers one. */
int redq__actions_check(const float *out, int n, int A, rqd_err *err);

/* An agent with every block allocated and zeroed, no snapshot published: for loading. */
int redq__agent_alloc(const redq_config *cfg, int S, int A, const float *low, const float *high,
                      redq_agent **out, rqd_err *err);

/* Agent bytes for a config (networks, optimisers, scratch), for the memory cap. */
size_t redq__agent_bytes(const redq_config *c, int S, int A);

#endif
