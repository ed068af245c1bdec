/* redq/policy.c: immutable, reference-counted actor snapshots (policy_version), the
 * eval action computed from one, and its safetensors export (API.md "The policy file").
 *
 * THREADS
 * -------
 * A snapshot is never written after redq__publish_policy() builds it, so any thread may
 * read it. The agent holds one reference to its latest; redq_agent_policy() takes a new
 * one without a lock (internal.h says how the swap stays safe), so acting never waits
 * for the thread that trains.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adam.h"
#include "internal.h"
#include "scale.h"
#include "serial.h"

/* Rows per forward pass when acting on many observations: bounds the scratch. */
#define POLICY_CHUNK 64

int redq__publish_policy(redq_agent *a)
{
    size_t n = a->actor_shape.total;
    redq_policy *p;

    /* Acting and the policy file must never see a non-finite weight: the previous
     * snapshot keeps serving instead. */
    if (!redq__all_below(a->actor, n, INFINITY))
        return RQD_EINVAL;
    p = malloc(sizeof *p + sizeof(float) * (n + 2 * (size_t)a->A));
    if (p == NULL)
        return RQD_ENOMEM;
    atomic_init(&p->refs, 1);
    p->version = a->policy_version;
    p->S = a->S;
    p->A = a->A;
    p->shape = a->actor_shape;
    p->scaling = a->cfg.action_scaling;
    p->clip = a->cfg.bound_clip;
    p->params = (float *)(p + 1);
    p->low = p->params + n;
    p->high = p->low + a->A;
    memcpy(p->params, a->actor, sizeof(float) * n);
    memcpy(p->low, a->low, sizeof(float) * (size_t)a->A);
    memcpy(p->high, a->high, sizeof(float) * (size_t)a->A);

    redq_policy *old = atomic_exchange(&a->policy, p);
    while (atomic_load(&a->acquiring) > 0) /* a reader may hold 'old' unreferenced */
        sched_yield();
    redq_policy_release(old);
    return RQD_OK;
}

redq_policy *redq_agent_policy(redq_agent *a)
{
    atomic_fetch_add(&a->acquiring, 1);
    redq_policy *p = atomic_load(&a->policy);
    atomic_fetch_add(&p->refs, 1);
    atomic_fetch_sub(&a->acquiring, 1);
    return p;
}

void redq_policy_release(redq_policy *p)
{
    if (p != NULL && atomic_fetch_sub(&p->refs, 1) == 1)
        free(p);
}

long long redq_policy_version(const redq_policy *p) { return p->version; }

/* head (n, 2A) = actor(obs) for n observations, in chunks. */
int redq__policy_head(const redq_policy *p, const float *obs, int n, float *head)
{
    const redq__mlp *m = &p->shape;
    size_t per_row = 0;
    float *h[RQD_MAX_HIDDEN_LAYERS];

    for (int l = 0; l < m->n - 1; l++)
        per_row += (size_t)m->out[l];
    int rows = n < POLICY_CHUNK ? n : POLICY_CHUNK;
    float *buf = malloc(sizeof(float) * per_row * (size_t)rows);
    if (buf == NULL)
        return RQD_ENOMEM;
    for (int s = 0; s < n; s += rows) {
        int b = n - s < rows ? n - s : rows;
        float *q = buf;
        for (int l = 0; l < m->n - 1; l++) {
            h[l] = q;
            q += (size_t)m->out[l] * (size_t)b;
        }
        redq__mlp_forward(m, p->params, obs + (size_t)s * (size_t)p->S, p->S, b, h,
                          head + (size_t)s * 2 * (size_t)p->A);
    }
    free(buf);
    return RQD_OK;
}

int redq_policy_eval(const redq_policy *p, const float *obs, int n, float *out, rqd_err *err)
{
    const int A = p->A;
    float *head = malloc(sizeof(float) * 2 * (size_t)A * (size_t)n);

    if (head == NULL || redq__policy_head(p, obs, n, head) < 0) {
        free(head);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory computing actions");
    }
    for (int b = 0; b < n; b++) {
        float *o = out + (size_t)b * (size_t)A;
        for (int j = 0; j < A; j++)
            o[j] = tanhf(head[(size_t)b * 2 * (size_t)A + (size_t)j]);
        redq__scale_to_env(o, o, p->low, p->high, A, p->scaling, p->clip);
    }
    free(head);
    return redq__actions_check(out, n, A, err);
}

int redq__actions_check(const float *out, int n, int A, rqd_err *err)
{
    if (redq__all_below(out, (size_t)n * (size_t)A, INFINITY))
        return RQD_OK;
    return rqd_err_set(err, RQD_EUNAVAIL, "obs", "no finite action for these observations: "
                       "the computation overflows (observations or action bounds too large "
                       "for this agent)");
}

/* ------------------------------------------------------------------ safetensors */

static int add_tensor(cJSON *hdr, const char *name, int rows, int cols, size_t *off)
{
    cJSON *t = cJSON_AddObjectToObject(hdr, name);
    size_t bytes = sizeof(float) * (size_t)rows * (size_t)(cols ? cols : 1);
    double shape[2] = {rows, cols};
    double offs[2] = {(double)*off, (double)(*off + bytes)};

    if (t == NULL || !cJSON_AddStringToObject(t, "dtype", "F32") ||
        !cJSON_AddItemToObject(t, "shape", cJSON_CreateDoubleArray(shape, cols ? 2 : 1)) ||
        !cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateDoubleArray(offs, 2)))
        return -1;
    *off += bytes;
    return 0;
}

static char *floats_json(const float *v, int n)
{
    double d[RQD_MAX_ACT_DIM];
    for (int i = 0; i < n; i++)
        d[i] = v[i];
    cJSON *arr = cJSON_CreateDoubleArray(d, n);
    char *s = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return s;
}

/* Appends W (stored [in][out]) columns c0..c0+cols-1 as [cols][in], then the bias. */
static int put_linear_t(rqd_buf *out, const float *w, const float *b, int in, int out_w, int c0,
                        int cols)
{
    float *t = malloc(sizeof(float) * (size_t)in * (size_t)cols);
    int rc;
    if (t == NULL)
        return RQD_ENOMEM;
    for (int o = 0; o < cols; o++)
        for (int i = 0; i < in; i++)
            t[(size_t)o * (size_t)in + (size_t)i] = w[(size_t)i * (size_t)out_w + (size_t)(c0 + o)];
    rc = redq__put_f32s(out, t, (size_t)in * (size_t)cols);
    free(t);
    return rc ? rc : redq__put_f32s(out, b + c0, (size_t)cols);
}

int redq_policy_safetensors(const redq_policy *p, rqd_buf *out, rqd_err *err)
{
    const redq__mlp *m = &p->shape;
    const int A = p->A, last = m->n - 1;
    cJSON *hdr = cJSON_CreateObject(), *meta;
    char name[64], num[32], *text = NULL, *lo = NULL, *hi = NULL;
    size_t off = 0;
    int ok = hdr != NULL, rc = RQD_OK;

    for (int l = 0; ok && l < last; l++) {
        snprintf(name, sizeof name, "hidden.%d.weight", l);
        ok = add_tensor(hdr, name, m->out[l], m->in[l], &off) == 0;
        snprintf(name, sizeof name, "hidden.%d.bias", l);
        ok = ok && add_tensor(hdr, name, m->out[l], 0, &off) == 0;
    }
    ok = ok && add_tensor(hdr, "mu.weight", A, m->in[last], &off) == 0;
    ok = ok && add_tensor(hdr, "mu.bias", A, 0, &off) == 0;
    ok = ok && add_tensor(hdr, "log_std.weight", A, m->in[last], &off) == 0;
    ok = ok && add_tensor(hdr, "log_std.bias", A, 0, &off) == 0;
    lo = floats_json(p->low, A);
    hi = floats_json(p->high, A);
    ok = ok && lo && hi && (meta = cJSON_AddObjectToObject(hdr, "__metadata__")) != NULL;
    snprintf(num, sizeof num, "%d", p->S);
    ok = ok && cJSON_AddStringToObject(meta, "obs_dim", num);
    snprintf(num, sizeof num, "%d", A);
    ok = ok && cJSON_AddStringToObject(meta, "act_dim", num);
    ok = ok && cJSON_AddStringToObject(meta, "action_low", lo);
    ok = ok && cJSON_AddStringToObject(meta, "action_high", hi);
    snprintf(num, sizeof num, "%lld", p->version);
    ok = ok && cJSON_AddStringToObject(meta, "policy_version", num);
    ok = ok && cJSON_AddStringToObject(meta, "activation", "relu");
    /* How an action leaves the network: a user recomputing it from the file needs both. */
    ok = ok && cJSON_AddStringToObject(meta, "action_scaling", p->scaling ? "true" : "false");
    ok = ok && cJSON_AddStringToObject(meta, "action_bound_method", p->clip ? "clip" : "null");
    ok = ok && (text = cJSON_PrintUnformatted(hdr)) != NULL;
    if (!ok) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory writing the policy");
        goto out;
    }
    /* The header is padded with spaces so that the data starts 8-byte aligned. */
    size_t hl = strlen(text), padded = (hl + 7) & ~(size_t)7;
    long long hl64 = (long long)padded;
    rc = redq__put_i64(out, hl64);
    rc = rc ? rc : rqd_buf_append(out, text, hl);
    for (size_t i = hl; rc == RQD_OK && i < padded; i++)
        rc = rqd_buf_append(out, " ", 1);
    for (int l = 0; rc == RQD_OK && l < last; l++)
        rc = put_linear_t(out, p->params + m->w[l], p->params + m->b[l], m->in[l], m->out[l], 0,
                          m->out[l]);
    if (rc == RQD_OK)
        rc = put_linear_t(out, p->params + m->w[last], p->params + m->b[last], m->in[last], 2 * A,
                          0, A);
    if (rc == RQD_OK)
        rc = put_linear_t(out, p->params + m->w[last], p->params + m->b[last], m->in[last], 2 * A,
                          A, A);
    if (rc < 0)
        rc = rqd_err_set(err, rc, "", "policy file does not fit in memory");
out:
    free(text);
    free(lo);
    free(hi);
    cJSON_Delete(hdr);
    return rc;
}
