/* redq/redq.h: the learning core's whole public surface.
 *
 * One redq_agent is one REDQ learner (../shared/REDQ.md): an actor, an ensemble of N
 * critics with their targets, Adam optimisers, an entropy coefficient, a replay buffer
 * fed through per-stream n-step assembly, two random generators and its counters.
 * The core is pure computation: no I/O, no logging, no threads of its own, no globals.
 *
 * THREADS
 * -------
 * The caller serialises redq_agent_add, redq_agent_update, redq_agent_save and the
 * setters on one agent. redq_agent_act may run at the same time as those (it reads the
 * latest published policy snapshot and the act generator) but acts on one agent must be
 * serialised among themselves. redq_policy_* functions are safe from any thread.
 * An update can spread its per-member work over threads the caller owns (redq_exec).
 */
#ifndef REDQ_H
#define REDQ_H

#include <stddef.h>
#include <stdint.h>

#include "../common/rqd_buf.h"
#include "../common/rqd_err.h"
#include "../common/rqd_limits.h"

typedef struct cJSON cJSON;

/* ------------------------------------------------------------------ configuration */

enum { REDQ_TARGET_MIN = 0, REDQ_TARGET_MEAN = 1 };
enum { REDQ_TRAIN_ASYNC = 0, REDQ_TRAIN_SYNC, REDQ_TRAIN_MANUAL, REDQ_TRAIN_PAUSED };
/* "async", "sync", "manual" or "paused" (API.md's config.training) for REDQ_TRAIN_*. */
const char *redq_training_name(int training);

/* Every setting of API.md's config table, Tianshou's names. Fields are plain values so
 * that a config can be copied with '='. */
typedef struct redq_config {
    int hidden[RQD_MAX_HIDDEN_LAYERS]; /* hidden_sizes */
    int n_hidden;                      /* number of hidden layers, 1..8 */
    int ensemble_size;                 /* N */
    int subset_size;                   /* M, 1 <= M <= N */
    double tau;                        /* (0, 1] */
    double gamma;                      /* [0, 1] */
    int alpha_auto;                    /* alpha == "auto" */
    double alpha;                      /* fixed alpha (or the initial one when auto: 1) */
    double target_entropy;             /* default -act_dim */
    double alpha_lr;
    int estimation_step;               /* n of the n-step return */
    int actor_delay;                   /* critic updates per actor update */
    double update_per_step;            /* UTD ratio, >= 0, fractions allowed */
    int target_mode;                   /* REDQ_TARGET_* */
    double noise_sigma;                /* exploration_noise gaussian sigma; < 0 = null */
    int deterministic_eval;
    int action_scaling;
    int bound_clip;                    /* action_bound_method == "clip" */
    double actor_lr, critic_lr;
    long long lr_total_updates;        /* lr_scheduler linear K; 0 = null */
    int batch_size;
    long long buffer_size;
    long long start_timesteps;
    int training;                      /* REDQ_TRAIN_*: used by the daemon */
    long long checkpoint_every;        /* used by the daemon; 0 = never */
    int keep_checkpoints;              /* used by the daemon, >= 1 */
    double max_pending_updates;        /* used by the daemon */
    /* History retention, used by the daemon (daemon/prune.c): a stats, episode or
     * evaluation row is past the window when it is older than both limits that are set
     * (none set: every row is kept). Past it, stats and evaluation rows are thinned to
     * every history_thin-th (0 drops them all, 1 keeps them all); ended episodes go. */
    long long history_keep_rows;       /* history_keep_rows: the newest K per table; 0 = null */
    double history_keep_days;          /* history_keep_days: rows of the last D days; 0 = null */
    int history_thin;                  /* history_thin, >= 0 */
    uint64_t seed;                     /* [0, 2^53) */
} redq_config;

/* Fills c with API.md's defaults for an agent with act_dim actions. */
void redq_config_default(redq_config *c, int act_dim);

/* Parses a JSON "config" object (NULL = all defaults) over the defaults. Unknown keys,
 * wrong types and out-of-range values are RQD_EINVAL with err->field naming the key
 * as "config.<key>". *out is written only on success. */
int redq_config_from_json(const cJSON *obj, int act_dim, redq_config *out, rqd_err *err);

/* Applies a PATCH object: only the keys API.md lets change while an agent runs; any
 * other key is RQD_EINVAL. *c is changed only if the whole object is valid. Field paths
 * are "<prefix><key>" (prefix may be "" or "config."). */
int redq_config_patch(const cJSON *obj, const char *prefix, redq_config *c, rqd_err *err);

/* Every effective setting as a new JSON object (caller frees with cJSON_Delete), or
 * NULL on allocation failure. */
cJSON *redq_config_to_json(const redq_config *c);

/* Checks ranges and cross-field rules (M <= N, max_pending >= max(1, utd), ...). */
int redq_config_validate(const redq_config *c, rqd_err *err);

/* ------------------------------------------------------------------ the agent */

typedef struct redq_agent redq_agent;
typedef struct redq_policy redq_policy;

enum { REDQ_EXPLORE = 0, REDQ_EVAL = 1 };

/* One environment transition in the environment's action scale. */
typedef struct {
    const float *obs;      /* [obs_dim] */
    const float *action;   /* [act_dim], clipped into [low, high] on entry */
    float reward;
    const float *next_obs; /* [obs_dim] */
    int terminated;        /* ends the return: no bootstrap */
    int truncated;         /* ends the episode, bootstraps */
    const char *env_id;    /* n-step stream; NULL or "" = the default stream */
} redq_transition;

/* Statistics of the latest update taken (Tianshou's REDQTrainingStats plus q_mean,
 * q_std). A value not known yet (no actor update so far; no update of the call taken)
 * is NaN. */
typedef struct {
    double critic_loss;
    double actor_loss;
    double alpha;
    double alpha_loss;
    double q_mean;     /* mean of Q over batch and ensemble */
    double q_std;      /* mean over the batch of the std across the ensemble */
    double train_time; /* seconds spent in this call's updates */
    int actor_updated; /* this call did at least one actor update */
    int skipped;       /* updates of this call whose loss or gradients were not finite:
                          they changed nothing (the train RNG's draws may advance) */
    int actor_skipped; /* actor/alpha steps of this call skipped the same way; their
                          updates' critic steps stood (not in `skipped`) */
} redq_stats;

/* Counters and sizes; a plain copy. */
typedef struct {
    long long env_steps;      /* transitions received */
    long long updates;        /* critic updates done */
    long long actor_updates;
    long long buffer_len;     /* rows in the replay buffer */
    long long buffer_added;   /* rows ever assembled into it (its ring position) */
    long long buffer_missing; /* rows still to assemble before a buffer rebuilt from a
                                 replay head is whole (0 otherwise; buffer_len is 0 until) */
    long long policy_version; /* bumped at every actor update and every load */
    double alpha;
    size_t bytes;             /* memory held by networks, optimisers, scratch, buffer */
} redq_info;

/* Runs fn(arg, i) for i in [0, n) and returns when all are done. The update calls it
 * with one task per ensemble member; calls may run in any order and in parallel. */
typedef struct {
    void (*parallel_for)(void *ctx, void (*fn)(void *arg, int i), void *arg, int n);
    void *ctx;
} redq_exec;

/* RQD_EINVAL naming the field (obs_dim, action_low, config.hidden_sizes, ...) and the
 * daemon flag when an agent of this shape would be past limits, including the memory
 * estimate of its networks, optimiser state and scratch, and the size of its learner
 * state against limits->state_bytes; checked before allocating. */
int redq_limits_check(const rqd_limits *limits, const redq_config *cfg, int obs_dim,
                      int act_dim, rqd_err *err);

/* The exact size of the learner state of an agent of this shape: what redq_agent_save
 * without the buffer writes (a checkpoint; its replay buffer, when saved, comes on top).
 * RQD_ENOMEM when the config cannot be printed. */
int redq_state_bytes(const redq_config *cfg, int obs_dim, int act_dim, size_t *bytes,
                     rqd_err *err);

/* Creates an agent for observations of obs_dim floats and actions in [low, high]
 * (act_dim each). Validates cfg and the dimensions, refuses one that would need more
 * than RQD_MAX_AGENT_BYTES. The caller frees with redq_agent_free. */
int redq_agent_new(const redq_config *cfg, int obs_dim, int act_dim, const float *low,
                   const float *high, redq_agent **out, rqd_err *err);
void redq_agent_free(redq_agent *a); /* NULL is a no-op */

/* Actions for n observations ([n][obs_dim]) into out ([n][act_dim], environment
 * scale). Explore: uniform in [low, high] while env_steps < start_timesteps, then a
 * sample of the policy plus exploration noise; eval: tanh(mu) if deterministic_eval. */
int redq_agent_act(redq_agent *a, const float *obs, int n, int mode, float *out, rqd_err *err);

/* Validates and adds n transitions (all or none on a validation error). */
int redq_agent_add(redq_agent *a, const redq_transition *t, int n, rqd_err *err);
/* Allocates now whatever redq_agent_add(a, t, n) will need, so that it cannot then fail
 * for memory (the daemon reserves before it commits a post, then adds). Only the
 * env_ids of t are read. RQD_ENOMEM; on failure what was allocated stays for later. */
int redq_agent_reserve(redq_agent *a, const redq_transition *t, int n, rqd_err *err);

/* Runs k critic updates (and the actor/alpha updates that fall due). ex may be NULL
 * (serial). RQD_ECONFLICT if the buffer holds fewer than batch_size rows, or if k
 * updates could take `updates` or policy_version past RQD_MAX_COUNTER.
 *
 * A step whose loss or any gradient is not finite (or past REDQ_MAX_GRAD, where Adam
 * would overflow) is skipped; the call still succeeds. An update whose critic step is
 * skipped changes nothing (st->skipped): parameters, Adam moments, target critics,
 * alpha, `updates`, `actor_updates` and policy_version stay as they were. A skipped
 * actor/alpha step (st->actor_skipped) leaves the actor, alpha, their Adam state,
 * actor_updates and policy_version; the critic step of the same update, which came
 * first and was finite, stands. Only the train generator moves on in both cases (the
 * batch and the noise were drawn), so a retry samples another batch. */
int redq_agent_update(redq_agent *a, int k, const redq_exec *ex, redq_stats *st, rqd_err *err);

void redq_agent_info(const redq_agent *a, redq_info *out);
const redq_config *redq_agent_config(const redq_agent *a);
int redq_agent_obs_dim(const redq_agent *a);
int redq_agent_act_dim(const redq_agent *a);
/* Bounds, act_dim floats each, owned by the agent. */
const float *redq_agent_low(const redq_agent *a);
const float *redq_agent_high(const redq_agent *a);

/* Replaces the settings that may change while the agent runs (redq_config_patch's
 * keys); the others in cfg must equal the agent's. */
int redq_agent_set_config(redq_agent *a, const redq_config *cfg, rqd_err *err);

/* Exchanges the replay buffers (rows and pending n-step queues) of two agents with the
 * same dimensions, estimation_step, gamma and buffer_size. */
int redq_agent_swap_buffer(redq_agent *a, redq_agent *b, rqd_err *err);

/* Sets env_steps (the daemon restores it from storage). RQD_EINVAL, and nothing
 * changes, outside [0, RQD_MAX_COUNTER]. */
int redq_agent_set_env_steps(redq_agent *a, long long env_steps);
/* Sets policy_version (never backwards across crashes: the daemon keeps the maximum).
 * RQD_EINVAL, and nothing changes, outside [0, RQD_MAX_COUNTER]. */
int redq_agent_set_policy_version(redq_agent *a, long long v);

/* ------------------------------------------------------------------ state */

/* Appends the agent's complete state (versioned, checksummed) to out. With with_buffer,
 * the replay rows and the pending n-step queues too; without, a load starts with an
 * empty buffer. */
int redq_agent_save(const redq_agent *a, int with_buffer, rqd_buf *out, rqd_err *err);

/* A new agent from a saved state. A truncated, corrupted or unknown-version blob is
 * RQD_EINVAL and nothing is allocated. policy_version is the saved one (the caller
 * bumps it where API.md says a load counts as a new policy). */
int redq_agent_load(const void *data, size_t len, redq_agent **out, rqd_err *err);
/* redq_agent_load that also refuses, before allocating, a saved agent past the limits
 * (redq_limits_check) or with action bounds past limits->max_abs_value (RQD_EINVAL
 * naming action_low or action_high; a max_abs_value <= 0 sets no bound); limits NULL
 * checks the ceilings only. */
int redq_agent_load_within(const void *data, size_t len, const rqd_limits *limits,
                           redq_agent **out, rqd_err *err);

/* ------------------------------------------------------------------ replay heads */

/* A replay head is the n-step assembler's state without the ring's rows: the ring
 * position (rows assembled so far), the transitions seen, and every env stream's pending
 * raw transitions (redq/replay.h, HEADS). The assembly is deterministic, so a learner
 * that loads a head into an empty buffer and is then given, through redq_agent_add, the
 * transitions that followed the head holds the same buffer bit for bit as the learner
 * the head was taken from, once at least buffer_size rows have been assembled after the
 * head. Until then its buffer is incomplete: buffer_len 0 (updates are refused as for an
 * empty buffer), buffer_missing > 0, and a save with the buffer is RQD_ECONFLICT. This
 * lets the daemon forget stored transitions older than a head (daemon/prune.c).
 *
 * Appends a's head (versioned, checksummed) to out; *added gets its ring position. */
int redq_agent_head_save(const redq_agent *a, rqd_buf *out, long long *added, rqd_err *err);
/* The bytes redq_agent_head_save would append now (a few dozen, plus the pending n-step
 * transitions of every env stream). */
size_t redq_agent_head_bytes(const redq_agent *a);
/* Loads a head into a, whose buffer must be empty (nothing added: RQD_ECONFLICT). A
 * damaged head, or one of a learner of another obs_dim, act_dim, estimation_step or
 * buffer_size, is RQD_EINVAL; on any failure a is unchanged. env_steps is not part of a
 * head: the caller sets it (redq_agent_set_env_steps). */
int redq_agent_head_load(redq_agent *a, const void *data, size_t len, rqd_err *err);

/* ------------------------------------------------------------------ policy snapshots */

/* The latest published actor (immutable, reference-counted): retained for the caller,
 * who releases it. Safe against a concurrent update. */
redq_policy *redq_agent_policy(redq_agent *a);
void redq_policy_release(redq_policy *p); /* NULL is a no-op */
long long redq_policy_version(const redq_policy *p);

/* Deterministic eval actions tanh(mu(s)) scaled to [low, high], for n observations. */
int redq_policy_eval(const redq_policy *p, const float *obs, int n, float *out, rqd_err *err);

/* The actor as a safetensors file (PyTorch nn.Linear layout, API.md "The policy file"),
 * appended to out. */
int redq_policy_safetensors(const redq_policy *p, rqd_buf *out, rqd_err *err);

#endif
