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
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"
#include "serial.h"

#define CKPT_MAGIC "REDQCKPT"
#define CKPT_VERSION 1u
#define CKPT_WITH_BUFFER 1u

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
        (rc = redq__agent_alloc(&cfg, (int)S, (int)A, low, high, &a, err)) < 0)
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
    if (a->env_steps < 0 || a->updates < 0 || a->actor_updates < 0 || a->policy_version < 0) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint counters are negative");
        goto out;
    }
    if ((flags & CKPT_WITH_BUFFER) && (rc = redq__replay_load(&a->replay, &p, end, err)) < 0)
        goto out;
    if (p != end) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "checkpoint has %zu unexpected trailing bytes",
                         (size_t)(end - p));
        goto out;
    }
    if (redq__publish_policy(a) < 0) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory loading a checkpoint");
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
