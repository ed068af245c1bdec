/* api/http.c: the libmicrohttpd daemon and the request lifecycle (STYLE R8): a request
 * context is created on the first call (headers only), the body is accumulated up to
 * the cap (past it the rest is swallowed and 413 answered at the end), the handler runs
 * once the body is complete, and the context is freed only in the completion callback.
 *
 * Answers are queued by api/reply.c; the bearer token is api/token.c's.
 *
 * TLS
 * ---
 * With --tls-cert and --tls-key the daemon speaks only HTTPS (MHD's GnuTLS backend); with
 * neither, only plain HTTP; with one of them it refuses to start. Both PEM files are read
 * once at start (a new certificate needs a restart, unlike the token).
 *
 * Limits on clients: --connection-timeout (MHD) closes a connection that has been silent
 * that long (stalled clients, during the TLS handshake too); api/deadline.c closes one
 * whose request trickles in past --request-header-timeout / --min-transfer-rate;
 * --max-connections and --max-connections-per-ip (MHD) bound open connections (past the
 * first new ones wait in the kernel's backlog, past the second they are closed); MHD's
 * per-connection memory pool (32 KiB) bounds the request line and headers (past it 414
 * or 431 and the connection is closed).
 *
 * THREADS
 * -------
 * MHD's thread pool (--http-threads) runs on_request and on_completed; a request
 * suspended for training is resumed by a trainer thread (api/suspend.c). The main thread
 * runs api_start and api_free.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../common/rqd_hist.h"
#include "../common/rqd_limits.h"
#include "../daemon/log.h"
#include "internal.h"
#include "json_in.h"

/* Largest PEM file read for --tls-cert or --tls-key. A certificate chain is a few KiB;
 * 1 MiB only stops a wrong path (a device, a log file) from being read whole. */
#define API_TLS_PEM_MAX (1u << 20)

/* The server plus what only this file touches: the PEM text MHD was started with. MHD
 * only promises to use the buffers while the daemon runs (GnuTLS copies them at start in
 * 0.9.75, but that is not a documented guarantee), so they live as long as the daemon
 * and go in api_free, the key wiped first. */
typedef struct {
    api_server s;           /* first: api_start hands out &h->s and api_free casts back */
    rqd_buf tls_cert;       /* PEM text, NUL-terminated; empty (data NULL) for plain HTTP */
    rqd_buf tls_key;        /* idem; explicit_bzero'd before it is freed */
} api_http;

const double api_latency_bounds[API_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005,
                                                        0.01,   0.025, 0.05,   0.1,
                                                        0.25,   1.0,   5.0};

/* ------------------------------------------------------------------ responses */

/* A problem document as an MHD response (NULL when out of memory), for the answers that
 * need a header of their own (Allow, Connection); api_problem_status is for the rest. */
static struct MHD_Response *problem_response(unsigned status, const char *title,
                                             const char *code, const char *detail)
{
    struct MHD_Response *resp = NULL;
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;

    if (o == NULL || !cJSON_AddStringToObject(o, "type", "about:blank") ||
        !cJSON_AddStringToObject(o, "title", title) ||
        !cJSON_AddNumberToObject(o, "status", status) ||
        !cJSON_AddStringToObject(o, "code", code) ||
        !cJSON_AddStringToObject(o, "detail", detail))
        goto out;
    if ((text = cJSON_PrintUnformatted(o)) == NULL)
        goto out;
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (resp != NULL)
        text = NULL; /* the response's now */
out:
    free(text);
    cJSON_Delete(o);
    return resp;
}

/* ------------------------------------------------------------------ input */

const char *api_query(api_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

int api_scope(api_req *r, int dflt, int *cluster)
{
    const char *q = api_query(r, "scope");
    *cluster = q ? strcmp(q, "cluster") == 0 : dflt;
    if (q == NULL || strcmp(q, "cluster") == 0 || strcmp(q, "node") == 0)
        return 0;
    api_problem_status(r, 400, "invalid_argument", "scope must be node (this node's own) or "
                       "cluster (every node of --peers)");
    return -1;
}

cJSON *api_body_json(api_req *r, rqd_err *err)
{
    return api_body_json_bounded(r, NULL, 0, NULL, err);
}

cJSON *api_body_json_bounded(api_req *r, const api_json_bound *b, int nb, api_json_span *each,
                             rqd_err *err)
{
    return api_json_parse_bounded(r->body.len ? (const char *)r->body.data : "", r->body.len,
                                  b, nb, each, err);
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

/* ------------------------------------------------------------------ framing */

/* What RFC 9112 requires a server to refuse in a request's head, found by one walk over
 * its header lines. MHD 0.9.75 takes the first of two Content-Length lines, keeps a name
 * with a space before its colon ("Transfer-Encoding : chunked") as another header
 * (its check is inverted: only with strict_for_client -1), and answers HTTP/1.1 without
 * Host. A proxy in front may read each of these the other way, and then the two disagree
 * on where a request ends: that is request smuggling. */
typedef struct {
    int content_length;  /* Content-Length lines */
    int host;            /* Host lines */
    const char *bad;     /* the first name that is not an RFC 9110 token, or NULL */
} head_census;

static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static enum MHD_Result census_line(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    head_census *c = cls;
    (void)kind;
    (void)value;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        c->content_length++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        c->host++;
    if (c->bad == NULL && !is_token(key))
        c->bad = key;
    return MHD_YES;
}

/* 400 and close: where this request ends, and so where the next one begins, is in
 * doubt, so nothing more is read from the connection. */
static int refuse_framing(api_req *r, const char *detail)
{
    struct MHD_Response *resp = problem_response(400, "Bad Request", "invalid_argument", detail);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return api_queue(r, 400, resp, "application/problem+json");
}

/* Refuses a request head that RFC 9112 says a server must refuse (400 and close);
 * returns -1 when the head is acceptable. */
static int check_framing(api_req *r, const char *version)
{
    head_census c = {0, 0, NULL};
    char d[160], shown[64];
    size_t i;

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, census_line, &c);
    if (c.bad) {
        for (i = 0; c.bad[i] && i + 1 < sizeof shown; i++) /* printable ASCII only */
            shown[i] = c.bad[i] >= ' ' && c.bad[i] < 0x7f ? c.bad[i] : '?';
        shown[i] = '\0';
        snprintf(d, sizeof d, "the header name '%s' is not a token: no space may come before "
                 "the colon (RFC 9112 5.1)", shown);
        return refuse_framing(r, d);
    }
    if (c.content_length > 1)
        return refuse_framing(r, "a request may carry one Content-Length header; this one "
                                 "has several (RFC 9112 6.3)");
    if (c.content_length &&
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return refuse_framing(r, "a request may not carry both Content-Length and "
                                 "Transfer-Encoding");
    if (c.host > 1)
        return refuse_framing(r, "a request may carry one Host header; this one has several "
                                 "(RFC 9112 3.2)");
    if (c.host == 0 && strncmp(version, "HTTP/1.", 7) == 0 && strcmp(version, "HTTP/1.0") != 0)
        return refuse_framing(r, "an HTTP/1.1 request needs a Host header (RFC 9112 3.2)");
    return -1;
}

/* Stands for a request whose URL had more than RQD_MAX_QUERY_PARAMS query parameters
 * (on_uri), in *req_cls until on_request's first call. */
static char too_many_params;

/* MHD_OPTION_URI_LOG_CALLBACK: the URL before MHD splits its query. MHD keeps each
 * parameter in the connection's 32 KiB pool and, once that is full, neither answers nor
 * closes (0.9.75 queues a 431 but goes on reading headers into the spent pool), so a
 * URL with about 500 parameters left the connection silent until the timeout. Past the
 * limit the query is cut here, in MHD's own buffer (the text after '?' is what MHD
 * splits next), and the request is answered 414 in on_request. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const char *q = uri ? strchr(uri, '?') : NULL;
    int params = 1;
    (void)cls;
    (void)conn;
    if (q == NULL)
        return NULL;
    for (const char *p = q + 1; *p && params <= RQD_MAX_QUERY_PARAMS; p++)
        params += *p == '&';
    if (params <= RQD_MAX_QUERY_PARAMS)
        return NULL;
    ((char *)q)[1] = '\0';
    return &too_many_params;
}

/* ------------------------------------------------------------------ lifecycle */

static int first_call(api_server *s, api_req *r, const char *url, const char *method,
                      const char *version, int params_cut)
{
    char allow[128];
    int known, framing;

    if (atomic_load(&s->stopping))
        return api_problem_status(r, 503, "unavailable", "the daemon is shutting down");
    if ((framing = check_framing(r, version)) >= 0)
        return framing;
    if (params_cut) {
        char d[120];
        snprintf(d, sizeof d, "the URL has more than %d query parameters", RQD_MAX_QUERY_PARAMS);
        struct MHD_Response *resp = problem_response(414, "URI Too Long", "invalid_argument", d);
        if (resp) /* the query was cut: what the client meant is not what MHD holds now */
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        return api_queue(r, 414, resp, "application/problem+json");
    }
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
        char d[200];
        snprintf(d, sizeof d, "%s is not allowed here; allowed: %s", method, allow);
        struct MHD_Response *resp =
            problem_response(405, "Method Not Allowed", "method_not_allowed", d);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        return api_queue(r, 405, resp, "application/problem+json");
    }
    if (s->have_token && !r->route->open &&
        !api__token_ok(s, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization")))
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
    if (r->route->wait)
        return api_offload(r, r->route->handler);
    return r->route->handler(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **req_cls)
{
    api_server *s = cls;
    api_req *r = *req_cls;
    int params_cut = r == (api_req *)(void *)&too_many_params;

    if (r == NULL || params_cut) { /* first call: headers only */
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t0 = rqd_mono();
        r->route_index = -1;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        r->is_head = strcmp(method, "HEAD") == 0;
        r->dl = api_deadline_of(conn);
        api_deadline_headers_done(s, r->dl);
        *req_cls = r;
        return (enum MHD_Result)first_call(s, r, url, method, version, params_cut);
    }
    if (r->answered) { /* answered early: swallow the rest of the upload */
        api_deadline_body(s, r->dl, *size);
        *size = 0;
        return MHD_YES;
    }
    if (*size != 0) {
        api_deadline_body(s, r->dl, *size);
        if (!r->body_error && rqd_buf_append(&r->body, data, *size) < 0) {
            r->body_error = RQD_ETOOBIG;
            rqd_buf_free(&r->body);
        }
        *size = 0;
        return MHD_YES;
    }
    if (r->waiting) { /* resumed after an offloaded step, or a spurious call meanwhile */
        if (!r->ready)
            return MHD_YES;
        r->waiting = 0;
        struct MHD_Response *resp = r->resp;
        r->resp = NULL;
        if (resp == NULL) /* the step could not build an answer: close */
            return MHD_NO;
        return (enum MHD_Result)api__queue_now(r, r->status, resp);
    }
    api_deadline_clear(s, r->dl);
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
    if (r == NULL || r == (api_req *)(void *)&too_many_params) /* never reached on_request */
        return;
    double dt = rqd_mono() - r->t0;
    int idx = r->route_index >= 0 ? r->route_index : API_MAX_ROUTES;
    int cls_i = r->status >= 100 && r->status < 600 ? (int)(r->status / 100) : 0;
    atomic_fetch_add(&s->req_count[idx][cls_i], 1);
    atomic_fetch_add(&s->lat_bucket[idx][rqd_hist_bucket(api_latency_bounds,
                                                         API_LATENCY_BUCKETS, dt)], 1);
    atomic_fetch_add(&s->lat_sum_us[idx], (long long)(dt * 1e6));
    LOG(LOG_DEBUG, "%s %s %u %.2f ms", r->method, r->path, r->status, dt * 1e3);
    api_deadline_next_request(s, r->dl);
    api_wait_slot_release(r);
    rqd_agent_put(r->agent);
    if (r->resp)
        MHD_destroy_response(r->resp);
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

/* MHD's messages (a port in use, a certificate GnuTLS refuses, a connection refused at the
 * limit) go through the one logger (STYLE R14) instead of MHD's own stderr lines. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    LOG(LOG_WARNING, "libmicrohttpd: %s", msg);
}

/* Reads the PEM file at path into b, NUL-terminated; errors name the flag and the setting
 * (field). */
static int pem_read(const char *flag, const char *field, const char *path, rqd_buf *b,
                    rqd_err *err)
{
    FILE *f = NULL;
    char chunk[4096];
    size_t n;
    int rc = RQD_OK;

    rqd_buf_init(b, API_TLS_PEM_MAX + 1); /* + 1: the NUL */
    if ((f = fopen(path, "rb")) == NULL) {
        rc = rqd_err_set(err, RQD_EINVAL, field, "cannot read %s %s: %s", flag, path,
                         strerror(errno));
        goto out;
    }
    while (rc == RQD_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = b->len + n > API_TLS_PEM_MAX ? RQD_ETOOBIG : rqd_buf_append(b, chunk, n);
    if (rc == RQD_OK && ferror(f))
        rc = rqd_err_set(err, RQD_EINVAL, field, "cannot read %s %s: %s", flag, path,
                         strerror(errno));
    else if (rc == RQD_ETOOBIG)
        rc = rqd_err_set(err, RQD_EINVAL, field, "%s %s is larger than %u bytes: not a "
                         "PEM file", flag, path, API_TLS_PEM_MAX);
    else if (rc == RQD_OK && rqd_buf_append(b, "", 1) < 0)
        rc = RQD_ENOMEM;
    if (rc == RQD_ENOMEM)
        rc = rqd_err_set(err, RQD_ENOMEM, field, "out of memory reading %s", flag);
    if (rc < 0)
        goto out;
    b->len--; /* the NUL stays after the text: MHD takes a C string */
    if (strstr((const char *)b->data, "-----BEGIN ") == NULL)
        rc = rqd_err_set(err, RQD_EINVAL, field, "%s %s holds no PEM block "
                         "(\"-----BEGIN ...\")", flag, path);
out:
    if (f)
        fclose(f);
    return rc;
}

/* Wipes and frees a buffer that held key material. */
static void pem_free(rqd_buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    rqd_buf_free(b);
}

/* Reads --tls-cert and --tls-key into h when TLS is asked for; both or neither. */
static int tls_load(api_http *h, const api_opts *o, rqd_err *err)
{
    int have_cert = o->tls_cert && o->tls_cert[0], have_key = o->tls_key && o->tls_key[0];
    int rc;

    if (!have_cert && !have_key)
        return RQD_OK;
    if (!have_key)
        return rqd_err_set(err, RQD_EINVAL, "tls_key", "--tls-cert is set but --tls-key is "
                           "not: HTTPS needs both the certificate and its private key");
    if (!have_cert)
        return rqd_err_set(err, RQD_EINVAL, "tls_cert", "--tls-key is set but --tls-cert is "
                           "not: HTTPS needs both the certificate and its private key");
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return rqd_err_set(err, RQD_EINVAL, "tls_cert", "--tls-cert/--tls-key: this "
                           "libmicrohttpd was built without TLS support; install one built "
                           "with GnuTLS (Debian's libmicrohttpd12 is) or drop the TLS flags");
    if ((rc = pem_read("--tls-cert", "tls_cert", o->tls_cert, &h->tls_cert, err)) < 0)
        return rc;
    return pem_read("--tls-key", "tls_key", o->tls_key, &h->tls_key, err);
}

int api_start(const api_opts *o, rqd_registry *reg, api_server **out, rqd_err *err)
{
    api_http *h = NULL;
    struct sockaddr_in addr;
    struct MHD_OptionItem tls_opts[3];
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    int tls, rc = RQD_OK;

    *out = NULL;
    if ((h = calloc(1, sizeof *h)) == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        goto out;
    }
    h->s.o = *o;
    h->s.reg = reg;
    h->s.started = rqd_mono();
    pthread_mutex_init(&h->s.token_mu, NULL);
    if ((rc = api_reload_token(&h->s, err)) < 0)
        goto out;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->bind, &addr.sin_addr) != 1) {
        rc = rqd_err_set(err, RQD_EINVAL, "bind", "--bind %s is not an IPv4 address", o->bind);
        goto out;
    }
    if ((rc = tls_load(h, o, err)) < 0)
        goto out;
    tls = h->tls_cert.data != NULL;
    if (tls)
        flags |= MHD_USE_TLS;
    /* The TLS options go in only with MHD_USE_TLS (MHD complains about them otherwise):
     * for plain HTTP the array's first item ends it. */
    tls_opts[0] = (struct MHD_OptionItem){tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0,
                                          h->tls_cert.data};
    tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key.data};
    tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (api_deadline_init(&h->s, o->header_timeout, o->min_transfer_rate) < 0 ||
        api_offload_start(&h->s) < 0 || api_cluster_start(&h->s) < 0) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "cannot start the HTTP server's threads (out of memory)");
        goto out;
    }
    h->s.mhd = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, on_request, &h->s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->connection_timeout,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &h->s,
        MHD_OPTION_NOTIFY_CONNECTION, api_deadline_on_connection, &h->s,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o->max_per_ip,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (h->s.mhd == NULL) {
        if (tls)
            rc = rqd_err_set(err, RQD_EIO, "port", "cannot serve HTTPS on %s:%d (port in use "
                             "or not permitted, or --tls-cert/--tls-key not a certificate and "
                             "its key; libmicrohttpd's reason is logged above)", o->bind, o->port);
        else
            rc = rqd_err_set(err, RQD_EIO, "port", "cannot listen on %s:%d (in use, or no "
                             "permission)", o->bind, o->port);
        goto out;
    }
    LOG(LOG_INFO, "serving %s on %s:%d", tls ? "HTTPS only" : "plain HTTP", o->bind, o->port);
    *out = &h->s;
    h = NULL; /* the caller's now */
out:
    api_free(h ? &h->s : NULL);
    return rc;
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
    /* Waiters are ended again and again: a request in an offloaded step may register one
     * after a pass (the registry refuses new waits once stopping, but not one already
     * under way). Offloaded steps finish on their own: the writer and the trainers are
     * still running. There is no deadline: stopping MHD with a suspended connection is
     * not allowed, and a second signal exits at once if this takes too long. */
    double t0 = rqd_mono(), logged = t0;
    for (;;) {
        rqd_registry_wake_waiters(s->reg, RQD_EUNAVAIL, 0);
        int left = atomic_load(&s->suspended);
        if (left == 0)
            return;
        if (rqd_mono() - logged >= 5.0) {
            logged = rqd_mono();
            LOG(LOG_WARNING, "shutdown: %d requests still running after %.0f s", left,
                logged - t0);
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void api_free(api_server *s)
{
    api_http *h = (api_http *)s; /* every api_server is the first member of an api_http */
    if (h == NULL)
        return;
    if (h->s.mhd)
        MHD_stop_daemon(h->s.mhd);
    api_offload_stop(&h->s); /* after MHD: no request can queue work any more */
    api_cluster_stop(&h->s);
    api_deadline_free(&h->s);
    pthread_mutex_destroy(&h->s.token_mu);
    explicit_bzero(h->s.token, sizeof h->s.token);
    pem_free(&h->tls_cert);
    pem_free(&h->tls_key);
    free(h);
}
