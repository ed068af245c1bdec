/* redq/ckpt.c: an agent's complete state to and from bytes (API.md "A checkpoint holds
 * everything needed to continue exactly").
 *
 * Layout (little-endian), version 1:
 *   "REDQCKPT" u32 version u32 flags(bit 0: with buffer)
 *   str config JSON | i64 S, A | f32 low[A], high[A]
 *   i64 env_steps, updates, actor_updates, policy_version
 *   rng train, rng act: i64 s[4], u32 has_spare, f32 spare
 *   f64 log_alpha, its Adam m and v, last actor loss, last alpha loss
 *   f32 actor, actor Adam m, v | critics, critic Adam m, v | target critics
 *   [replay: redq__replay_save] | u32 CRC-32 (zlib) of every byte before it
 * Gradients and scratch are not state: every update overwrites them before reading.
 *
 * A load trusts nothing but the layout: a file with a valid checksum may still have been
 * made by hand. Every counter is in [0, RQD_MAX_COUNTER] and consistent with the others,
 * every float is finite and within what a live agent can reach (check_state, and
 * redq__replay_load for the buffer), and nothing is allocated for data the blob does
 * not hold. Whatever loads can be updated, acted on, saved and loaded again.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "adam.h"
#include "internal.h"
#include "serial.h"

#define CKPT_MAGIC "REDQCKPT"
#define CKPT_VERSION 1u
#define CKPT_WITH_BUFFER 1u

/* Bytes of the fixed fields between the action bounds and the parameter blocks:
 * 4 counters, 2 generators (4 x i64, u32, f32), 5 doubles. */
#define CKPT_FIXED_BYTES (4 * 8 + 2 * (4 * 8 + 4 + 4) + 5 * 8)

/* The largest parameter (weights, biases, targets) a checkpoint may hold. A live agent
 * starts within [-1, 1] and Adam moves a parameter by at most about 3.2 lr per step
 * (Kingma and Ba, section 2.1; lr <= 1e3), so it stays under 3e19 through 2^53 updates.
 * 1e30 leaves ten orders of margin and keeps Polyak's cur - targ finite in float32. */
#define CKPT_MAX_PARAM 1e30f

/* What Adam can hold after any run of finite gradients below REDQ_MAX_GRAD: moments
 * under their bounds, v >= 0, and |m| <= K sqrt(v) with K^2 = (1-b1)^2 / ((1-b2)
 * (1 - b1^2/b2)) = 52.9 (Cauchy-Schwarz over the two running averages); 8 leaves room
 * for rounding, and the constant term for squares that underflowed to 0 in v. A pair
 * outside it would let one Adam step move a parameter arbitrarily far. */
#define CKPT_ADAM_K 8.0

static int adam_pair_ok(double m, double v, double tiny)
{
    return v >= 0 && fabs(m) <= CKPT_ADAM_K * sqrt(v) + tiny;
}

static int adam_state_ok(const float *m, const float *v, size_t n)
{
    if (!redq__all_below(m, n, 2.0f * REDQ_MAX_GRAD) ||
        !redq__all_below(v, n, 2.0f * REDQ_MAX_GRAD * REDQ_MAX_GRAD))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!adam_pair_ok(m[i], v[i], 1e-18))
            return 0;
    return 1;
}

/* A generator as redq_rng_seed and redq_rng_normal leave it: xoshiro's state is never
 * all zero (it would stay so), and the kept Box-Muller value is at most
 * sqrt(-2 ln 2^-53) = 8.6 in magnitude. */
static int rng_ok(const redq_rng *r)
{
    return (r->s[0] | r->s[1] | r->s[2] | r->s[3]) != 0 && r->has_spare <= 1 &&
           fabsf(r->spare) <= 9.0f;
}

/* Everything read so far holds what a live agent's state holds (see the file's top).
 * The replay buffer is checked as it is read (redq__replay_load). */
static int check_state(const redq_agent *a, rqd_err *err)
{
    const char *what = NULL;
    const long long counters[4] = {a->env_steps, a->updates, a->actor_updates,
                                   a->policy_version};
    static const char *const names[4] = {"env_steps", "updates", "actor_updates",
                                         "policy_version"};

    for (int i = 0; i < 4; i++)
        if (counters[i] < 0 || counters[i] > RQD_MAX_COUNTER)
            return rqd_err_set(err, RQD_EINVAL, "", "checkpoint counter %s = %lld is outside "
                               "[0, 2^53 - 1]", names[i], counters[i]);
    /* One actor step at most per actor_delay critic steps (fewer if some were skipped). */
    if (a->actor_updates > a->updates / a->cfg.actor_delay)
        return rqd_err_set(err, RQD_EINVAL, "", "checkpoint counters are inconsistent: %lld "
                           "actor updates after %lld updates with actor_delay %d",
                           a->actor_updates, a->updates, a->cfg.actor_delay);
    if (!rng_ok(&a->rng_train) || !rng_ok(&a->rng_act))
        what = "a random generator's state";
    else if (!isfinite(a->log_alpha) || !isfinite(exp(a->log_alpha)))
        what = "log_alpha";
    else if (!isfinite(a->la_v) || !adam_pair_ok(a->la_m, a->la_v, 1e-150))
        what = "log_alpha's Adam moments";
    else if (isinf(a->last_actor_loss) || isinf(a->last_alpha_loss))
        what = "the last losses";
    else if (!redq__all_below(a->actor, a->actor_shape.total, CKPT_MAX_PARAM))
        what = "the actor's parameters";
    else if (!adam_state_ok(a->actor_m, a->actor_v, a->actor_shape.total))
        what = "the actor's Adam moments";
    else if (!redq__all_below(a->critic, a->critic_floats, CKPT_MAX_PARAM))
        what = "the critics' parameters";
    else if (!adam_state_ok(a->critic_m, a->critic_v, a->critic_floats))
        what = "the critics' Adam moments";
    else if (!redq__all_below(a->target, a->critic_floats, CKPT_MAX_PARAM))
        what = "the target critics' parameters";
    if (what != NULL)
        return rqd_err_set(err, RQD_EINVAL, "", "checkpoint holds values no agent can reach "
                           "in %s (not finite, out of range, or inconsistent)", what);
    return RQD_OK;
}

/* With limits, the action bounds are held to --max-abs-value like a new agent's. A
 * max_abs_value <= 0 is a caller that does not set it (yet): no bound. */
static int check_bounds(const float *low, const float *high, int A, const rqd_limits *limits,
                        rqd_err *err)
{
    for (int j = 0; limits != NULL && limits->max_abs_value > 0 && j < A; j++) {
        int lo_bad = !(fabs(low[j]) <= limits->max_abs_value);
        if (lo_bad || !(fabs(high[j]) <= limits->max_abs_value))
            return rqd_err_set(err, RQD_EINVAL, lo_bad ? "action_low" : "action_high",
                               "%s[%d] = %g in the checkpoint is past this server's limit of "
                               "%g in magnitude (--max-abs-value)",
                               lo_bad ? "action_low" : "action_high", j,
                               lo_bad ? low[j] : high[j], limits->max_abs_value);
    }
    return RQD_OK;
}

static int put_rng(rqd_buf *b, const redq_rng *r)
{
    int rc = 0;
    for (int i = 0; i < 4; i++)
        rc |= redq__put_i64(b, (long long)r->s[i]);
    rc |= redq__put_u32(b, r->has_spare);
    rc |= redq__put_f32s(b, &r->spare, 1);
    return rc;
}

static int get_rng(const unsigned char **p, const unsigned char *end, redq_rng *r)
{
    long long v;
    for (int i = 0; i < 4; i++) {
        if (redq__get_i64(p, end, &v))
            return -1;
        r->s[i] = (uint64_t)v;
    }
    return redq__get_u32(p, end, &r->has_spare) || redq__get_f32s(p, end, &r->spare, 1);
}

int redq_agent_save(const redq_agent *a, int with_buffer, rqd_buf *out, rqd_err *err)
{
    size_t start = out->len;
    cJSON *cj = redq_config_to_json(&a->cfg);
    char *cfg = cj ? cJSON_PrintUnformatted(cj) : NULL;
    size_t an = a->actor_shape.total, cn = a->critic_floats;
    int rc = 0;

    cJSON_Delete(cj);
    if (cfg == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory saving the agent");
    rc |= rqd_buf_append(out, CKPT_MAGIC, 8);
    rc |= redq__put_u32(out, CKPT_VERSION);
    rc |= redq__put_u32(out, with_buffer ? CKPT_WITH_BUFFER : 0);
    rc |= redq__put_str(out, cfg);
    rc |= redq__put_i64(out, a->S);
    rc |= redq__put_i64(out, a->A);
    rc |= redq__put_f32s(out, a->low, (size_t)a->A);
    rc |= redq__put_f32s(out, a->high, (size_t)a->A);
    rc |= redq__put_i64(out, a->env_steps);
    rc |= redq__put_i64(out, a->updates);
    rc |= redq__put_i64(out, a->actor_updates);
    rc |= redq__put_i64(out, a->policy_version);
    rc |= put_rng(out, &a->rng_train);
    rc |= put_rng(out, &a->rng_act);
    rc |= redq__put_f64(out, a->log_alpha);
    rc |= redq__put_f64(out, a->la_m);
    rc |= redq__put_f64(out, a->la_v);
    rc |= redq__put_f64(out, a->last_actor_loss);
    rc |= redq__put_f64(out, a->last_alpha_loss);
    rc |= redq__put_f32s(out, a->actor, an);
    rc |= redq__put_f32s(out, a->actor_m, an);
    rc |= redq__put_f32s(out, a->actor_v, an);
    rc |= redq__put_f32s(out, a->critic, cn);
    rc |= redq__put_f32s(out, a->critic_m, cn);
    rc |= redq__put_f32s(out, a->critic_v, cn);
    rc |= redq__put_f32s(out, a->target, cn);
    if (with_buffer && rc == 0)
        rc |= redq__replay_save(&a->replay, out);
    free(cfg);
    if (rc == 0) {
        uLong crc = crc32(0L, out->data + start, (uInt)(out->len - start));
        rc |= redq__put_u32(out, (uint32_t)crc);
    }
    if (rc != 0) {
        out->len = start;
        return rqd_err_set(err, RQD_ENOMEM, "", "the agent's state does not fit in memory");
    }
    return RQD_OK;
}

int redq_agent_load(const void *data, size_t len, redq_agent **out, rqd_err *err)
{
    return redq_agent_load_within(data, len, NULL, out, err);
}

int redq_agent_load_within(const void *data, size_t len, const rqd_limits *limits,
                           redq_agent **out, rqd_err *err)
{
    const unsigned char *p = data, *end;
    redq_agent *a = NULL;
    redq_config cfg;
    uint32_t version, flags, crc;
    long long S, A;
    float low[RQD_MAX_ACT_DIM], high[RQD_MAX_ACT_DIM];
    char *cfg_text = NULL;
    cJSON *cj = NULL;
    int rc = RQD_OK;

    if (len < 8 + 4 + 4 + 4 || memcmp(p, CKPT_MAGIC, 8) != 0)
        return rqd_err_set(err, RQD_EINVAL, "", "not a redqd checkpoint (bad magic or too short)");
    memcpy(&version, p + 8, 4);
    if (version != CKPT_VERSION)
        return rqd_err_set(err, RQD_EINVAL, "", "checkpoint version %u is not supported (this "
                           "build reads version %u)", version, CKPT_VERSION);
    end = p + len - 4;
    memcpy(&crc, end, 4);
    if ((uint32_t)crc32(0L, p, (uInt)(len - 4)) != crc)
        return rqd_err_set(err, RQD_EINVAL, "", "checkpoint checksum mismatch (truncated or corrupted)");
    p += 12;
    uint32_t slen;
    if (redq__get_u32(&p, end, &flags) || (flags & ~CKPT_WITH_BUFFER) != 0 ||
        redq__get_u32(&p, end, &slen) || slen > (size_t)(end - p)) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint header is truncated");
        goto out;
    }
    cfg_text = malloc((size_t)slen + 1);
    if (cfg_text == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory loading a checkpoint");
        goto out;
    }
    memcpy(cfg_text, p, slen);
    cfg_text[slen] = '\0';
    p += slen;
    if (redq__get_i64(&p, end, &S) || redq__get_i64(&p, end, &A) || A < 1 ||
        A > RQD_MAX_ACT_DIM || S < 1 || S > RQD_MAX_OBS_DIM ||
        redq__get_f32s(&p, end, low, (size_t)A) || redq__get_f32s(&p, end, high, (size_t)A)) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint dimensions are invalid");
        goto out;
    }
    cj = cJSON_Parse(cfg_text);
    if (cj == NULL || (rc = redq_config_from_json(cj, (int)A, &cfg, err)) < 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", cj && err ? err->msg : "not JSON");
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint config is invalid: %s", why);
        goto out;
    }
    if ((limits && (rc = redq_limits_check(limits, &cfg, (int)S, (int)A, err)) < 0) ||
        (rc = check_bounds(low, high, (int)A, limits, err)) < 0)
        goto out;
    /* Nothing is allocated for state the blob cannot hold: a short file naming large
     * networks is refused here, not after allocating them. */
    redq__mlp am, cm;
    redq__mlp_shape(&am, (int)S, cfg.hidden, cfg.n_hidden, 2 * (int)A);
    redq__mlp_shape(&cm, (int)(S + A), cfg.hidden, cfg.n_hidden, 1);
    size_t need = CKPT_FIXED_BYTES +
                  sizeof(float) * (3 * am.total + 4 * (size_t)cfg.ensemble_size * cm.total);
    if ((size_t)(end - p) < need) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint is truncated: its config's networks "
                         "need %zu bytes, it holds %zu", need, (size_t)(end - p));
        goto out;
    }
    if ((rc = redq__agent_alloc(&cfg, (int)S, (int)A, low, high, &a, err)) < 0)
        goto out;
    size_t an = a->actor_shape.total, cn = a->critic_floats;
    if (redq__get_i64(&p, end, &a->env_steps) || redq__get_i64(&p, end, &a->updates) ||
        redq__get_i64(&p, end, &a->actor_updates) || redq__get_i64(&p, end, &a->policy_version) ||
        get_rng(&p, end, &a->rng_train) || get_rng(&p, end, &a->rng_act) ||
        redq__get_f64(&p, end, &a->log_alpha) || redq__get_f64(&p, end, &a->la_m) ||
        redq__get_f64(&p, end, &a->la_v) || redq__get_f64(&p, end, &a->last_actor_loss) ||
        redq__get_f64(&p, end, &a->last_alpha_loss) ||
        redq__get_f32s(&p, end, a->actor, an) || redq__get_f32s(&p, end, a->actor_m, an) ||
        redq__get_f32s(&p, end, a->actor_v, an) || redq__get_f32s(&p, end, a->critic, cn) ||
        redq__get_f32s(&p, end, a->critic_m, cn) || redq__get_f32s(&p, end, a->critic_v, cn) ||
        redq__get_f32s(&p, end, a->target, cn)) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint is truncated");
        goto out;
    }
    if ((rc = check_state(a, err)) < 0)
        goto out;
    if ((flags & CKPT_WITH_BUFFER) && (rc = redq__replay_load(&a->replay, &p, end, err)) < 0)
        goto out;
    if (p != end) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint has %zu unexpected trailing bytes",
                         (size_t)(end - p));
        goto out;
    }
    if ((rc = redq__publish_policy(a)) < 0) { /* check_state leaves only ENOMEM */
        rc = rqd_err_set(err, rc, "", "%s", rc == RQD_ENOMEM ? "out of memory loading a "
                         "checkpoint" : "checkpoint's actor cannot be published");
        goto out;
    }
    *out = a;
    a = NULL;
out:
    redq_agent_free(a);
    cJSON_Delete(cj);
    free(cfg_text);
    return rc;
}
