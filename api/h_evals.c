/* api/h_evals.c: POST and GET /v1/agents/{name}/evaluations (API.md "Evaluations"). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../storage/store.h"
#include "../common/rqd_json.h"
#include "internal.h"
#include "json_in.h"

#define EVAL_MAX_RETURNS 1000 /* API.md: 1 to 1000 returns per evaluation */

static cJSON *eval_json(const store_eval_row *e)
{
    cJSON *o = cJSON_CreateObject();
    rqd_json_add_int(o, "row", e->row);
    rqd_json_add_int(o, "env_steps", e->env_steps);
    rqd_json_add_int(o, "updates", e->updates);
    rqd_json_add_int(o, "policy_version", e->policy_version);
    cJSON_AddStringToObject(o, "time", e->time);
    rqd_json_add_int(o, "n", e->n);
    api_json_num_or_null(o, "mean", e->mean);
    api_json_num_or_null(o, "std", e->std);
    api_json_num_or_null(o, "min", e->min);
    api_json_num_or_null(o, "max", e->max);
    api_json_num_or_null(o, "mean_length", e->mean_length);
    return o;
}

static cJSON *eval_json_any(const void *e) { return eval_json(e); }

static void eval_csv(rqd_buf *b, const void *p)
{
    const store_eval_row *e = p;
    char s[160];
    int len = snprintf(s, sizeof s, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%s,%d,",
                       e->row, e->env_steps, e->updates, e->policy_version, e->time, e->n);
    rqd_buf_append(b, s, (size_t)len);
    api_csv_num(b, e->mean, 0);
    api_csv_num(b, e->std, 0);
    api_csv_num(b, e->min, 0);
    api_csv_num(b, e->max, 0);
    api_csv_num(b, e->mean_length, 1);
}

/* The array at key: 1 ... EVAL_MAX_RETURNS elements (n of them when n > 0). */
static int array_of(const cJSON *body, const char *key, int n, const cJSON **out, rqd_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
    int got = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    *out = v;
    if (got < 1 || got > EVAL_MAX_RETURNS)
        return rqd_err_set(err, RQD_EINVAL, key, "%s must be an array of 1 to %d %s", key,
                           EVAL_MAX_RETURNS, n ? "integers" : "numbers");
    if (n > 0 && got != n)
        return rqd_err_set(err, RQD_EINVAL, key, "%s has %d values; returns has %d", key, got, n);
    return RQD_OK;
}

int h_eval_post(api_req *r)
{
    static const char *const keys[] = {"returns", "lengths", NULL};
    rqd_err err = {0};
    double returns[EVAL_MAX_RETURNS];
    int64_t lengths[EVAL_MAX_RETURNS];
    const cJSON *jr, *jl;
    store_eval_row row;
    int n = 0, rc = RQD_OK, have_len;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    cJSON *body = api_body_json(r, &err);
    if (body == NULL || (rc = api_json_keys(body, "", keys, &err)) < 0 ||
        (rc = array_of(body, "returns", 0, &jr, &err)) < 0)
        goto out;
    n = cJSON_GetArraySize(jr);
    have_len = cJSON_GetObjectItemCaseSensitive(body, "lengths") != NULL;
    if (have_len && (rc = array_of(body, "lengths", n, &jl, &err)) < 0)
        goto out;
    int i = 0;
    for (const cJSON *c = jr->child; c && rc == RQD_OK; c = c->next, i++) {
        char f[32];
        float v;
        snprintf(f, sizeof f, "returns[%d]", i);
        /* Finite in float32, as every float of a request; kept as sent (a double). */
        if ((rc = api_json_float(c, f, &v, &err)) == RQD_OK)
            returns[i] = c->valuedouble;
    }
    i = 0;
    for (const cJSON *c = have_len ? jl->child : NULL; c && rc == RQD_OK; c = c->next, i++) {
        char f[32];
        long long v;
        snprintf(f, sizeof f, "lengths[%d]", i);
        if ((rc = api_json_int(c, f, 1, RQD_MAX_COUNTER, &v, &err)) == RQD_OK)
            lengths[i] = v;
    }
    if (rc == RQD_OK)
        rc = rqd_agent_evaluate(a, returns, have_len ? lengths : NULL, n, &row, &err);
out:
    cJSON_Delete(body);
    rqd_agent_put(a);
    if (rc < 0 || err.code)
        return api_problem(r, &err);
    return api_reply_json_take(r, 201, eval_json(&row));
}

int h_eval_list(api_req *r)
{
    rqd_err err = {0};
    store_eval_row *rows = NULL;
    long long since, limit;
    int n = 0, csv;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    if (api_page(r, &since, &limit, &csv, &err) == RQD_OK)
        rqd_agent_evaluations(a, since, (int)limit, &rows, &n, &err);
    rqd_agent_put(a);
    if (err.code)
        return api_problem(r, &err);
    return api_reply_rows(r, csv, "row,env_steps,updates,policy_version,time,n,mean,std,min,"
                          "max,mean_length\n", rows, n, sizeof *rows, eval_json_any, eval_csv);
}
