/* api/h_agents.c: POST/GET/PATCH/DELETE /v1/agents... */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json_in.h"

static const char *const training_names[] = {"async", "sync", "manual", "paused"};

/* Routes an agent that is not ok still answers (API.md): reads of what is stored, DELETE,
 * and restore, which brings it back. The rest need its learner. */
static int any_status(const api_req *r)
{
    return strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0 ||
           strcmp(r->method, "DELETE") == 0 || r->route->handler == h_restore;
}

rqd_agent *api_agent(api_req *r)
{
    char d[200];
    rqd_err err = {0};
    if (!api_valid_name(r->name)) {
        api_problem_status(r, 400, "invalid_argument",
                           "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
        return NULL;
    }
    rqd_agent *a = rqd_agent_find(r->srv->reg, r->name);
    if (a == NULL) {
        snprintf(d, sizeof d, "no agent named '%s'", r->name);
        api_problem_status(r, 404, "not_found", d);
    } else if (!any_status(r) && rqd_agent_usable(a, &err) < 0) {
        rqd_agent_put(a);
        api_problem(r, &err);
        a = NULL;
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

static const char *const status_names[] = {"ok", "loading", "unavailable"};

cJSON *api_agent_json(rqd_agent *a)
{
    rqd_agent_state st;
    cJSON *o = cJSON_CreateObject(), *s;

    rqd_agent_state_get(a, &st);
    cJSON_AddStringToObject(o, "name", a->name);
    cJSON_AddNumberToObject(o, "obs_dim", a->S);
    cJSON_AddNumberToObject(o, "act_dim", a->A);
    cJSON_AddItemToObject(o, "action_low", api_json_floats_out(a->low, a->A));
    cJSON_AddItemToObject(o, "action_high", api_json_floats_out(a->high, a->A));
    cJSON_AddStringToObject(o, "created_at", a->created_at);
    cJSON_AddItemToObject(o, "config", rqd_agent_config_json(a));
    s = cJSON_AddObjectToObject(o, "state");
    cJSON_AddStringToObject(s, "status", status_names[st.status % 3]);
    if (st.status == RQD_AGENT_OK)
        cJSON_AddNullToObject(s, "error");
    else
        cJSON_AddStringToObject(s, "error", st.error);
    cJSON_AddStringToObject(s, "training", training_names[st.training & 3]);
    cJSON_AddNumberToObject(s, "env_steps", (double)st.info.env_steps);
    cJSON_AddNumberToObject(s, "updates", (double)st.info.updates);
    cJSON_AddNumberToObject(s, "actor_updates", (double)st.info.actor_updates);
    cJSON_AddNumberToObject(s, "buffer_len", (double)st.info.buffer_len);
    cJSON_AddNumberToObject(s, "pending_updates", st.pending);
    api_json_num_or_null(s, "alpha", st.status == RQD_AGENT_OK ? st.info.alpha : NAN);
    cJSON_AddNumberToObject(s, "episodes", (double)st.episodes_done);
    cJSON_AddNumberToObject(s, "open_episodes", st.n_open);
    cJSON_AddNumberToObject(s, "policy_version", (double)st.info.policy_version);
    cJSON_AddNumberToObject(s, "skipped_updates", (double)st.skipped);
    cJSON_AddNumberToObject(s, "updates_per_s", st.ups);
    api_json_num_or_null(s, "last_return", st.last_return);
    api_json_num_or_null(s, "critic_loss", st.have_stats ? st.last.critic_loss : NAN);
    api_json_num_or_null(s, "actor_loss", st.have_stats ? st.last.actor_loss : NAN);
    api_json_num_or_null(s, "q_mean", st.have_stats ? st.last.q_mean : NAN);
    cJSON_AddNumberToObject(s, "memory_bytes", (double)st.info.bytes);
    if (st.have_ckpt) {
        cJSON *c = cJSON_AddObjectToObject(s, "last_checkpoint");
        if (st.last_ckpt.id >= 0)
            cJSON_AddNumberToObject(c, "id", (double)st.last_ckpt.id);
        else
            cJSON_AddNullToObject(c, "id"); /* an automatic one still being written */
        cJSON_AddNumberToObject(c, "updates", (double)st.last_ckpt.updates);
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
    if (jh == NULL || api_json_floats(jl, "action_low", A, "act_dim is", low, &err) < 0 ||
        api_json_floats(jh, "action_high", A, "action_low has", high, &err) < 0)
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
        cJSON_AddNumberToObject(e, "obs_dim", v[i]->S);
        cJSON_AddNumberToObject(e, "act_dim", v[i]->A);
        cJSON_AddNumberToObject(e, "env_steps", (double)st.info.env_steps);
        cJSON_AddNumberToObject(e, "updates", (double)st.info.updates);
        cJSON_AddStringToObject(e, "training", training_names[st.training & 3]);
        cJSON_AddStringToObject(e, "status", status_names[st.status % 3]);
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
    if (rc == RQD_OK && (rc = rqd_agent_config(a, &cfg, &err)) == RQD_OK)
        rc = redq_config_patch(body, "", &cfg, &err);
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
