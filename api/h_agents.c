/* api/h_agents.c: POST/GET/PATCH/DELETE /v1/agents... */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/rqd_json.h"
#include "internal.h"
#include "json_in.h"

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
    rqd_json_add_int(o, "obs_dim", a->S);
    rqd_json_add_int(o, "act_dim", a->A);
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
    cJSON_AddStringToObject(s, "training", redq_training_name(st.training));
    rqd_json_add_int(s, "env_steps", st.info.env_steps);
    rqd_json_add_int(s, "updates", st.info.updates);
    rqd_json_add_int(s, "actor_updates", st.info.actor_updates);
    rqd_json_add_int(s, "buffer_len", st.info.buffer_len);
    rqd_json_add_number(s, "pending_updates", st.pending);
    api_json_num_or_null(s, "alpha", st.status == RQD_AGENT_OK ? st.info.alpha : NAN);
    rqd_json_add_int(s, "episodes", st.episodes_done);
    rqd_json_add_int(s, "open_episodes", st.n_open);
    rqd_json_add_int(s, "policy_version", st.info.policy_version);
    rqd_json_add_int(s, "skipped_updates", st.skipped);
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
    if (st.moving) { /* docs/api.md "Moving an agent" */
        cJSON *m = cJSON_AddObjectToObject(s, "moving");
        if (st.moving_to[0])
            cJSON_AddStringToObject(m, "to", st.moving_to);
        else
            cJSON_AddNullToObject(m, "to"); /* marked before a restart: the node is not kept */
        char since[32];
        time_t t = (time_t)st.moving_since;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
        cJSON_AddStringToObject(m, "since", since);
    } else {
        cJSON_AddNullToObject(s, "moving");
    }
    return o;
}

/* What POST and PUT /v1/agents carry. */
typedef struct {
    const char *name;       /* in the body (POST), or the path's (PUT) */
    long long S;
    int A;
    float low[RQD_MAX_ACT_DIM], high[RQD_MAX_ACT_DIM];
    redq_config cfg;
} agent_spec;

/* Parses an agent body; path_name (PUT) may stand for a missing "name", and a given one
 * must equal it. Action bounds are at most max_abs in magnitude (--max-abs-value). */
static int parse_spec(const cJSON *body, const char *path_name, double max_abs, agent_spec *sp,
                      rqd_err *err)
{
    static const char *const keys[] = {"name", "obs_dim", "action_low", "action_high", "config", NULL};
    const cJSON *v;
    int rc;

    if ((rc = api_json_keys(body, "", keys, err)) < 0)
        return rc;
    v = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (v == NULL && path_name == NULL)
        return rqd_err_set(err, RQD_EINVAL, "name", "name is required");
    if (v && (!cJSON_IsString(v) || !api_valid_name(v->valuestring)))
        return rqd_err_set(err, RQD_EINVAL, "name",
                           "name must be a string matching ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
    if (v && path_name && strcmp(v->valuestring, path_name) != 0)
        return rqd_err_set(err, RQD_EINVAL, "name", "name '%s' is not the path's '%s'",
                           v->valuestring, path_name);
    sp->name = v ? v->valuestring : path_name;
    if ((v = api_json_need(body, "", "obs_dim", err)) == NULL ||
        api_json_int(v, "obs_dim", 1, RQD_MAX_OBS_DIM, &sp->S, err) < 0)
        return RQD_EINVAL;
    const cJSON *jl = api_json_need(body, "", "action_low", err);
    if (jl == NULL)
        return RQD_EINVAL;
    int A = sp->A = cJSON_GetArraySize(jl);
    if (!cJSON_IsArray(jl) || A < 1 || A > RQD_MAX_ACT_DIM)
        return rqd_err_set(err, RQD_EINVAL, "action_low", "action_low must be an array of 1 to "
                           "%d numbers (the limit on act_dim)", RQD_MAX_ACT_DIM);
    const cJSON *jh = api_json_need(body, "", "action_high", err);
    if (jh == NULL ||
        api_json_values(jl, "action_low", A, "act_dim is", max_abs, sp->low, err) < 0 ||
        api_json_values(jh, "action_high", A, "action_low has", max_abs, sp->high, err) < 0)
        return RQD_EINVAL;
    for (int j = 0; j < A; j++)
        if (!(sp->low[j] < sp->high[j])) {
            char f[32];
            snprintf(f, sizeof f, "action_high[%d]", j);
            return rqd_err_set(err, RQD_EINVAL, f, "action_low[%d] (%g) must be below "
                               "action_high[%d] (%g)", j, sp->low[j], j, sp->high[j]);
        }
    return redq_config_from_json(cJSON_GetObjectItemCaseSensitive(body, "config"), A, &sp->cfg,
                                 err);
}

int h_agents_create(api_req *r)
{
    rqd_err err = {0};
    agent_spec sp;
    rqd_agent *a = NULL;
    cJSON *body = api_body_json(r, &err);
    double max_abs = rqd_registry_limits(r->srv->reg)->max_abs_value;
    int rc = body ? parse_spec(body, NULL, max_abs, &sp, &err) : RQD_EINVAL;
    if (rc == RQD_OK)
        rc = rqd_agent_create(r->srv->reg, sp.name, (int)sp.S, sp.A, sp.low, sp.high, &sp.cfg,
                              &a, &err);
    cJSON_Delete(body);
    if (rc < 0)
        return api_problem(r, &err);
    return api_reply_agent(r, a, 201, RQD_OK, NULL);
}

/* The first way the agent differs from sp, into why; 0 when it does not. */
static int first_difference(rqd_agent *a, const agent_spec *sp, char *why, size_t cap)
{
    if (sp->S != a->S) {
        snprintf(why, cap, "obs_dim is %d here, %lld in the request", a->S, sp->S);
        return 1;
    }
    if (sp->A != a->A) {
        snprintf(why, cap, "act_dim is %d here, %d in the request", a->A, sp->A);
        return 1;
    }
    for (int j = 0; j < a->A; j++)
        if (a->low[j] != sp->low[j] || a->high[j] != sp->high[j]) {
            int low = a->low[j] != sp->low[j];
            snprintf(why, cap, "%s[%d] is %g here, %g in the request",
                     low ? "action_low" : "action_high", j, low ? a->low[j] : a->high[j],
                     low ? sp->low[j] : sp->high[j]);
            return 1;
        }
    cJSON *have = rqd_agent_config_json(a), *want = redq_config_to_json(&sp->cfg);
    int differs = 0;
    for (const cJSON *w = want ? want->child : NULL; w && !differs; w = w->next) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, w->string);
        if (h == NULL || !cJSON_Compare(h, w, 1)) {
            char *hs = h ? cJSON_PrintUnformatted(h) : NULL, *ws = cJSON_PrintUnformatted(w);
            snprintf(why, cap, "config.%s is %.40s here, %.40s in the request", w->string,
                     hs ? hs : "absent", ws ? ws : "?");
            free(hs);
            free(ws);
            differs = 1;
        }
    }
    cJSON_Delete(have);
    cJSON_Delete(want);
    return differs;
}

int h_agents_put(api_req *r)
{
    rqd_err err = {0};
    agent_spec sp;
    rqd_agent *a = NULL;
    char why[200];

    if (!api_valid_name(r->name))
        return api_problem_status(r, 400, "invalid_argument",
                                  "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
    cJSON *body = api_body_json(r, &err);
    double max_abs = rqd_registry_limits(r->srv->reg)->max_abs_value;
    int rc = body ? parse_spec(body, r->name, max_abs, &sp, &err) : RQD_EINVAL;
    cJSON_Delete(body); /* sp.name is the path's from here on */
    sp.name = r->name;
    if (rc < 0)
        return api_problem(r, &err);
    /* Created now, or there already (found first, or made by a request that won the race
     * to create it): then the same agent is 200, another one 409 naming the difference. */
    if ((a = rqd_agent_find(r->srv->reg, r->name)) == NULL) {
        rc = rqd_agent_create(r->srv->reg, r->name, (int)sp.S, sp.A, sp.low, sp.high, &sp.cfg,
                              &a, &err);
        if (rc == RQD_OK)
            return api_reply_agent(r, a, 201, RQD_OK, NULL);
        if (rc != RQD_EEXIST || (a = rqd_agent_find(r->srv->reg, r->name)) == NULL)
            return api_problem(r, &err);
    }
    if ((rc = rqd_agent_usable(a, &err)) < 0)
        return api_reply_agent(r, a, 0, rc, &err);
    if (first_difference(a, &sp, why, sizeof why)) {
        rqd_agent_put(a);
        char d[400];
        snprintf(d, sizeof d, "agent '%s' already exists and differs: %s", r->name, why);
        return api_problem_status(r, 409, "already_exists", d);
    }
    return api_reply_agent(r, a, 200, RQD_OK, NULL);
}

int h_agents_list(api_req *r)
{
    rqd_agent **v;
    int n, cluster;
    /* A node of a cluster speaks for it (api/cluster.c); scope=node is its own agents. */
    if (api_scope(r, api_cluster_others(r->srv) > 0, &cluster) < 0)
        return MHD_YES;
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
        cJSON_AddStringToObject(e, "training", redq_training_name(st.training));
        cJSON_AddStringToObject(e, "status", status_names[st.status % 3]);
        cJSON_AddStringToObject(e, "node", r->srv->o.node);
        if (st.moving)
            cJSON_AddStringToObject(e, "moving_to", st.moving_to);
        else
            cJSON_AddNullToObject(e, "moving_to");
        cJSON_AddItemToArray(arr, e);
    }
    rqd_agent_list_free(v, n);
    if (cluster)
        return api_cluster_ask(r, API_CLUSTER_AGENTS, o);
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
