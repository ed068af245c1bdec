/* api/http.c: the libmicrohttpd daemon and the request lifecycle (STYLE R8): a request
 * context is created on the first call (headers only), the body is accumulated up to
 * the cap (past it the rest is swallowed and 413 answered at the end), the handler runs
 * once the body is complete, and the context is freed only in the completion callback.
 *
 * THREADS
 * -------
 * MHD's thread pool (--http-threads) runs on_request and on_completed; a request
 * suspended for training is resumed by a trainer thread (api/suspend.c).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../daemon/log.h"
#include "internal.h"
#include "json_in.h"

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------------ responses */

static int queue(api_req *r, unsigned status, struct MHD_Response *resp, const char *ctype)
{
    if (resp == NULL)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 429)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    int ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->answered = 1;
    r->status = status;
    return ret;
}

int api_reply_bytes_take(api_req *r, unsigned status, const char *ctype, void *data, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        free(data);
    return queue(r, status, resp, ctype);
}

int api_reply_text(api_req *r, unsigned status, const char *ctype, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    return queue(r, status, resp, ctype);
}

int api_reply_json_take(api_req *r, unsigned status, cJSON *obj)
{
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (text == NULL)
        return api_problem_status(r, 503, "unavailable", "out of memory rendering the answer");
    return api_reply_bytes_take(r, status, "application/json", text, strlen(text));
}

int api_reply_empty(api_req *r, unsigned status)
{
    return queue(r, status, MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT),
                 NULL);
}

/* ------------------------------------------------------------------ input */

const char *api_query(api_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

cJSON *api_body_json(api_req *r, rqd_err *err)
{
    return api_json_parse(r->body.len ? (const char *)r->body.data : "", r->body.len, err);
}

/* "application/json" in any case, parameters such as charset allowed. */
static int type_is(const char *ctype, const char *want)
{
    size_t n = strlen(want);
    if (ctype == NULL)
        return 0;
    while (*ctype == ' ')
        ctype++;
    return strncasecmp(ctype, want, n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

/* Constant-time comparison: the time taken does not depend on where they differ. */
static int token_ok(api_server *s, const char *auth)
{
    char tok[256];
    pthread_mutex_lock(&s->token_mu);
    snprintf(tok, sizeof tok, "%s", s->token);
    pthread_mutex_unlock(&s->token_mu);
    if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0)
        return 0;
    const char *given = auth + 7;
    size_t n = strlen(tok), m = strlen(given);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(tok[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

/* ------------------------------------------------------------------ lifecycle */

static int first_call(api_server *s, api_req *r, const char *url, const char *method)
{
    char allow[128];
    int known;

    if (atomic_load(&s->stopping))
        return api_problem_status(r, 503, "unavailable", "the daemon is shutting down");
    r->route = api_route_match(method, url, r, &known, allow, sizeof allow, &r->route_index);
    if (r->route == NULL) {
        if (known < 0)
            return api_problem_status(r, 400, "invalid_argument",
                                      "a path segment is longer than any valid name or id");
        if (!known) {
            char d[320];
            snprintf(d, sizeof d, "no route %s %.200s", method, url);
            return api_problem_status(r, 404, "not_found", d);
        }
        struct MHD_Response *resp = NULL;
        char d[200];
        snprintf(d, sizeof d, "%s is not allowed here; allowed: %s", method, allow);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "about:blank");
        cJSON_AddStringToObject(o, "title", "Method Not Allowed");
        cJSON_AddNumberToObject(o, "status", 405);
        cJSON_AddStringToObject(o, "code", "method_not_allowed");
        cJSON_AddStringToObject(o, "detail", d);
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (text)
            resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        return queue(r, 405, resp, "application/problem+json");
    }
    if (s->have_token && !r->route->open &&
        !token_ok(s, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization")))
        return api_problem_status(r, 401, "unauthenticated",
                                  "a valid 'Authorization: Bearer <token>' header is required");
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    long long cap = r->route->body == BODY_OCTETS ? s->o.max_import : s->o.max_body;
    if (cl && strtoll(cl, NULL, 10) > cap) {
        char d[160];
        snprintf(d, sizeof d, "the body of %s bytes is over the limit of %lld bytes%s", cl, cap,
                 r->route->body == BODY_OCTETS ? " (--max-import)" : " (--max-body)");
        return api_problem_status(r, 413, "payload_too_large", d);
    }
    rqd_buf_init(&r->body, (size_t)cap);
    return MHD_YES;
}

static int dispatch(api_req *r)
{
    const char *ctype = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (r->body_error) {
        char d[128];
        long long cap = r->route->body == BODY_OCTETS ? r->srv->o.max_import : r->srv->o.max_body;
        snprintf(d, sizeof d, "the body is over the limit of %lld bytes", cap);
        return api_problem_status(r, 413, "payload_too_large", d);
    }
    if (r->route->body == BODY_JSON && r->body.len > 0 && !type_is(ctype, "application/json"))
        return api_problem_status(r, 415, "unsupported_media_type",
                                  "the body must be sent as Content-Type: application/json");
    if (r->route->body == BODY_OCTETS && !type_is(ctype, "application/octet-stream"))
        return api_problem_status(r, 415, "unsupported_media_type",
                                  "a checkpoint file must be sent as Content-Type: "
                                  "application/octet-stream");
    if (r->route->body == BODY_NONE && r->body.len > 0 && strcmp(r->method, "DELETE") != 0 &&
        strcmp(r->method, "GET") != 0)
        return api_problem_status(r, 400, "invalid_argument", "this request takes no body");
    return r->route->handler(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **req_cls)
{
    api_server *s = cls;
    api_req *r = *req_cls;
    (void)version;

    if (r == NULL) { /* first call: headers only */
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t0 = mono();
        r->route_index = -1;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        r->is_head = strcmp(method, "HEAD") == 0;
        *req_cls = r;
        return (enum MHD_Result)first_call(s, r, url, method);
    }
    if (r->answered) { /* answered early: swallow the rest of the upload */
        *size = 0;
        return MHD_YES;
    }
    if (*size != 0) {
        if (!r->body_error && rqd_buf_append(&r->body, data, *size) < 0) {
            r->body_error = RQD_ETOOBIG;
            rqd_buf_free(&r->body);
        }
        *size = 0;
        return MHD_YES;
    }
    if (r->waiting) { /* resumed after a wait, or a spurious call while suspended */
        if (!r->woke)
            return MHD_YES;
        r->waiting = 0;
        return (enum MHD_Result)r->after_wake(r);
    }
    /* The body is complete: keep it NUL-terminated for the JSON parser (STYLE trap). */
    if (rqd_buf_append(&r->body, "", 1) == 0)
        r->body.len--;
    return (enum MHD_Result)dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    api_server *s = cls;
    api_req *r = *req_cls;
    (void)conn;
    (void)toe;
    if (r == NULL)
        return;
    double dt = mono() - r->t0;
    int idx = r->route_index >= 0 ? r->route_index : API_MAX_ROUTES;
    int cls_i = r->status >= 100 && r->status < 600 ? (int)(r->status / 100) : 0;
    atomic_fetch_add(&s->req_count[idx][cls_i], 1);
    static const double bounds[11] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05,   0.1,   0.25,   1.0,   5.0};
    int b = 0;
    while (b < 11 && dt > bounds[b])
        b++;
    atomic_fetch_add(&s->lat_bucket[idx][b], 1);
    atomic_fetch_add(&s->lat_sum_us[idx], (long long)(dt * 1e6));
    LOG(LOG_DEBUG, "%s %s %u %.2f ms", r->method, r->path, r->status, dt * 1e3);
    rqd_agent_put(r->agent);
    free(r->answer);
    rqd_buf_free(&r->body);
    free(r);
    *req_cls = NULL;
}

/* ------------------------------------------------------------------ server */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* MHD's default unescaping of paths and query values ("%HH"), except that "%00" stays as
 * it is: decoded, it would cut the C string short, so that "/v1/agents/x%00y" reached
 * agent "x" (and DELETE deleted it). Left encoded, it is simply an invalid name or value. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *rd = s, *wr = s;
    (void)cls;
    (void)c;
    while (*rd) {
        int hi, lo;
        if (rd[0] == '%' && (hi = hexval(rd[1])) >= 0 && (lo = hexval(rd[2])) >= 0 &&
            (hi | lo) != 0) {
            *wr++ = (char)(hi * 16 + lo);
            rd += 3;
        } else {
            *wr++ = *rd++;
        }
    }
    *wr = '\0';
    return (size_t)(wr - s);
}

int api_reload_token(api_server *s, rqd_err *err)
{
    char line[512] = "";
    if (s->o.token_file == NULL || s->o.token_file[0] == '\0')
        return RQD_OK;
    FILE *f = fopen(s->o.token_file, "r");
    if (f == NULL)
        return rqd_err_set(err, RQD_EINVAL, "token_file", "cannot read the token file %s: %s",
                           s->o.token_file, strerror(errno));
    if (fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    fclose(f);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    if (n == 0 || n >= sizeof s->token)
        return rqd_err_set(err, RQD_EINVAL, "token_file", "the token file %s must hold a token "
                           "of 1 to %zu characters on its first line", s->o.token_file,
                           sizeof s->token - 1);
    pthread_mutex_lock(&s->token_mu);
    memcpy(s->token, line, n + 1);
    s->have_token = 1;
    pthread_mutex_unlock(&s->token_mu);
    return RQD_OK;
}

int api_start(const api_opts *o, rqd_registry *reg, api_server **out, rqd_err *err)
{
    api_server *s = calloc(1, sizeof *s);
    struct sockaddr_in addr;
    int rc;

    if (s == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    s->o = *o;
    s->reg = reg;
    s->started = mono();
    pthread_mutex_init(&s->token_mu, NULL);
    if ((rc = api_reload_token(s, err)) < 0) {
        free(s);
        return rc;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->bind, &addr.sin_addr) != 1) {
        free(s);
        return rqd_err_set(err, RQD_EINVAL, "bind", "--bind %s is not an IPv4 address", o->bind);
    }
    s->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG,
        (uint16_t)o->port, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->connection_timeout,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
        MHD_OPTION_END);
    if (s->mhd == NULL) {
        free(s);
        return rqd_err_set(err, RQD_EIO, "port", "cannot listen on %s:%d (in use, or no "
                           "permission)", o->bind, o->port);
    }
    *out = s;
    return RQD_OK;
}

void api_stop_accepting(api_server *s)
{
    if (s)
        atomic_store(&s->stopping, 1);
}

void api_resume_all(api_server *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < 500; i++) { /* 5 s at most */
        rqd_registry_wake_waiters(s->reg, RQD_EUNAVAIL, 0);
        if (atomic_load(&s->suspended) == 0)
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    LOG(LOG_WARNING, "%d requests still suspended at shutdown", atomic_load(&s->suspended));
}

void api_free(api_server *s)
{
    if (s == NULL)
        return;
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    pthread_mutex_destroy(&s->token_mu);
    free(s);
}
