/* api/h_agents.c: POST/GET/PATCH/DELETE /v1/agents... */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rqd_json.h"
#include "internal.h"
#include "json_in.h"

static const char *const training_names[] = {"async", "sync", "manual", "paused"};

rqd_agent *api_agent(api_req *r)
{
    char d[200];
    if (!api_valid_name(r->name)) {
        api_problem_status(r, 400, "invalid_argument",
                           "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
        return NULL;
    }
    rqd_agent *a = rqd_agent_find(r->srv->reg, r->name);
    if (a == NULL) {
        snprintf(d, sizeof d, "no agent named '%s'", r->name);
        api_problem_status(r, 404, "not_found", d);
    }
    return a;
}

cJSON *api_json_floats_out(const float *v, int n)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
    return arr;
}

void api_json_num_or_null(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

int api_reply_agent(api_req *r, rqd_agent *a, unsigned status, int rc, const rqd_err *err)
{
    if (rc < 0) {
        rqd_agent_put(a);
        return api_problem(r, err);
    }
    cJSON *o = api_agent_json(a);
    rqd_agent_put(a);
    return api_reply_json_take(r, status, o);
}

cJSON *api_agent_json(rqd_agent *a)
{
    rqd_agent_state st;
    redq_config cfg;
    cJSON *o = cJSON_CreateObject(), *s;

    rqd_agent_state_get(a, &st);
    rqd_agent_config(a, &cfg);
    const float *low, *high;
    rqd_agent_lock(a);
    low = redq_agent_low(a->core);
    high = redq_agent_high(a->core);
    cJSON *jl = api_json_floats_out(low, a->A), *jh = api_json_floats_out(high, a->A);
    pthread_mutex_unlock(&a->mu);
    cJSON_AddStringToObject(o, "name", a->name);
    rqd_json_add_int(o, "obs_dim", a->S);
    rqd_json_add_int(o, "act_dim", a->A);
    cJSON_AddItemToObject(o, "action_low", jl);
    cJSON_AddItemToObject(o, "action_high", jh);
    cJSON_AddStringToObject(o, "created_at", a->created_at);
    cJSON_AddItemToObject(o, "config", redq_config_to_json(&cfg));
    s = cJSON_AddObjectToObject(o, "state");
    cJSON_AddStringToObject(s, "training", training_names[st.training & 3]);
    rqd_json_add_int(s, "env_steps", st.info.env_steps);
    rqd_json_add_int(s, "updates", st.info.updates);
    rqd_json_add_int(s, "actor_updates", st.info.actor_updates);
    rqd_json_add_int(s, "buffer_len", st.info.buffer_len);
    rqd_json_add_number(s, "pending_updates", st.pending);
    cJSON_AddNumberToObject(s, "alpha", st.info.alpha);
    rqd_json_add_int(s, "episodes", st.episodes_done);
    rqd_json_add_int(s, "open_episodes", st.n_open);
    rqd_json_add_int(s, "policy_version", st.info.policy_version);
    cJSON_AddNumberToObject(s, "updates_per_s", st.ups);
    api_json_num_or_null(s, "last_return", st.last_return);
    api_json_num_or_null(s, "critic_loss", st.have_stats ? st.last.critic_loss : NAN);
    api_json_num_or_null(s, "actor_loss", st.have_stats ? st.last.actor_loss : NAN);
    api_json_num_or_null(s, "q_mean", st.have_stats ? st.last.q_mean : NAN);
    rqd_json_add_int(s, "memory_bytes", st.info.bytes);
    if (st.have_ckpt) {
        cJSON *c = cJSON_AddObjectToObject(s, "last_checkpoint");
        if (st.last_ckpt.id >= 0)
            rqd_json_add_int(c, "id", st.last_ckpt.id);
        else
            cJSON_AddNullToObject(c, "id"); /* an automatic one still being written */
        rqd_json_add_int(c, "updates", st.last_ckpt.updates);
        cJSON_AddStringToObject(c, "created_at", st.last_ckpt.created_at);
    } else {
        cJSON_AddNullToObject(s, "last_checkpoint");
    }
    return o;
}

int h_agents_create(api_req *r)
{
    static const char *const keys[] = {"name", "obs_dim", "action_low", "action_high", "config", NULL};
    rqd_err err = {0};
    redq_config cfg;
    float low[RQD_MAX_ACT_DIM], high[RQD_MAX_ACT_DIM];
    long long S;
    int rc = RQD_OK;
    rqd_agent *a = NULL;
    const cJSON *v;
    cJSON *body = api_body_json(r, &err);

    if (body == NULL || (rc = api_json_keys(body, "", keys, &err)) < 0)
        goto fail;
    if ((v = api_json_need(body, "", "name", &err)) == NULL)
        goto fail;
    if (!cJSON_IsString(v) || !api_valid_name(v->valuestring)) {
        rqd_err_set(&err, RQD_EINVAL, "name",
                    "name must be a string matching ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
        goto fail;
    }
    const char *name = v->valuestring;
    if ((v = api_json_need(body, "", "obs_dim", &err)) == NULL ||
        api_json_int(v, "obs_dim", 1, RQD_MAX_OBS_DIM, &S, &err) < 0)
        goto fail;
    const cJSON *jl = api_json_need(body, "", "action_low", &err);
    if (jl == NULL)
        goto fail;
    int A = cJSON_GetArraySize(jl);
    if (!cJSON_IsArray(jl) || A < 1 || A > RQD_MAX_ACT_DIM) {
        rqd_err_set(&err, RQD_EINVAL, "action_low", "action_low must be an array of 1 to %d "
                    "numbers (the limit on act_dim)", RQD_MAX_ACT_DIM);
        goto fail;
    }
    const cJSON *jh = api_json_need(body, "", "action_high", &err);
    double max_abs = rqd_registry_limits(r->srv->reg)->max_abs_value;
    if (jh == NULL || api_json_values(jl, "action_low", A, "act_dim is", max_abs, low, &err) < 0 ||
        api_json_values(jh, "action_high", A, "action_low has", max_abs, high, &err) < 0)
        goto fail;
    for (int j = 0; j < A; j++)
        if (!(low[j] < high[j])) {
            char f[32];
            snprintf(f, sizeof f, "action_high[%d]", j);
            rqd_err_set(&err, RQD_EINVAL, f, "action_low[%d] (%g) must be below action_high[%d] (%g)",
                        j, low[j], j, high[j]);
            goto fail;
        }
    if (redq_config_from_json(cJSON_GetObjectItemCaseSensitive(body, "config"), A, &cfg, &err) < 0)
        goto fail;
    if (rqd_agent_create(r->srv->reg, name, (int)S, A, low, high, &cfg, &a, &err) < 0)
        goto fail;
    cJSON_Delete(body);
    return api_reply_agent(r, a, 201, RQD_OK, NULL);
fail:
    (void)rc;
    cJSON_Delete(body);
    return api_problem(r, &err);
}

int h_agents_list(api_req *r)
{
    rqd_agent **v;
    int n;
    if (rqd_agent_list(r->srv->reg, &v, &n) < 0)
        return api_problem_status(r, 503, "unavailable", "out of memory");
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "agents");
    for (int i = 0; i < n; i++) {
        rqd_agent_state st;
        rqd_agent_state_get(v[i], &st);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", v[i]->name);
        rqd_json_add_int(e, "obs_dim", v[i]->S);
        rqd_json_add_int(e, "act_dim", v[i]->A);
        rqd_json_add_int(e, "env_steps", st.info.env_steps);
        rqd_json_add_int(e, "updates", st.info.updates);
        cJSON_AddStringToObject(e, "training", training_names[st.training & 3]);
        cJSON_AddItemToArray(arr, e);
    }
    rqd_agent_list_free(v, n);
    return api_reply_json_take(r, 200, o);
}

int h_agents_get(api_req *r)
{
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    return api_reply_agent(r, a, 200, RQD_OK, NULL);
}

int h_agents_patch(api_req *r)
{
    rqd_err err = {0};
    redq_config cfg;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    cJSON *body = api_body_json(r, &err);
    int rc = body ? RQD_OK : RQD_EINVAL;
    if (rc == RQD_OK) {
        rqd_agent_config(a, &cfg);
        rc = redq_config_patch(body, "", &cfg, &err);
    }
    if (rc == RQD_OK)
        rc = rqd_agent_patch(a, &cfg, &err);
    cJSON_Delete(body);
    return api_reply_agent(r, a, 200, rc, &err);
}

int h_agents_delete(api_req *r)
{
    rqd_err err = {0};
    if (!api_valid_name(r->name))
        return api_problem_status(r, 400, "invalid_argument",
                                  "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
    if (rqd_agent_delete(r->srv->reg, r->name, &err) < 0)
        return api_problem(r, &err);
    return api_reply_empty(r, 204);
}
