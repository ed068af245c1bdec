/* clients/mujoco/http.c: the redqd calls of redq-mujoco (see http.h).
 *
 * libcurl rather than plain sockets: one easy handle keeps the connection alive across
 * calls, and libcurl already does what a correct HTTP/1.1 client needs and a small one
 * gets wrong (partial writes, chunked answers, Retry-After, timeouts while connecting and
 * while waiting, a reused connection that the server closed, proxies, https). What is
 * left here is redqd's contract: JSON in and out, problem documents, and which calls may
 * be retried.
 *
 * Every request goes through request(): it sends, reads the whole answer, parses it,
 * applies the retry rules of http.h and turns an error answer into an rqd_err.
 */
#include "http.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rq_client {
    CURL *curl;
    struct curl_slist *headers; /* Content-Type, Authorization, no Expect: 100-continue */
    char *base;                 /* base URL without a trailing slash */
    char *body;                 /* the current answer, NUL-terminated */
    size_t len, cap;
    int answered;               /* the daemon has answered once: it exists at base */
    long busy_retries, lost_retries; /* rq_client_retries() */
};

struct rq_batch {
    int obs_dim, act_dim;
    cJSON *rows; /* the "transitions" array */
};

/* How a request may be repeated (http.h "Retries"); 429 is retried for every request. */
enum { RETRY_CONNECT = 0, /* only when no connection could be opened: nothing was sent */
       RETRY_SAFE = 1 };  /* also lost connections and 503: sending twice is harmless */

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static size_t on_data(char *p, size_t size, size_t n, void *cls)
{
    rq_client *c = cls;
    size_t k = size * n;
    if (c->len + k + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + k + 1)
            cap *= 2;
        char *nb = realloc(c->body, cap);
        if (nb == NULL)
            return 0; /* libcurl fails the transfer with CURLE_WRITE_ERROR */
        c->body = nb;
        c->cap = cap;
    }
    memcpy(c->body + c->len, p, k);
    c->len += k;
    c->body[c->len] = '\0';
    return k;
}

int rq_client_new(const char *base_url, const char *token, double timeout_s, rq_client **out,
                  rqd_err *err)
{
    rq_client *c = calloc(1, sizeof *c);
    size_t n = strlen(base_url);
    char auth[600];

    *out = NULL;
    if (c == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    if ((c->base = strndup(base_url, n)) == NULL || (c->curl = curl_easy_init()) == NULL) {
        rq_client_free(c);
        return rqd_err_set(err, RQD_ENOMEM, "", "cannot set up libcurl");
    }
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    if (token != NULL && *token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        c->headers = curl_slist_append(c->headers, auth);
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    *out = c;
    return RQD_OK;
}

void rq_client_retries(const rq_client *c, long *busy, long *lost)
{
    *busy = c->busy_retries;
    *lost = c->lost_retries;
}

void rq_client_free(rq_client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->base);
    free(c->body);
    free(c);
}

static int code_of_status(long status, const char *problem_code)
{
    switch (status) {
    case 400: return RQD_EINVAL;
    case 404: return RQD_ENOTFOUND;
    case 409: return problem_code && strcmp(problem_code, "conflict") == 0 ? RQD_ECONFLICT
                                                                         : RQD_EEXIST;
    case 413: return RQD_ETOOBIG;
    case 429: return RQD_EBUSY;
    case 503: return RQD_EUNAVAIL;
    default: return RQD_EINTERNAL;
    }
}

/* An error answer: the problem document's code and detail, or the start of the body. */
static int fail_status(rq_client *c, const char *method, const char *path, long status,
                       const cJSON *reply, rqd_err *err)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(reply, "code");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(reply, "detail");
    const char *cs = cJSON_IsString(code) ? code->valuestring : NULL;
    return rqd_err_set(err, code_of_status(status, cs), "", "%s %s: %ld %s: %.100s", method,
                       path, status, cs ? cs : "error",
                       cJSON_IsString(detail) ? detail->valuestring : (c->body ? c->body : ""));
}

static int lost_connection(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE ||
           rc == CURLE_OPERATION_TIMEDOUT;
}

/* Sends one request (body NULL for none) and waits for the answer, retrying as http.h
 * says. *status is the final HTTP status; *reply its parsed JSON (NULL for an empty or
 * non-JSON body; the caller frees it). Answers of 400 and up are returned as errors
 * (with *status and *reply still set) unless ok_status names that status. */
static int request(rq_client *c, const char *method, const char *path, const char *body,
                   int retry, long ok_status, long *status, cJSON **reply, rqd_err *err)
{
    char url[1024];
    double backoff = 0.2, busy_waited = 0.0;
    int attempt = 0;

    *status = 0;
    *reply = NULL;
    snprintf(url, sizeof url, "%s%s", c->base, path);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (body != NULL) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
    } else {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
    }
    for (;;) {
        c->len = 0;
        if (c->body)
            c->body[0] = '\0';
        CURLcode rc = curl_easy_perform(c->curl);
        if (rc != CURLE_OK) {
            /* A daemon that never answered is a wrong address: say so at once. */
            int again = c->answered && (rc == CURLE_COULDNT_CONNECT ||
                                        (retry == RETRY_SAFE && lost_connection(rc)));
            if (again && ++attempt < RQ_LOST_ATTEMPTS) {
                c->lost_retries++;
                sleep_s(backoff);
                backoff = fmin(backoff * 2, 5.0);
                continue;
            }
            return rqd_err_set(err, RQD_EIO, "", "%s %s: %s", method, url,
                               curl_easy_strerror(rc));
        }
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
        c->answered = 1;
        if (*status == 429 && busy_waited < RQ_BUSY_MAX_WAIT_S) {
            curl_off_t after = 0;
            curl_easy_getinfo(c->curl, CURLINFO_RETRY_AFTER, &after);
            double wait = after > 0 ? fmin((double)after, 30.0) : 1.0;
            c->busy_retries++;
            sleep_s(wait);
            busy_waited += wait;
            continue;
        }
        if (*status == 503 && retry == RETRY_SAFE && ++attempt < RQ_LOST_ATTEMPTS) {
            c->lost_retries++;
            sleep_s(backoff);
            backoff = fmin(backoff * 2, 5.0);
            continue;
        }
        break;
    }
    if (c->len > 0)
        *reply = cJSON_ParseWithLength(c->body, c->len);
    if (*status >= 400 && *status != ok_status)
        return fail_status(c, method, path, *status, *reply, err);
    return RQD_OK;
}

/* request() with a JSON body built by the caller (taken: deleted here in every case). */
static int request_json(rq_client *c, const char *method, const char *path, cJSON *body,
                        int retry, long ok_status, long *status, cJSON **reply, rqd_err *err)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    int rc;

    cJSON_Delete(body);
    *status = 0;
    *reply = NULL;
    if (body != NULL && text == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for a %s body", path);
    rc = request(c, method, path, text, retry, ok_status, status, reply, err);
    free(text);
    return rc;
}

/* ---- agents ---- */

/* JSON numbers compare up to float32 rounding: the daemon keeps some settings and the
 * action box as float. */
static int same_number(double a, double b)
{
    return a == b || fabs(a - b) <= 1e-6 * fmax(fabs(a), fabs(b));
}

/* Whether want (what this client asks for) and have (what the daemon has) agree; objects
 * compare only want's keys. On a difference, path names where it is. */
static int same_json(const cJSON *want, const cJSON *have, char *path, size_t pathsz)
{
    size_t n = strlen(path);
    if (have == NULL)
        return 0;
    if (cJSON_IsNumber(want))
        return cJSON_IsNumber(have) && same_number(want->valuedouble, have->valuedouble);
    if (cJSON_IsString(want))
        return cJSON_IsString(have) && strcmp(want->valuestring, have->valuestring) == 0;
    if (cJSON_IsBool(want) || cJSON_IsNull(want))
        return want->type == have->type;
    if (cJSON_IsArray(want)) {
        int k = 0;
        if (!cJSON_IsArray(have) || cJSON_GetArraySize(want) != cJSON_GetArraySize(have))
            return 0;
        for (const cJSON *w = want->child, *h = have->child; w; w = w->next, h = h->next, k++) {
            snprintf(path + n, pathsz - n, "[%d]", k);
            if (!same_json(w, h, path, pathsz))
                return 0;
        }
    } else if (cJSON_IsObject(want)) {
        if (!cJSON_IsObject(have))
            return 0;
        for (const cJSON *w = want->child; w; w = w->next) {
            snprintf(path + n, pathsz - n, "%s%s", n ? "." : "", w->string);
            if (!same_json(w, cJSON_GetObjectItemCaseSensitive(have, w->string), path, pathsz))
                return 0;
        }
    }
    path[n] = '\0';
    return 1;
}

/* The agent body of PUT and POST: obs_dim, the action box, the config (and the name,
 * for POST). NULL when out of memory. */
static cJSON *agent_body(const char *name, const rq_agent_spec *s)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || (name && !cJSON_AddStringToObject(o, "name", name)) ||
        !cJSON_AddNumberToObject(o, "obs_dim", s->obs_dim) ||
        !cJSON_AddItemToObject(o, "action_low", cJSON_CreateDoubleArray(s->low, s->act_dim)) ||
        !cJSON_AddItemToObject(o, "action_high", cJSON_CreateDoubleArray(s->high, s->act_dim)) ||
        !cJSON_AddItemToObject(o, "config", cJSON_Duplicate(s->config, 1))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int rq_agent_get(rq_client *c, const char *name, cJSON **agent_out, rqd_err *err)
{
    char path[256];
    long status;
    snprintf(path, sizeof path, "/v1/agents/%s", name);
    int rc = request(c, "GET", path, NULL, RETRY_SAFE, 0, &status, agent_out, err);
    if (rc == RQD_OK && !cJSON_IsObject(*agent_out)) {
        cJSON_Delete(*agent_out);
        *agent_out = NULL;
        rc = rqd_err_set(err, RQD_EINTERNAL, "", "GET %s: the answer is not a JSON object", path);
    }
    return rc;
}

int rq_agent_ensure(rq_client *c, const char *name, const rq_agent_spec *spec,
                    cJSON **agent_out, int *created, rqd_err *err)
{
    char path[256], where[256] = "";
    cJSON *want = NULL, *have = NULL;
    long status;
    int rc;

    *agent_out = NULL;
    *created = 0;
    snprintf(path, sizeof path, "/v1/agents/%s", name);
    /* PUT: create, or 200 for the same agent, or 409 naming the difference. */
    rc = request_json(c, "PUT", path, agent_body(NULL, spec), RETRY_SAFE, 405, &status, &have,
                      err);
    if (rc < 0 || status != 405) {
        *created = status == 201;
        *agent_out = have;
        return rc;
    }
    /* A daemon without the PUT route: POST, then compare an existing agent. POST
     * creation is safe to resend as well: a repeat finds the agent and compares. */
    cJSON_Delete(have);
    rc = request_json(c, "POST", "/v1/agents", agent_body(name, spec), RETRY_SAFE, 409, &status,
                      &have, err);
    if (rc < 0 || status == 201) {
        *created = status == 201;
        *agent_out = have;
        return rc;
    }
    cJSON_Delete(have);
    if ((rc = rq_agent_get(c, name, &have, err)) < 0)
        return rc;
    if ((want = agent_body(NULL, spec)) == NULL) {
        cJSON_Delete(have);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    }
    if (!same_json(want, have, where, sizeof where)) {
        rc = rqd_err_set(err, RQD_EEXIST, where,
                         "agent '%s' exists with a different %s; use another --agent or "
                         "delete it",
                         name, where);
        cJSON_Delete(have);
        have = NULL;
    }
    cJSON_Delete(want);
    *agent_out = have;
    return rc;
}

/* ---- acting ---- */

/* A [n][d] array of arrays, NULL when out of memory. */
static cJSON *matrix(const double *v, int n, int d)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateDoubleArray(v + (size_t)i * d, d))) {
            cJSON_Delete(a);
            a = NULL;
        }
    return a;
}

int rq_act(rq_client *c, const char *name, const double *obs, int n, int obs_dim, int eval,
           double *act, int act_dim, rqd_err *err)
{
    char path[256];
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    long status;
    int rc;

    snprintf(path, sizeof path, "/v1/agents/%s/act", name);
    if (body == NULL || !cJSON_AddItemToObject(body, "obs", matrix(obs, n, obs_dim)) ||
        !cJSON_AddStringToObject(body, "mode", eval ? "eval" : "explore")) {
        cJSON_Delete(body);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for an act body");
    }
    if ((rc = request_json(c, "POST", path, body, RETRY_SAFE, 0, &status, &reply, err)) < 0)
        goto out;
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(reply, "action"), *row;
    int i = 0;
    if (cJSON_GetArraySize(rows) != n)
        goto bad;
    cJSON_ArrayForEach(row, rows) {
        const cJSON *v;
        int j = 0;
        if (cJSON_GetArraySize(row) != act_dim)
            goto bad;
        cJSON_ArrayForEach(v, row) {
            if (!cJSON_IsNumber(v))
                goto bad;
            act[(size_t)i * act_dim + j++] = v->valuedouble;
        }
        i++;
    }
    goto out;
bad:
    rc = rqd_err_set(err, RQD_EINTERNAL, "action", "POST %s: expected %d actions of %d values",
                     path, n, act_dim);
out:
    cJSON_Delete(reply);
    return rc;
}

/* ---- transitions ---- */

rq_batch *rq_batch_new(int obs_dim, int act_dim)
{
    rq_batch *b = calloc(1, sizeof *b);
    if (b == NULL || (b->rows = cJSON_CreateArray()) == NULL) {
        free(b);
        return NULL;
    }
    b->obs_dim = obs_dim;
    b->act_dim = act_dim;
    return b;
}

void rq_batch_free(rq_batch *b)
{
    if (b == NULL)
        return;
    cJSON_Delete(b->rows);
    free(b);
}

int rq_batch_len(const rq_batch *b)
{
    return cJSON_GetArraySize(b->rows);
}

int rq_batch_add(rq_batch *b, const double *obs, const double *action, double reward,
                 const double *next_obs, int terminated, int truncated, const char *env_id,
                 rqd_err *err)
{
    cJSON *t = cJSON_CreateObject();
    if (t == NULL || !cJSON_AddItemToObject(t, "obs", cJSON_CreateDoubleArray(obs, b->obs_dim)) ||
        !cJSON_AddItemToObject(t, "action", cJSON_CreateDoubleArray(action, b->act_dim)) ||
        !cJSON_AddNumberToObject(t, "reward", reward) ||
        !cJSON_AddItemToObject(t, "next_obs", cJSON_CreateDoubleArray(next_obs, b->obs_dim)) ||
        !cJSON_AddBoolToObject(t, "terminated", terminated) ||
        !cJSON_AddBoolToObject(t, "truncated", truncated) ||
        (env_id && !cJSON_AddStringToObject(t, "env_id", env_id)) ||
        !cJSON_AddItemToArray(b->rows, t)) {
        cJSON_Delete(t);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for a transition");
    }
    return RQD_OK;
}

static int64_t get_int(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

int rq_transitions_post(rq_client *c, const char *name, rq_batch *b, const char *batch_id,
                        rq_ack *ack, rqd_err *err)
{
    char path[256];
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    long status;
    int rc;

    snprintf(path, sizeof path, "/v1/agents/%s/transitions", name);
    /* The rows move into the body for the call and back out after, whatever happens,
     * so that a failed post leaves the batch as it was. */
    if (body == NULL || !cJSON_AddStringToObject(body, "batch_id", batch_id)) {
        cJSON_Delete(body);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for a transitions body");
    }
    cJSON_AddItemToObject(body, "transitions", b->rows);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_DetachItemViaPointer(body, b->rows);
    cJSON_Delete(body);
    if (text == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for a transitions body");
    rc = request(c, "POST", path, text, RETRY_SAFE, 0, &status, &reply, err);
    free(text);
    if (rc == RQD_OK) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(reply, "pending_updates");
        ack->accepted = get_int(reply, "accepted");
        ack->env_steps = get_int(reply, "env_steps");
        ack->pending_updates = cJSON_IsNumber(p) ? p->valuedouble : 0.0;
        cJSON_Delete(b->rows);
        b->rows = cJSON_CreateArray();
        if (b->rows == NULL)
            rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    }
    cJSON_Delete(reply);
    return rc;
}

/* ---- evaluations ---- */

int rq_evaluation_post(rq_client *c, const char *name, const double *returns,
                       const int *lengths, int n, int64_t *row_out, rqd_err *err)
{
    char path[256];
    cJSON *body = cJSON_CreateObject(), *reply = NULL;
    long status;
    int rc;

    *row_out = -1;
    snprintf(path, sizeof path, "/v1/agents/%s/evaluations", name);
    if (body == NULL ||
        !cJSON_AddItemToObject(body, "returns", cJSON_CreateDoubleArray(returns, n)) ||
        !cJSON_AddItemToObject(body, "lengths", cJSON_CreateIntArray(lengths, n))) {
        cJSON_Delete(body);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for an evaluation body");
    }
    rc = request_json(c, "POST", path, body, RETRY_CONNECT, 405, &status, &reply, err);
    if (rc == RQD_OK && status == 405)
        rc = rqd_err_set(err, RQD_ENOTFOUND, "", "POST %s: 405, no evaluations endpoint", path);
    else if (rc == RQD_OK)
        *row_out = get_int(reply, "row");
    cJSON_Delete(reply);
    return rc;
}
