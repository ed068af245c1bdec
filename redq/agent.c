/* redq/agent.c: an agent's life: creation from a config, acting, adding transitions,
 * counters and the settings that may change while it runs. The update is
 * redq/update.c, the saved state redq/ckpt.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adam.h"
#include "internal.h"
#include "scale.h"

double redq__alpha(const redq_agent *a)
{
    return a->cfg.alpha_auto ? exp(a->log_alpha) : a->cfg.alpha;
}

static size_t scratch_floats(const redq_config *c, int S, int A)
{
    size_t B = (size_t)c->batch_size, hsum = 0, hmax = (size_t)(2 * A);
    for (int l = 0; l < c->n_hidden; l++) {
        hsum += (size_t)c->hidden[l];
        if ((size_t)c->hidden[l] > hmax)
            hmax = (size_t)c->hidden[l];
    }
    size_t shared = B * (3 * (size_t)(S + A) + 5 + (size_t)c->subset_size + hsum + 6 * (size_t)A +
                         2 * hmax);
    size_t member = B * (hsum + 2 + (size_t)A + 2 * hmax);
    return shared + (size_t)c->ensemble_size * member;
}

size_t redq__agent_bytes(const redq_config *c, int S, int A)
{
    redq__mlp am, cm;
    redq__mlp_shape(&am, S, c->hidden, c->n_hidden, 2 * A);
    redq__mlp_shape(&cm, S + A, c->hidden, c->n_hidden, 1);
    size_t floats = 4 * am.total + 5 * (size_t)c->ensemble_size * cm.total +
                    scratch_floats(c, S, A);
    return floats * sizeof(float);
}

/* Mirrors redq_agent_save's layout without the buffer (redq/ckpt.c's header comment):
 * the fixed fields, the config JSON, the bounds and every saved float. test_ckpt.c holds
 * it to the bytes a save really writes, so a change of the format shows there. */
int redq_state_bytes(const redq_config *c, int S, int A, size_t *bytes, rqd_err *err)
{
    enum {
        FIXED = 8 + 4 + 4      /* magic, version, flags */
                + 4            /* the config string's length */
                + 2 * 8        /* S, A */
                + 4 * 8        /* env_steps, updates, actor_updates, policy_version */
                + 2 * (4 * 8 + 4 + 4) /* two RNGs: state, has_spare, spare */
                + 5 * 8        /* log_alpha, its Adam m and v, the last two losses */
                + 4            /* CRC-32 */
    };
    cJSON *cj = redq_config_to_json(c);
    char *text = cj ? cJSON_PrintUnformatted(cj) : NULL;
    redq__mlp am, cm;
    int rc = RQD_OK;

    if (text == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory sizing the agent's state");
        goto out;
    }
    redq__mlp_shape(&am, S, c->hidden, c->n_hidden, 2 * A);
    redq__mlp_shape(&cm, S + A, c->hidden, c->n_hidden, 1);
    /* actor, its Adam m and v; critics, their m and v, target critics */
    *bytes = FIXED + strlen(text) + 2 * sizeof(float) * (size_t)A +
             sizeof(float) * (3 * am.total + 4 * (size_t)c->ensemble_size * cm.total);
out:
    free(text);
    cJSON_Delete(cj);
    return rc;
}

/* The detail names the field and the flag, so that a client sees what to change and an
 * operator what to raise. */
int redq_limits_check(const rqd_limits *l, const redq_config *c, int S, int A, rqd_err *err)
{
    if (S > l->obs_dim)
        return rqd_err_set(err, RQD_EINVAL, "obs_dim", "obs_dim %d is over this server's "
                           "limit of %d (--max-obs-dim)", S, l->obs_dim);
    if (A > l->act_dim)
        return rqd_err_set(err, RQD_EINVAL, "action_low", "action_low has %d values "
                           "(act_dim), over this server's limit of %d (--max-act-dim)", A,
                           l->act_dim);
    if (c->n_hidden > l->hidden_layers)
        return rqd_err_set(err, RQD_EINVAL, "config.hidden_sizes", "config.hidden_sizes has "
                           "%d layers, over this server's limit of %d (--max-hidden-layers)",
                           c->n_hidden, l->hidden_layers);
    for (int i = 0; i < c->n_hidden; i++)
        if (c->hidden[i] > l->hidden_width)
            return rqd_err_set(err, RQD_EINVAL, "config.hidden_sizes", "config.hidden_sizes: "
                               "width %d is over this server's limit of %d "
                               "(--max-hidden-width)", c->hidden[i], l->hidden_width);
    if (c->ensemble_size > l->ensemble)
        return rqd_err_set(err, RQD_EINVAL, "config.ensemble_size", "config.ensemble_size %d "
                           "is over this server's limit of %d (--max-ensemble)",
                           c->ensemble_size, l->ensemble);
    if (c->batch_size > l->batch)
        return rqd_err_set(err, RQD_EINVAL, "config.batch_size", "config.batch_size %d is "
                           "over this server's limit of %d (--max-batch)", c->batch_size,
                           l->batch);
    if (c->buffer_size > l->buffer)
        return rqd_err_set(err, RQD_EINVAL, "config.buffer_size", "config.buffer_size %lld "
                           "is over this server's limit of %lld (--max-buffer)",
                           c->buffer_size, l->buffer);
    size_t bytes = redq__agent_bytes(c, S, A);
    if ((long long)bytes > l->agent_bytes)
        return rqd_err_set(err, RQD_EINVAL, "config.hidden_sizes", "config.hidden_sizes: "
                           "networks of this size need %zu MiB, over this server's limit of "
                           "%lld MiB per agent (--max-agent-memory)", bytes >> 20,
                           l->agent_bytes >> 20);
    /* A learner state past what an import takes could be checkpointed but never imported
     * again (moving hosts, restoring a download). Printed in the largest unit in which the
     * limit is at least 1, the state rounded up and the limit down, so that the two never
     * print as the same number. */
    size_t state = 0;
    int rc = redq_state_bytes(c, S, A, &state, err);
    if (rc < 0)
        return rc;
    if ((long long)state > l->state_bytes) {
        int shift = l->state_bytes >= 1LL << 20 ? 20 : l->state_bytes >= 1LL << 10 ? 10 : 0;
        const char *unit = shift == 20 ? "MiB" : shift == 10 ? "KiB" : "bytes";
        return rqd_err_set(err, RQD_EINVAL, "config.hidden_sizes", "config.hidden_sizes: the "
                           "learner's state would be %zu %s, over the %lld %s a checkpoint may "
                           "have to be imported again (--max-import)",
                           (state + ((size_t)1 << shift) - 1) >> shift, unit,
                           l->state_bytes >> shift, unit);
    }
    return RQD_OK;
}

static int check_dims(int S, int A, const float *low, const float *high, rqd_err *err)
{
    if (S < 1 || S > RQD_MAX_OBS_DIM)
        return rqd_err_set(err, RQD_EINVAL, "obs_dim", "obs_dim must be in [1, %d]",
                           RQD_MAX_OBS_DIM);
    if (A < 1 || A > RQD_MAX_ACT_DIM)
        return rqd_err_set(err, RQD_EINVAL, "action_low",
                           "action_low must have 1 to %d values", RQD_MAX_ACT_DIM);
    for (int j = 0; j < A; j++)
        if (!isfinite(low[j]) || !isfinite(high[j]) || !(low[j] < high[j]))
            return rqd_err_set(err, RQD_EINVAL, "action_high",
                               "action_low[%d] must be below action_high[%d], both finite", j, j);
    return RQD_OK;
}

static void agent_init_params(redq_agent *a)
{
    redq_rng init;
    redq_rng_seed(&init, a->cfg.seed, REDQ_STREAM_INIT);
    redq__mlp_init(&a->actor_shape, a->actor, &init);
    /* REDQ.md: every member is drawn independently (its own draws from the stream). */
    for (int n = 0; n < a->N; n++)
        redq__mlp_init(&a->critic_shape, a->critic + (size_t)n * a->critic_shape.total, &init);
    memcpy(a->target, a->critic, sizeof(float) * a->critic_floats);
}

/* Allocates everything but the scratch, with parameters zeroed. */
static int agent_alloc(const redq_config *cfg, int S, int A, const float *low,
                       const float *high, redq_agent **out, rqd_err *err)
{
    redq_agent *a = calloc(1, sizeof *a);
    int rc;

    if (a == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory creating the agent");
    atomic_init(&a->policy, NULL);
    atomic_init(&a->acquiring, 0);
    a->cfg = *cfg;
    a->S = S;
    a->A = A;
    a->N = cfg->ensemble_size;
    a->M = cfg->subset_size;
    redq__mlp_shape(&a->actor_shape, S, cfg->hidden, cfg->n_hidden, 2 * A);
    redq__mlp_shape(&a->critic_shape, S + A, cfg->hidden, cfg->n_hidden, 1);
    a->critic_floats = (size_t)a->N * a->critic_shape.total;
    a->low = malloc(sizeof(float) * (size_t)A);
    a->high = malloc(sizeof(float) * (size_t)A);
    size_t an = a->actor_shape.total, cn = a->critic_floats;
    a->actor = calloc(4 * an, sizeof(float));
    a->critic = calloc(5 * cn, sizeof(float));
    if (a->low == NULL || a->high == NULL || a->actor == NULL || a->critic == NULL) {
        redq_agent_free(a);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory creating the agent");
    }
    memcpy(a->low, low, sizeof(float) * (size_t)A);
    memcpy(a->high, high, sizeof(float) * (size_t)A);
    a->actor_g = a->actor + an;
    a->actor_m = a->actor_g + an;
    a->actor_v = a->actor_m + an;
    a->critic_g = a->critic + cn;
    a->critic_m = a->critic_g + cn;
    a->critic_v = a->critic_m + cn;
    a->target = a->critic_v + cn;
    a->last_actor_loss = a->last_alpha_loss = NAN;
    redq_rng_seed(&a->rng_train, cfg->seed, REDQ_STREAM_TRAIN);
    redq_rng_seed(&a->rng_act, cfg->seed, REDQ_STREAM_ACT);
    if ((rc = redq__replay_init(&a->replay, S, A, cfg->estimation_step, cfg->gamma,
                                cfg->buffer_size)) < 0) {
        redq_agent_free(a);
        return rqd_err_set(err, rc, "", "out of memory creating the agent");
    }
    *out = a;
    return RQD_OK;
}

int redq_agent_new(const redq_config *cfg, int S, int A, const float *low, const float *high,
                   redq_agent **out, rqd_err *err)
{
    redq_agent *a = NULL;
    int rc;

    if ((rc = check_dims(S, A, low, high, err)) < 0 || (rc = redq_config_validate(cfg, err)) < 0)
        return rc;
    size_t bytes = redq__agent_bytes(cfg, S, A);
    if (bytes > RQD_MAX_AGENT_BYTES)
        return rqd_err_set(err, RQD_EINVAL, "config.hidden_sizes",
                           "networks of this size need %zu MiB, over the %llu MiB limit per agent",
                           bytes >> 20, (unsigned long long)(RQD_MAX_AGENT_BYTES >> 20));
    if ((rc = agent_alloc(cfg, S, A, low, high, &a, err)) < 0)
        return rc;
    agent_init_params(a);
    if (redq__publish_policy(a) < 0) {
        redq_agent_free(a);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory creating the agent");
    }
    *out = a;
    return RQD_OK;
}

/* For redq/ckpt.c: an agent shell with every block allocated, to be filled. */
int redq__agent_alloc(const redq_config *cfg, int S, int A, const float *low, const float *high,
                      redq_agent **out, rqd_err *err)
{
    int rc = check_dims(S, A, low, high, err);
    if (rc == RQD_OK)
        rc = redq_config_validate(cfg, err);
    if (rc == RQD_OK && redq__agent_bytes(cfg, S, A) > RQD_MAX_AGENT_BYTES)
        rc = rqd_err_set(err, RQD_EINVAL, "", "the saved networks exceed the per-agent limit");
    return rc == RQD_OK ? agent_alloc(cfg, S, A, low, high, out, err) : rc;
}

void redq_agent_free(redq_agent *a)
{
    if (a == NULL)
        return;
    redq__scratch_free(a->scratch, a->N);
    redq__replay_free(&a->replay);
    redq_policy_release(atomic_load(&a->policy));
    free(a->low);
    free(a->high);
    free(a->actor);
    free(a->critic);
    free(a);
}

int redq_agent_act(redq_agent *a, const float *obs, int n, int mode, float *out, rqd_err *err)
{
    const int A = a->A;
    const redq_config *c = &a->cfg;
    int rc = RQD_OK;

    if (n < 1)
        return rqd_err_set(err, RQD_EINVAL, "obs", "no observations");
    for (long i = 0; i < (long)n * a->S; i++)
        if (!isfinite(obs[i]))
            return rqd_err_set(err, RQD_EINVAL, "obs", "observations must be finite");
    /* Acts run beside adds and PATCHes (the daemon serialises acts only among
     * themselves): what those change is read atomically. */
    long long env_steps = __atomic_load_n(&a->env_steps, __ATOMIC_RELAXED);
    int deterministic = __atomic_load_n(&a->cfg.deterministic_eval, __ATOMIC_RELAXED);
    double sigma;
    __atomic_load(&a->cfg.noise_sigma, &sigma, __ATOMIC_RELAXED);
    if (mode == REDQ_EXPLORE && env_steps < c->start_timesteps) {
        /* REDQ.md: warm-up actions are uniform in [low, high]. */
        for (long i = 0; i < (long)n * A; i++) {
            int j = (int)(i % A);
            out[i] = a->low[j] + (a->high[j] - a->low[j]) * redq_rng_uniform(&a->rng_act);
        }
        return redq__actions_check(out, n, A, err); /* bounds near FLT_MAX overflow */
    }
    redq_policy *p = redq_agent_policy(a);
    if (mode == REDQ_EVAL && deterministic) {
        rc = redq_policy_eval(p, obs, n, out, err);
        redq_policy_release(p);
        return rc;
    }
    float *head = malloc(sizeof(float) * 4 * (size_t)A * (size_t)n);
    float *logp = malloc(sizeof(float) * (size_t)n);
    if (head == NULL || logp == NULL || redq__policy_head(p, obs, n, head) < 0) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory computing actions");
        goto out;
    }
    float *eps = head + 2 * (size_t)A * (size_t)n; /* (n, A) noise, then reused for a */
    redq_rng_normals(&a->rng_act, eps, n * A);
    redq__actor_sample(head, eps, n, A, out, A, logp);
    if (mode == REDQ_EXPLORE && sigma > 0) /* explore actions only */
        for (long i = 0; i < (long)n * A; i++)
            out[i] += (float)sigma * redq_rng_normal(&a->rng_act);
    for (int b = 0; b < n; b++)
        redq__scale_to_env(out + (size_t)b * (size_t)A, out + (size_t)b * (size_t)A, a->low,
                           a->high, A, c->action_scaling, c->bound_clip);
    rc = redq__actions_check(out, n, A, err);
out:
    free(head);
    free(logp);
    redq_policy_release(p);
    return rc;
}

int redq_agent_add(redq_agent *a, const redq_transition *t, int n, rqd_err *err)
{
    float act[RQD_MAX_ACT_DIM];
    int rc;

    if (!rqd_count_room(a->env_steps, n) || !redq__replay_room(&a->replay, n))
        return rqd_err_set(err, RQD_ECONFLICT, "transitions", "%d more transitions would take "
                           "the agent's env_steps or replay counters past 2^53 - 1", n);
    for (int i = 0; i < n; i++) { /* all or nothing: validate the whole batch first */
        int bad = !isfinite(t[i].reward);
        for (int j = 0; j < a->S && !bad; j++)
            bad = !isfinite(t[i].obs[j]) || !isfinite(t[i].next_obs[j]);
        for (int j = 0; j < a->A && !bad; j++)
            bad = !isfinite(t[i].action[j]);
        if (bad)
            return rqd_err_set(err, RQD_EINVAL, "transitions", "transition %d has a non-finite value", i);
        if (t[i].env_id && strlen(t[i].env_id) > RQD_MAX_ENV_ID)
            return rqd_err_set(err, RQD_EINVAL, "transitions", "transition %d: env_id is longer than %d bytes", i, RQD_MAX_ENV_ID);
    }
    for (int i = 0; i < n; i++) {
        redq__scale_from_env(act, t[i].action, a->low, a->high, a->A, a->cfg.action_scaling);
        /* API.md: a row with both flags set counts as terminated. */
        rc = redq__replay_add(&a->replay, t[i].obs, act, t[i].reward, t[i].next_obs,
                              t[i].terminated, t[i].truncated && !t[i].terminated, t[i].env_id,
                              err);
        if (rc < 0)
            return rc;
        __atomic_store_n(&a->env_steps, a->env_steps + 1, __ATOMIC_RELAXED); /* acts read it */
    }
    return RQD_OK;
}

int redq_agent_reserve(redq_agent *a, const redq_transition *t, int n, rqd_err *err)
{
    const char **ids = malloc(sizeof *ids * (size_t)(n > 0 ? n : 1));
    if (ids == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    for (int i = 0; i < n; i++)
        ids[i] = t[i].env_id;
    int rc = redq__replay_reserve(&a->replay, ids, n);
    free(ids);
    return rc < 0 ? rqd_err_set(err, rc, "", "out of memory for %d transitions", n) : RQD_OK;
}

void redq_agent_info(const redq_agent *a, redq_info *out)
{
    out->env_steps = a->env_steps;
    out->updates = a->updates;
    out->actor_updates = a->actor_updates;
    out->buffer_len = a->replay.len;
    out->policy_version = a->policy_version;
    out->alpha = redq__alpha(a);
    out->bytes = redq__agent_bytes(&a->cfg, a->S, a->A) + redq__replay_bytes(&a->replay);
    if (a->scratch == NULL)
        out->bytes -= scratch_floats(&a->cfg, a->S, a->A) * sizeof(float);
}

const redq_config *redq_agent_config(const redq_agent *a) { return &a->cfg; }
int redq_agent_obs_dim(const redq_agent *a) { return a->S; }
int redq_agent_act_dim(const redq_agent *a) { return a->A; }
const float *redq_agent_low(const redq_agent *a) { return a->low; }
const float *redq_agent_high(const redq_agent *a) { return a->high; }

int redq_agent_set_config(redq_agent *a, const redq_config *cfg, rqd_err *err)
{
    redq_config fixed = *cfg;
    int rc = redq_config_validate(cfg, err);
    if (rc < 0)
        return rc;
    /* Copy the mutable settings of the agent's config into 'fixed': what remains
     * must then be identical. */
    fixed.training = a->cfg.training;
    fixed.update_per_step = a->cfg.update_per_step;
    fixed.max_pending_updates = a->cfg.max_pending_updates;
    fixed.checkpoint_every = a->cfg.checkpoint_every;
    fixed.keep_checkpoints = a->cfg.keep_checkpoints;
    fixed.noise_sigma = a->cfg.noise_sigma;
    fixed.deterministic_eval = a->cfg.deterministic_eval;
    fixed.actor_lr = a->cfg.actor_lr;
    fixed.critic_lr = a->cfg.critic_lr;
    fixed.alpha_lr = a->cfg.alpha_lr;
    fixed.lr_total_updates = a->cfg.lr_total_updates;
    if (memcmp(&fixed, &a->cfg, sizeof fixed) != 0)
        return rqd_err_set(err, RQD_EINVAL, "config", "only the settings PATCH may change can differ");
    /* Field by field: an act may be reading the two it uses, atomically. */
    a->cfg.training = cfg->training;
    a->cfg.update_per_step = cfg->update_per_step;
    a->cfg.max_pending_updates = cfg->max_pending_updates;
    a->cfg.checkpoint_every = cfg->checkpoint_every;
    a->cfg.keep_checkpoints = cfg->keep_checkpoints;
    a->cfg.actor_lr = cfg->actor_lr;
    a->cfg.critic_lr = cfg->critic_lr;
    a->cfg.alpha_lr = cfg->alpha_lr;
    a->cfg.lr_total_updates = cfg->lr_total_updates;
    __atomic_store(&a->cfg.noise_sigma, &cfg->noise_sigma, __ATOMIC_RELAXED);
    __atomic_store_n(&a->cfg.deterministic_eval, cfg->deterministic_eval, __ATOMIC_RELAXED);
    return RQD_OK;
}

int redq_agent_set_env_steps(redq_agent *a, long long env_steps)
{
    if (!rqd_count_room(env_steps, 0))
        return RQD_EINVAL;
    __atomic_store_n(&a->env_steps, env_steps, __ATOMIC_RELAXED);
    return RQD_OK;
}

int redq_agent_set_policy_version(redq_agent *a, long long v)
{
    if (!rqd_count_room(v, 0))
        return RQD_EINVAL;
    a->policy_version = v;
    redq__publish_policy(a); /* on failure the old snapshot keeps serving */
    return RQD_OK;
}

int redq_agent_swap_buffer(redq_agent *a, redq_agent *b, rqd_err *err)
{
    if (a->S != b->S || a->A != b->A || a->cfg.estimation_step != b->cfg.estimation_step ||
        a->cfg.gamma != b->cfg.gamma || a->cfg.buffer_size != b->cfg.buffer_size)
        return rqd_err_set(err, RQD_EINVAL, "", "replay buffers of differently shaped agents");
    redq__replay t = a->replay;
    a->replay = b->replay;
    b->replay = t;
    return RQD_OK;
}
