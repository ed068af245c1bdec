/* api/h_data.c: POST .../act, POST .../transitions and the episodes endpoints. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../storage/store.h"
#include "../common/rqd_json.h"
#include "internal.h"
#include "json_in.h"


static int parse_mode(const cJSON *body, int *mode, rqd_err *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "mode");
    *mode = REDQ_EXPLORE;
    if (m == NULL)
        return RQD_OK;
    if (cJSON_IsString(m) && strcmp(m->valuestring, "explore") == 0)
        return RQD_OK;
    if (cJSON_IsString(m) && strcmp(m->valuestring, "eval") == 0) {
        *mode = REDQ_EVAL;
        return RQD_OK;
    }
    return rqd_err_set(err, RQD_EINVAL, "mode", "mode must be \"explore\" or \"eval\"");
}


/* The bounds of a body whose "obs" is one observation, or (batch_key set) also a batch
 * of them read one at a time: no array longer than the agent takes is ever built into a
 * tree (json_scan.h). what and per_act hold the messages. */
static int obs_bounds(const rqd_agent *a, const rqd_limits *lim, int batch, api_json_bound *b,
                      char *what, size_t what_len, char *per_act, size_t per_act_len)
{
    snprintf(what, what_len, "; agent '%s' expects %d", a->name, a->S);
    snprintf(per_act, per_act_len, ", over the limit of %d per act (--max-obs-per-act)",
             lim->obs_per_act);
    b[0] = (api_json_bound){"obs", API_JSON_OF_NUMBERS, a->S, 0, "values", what};
    if (!batch) {
        b[0].holding = API_JSON_ANY;
        return 1;
    }
    b[1] = (api_json_bound){"obs", API_JSON_OF_ARRAYS, lim->obs_per_act, 1, "observations",
                            per_act};
    b[2] = (api_json_bound){"obs[]", API_JSON_ANY, a->S, 0, "values", what};
    return 3;
}

int h_act(api_req *r)
{
    static const char *const keys[] = {"obs", "mode", NULL};
    rqd_err err = {0};
    float *obs = NULL, *act = NULL;
    int mode, n = 1, batch, rc = RQD_OK;
    long long version = 0;
    char what[100], bwhat[120], per_act[96];
    api_json_bound bounds[3];
    api_json_span rows;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    const rqd_limits *lim = rqd_registry_limits(r->srv->reg);
    int nb = obs_bounds(a, lim, 1, bounds, bwhat, sizeof bwhat, per_act, sizeof per_act);
    cJSON *body = api_body_json_bounded(r, bounds, nb, &rows, &err), *out = NULL;
    if (body == NULL || (rc = api_json_keys(body, "", keys, &err)) < 0 ||
        (rc = parse_mode(body, &mode, &err)) < 0)
        goto fail;
    const cJSON *o = api_json_need(body, "", "obs", &err);
    if (o == NULL) {
        rc = RQD_EINVAL;
        goto fail;
    }
    /* A batch (a list of observations) was left out of the tree by the scan, which also
     * held it to --max-obs-per-act: its observations are read one at a time. */
    batch = rows.p != NULL;
    n = batch ? (int)api_json_count(rows) : 1;
    obs = malloc(sizeof(float) * (size_t)n * (size_t)a->S);
    act = malloc(sizeof(float) * (size_t)n * (size_t)a->A);
    if (obs == NULL || act == NULL) {
        rc = rqd_err_set(&err, RQD_ENOMEM, "", "out of memory");
        goto fail;
    }
    snprintf(what, sizeof what, "agent '%s' expects", a->name);
    if (!batch) {
        rc = api_json_values(o, "obs", a->S, what, lim->max_abs_value, obs, &err);
    } else {
        api_json_iter it = api_json_iter_of(rows);
        api_json_span el;
        for (int i = 0; rc == RQD_OK && api_json_next(&it, &el); i++) {
            char f[32];
            cJSON *one = api_json_parse_span(el, &err);
            snprintf(f, sizeof f, "obs[%d]", i);
            rc = one ? api_json_values(one, f, a->S, what, lim->max_abs_value,
                                       obs + (size_t)i * (size_t)a->S, &err)
                     : RQD_ENOMEM;
            cJSON_Delete(one);
        }
    }
    if (rc < 0 || (rc = rqd_agent_act(a, obs, n, mode, act, &version, &err)) < 0)
        goto fail;
    out = cJSON_CreateObject();
    if (!batch) {
        cJSON_AddItemToObject(out, "action", api_json_floats_out(act, a->A));
    } else {
        cJSON *arr = cJSON_AddArrayToObject(out, "action");
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, api_json_floats_out(act + (size_t)i * (size_t)a->A, a->A));
    }
    rqd_json_add_int(out, "policy_version", version);
fail:
    free(obs);
    free(act);
    cJSON_Delete(body);
    rqd_agent_put(a);
    if (rc < 0 || err.code)
        return api_problem(r, &err);
    return api_reply_json_take(r, 200, out);
}

/* ------------------------------------------------------------------ transitions */

/* The answer of a sync-mode post or episode step once its updates are done (or its
 * deadline passed, or shutdown: the data is stored either way, and a restart owes their
 * updates again): 200 with what is owed now. Only a deletion while it waited is a
 * conflict (API.md). */
static int after_sync(api_req *r)
{
    if (r->wake_status == RQD_ECONFLICT) {
        int p = api_wake_problem(r);
        if (p >= 0)
            return p;
    }
    cJSON *o = cJSON_Parse(r->answer);
    if (o && cJSON_GetObjectItemCaseSensitive(o, "pending_updates")) /* posts; not steps */
        cJSON_ReplaceItemInObjectCaseSensitive(o, "pending_updates",
                                               rqd_json_number(rqd_agent_pending(r->agent)));
    return api_reply_json_take(r, 200, o);
}

/* Frees n parsed rows and the env_id copies they own. */
static void rows_free(store_transition *t, int n)
{
    for (int i = 0; t && i < n; i++)
        free((char *)t[i].env_id);
    free(t);
}

/* Parses row i into t (pointing into mem; env_id a malloc'd copy) or fails naming the
 * field. */
static int parse_row(const cJSON *row, int i, rqd_agent *a, double max_abs, float *mem,
                     store_transition *t, rqd_err *err)
{
    static const char *const keys[] = {"obs", "action", "reward", "next_obs", "terminated",
                                       "truncated", "env_id", NULL};
    char path[48], f[80], what[100];
    const cJSON *v;
    int rc, term, trunc;

    snprintf(path, sizeof path, "transitions[%d]", i);
    snprintf(what, sizeof what, "agent '%s' expects", a->name);
    if ((rc = api_json_keys(row, path, keys, err)) < 0)
        return rc;
    float *obs = mem, *act = mem + a->S, *next = act + a->A;
    /* Each required member: found (else named), then read as its type. */
#define MEMBER(key) (snprintf(f, sizeof f, "%s." key, path), v = api_json_need(row, path, key, err))
    if (!MEMBER("obs") || (rc = api_json_values(v, f, a->S, what, max_abs, obs, err)) < 0 ||
        !MEMBER("action") || (rc = api_json_floats(v, f, a->A, what, act, err)) < 0 ||
        !MEMBER("next_obs") || (rc = api_json_values(v, f, a->S, what, max_abs, next, err)) < 0 ||
        !MEMBER("reward") || (rc = api_json_value(v, f, max_abs, &t->reward, err)) < 0 ||
        !MEMBER("terminated") || (rc = api_json_bool(v, f, &term, err)) < 0 ||
        !MEMBER("truncated") || (rc = api_json_bool(v, f, &trunc, err)) < 0)
        return RQD_EINVAL;
#undef MEMBER
    t->env_id = NULL;
    if ((v = cJSON_GetObjectItemCaseSensitive(row, "env_id")) != NULL) {
        snprintf(f, sizeof f, "%s.env_id", path);
        if (!cJSON_IsString(v) || strlen(v->valuestring) > RQD_MAX_ENV_ID)
            return rqd_err_set(err, RQD_EINVAL, f, "%s must be a string of at most %d bytes", f,
                               RQD_MAX_ENV_ID);
        if ((t->env_id = strdup(v->valuestring)) == NULL)
            return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    }
    t->obs = obs;
    t->action = act;
    t->next_obs = next;
    t->terminated = term;
    t->truncated = trunc;
    return RQD_OK;
}

/* batch_id, when present and well formed; NULL otherwise (err set if malformed). */
static const char *batch_id_of(const cJSON *body, rqd_err *err)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(body, "batch_id");
    if (b == NULL)
        return NULL;
    if (!cJSON_IsString(b) || !api_valid_batch_id(b->valuestring)) {
        rqd_err_set(err, RQD_EINVAL, "batch_id", "batch_id must be 1 to 128 characters of "
                    "[A-Za-z0-9_.:-]");
        return NULL;
    }
    return b->valuestring;
}

/* Parses the rows of a post, one tree at a time (the scan has bounded each), into
 * t[0..n) and mem. */
static int parse_rows(api_json_span rows, int n, rqd_agent *a, double max_abs, float *mem,
                      store_transition *t, rqd_err *err)
{
    size_t per = (size_t)(2 * a->S + a->A);
    api_json_iter it = api_json_iter_of(rows);
    api_json_span el;
    int rc = RQD_OK;
    for (int i = 0; rc == RQD_OK && i < n && api_json_next(&it, &el); i++) {
        cJSON *row = api_json_parse_span(el, err);
        rc = row ? parse_row(row, i, a, max_abs, mem + per * (size_t)i, &t[i], err) : RQD_ENOMEM;
        cJSON_Delete(row);
    }
    return rc;
}

int h_transitions(api_req *r)
{
    static const char *const keys[] = {"transitions", "batch_id", NULL};
    /* The rows are read one at a time: a post's tree is its top-level object only. Their
     * number is checked after the batch_id lookup (API.md: before any other check). */
    static const api_json_bound bounds[] = {
        {"transitions", API_JSON_ANY, LLONG_MAX, 1, "transitions", ""}};
    rqd_err err = {0};
    store_transition *t = NULL;
    float *mem = NULL;
    char *answer = NULL;
    int rc = RQD_OK, n = 0;
    api_json_span rows_text;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    cJSON *body = api_body_json_bounded(r, bounds, 1, &rows_text, &err);
    if (body == NULL) {
        rc = RQD_EINVAL;
        goto fail;
    }
    const char *batch_id = batch_id_of(body, &err);
    if (err.code) {
        rc = err.code;
        goto fail;
    }
    if (batch_id && cJSON_IsObject(body)) { /* API.md: looked up before any other check */
        if ((rc = rqd_agent_batch_answer(a, batch_id, &answer, &err)) < 0)
            goto fail;
        if (answer)
            goto done;
    }
    if ((rc = api_json_keys(body, "", keys, &err)) < 0)
        goto fail;
    if (api_json_need(body, "", "transitions", &err) == NULL || rows_text.p == NULL) {
        rc = rqd_err_set(&err, RQD_EINVAL, "transitions", "transitions must be a non-empty array");
        goto fail;
    }
    const rqd_limits *lim = rqd_registry_limits(r->srv->reg);
    long long count = api_json_count(rows_text);
    if (count > lim->transitions_per_post) {
        rc = rqd_err_set(&err, RQD_EINVAL, "transitions", "%lld transitions in one post, over "
                         "the limit of %d (--max-transitions-per-post)", count,
                         lim->transitions_per_post);
        goto fail;
    }
    n = (int)count;
    t = calloc((size_t)n, sizeof *t);
    mem = malloc(sizeof(float) * (size_t)(2 * a->S + a->A) * (size_t)n);
    if (t == NULL || mem == NULL) {
        rc = rqd_err_set(&err, RQD_ENOMEM, "", "out of memory");
        goto fail;
    }
    if ((rc = parse_rows(rows_text, n, a, lim->max_abs_value, mem, t, &err)) < 0)
        goto fail;
    rqd_buf_free(&r->body); /* parsed: the text need not be held while the rows commit */
    /* A sync post waits after its commit: its place among the waiting is taken first,
     * since a post refused after the commit would still be stored. */
    if (rqd_agent_training(a) == REDQ_TRAIN_SYNC && !api_wait_slot(r)) {
        rows_free(t, n);
        free(mem);
        cJSON_Delete(body);
        rqd_agent_put(a);
        return api_wait_busy(r);
    }
    double target = -1;
    rc = rqd_ingest(a, t, n, batch_id, &answer, &target, &err);
    rows_free(t, n);
    free(mem);
    t = NULL;
    mem = NULL;
    cJSON_Delete(body); /* batch_id pointed into it */
    body = NULL;
    if (rc < 0)
        goto fail;
    if (target >= 0) { /* sync mode: answer once its updates are done */
        r->answer = answer;
        return api_wait(r, a, RQD_WAIT_SYNC, target, 0, after_sync);
    }
done:
    rows_free(t, n);
    free(mem);
    cJSON_Delete(body);
    rqd_agent_put(a);
    return api_reply_bytes_take(r, 200, "application/json", answer, strlen(answer));
fail:
    rows_free(t, n);
    free(mem);
    free(answer);
    cJSON_Delete(body);
    rqd_agent_put(a);
    return api_problem(r, &err);
}

/* ------------------------------------------------------------------ episodes */

int h_episode_start(api_req *r)
{
    static const char *const keys[] = {"obs", "mode", NULL};
    rqd_err err = {0};
    float obs[RQD_MAX_OBS_DIM], act[RQD_MAX_ACT_DIM];
    char id[40], what[100], bwhat[120], per_act[96];
    api_json_bound bounds[3];
    int mode, rc = RQD_OK;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    const rqd_limits *lim = rqd_registry_limits(r->srv->reg);
    int nb = obs_bounds(a, lim, 0, bounds, bwhat, sizeof bwhat, per_act, sizeof per_act);
    cJSON *body = api_body_json_bounded(r, bounds, nb, NULL, &err);
    const cJSON *o;
    snprintf(what, sizeof what, "agent '%s' expects", a->name);
    if (body == NULL || (rc = api_json_keys(body, "", keys, &err)) < 0 ||
        (rc = parse_mode(body, &mode, &err)) < 0 ||
        (o = api_json_need(body, "", "obs", &err)) == NULL ||
        (rc = api_json_values(o, "obs", a->S, what, lim->max_abs_value, obs, &err)) < 0 ||
        (rc = rqd_episode_start(a, obs, mode, id, act, &err)) < 0) {
        cJSON_Delete(body);
        rqd_agent_put(a);
        return api_problem(r, &err);
    }
    cJSON_Delete(body);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "episode_id", id);
    cJSON_AddItemToObject(out, "action", api_json_floats_out(act, a->A));
    rqd_agent_put(a);
    return api_reply_json_take(r, 201, out);
}

int h_episode_step(api_req *r)
{
    static const char *const keys[] = {"reward", "obs", "terminated", "truncated", NULL};
    rqd_err err = {0};
    float obs[RQD_MAX_OBS_DIM], act[RQD_MAX_ACT_DIM], reward;
    int term, trunc, done = 0, rc = RQD_OK;
    double ret = 0, target = -1;
    long long length = 0;
    char what[100], bwhat[120], per_act[96];
    api_json_bound bounds[3];
    const cJSON *v;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    if (rqd_agent_training(a) == REDQ_TRAIN_SYNC && !api_wait_slot(r)) { /* as a post */
        rqd_agent_put(a);
        return api_wait_busy(r);
    }
    const rqd_limits *lim = rqd_registry_limits(r->srv->reg);
    int nb = obs_bounds(a, lim, 0, bounds, bwhat, sizeof bwhat, per_act, sizeof per_act);
    cJSON *body = api_body_json_bounded(r, bounds, nb, NULL, &err);
    snprintf(what, sizeof what, "agent '%s' expects", a->name);
    if (body == NULL || (rc = api_json_keys(body, "", keys, &err)) < 0 ||
        (v = api_json_need(body, "", "reward", &err)) == NULL ||
        (rc = api_json_value(v, "reward", lim->max_abs_value, &reward, &err)) < 0 ||
        (v = api_json_need(body, "", "obs", &err)) == NULL ||
        (rc = api_json_values(v, "obs", a->S, what, lim->max_abs_value, obs, &err)) < 0 ||
        (v = api_json_need(body, "", "terminated", &err)) == NULL ||
        (rc = api_json_bool(v, "terminated", &term, &err)) < 0 ||
        (v = api_json_need(body, "", "truncated", &err)) == NULL ||
        (rc = api_json_bool(v, "truncated", &trunc, &err)) < 0 ||
        (rc = rqd_episode_step(a, r->id, reward, obs, term, trunc, &done, &ret, &length, act,
                               &target, &err)) < 0) {
        cJSON_Delete(body);
        rqd_agent_put(a);
        return api_problem(r, &err);
    }
    cJSON_Delete(body);
    cJSON *out = cJSON_CreateObject();
    if (done) {
        cJSON_AddBoolToObject(out, "done", 1);
        cJSON_AddNumberToObject(out, "return", ret);
        rqd_json_add_int(out, "length", length);
    } else {
        cJSON_AddItemToObject(out, "action", api_json_floats_out(act, a->A));
    }
    if (target >= 0) {
        r->answer = cJSON_PrintUnformatted(out);
        cJSON_Delete(out);
        if (r->answer == NULL) {
            rqd_agent_put(a);
            return api_problem_status(r, 503, "unavailable", "out of memory");
        }
        return api_wait(r, a, RQD_WAIT_SYNC, target, 0, after_sync);
    }
    rqd_agent_put(a);
    return api_reply_json_take(r, 200, out);
}

int h_episode_delete(api_req *r)
{
    rqd_err err = {0};
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    int rc = rqd_episode_abandon(a, r->id, &err);
    rqd_agent_put(a);
    return rc < 0 ? api_problem(r, &err) : api_reply_empty(r, 204);
}

int h_episode_list(api_req *r)
{
    rqd_err err = {0};
    store_episode_row *rows = NULL;
    int n = 0;
    long long limit = 100;
    const char *q = api_query(r, "limit");
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    if (q) {
        char *end;
        limit = strtoll(q, &end, 10);
        if (*q == '\0' || *end || limit < 1 || limit > 10000) {
            rqd_agent_put(a);
            return api_problem_status(r, 400, "invalid_argument",
                                      "limit must be an integer in [1, 10000]");
        }
    }
    int rc = rqd_agent_episodes(a, (int)limit, &rows, &n, &err);
    rqd_agent_put(a);
    if (rc < 0)
        return api_problem(r, &err);
    cJSON *out = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(out, "episodes");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", rows[i].id);
        cJSON_AddNumberToObject(e, "return", rows[i].ret);
        rqd_json_add_int(e, "length", rows[i].length);
        cJSON_AddStringToObject(e, "mode", rows[i].mode == STORE_EP_EVAL ? "eval" : "explore");
        cJSON_AddStringToObject(e, "started_at", rows[i].started_at);
        if (rows[i].ended_at[0])
            cJSON_AddStringToObject(e, "ended_at", rows[i].ended_at);
        else
            cJSON_AddNullToObject(e, "ended_at");
        if (rows[i].abandoned)
            cJSON_AddBoolToObject(e, "abandoned", 1);
        cJSON_AddStringToObject(e, "source", rows[i].source == STORE_SRC_TRANSITIONS
                                                 ? "transitions" : "episodes");
        if (rows[i].source == STORE_SRC_TRANSITIONS && rows[i].env_id[0]) /* else no env_id */
            cJSON_AddStringToObject(e, "env_id", rows[i].env_id);
        else
            cJSON_AddNullToObject(e, "env_id");
        cJSON_AddItemToArray(arr, e);
    }
    store_episode_rows_free(rows, n);
    return api_reply_json_take(r, 200, out);
}
