/* tests/fuzz/fuzz_ckpt.c: the fuzz target for the checkpoint loader, which reads what a
 * client uploads (PUT .../checkpoint) and what the daemon reads back at start and on a
 * restore. The input is a whole checkpoint file; corpus in tests/fuzz/corpus-ckpt/.
 *
 * The harness overwrites the input's last four bytes with the CRC-32 of the rest before
 * loading, so that mutations get past the checksum to every field behind it (the loader
 * itself is unchanged: a hand-made file with a valid checksum is exactly the threat).
 *
 * Whatever loads must behave like an agent that was never saved: acts answer finite
 * actions or RQD_EUNAVAIL, updates and adds succeed or are refused with an error, and
 * the state saved afterwards loads again. A state the loader accepts that later turns
 * into one it refuses is a finding: the target aborts with a message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../redq/redq.h"
#include "fuzz.h"

#define MAX_OBS 64 /* acts and adds on agents up to this size; bigger ones only load */
#define MAX_ACT 16

static void finding(const char *what, const rqd_err *err)
{
    fprintf(stderr, "fuzz_ckpt: %s: %s (%s)\n", what, err->msg, err->field);
    abort();
}

/* Acts on n observations taken from the input's bytes (any finite float, huge ones
 * included): an answer is finite, or the act is refused as unavailable. */
static void act(redq_agent *a, const uint8_t *data, size_t size)
{
    const int S = redq_agent_obs_dim(a), A = redq_agent_act_dim(a);
    float obs[2 * MAX_OBS], out[2 * MAX_ACT];
    rqd_err err = {0};

    for (int i = 0; i < 2 * S; i++) {
        float v = 0.0f;
        if (size >= 4)
            memcpy(&v, data + (size_t)(4 * i) % (size - 3), 4);
        obs[i] = isfinite(v) ? v : 0.5f;
    }
    for (int mode = REDQ_EXPLORE; mode <= REDQ_EVAL; mode++) {
        int rc = redq_agent_act(a, obs, 2, mode, out, &err);
        if (rc == RQD_EUNAVAIL || rc == RQD_ENOMEM)
            continue;
        if (rc != 0)
            finding("act failed", &err);
        for (int i = 0; i < 2 * A; i++)
            if (!isfinite(out[i]))
                finding("act answered a non-finite action", &err);
    }
}

/* A few transitions and updates, then save and load again. */
static void train_and_reload(redq_agent *a)
{
    const int S = redq_agent_obs_dim(a), A = redq_agent_act_dim(a);
    float obs[MAX_OBS], act_[MAX_ACT];
    rqd_err err = {0};
    redq_info info;
    rqd_buf b;

    for (int j = 0; j < S; j++)
        obs[j] = 0.25f * (float)(j % 5) - 0.5f;
    for (int j = 0; j < A; j++)
        act_[j] = 0.5f * (redq_agent_low(a)[j] + redq_agent_high(a)[j]);
    redq_transition t[2] = {{obs, act_, 1.0f, obs, 0, 0, "fz"}, {obs, act_, -1.0f, obs, 0, 1, NULL}};
    int rc = redq_agent_add(a, t, 2, &err);
    if (rc != 0 && rc != RQD_ECONFLICT && rc != RQD_ENOMEM)
        finding("add failed", &err);
    redq_agent_info(a, &info);
    if (info.buffer_len >= redq_agent_config(a)->batch_size) {
        redq_stats st;
        rc = redq_agent_update(a, 2, NULL, &st, &err);
        if (rc != 0 && rc != RQD_ECONFLICT && rc != RQD_ENOMEM)
            finding("update failed", &err);
    }
    redq_policy *p = redq_agent_policy(a);
    rqd_buf_init(&b, 0);
    redq_policy_safetensors(p, &b, &err);
    redq_policy_release(p);
    rqd_buf_free(&b);

    rqd_buf_init(&b, 0);
    if (redq_agent_save(a, 1, &b, &err) == 0) {
        redq_agent *again = NULL;
        rc = redq_agent_load(b.data, b.len, &again, &err);
        if (rc != 0 && rc != RQD_ENOMEM)
            finding("a loaded agent's own state does not load again", &err);
        redq_agent_free(again);
    }
    rqd_buf_free(&b);
}

int fuzz_ckpt_one(const uint8_t *data, size_t size)
{
    rqd_limits lim = RQD_LIMITS_DEFAULT;
    redq_agent *a = NULL;
    rqd_err err = {0};

    if (size < 4)
        return 0;
    uint8_t *blob = malloc(size);
    if (blob == NULL)
        return 0;
    memcpy(blob, data, size);
    uint32_t crc = (uint32_t)crc32(0L, blob, (uInt)(size - 4));
    memcpy(blob + size - 4, &crc, 4);

    lim.max_abs_value = 10.0; /* the bounds check of an import, within the limits */
    if (redq_agent_load_within(blob, size, &lim, &a, &err) == 0)
        redq_agent_free(a);
    a = NULL;
    if (redq_agent_load(blob, size, &a, &err) == 0) {
        if (redq_agent_obs_dim(a) <= MAX_OBS && redq_agent_act_dim(a) <= MAX_ACT) {
            act(a, data, size);
            train_and_reload(a);
        }
        redq_agent_free(a);
    } else if (err.code != RQD_EINVAL && err.code != RQD_ENOMEM) {
        finding("load failed with an unexpected code", &err);
    }
    free(blob);
    return 0;
}

FUZZ_ENTRY(fuzz_ckpt_one)
