/* api/h_train.c: train, stats, checkpoints, restore, import and the policy file. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../storage/store.h"
#include "../common/rqd_json.h"
#include "../daemon/movefile.h"
#include "internal.h"
#include "json_in.h"


/* A stats row as JSON (GET .../stats, and the train answer's "stats"). */
static cJSON *stats_row_json(const store_stats_row *row)
{
    cJSON *e = cJSON_CreateObject();
    if (row->row > 0)
        rqd_json_add_int(e, "row", row->row);
    else
        cJSON_AddNullToObject(e, "row");
    rqd_json_add_int(e, "update", row->update);
    rqd_json_add_int(e, "env_steps", row->env_steps);
    cJSON_AddNumberToObject(e, "time", row->time);
    api_json_num_or_null(e, "actor_loss", row->actor_loss);
    api_json_num_or_null(e, "critic_loss", row->critic_loss);
    api_json_num_or_null(e, "alpha", row->alpha);
    api_json_num_or_null(e, "alpha_loss", row->alpha_loss);
    api_json_num_or_null(e, "q_mean", row->q_mean);
    api_json_num_or_null(e, "q_std", row->q_std);
    api_json_num_or_null(e, "train_time", row->train_time);
    return e;
}

#define STATS_CSV_HEADER                                                                   \
    "row,update,env_steps,time,actor_loss,critic_loss,alpha,alpha_loss,q_mean,q_std,"      \
    "train_time\n"

static void stats_row_csv(rqd_buf *b, const void *p)
{
    const store_stats_row *row = p;
    char s[80];
    int len = snprintf(s, sizeof s, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%.3f,", row->row,
                       row->update, row->env_steps, row->time);
    rqd_buf_append(b, s, (size_t)len);
    api_csv_num(b, row->actor_loss, 0);
    api_csv_num(b, row->critic_loss, 0);
    api_csv_num(b, row->alpha, 0);
    api_csv_num(b, row->alpha_loss, 0);
    api_csv_num(b, row->q_mean, 0);
    api_csv_num(b, row->q_std, 0);
    api_csv_num(b, row->train_time, 1);
}

static cJSON *stats_row_json_any(const void *p) { return stats_row_json(p); }

static int after_train(api_req *r)
{
    rqd_err err = {0};
    int p = api_wake_problem(r);
    if (p >= 0)
        return p;
    if (r->wake_status == 1)
        return api_problem_status(r, 503, "unavailable", "the updates did not finish within "
                                  "--sync-timeout; they continue in the background");
    /* API.md: the call's row is in GET .../stats once this answer is out. On a full
     * disk it waits in memory for room (daemon/stats_flush.c) and the updates are done all the
     * same: the answer is still 200. */
    (void)rqd_agent_stats_sync(r->agent, &err);
    store_stats_row row = r->w.row;
    if (row.row <= 0) { /* no row: every update of the call was skipped as non-finite */
        row = (store_stats_row){0, r->w.updates, r->w.env_steps, rqd_wall(),
                                NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    }
    row.train_time = r->w.train_time; /* this call's updates (API.md) */
    cJSON *o = cJSON_CreateObject();
    rqd_json_add_int(o, "updates", r->w.updates);
    cJSON_AddItemToObject(o, "stats", stats_row_json(&row));
    return api_reply_json_take(r, 200, o);
}

/* A body that is exactly {key: integer in [lo, hi]} (train, restore). */
static int one_int_body(api_req *r, const char *key, long long lo, long long hi,
                        long long *out, rqd_err *err)
{
    const char *const keys[] = {key, NULL};
    const cJSON *v;
    cJSON *body = api_body_json(r, err);
    int rc = body == NULL || api_json_keys(body, "", keys, err) < 0 ||
                     (v = api_json_need(body, "", key, err)) == NULL ||
                     api_json_int(v, key, lo, hi, out, err) < 0
                 ? RQD_EINVAL
                 : RQD_OK;
    cJSON_Delete(body);
    return rc;
}

int h_train(api_req *r)
{
    rqd_err err = {0};
    long long k;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    if (one_int_body(r, "updates", 1, RQD_MAX_TRAIN_UPDATES, &k, &err) < 0) {
        rqd_agent_put(a);
        return api_problem(r, &err);
    }
    return api_wait(r, a, RQD_WAIT_TRAIN, 0, (int)k, after_train);
}

/* ------------------------------------------------------------------ stats */

void api_csv_num(rqd_buf *b, double v, int last)
{
    char s[40];
    int n = isfinite(v) ? snprintf(s, sizeof s, "%.9g", v) : 0;
    rqd_buf_append(b, s, (size_t)n);
    rqd_buf_append(b, last ? "\n" : ",", 1);
}

int api_reply_rows(api_req *r, int csv, const char *header, void *rows, int n, size_t size,
                   cJSON *(*to_json)(const void *row), void (*to_csv)(rqd_buf *b, const void *row))
{
    const char *p = rows;
    int ok = 1;
    rqd_buf b;
    rqd_buf_init(&b, 0);
    if (csv) {
        rqd_buf_append(&b, header, strlen(header));
        for (int i = 0; i < n; i++)
            to_csv(&b, p + (size_t)i * size);
    } else {
        /* Row by row into the text: 10^5 rows as one cJSON tree would be a million
         * nodes (about 100 MB) for an answer of a few MB. */
        rqd_buf_append(&b, "{\"rows\":[", 9);
        for (int i = 0; i < n && ok; i++) {
            cJSON *o = to_json(p + (size_t)i * size);
            char *t = o ? cJSON_PrintUnformatted(o) : NULL;
            ok = t && (i == 0 || rqd_buf_append(&b, ",", 1) == 0) &&
                 rqd_buf_append(&b, t, strlen(t)) == 0;
            free(t);
            cJSON_Delete(o);
        }
        rqd_buf_append(&b, "]}", 2);
    }
    free(rows);
    if (!ok || b.data == NULL) {
        rqd_buf_free(&b);
        return api_problem_status(r, 503, "unavailable", "out of memory rendering the answer");
    }
    return api_reply_bytes_take(r, 200, csv ? "text/csv" : "application/json", b.data, b.len);
}

int api_page(api_req *r, long long *since, long long *limit, int *csv, rqd_err *err)
{
    const char *q;
    char *end;
    *since = 0;
    *limit = 1000;
    *csv = 0;
    if ((q = api_query(r, "since")) &&
        (*since = strtoll(q, &end, 10), *q == '\0' || *end || *since < 0))
        return rqd_err_set(err, RQD_EINVAL, "since", "since must be an integer >= 0");
    if ((q = api_query(r, "limit")) &&
        (*limit = strtoll(q, &end, 10), *q == '\0' || *end || *limit < 1 || *limit > 100000))
        return rqd_err_set(err, RQD_EINVAL, "limit", "limit must be an integer in [1, 100000]");
    if ((q = api_query(r, "format")) && strcmp(q, "json") != 0) {
        if (strcmp(q, "csv") != 0)
            return rqd_err_set(err, RQD_EINVAL, "format", "format must be json or csv");
        *csv = 1;
    }
    return RQD_OK;
}

int h_stats(api_req *r)
{
    rqd_err err = {0};
    store_stats_row *rows = NULL;
    int n = 0, csv = 0;
    long long since = 0, limit = 1000;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    if (api_page(r, &since, &limit, &csv, &err) == RQD_OK)
        rqd_agent_stats(a, since, (int)limit, &rows, &n, &err);
    rqd_agent_put(a);
    if (err.code)
        return api_problem(r, &err);
    return api_reply_rows(r, csv, STATS_CSV_HEADER, rows, n, sizeof *rows, stats_row_json_any,
                          stats_row_csv);
}

/* ------------------------------------------------------------------ checkpoints */

static cJSON *ckpt_json(const store_ckpt_info *c)
{
    cJSON *o = cJSON_CreateObject();
    rqd_json_add_int(o, "id", c->id);
    rqd_json_add_int(o, "updates", c->updates);
    rqd_json_add_int(o, "env_steps", c->env_steps);
    cJSON_AddStringToObject(o, "created_at", c->created_at);
    rqd_json_add_int(o, "bytes", c->bytes);
    cJSON_AddBoolToObject(o, "automatic", c->automatic);
    rqd_json_add_int(o, "policy_version", c->policy_version);
    return o;
}

/* {id} as a checkpoint id, or -1 after answering 400. */
static int64_t ckpt_id(api_req *r)
{
    char *end;
    long long id = strtoll(r->id, &end, 10);
    if (r->id[0] == '\0' || *end || id < 0) {
        api_problem_status(r, 400, "invalid_argument", "the checkpoint id must be an integer >= 0");
        return -1;
    }
    return id;
}

int h_ckpt_create(api_req *r)
{
    rqd_err err = {0};
    store_ckpt_info info;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    if (r->body.len > 0) { /* a POST with no fields takes an empty body or {} */
        static const char *const none[] = {NULL};
        cJSON *b = api_body_json(r, &err);
        int bad = b == NULL || api_json_keys(b, "", none, &err) < 0;
        cJSON_Delete(b);
        if (bad) {
            rqd_agent_put(a);
            return api_problem(r, &err);
        }
    }
    int rc = rqd_ckpt_create(a, 0, &info, &err);
    rqd_agent_put(a);
    return rc < 0 ? api_problem(r, &err) : api_reply_json_take(r, 201, ckpt_json(&info));
}

int h_ckpt_list(api_req *r)
{
    rqd_err err = {0};
    store_ckpt_info *rows = NULL;
    int n = 0;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    int rc = rqd_agent_checkpoints(a, &rows, &n, &err);
    rqd_agent_put(a);
    if (rc < 0)
        return api_problem(r, &err);
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "checkpoints");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, ckpt_json(&rows[i]));
    free(rows);
    return api_reply_json_take(r, 200, o);
}

int h_ckpt_get(api_req *r)
{
    rqd_err err = {0};
    void *data = NULL;
    size_t len = 0;
    int with_buffer = 0;
    const char *q = api_query(r, "with_buffer");
    if (q && strcmp(q, "true") != 0 && strcmp(q, "false") != 0)
        return api_problem_status(r, 400, "invalid_argument", "with_buffer must be true or false");
    with_buffer = q && strcmp(q, "true") == 0;
    int64_t id = ckpt_id(r);
    if (id < 0)
        return MHD_YES;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    int rc = rqd_ckpt_download(a, id, with_buffer, &data, &len, &err);
    rqd_agent_put(a);
    if (rc < 0)
        return api_problem(r, &err);
    return api_reply_bytes_take(r, 200, "application/octet-stream", data, len);
}

int h_ckpt_delete(api_req *r)
{
    rqd_err err = {0};
    int64_t id = ckpt_id(r);
    if (id < 0)
        return MHD_YES;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    int rc = rqd_ckpt_delete(a, id, &err);
    rqd_agent_put(a);
    return rc < 0 ? api_problem(r, &err) : api_reply_empty(r, 204);
}

int h_restore(api_req *r)
{
    rqd_err err = {0};
    long long id;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    int rc = one_int_body(r, "checkpoint", 0, INT64_MAX / 2, &id, &err);
    if (rc == RQD_OK)
        rc = rqd_ckpt_restore(a, id, &err);
    return api_reply_agent(r, a, 200, rc, &err);
}

int h_import(api_req *r)
{
    rqd_err err = {0};
    rqd_agent *a = NULL;
    if (!api_valid_name(r->name))
        return api_problem_status(r, 400, "invalid_argument",
                                  "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
    const void *data = r->body.data ? (void *)r->body.data : "";
    /* A move file (docs/api.md "Moving an agent") or a checkpoint file. */
    int rc = rqd_move_is_file(data, r->body.len)
                 ? rqd_agent_move_import(r->srv->reg, r->name, data, r->body.len, &a, &err)
                 : rqd_ckpt_import(r->srv->reg, r->name, data, r->body.len, &a, &err);
    if (rc < 0)
        return api_problem(r, &err);
    return api_reply_agent(r, a, 201, RQD_OK, NULL);
}

/* ------------------------------------------------------------------ policy */

/* RFC 9110 If-None-Match: "*", or a list of entity tags, weak ones ("W/...") compared
 * weakly: any of them equal to etag matches. */
static int etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

int h_policy(api_req *r)
{
    rqd_err err = {0};
    rqd_buf b;
    char etag[40];
    const char *q = api_query(r, "format");
    if (q && strcmp(q, "safetensors") != 0)
        return api_problem_status(r, 400, "invalid_argument", "format must be safetensors");
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    redq_policy *p = rqd_agent_policy(a);
    if (p == NULL) { /* no learner: it could not be loaded */
        rqd_agent_usable(a, &err);
        rqd_agent_put(a);
        return api_problem(r, &err);
    }
    rqd_agent_put(a);
    snprintf(etag, sizeof etag, "\"%lld\"", redq_policy_version(p));
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
    if (inm && etag_matches(inm, etag)) {
        redq_policy_release(p);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        return api_queue(r, 304, resp, NULL);
    }
    rqd_buf_init(&b, 0);
    int rc = redq_policy_safetensors(p, &b, &err);
    redq_policy_release(p);
    if (rc < 0) {
        rqd_buf_free(&b);
        return api_problem(r, &err);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        rqd_buf_free(&b);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    return api_queue(r, 200, resp, "application/octet-stream");
}
