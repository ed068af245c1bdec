/* api/internal.h: the request context and the helpers every handler uses. */
#ifndef API_INTERNAL_H
#define API_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../common/rqd_buf.h"
#include "../common/rqd_clock.h"
#include "api.h"
#include "json_scan.h"

typedef struct cJSON cJSON;
typedef struct api_req api_req;
typedef struct api_conn api_conn;
typedef struct api_deadlines api_deadlines;

enum { BODY_NONE = 0, BODY_JSON = 1, BODY_OCTETS = 2 };

typedef struct {
    const char *method;
    const char *pattern;  /* segments; {name} and {id} capture */
    int (*handler)(api_req *r);
    int body;
    int open;             /* no token needed */
    int wait;             /* may wait (commit, lock, training): runs offloaded */
} api_route;

/* Route index ranges for metrics: one slot per route plus "unmatched". */
#define API_MAX_ROUTES 48
/* Request latency histogram bounds, seconds (api/http.c); one more bucket for +Inf. */
#define API_LATENCY_BUCKETS 11
extern const double api_latency_bounds[API_LATENCY_BUCKETS];

struct api_server {
    struct MHD_Daemon *mhd;
    rqd_registry *reg;
    api_opts o;
    char token[256];
    int have_token;
    pthread_mutex_t token_mu;
    atomic_int stopping;
    atomic_int suspended;       /* connections currently suspended */
    atomic_int training_waits;  /* ... of which waiting for training (capped) */
    struct api_offload *offload; /* threads for work that would block an HTTP thread */
    struct api_cluster *cluster; /* the peer thread (api/cluster.c); NULL without peers */
    double started;             /* monotonic seconds */
    api_deadlines *deadlines;   /* api/deadline.c */
    atomic_llong slow_closed;   /* connections closed past their deadline */
    /* metrics: requests by route and status class, latency histogram */
    atomic_llong req_count[API_MAX_ROUTES + 1][6];
    atomic_llong lat_bucket[API_MAX_ROUTES + 1][API_LATENCY_BUCKETS + 1];
    atomic_llong lat_sum_us[API_MAX_ROUTES + 1];
};

struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    const api_route *route;
    int route_index;
    char method[8];
    char path[256];
    char name[80];              /* {name} */
    char id[80];                /* {id} */
    int is_head;
    rqd_buf body;
    int body_error;             /* RQD_ETOOBIG once the body passed the cap */
    int answered;
    unsigned status;
    double t0;
    api_conn *dl;               /* the connection's deadline (api/deadline.c) */

    /* Offloaded requests (api/offload.c) and waits for training (api/suspend.c). */
    int waiting;                /* suspended: on_request waits for ready */
    int ready;                  /* resumed: result (and resp, if any) are set */
    int result;                 /* the offloaded step's MHD result */
    int deferred;               /* on an offload thread: api_queue keeps the answer ... */
    struct MHD_Response *resp;  /* ... here, queued once resumed */
    int (*step)(api_req *r);    /* what the offload thread runs next */
    api_req *queue_next;        /* the offload queue's link */
    rqd_waiter w;
    rqd_agent *agent;           /* referenced while waiting for training */
    int wake_status;            /* the waiter's status (rqd_waiter cb) */
    rqd_err wake_err;           /* why the wait was refused (wake_status < 0) */
    int (*cont)(api_req *r);    /* runs on an offload thread once the waiter fired */
    int wait_slot;              /* holds one of --max-waiting-requests */
    char *answer;               /* prepared JSON answer (sync posts) */
    int retry_after;            /* seconds for a Retry-After header (a 503 of RQD_EAGAIN) */
};

/* Retry-After of a 503 whose request did nothing and will succeed later (an agent moving
 * to another node, or still loading). A move of a small agent takes well under a second
 * and a large one a few; clients back off by it (the Python client retries 10 times). */
#define API_RETRY_AFTER_S 2

/* ---- request deadlines (api/deadline.c) ---- */
int api_deadline_init(api_server *s, int header_timeout, long long min_rate);
void api_deadline_free(api_server *s);
/* MHD_OPTION_NOTIFY_CONNECTION: tracks each connection from accept to close. */
void api_deadline_on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                                enum MHD_ConnectionNotificationCode code);
api_conn *api_deadline_of(struct MHD_Connection *conn); /* NULL: untracked */
/* The request's phases; each takes a NULL conn as a no-op. */
void api_deadline_headers_done(api_server *s, api_conn *c);
void api_deadline_body(api_server *s, api_conn *c, size_t n);
void api_deadline_clear(api_server *s, api_conn *c);        /* body complete */
void api_deadline_answer_queued(api_server *s, api_conn *c);
void api_deadline_next_request(api_server *s, api_conn *c); /* answer sent */

/* ---- the bearer token (api/token.c; api_reload_token in api.h) ---- */
/* Whether auth is "Bearer <the token>", compared in constant time. */
int api__token_ok(api_server *s, const char *auth);

/* ---- responses (api/reply.c): each queues the answer and returns the MHD result ---- */
/* Queues resp on an HTTP thread, inside MHD's callback, and takes it (api_queue's last
 * step, and the completion of an answer an offload thread kept). */
int api__queue_now(api_req *r, unsigned status, struct MHD_Response *resp);
/* Queues resp (its Content-Type ctype unless NULL) and takes it: the one place an
 * answer is queued (metrics, deadlines). resp NULL is MHD_NO. */
int api_queue(api_req *r, unsigned status, struct MHD_Response *resp, const char *ctype);
int api_reply_json_take(api_req *r, unsigned status, cJSON *obj);      /* takes obj */
int api_reply_text(api_req *r, unsigned status, const char *ctype, const char *text);
int api_reply_bytes_take(api_req *r, unsigned status, const char *ctype, void *data, size_t len);
int api_reply_empty(api_req *r, unsigned status);
int api_problem(api_req *r, const rqd_err *e);
int api_problem_status(api_req *r, unsigned status, const char *code, const char *detail);

/* ---- input ---- */
/* The body as strict JSON, or NULL with err filled (api_json_parse). */
cJSON *api_body_json(api_req *r, rqd_err *err);
/* The same under a route's bounds (api_json_parse_bounded: *each, when not NULL, gets
 * the text of an array left out of the tree to be read one element at a time). */
cJSON *api_body_json_bounded(api_req *r, const api_json_bound *b, int nb, api_json_span *each,
                             rqd_err *err);
const char *api_query(api_req *r, const char *key);
/* ?scope=node or ?scope=cluster into *cluster (dflt when absent); otherwise answers 400
 * naming the parameter and returns -1. */
int api_scope(api_req *r, int dflt, int *cluster);
/* The paging query of stats and evaluations: ?since= (>= 0, default 0), &limit= (1 ...
 * 100000, default 1000), &format=json|csv. RQD_EINVAL naming the parameter. */
int api_page(api_req *r, long long *since, long long *limit, int *csv, rqd_err *err);
/* Answers a page of rows (stats, evaluations; n of size bytes each, taken and freed) as
 * {"rows": [...]} or, with csv, text/csv under header. */
int api_reply_rows(api_req *r, int csv, const char *header, void *rows, int n, size_t size,
                   cJSON *(*to_json)(const void *row), void (*to_csv)(rqd_buf *b, const void *row));
/* One CSV field: v, or nothing when it is not finite; then ',' or '\n' when last. */
void api_csv_num(rqd_buf *b, double v, int last);

/* ---- offloading (api/offload.c) and waits for training (api/suspend.c) ---- */
/* A step's result when a waiter took the request over (it must not be touched after). */
#define API_WAITING 2
/* Suspends r and runs step(r) on an offload thread with r->deferred set (429 past
 * --max-waiting-requests, 503 when stopping); returns the MHD result for now. */
int api_offload(api_req *r, int (*step)(api_req *r));
/* Queues step(r) on the offload threads again (r is suspended already). */
void api_offload_again(api_req *r, int (*step)(api_req *r));
/* Resumes r with the MHD result of its last step (its answer, if any, is in r->resp). */
void api_resume(api_req *r, int result);
int api_offload_start(api_server *s);
void api_offload_stop(api_server *s);
/* Registers r's waiter on a (taking the caller's reference to a) and returns
 * API_WAITING; cont(r) runs on an offload thread once it fires. When the wait is already
 * over or refused, runs cont(r) at once and returns its result; past
 * --max-waiting-requests, answers 429 (a request whose wait follows a commit takes its
 * slot before: api_wait_slot). Offloaded steps only. */
int api_wait(api_req *r, rqd_agent *a, int kind, double target, int k,
             int (*cont)(api_req *r));
/* Takes one of the --max-waiting-requests slots for r (1), or 0 when none is free;
 * released when the wait ends, or when r completes without waiting. */
int api_wait_slot(api_req *r);
void api_wait_slot_release(api_req *r);
int api_wait_busy(api_req *r); /* the 429 answer when no slot is free */

/* After a wake: answers the problem for a refused, conflicting or cancelled wait and
 * returns its MHD result, or returns -1 when the wait succeeded (0) or timed out (1). */
int api_wake_problem(api_req *r);

/* ---- one service over several nodes (api/cluster.c) ---- */
enum { API_CLUSTER_AGENTS = 0, API_CLUSTER_HEALTH = 1 };
/* Answers r with local (taken: this node's own answer to GET /v1/agents or /v1/health)
 * merged with every other node's, each asked with --peer-timeout, plus "nodes" (name,
 * url, status ok/unreachable/error, detail) and "nodes_unreachable". Suspends r while the
 * peer thread asks; a node without other nodes answers at once. HTTP threads only. */
int api_cluster_ask(api_req *r, int kind, cJSON *local);
/* The nodes of --peers other than this one. */
int api_cluster_others(const api_server *s);
int api_cluster_start(api_server *s);
void api_cluster_stop(api_server *s);

/* ---- routes and handlers ---- */
const api_route *api_route_match(const char *method, const char *path, api_req *r,
                                 int *path_known, char *allow, size_t allow_len, int *index);
int api_route_count(void);
const char *api_route_label(int index);

int h_health(api_req *r);
int h_metrics(api_req *r);
int h_openapi(api_req *r);
int h_dashboard(api_req *r);
int h_agents_create(api_req *r);
int h_agents_list(api_req *r);
int h_agents_get(api_req *r);
int h_agents_patch(api_req *r);
int h_agents_delete(api_req *r);
int h_act(api_req *r);
int h_transitions(api_req *r);
int h_episode_start(api_req *r);
int h_episode_step(api_req *r);
int h_episode_delete(api_req *r);
int h_episode_list(api_req *r);
int h_train(api_req *r);
int h_stats(api_req *r);
int h_ckpt_create(api_req *r);
int h_ckpt_list(api_req *r);
int h_ckpt_get(api_req *r);
int h_ckpt_delete(api_req *r);
int h_restore(api_req *r);
int h_import(api_req *r);
int h_policy(api_req *r);
int h_agents_put(api_req *r);
int h_eval_post(api_req *r);
int h_eval_list(api_req *r);
int h_move_begin(api_req *r);
int h_move_file(api_req *r);
int h_move_cancel(api_req *r);

/* A JSON array of n floats. */
cJSON *api_json_floats_out(const float *v, int n);
/* Adds k: v to o, or k: null when v is not finite (a value not known yet). */
void api_json_num_or_null(cJSON *o, const char *k, double v);
/* Answers the agent as GET shows it with status, or the problem in err when rc < 0;
 * releases the caller's reference to a either way. */
int api_reply_agent(api_req *r, rqd_agent *a, unsigned status, int rc, const rqd_err *err);

/* The agent named in the path (referenced), or NULL after answering 404. */
rqd_agent *api_agent(api_req *r);
/* The agent as GET /v1/agents/{name} shows it. */
cJSON *api_agent_json(rqd_agent *a);

#endif
