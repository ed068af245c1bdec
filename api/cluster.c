/* api/cluster.c: one service over several nodes (--peers, docs/operations.md "Running
 * several nodes"). GET /v1/agents (scope=cluster, the default on a node with peers) and
 * GET /v1/health?scope=cluster ask every other node of the list at once, wait at most
 * --peer-timeout for each, merge what came back with this node's own answer, and mark
 * the nodes that did not answer. The node a router picks for such a request thus speaks
 * for the whole cluster; HAProxy cannot merge answers itself.
 *
 * The peer calls hold no thread while they wait. The HTTP thread builds this node's part
 * of the answer (no wait: the registry's list), suspends the request (counted in
 * srv->suspended, like an offloaded one: shutdown waits for it) and hands it to the peer
 * thread, which drives every transfer of every such request through one libcurl multi
 * handle (its connection cache keeps the connections to the peers alive between
 * requests). When the last transfer of a request ends -- answered, failed or timed out
 * -- the peer thread merges, keeps the answer in r->resp and resumes the connection, as
 * an offload thread would (api/offload.c). At most API_CLUSTER_CALLS wait at once; past
 * that 429 busy, so that a flood of cluster lists cannot take every connection.
 *
 * A node asks the others with scope=node (their own agents only), so no request fans out
 * twice; each sends the node's bearer token (a cluster shares one).
 *
 * THREADS
 * -------
 * api_cluster_start/stop()  the main thread (api_start, api_free after MHD stopped).
 * api_cluster_ask()         an HTTP thread; suspends r and queues it, or answers at once.
 * cluster_main()            the peer thread: owns the multi handle and every call queued.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rqd_json.h"
#include "../daemon/log.h"
#include "internal.h"

/* Cluster-wide requests waiting for their peers at once; each holds a connection for at
 * most --peer-timeout. A dashboard polls one every few seconds, so 64 is ample. */
#define API_CLUSTER_CALLS 64
/* Largest answer read from a peer: a list of --max-agents (10^6 at most) agents is
 * about 150 bytes each; 256 MiB bounds a peer that sends without end. */
#define API_CLUSTER_MAX_ANSWER (256u << 20)

typedef struct cluster_call cluster_call;

typedef struct {
    cluster_call *call;
    const rqd_peer *peer;
    CURL *easy;
    rqd_buf body;                  /* the answer, up to API_CLUSTER_MAX_ANSWER */
    long status;                   /* HTTP status; 0 when none came */
    CURLcode result;
    char error[CURL_ERROR_SIZE];
} peer_xfer;

struct cluster_call {
    cluster_call *next;
    api_req *r;
    int kind;                      /* API_CLUSTER_AGENTS, API_CLUSTER_HEALTH */
    cJSON *local;                  /* this node's answer; the merge's base */
    struct curl_slist *headers;    /* Authorization (the token at the time of the call) */
    int n, left;                   /* transfers, and those still running */
    peer_xfer x[];
};

struct api_cluster {
    pthread_t thread;
    pthread_mutex_t mu;
    cluster_call *incoming;        /* queued by HTTP threads, taken by the peer thread */
    int stopping;
    atomic_int calls;              /* calls queued or running (API_CLUSTER_CALLS) */
    CURLM *multi;                  /* the peer thread's */
};

/* This node's entry in --peers, or NULL when it is not listed. */
static const rqd_peer *self_peer(const api_opts *o)
{
    for (int i = 0; i < o->n_peers; i++)
        if (strcmp(o->peers[i].name, o->node) == 0)
            return &o->peers[i];
    return NULL;
}

int api_cluster_others(const api_server *s)
{
    return s->o.n_peers - (self_peer(&s->o) != NULL);
}

/* ------------------------------------------------------------------ merging */

static int by_name_then_node(const void *pa, const void *pb)
{
    const cJSON *a = *(const cJSON *const *)pa, *b = *(const cJSON *const *)pb;
    const cJSON *na = cJSON_GetObjectItemCaseSensitive(a, "name");
    const cJSON *nb = cJSON_GetObjectItemCaseSensitive(b, "name");
    int c = strcmp(cJSON_IsString(na) ? na->valuestring : "", cJSON_IsString(nb) ? nb->valuestring : "");
    if (c != 0)
        return c;
    na = cJSON_GetObjectItemCaseSensitive(a, "node");
    nb = cJSON_GetObjectItemCaseSensitive(b, "node");
    return strcmp(cJSON_IsString(na) ? na->valuestring : "", cJSON_IsString(nb) ? nb->valuestring : "");
}

/* Sorts the array's items (byte order of name, then node: API.md's order of a list). */
static void sort_agents(cJSON *arr)
{
    int n = cJSON_GetArraySize(arr), i = 0;
    cJSON **v = n > 0 ? malloc((size_t)n * sizeof *v) : NULL;
    if (v == NULL)
        return; /* out of memory: unsorted, still complete */
    while (arr->child)
        v[i++] = cJSON_DetachItemViaPointer(arr, arr->child);
    qsort(v, (size_t)n, sizeof *v, by_name_then_node);
    for (i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, v[i]);
    free(v);
}

/* What a peer answered, as an object, or NULL with why (its status or the error). */
static cJSON *peer_answer(peer_xfer *x, const char **status, char *why, size_t cap)
{
    cJSON *o = NULL;
    if (x->result != CURLE_OK) {
        *status = "unreachable";
        snprintf(why, cap, "%s", x->error[0] ? x->error : curl_easy_strerror(x->result));
        return NULL;
    }
    *status = "error";
    if (x->status != 200) {
        snprintf(why, cap, "answered HTTP %ld", x->status);
        return NULL;
    }
    if (rqd_buf_append(&x->body, "", 1) < 0 ||
        (o = cJSON_ParseWithLength((const char *)x->body.data, x->body.len)) == NULL ||
        !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        snprintf(why, cap, "its answer is not a JSON object");
        return NULL;
    }
    *status = "ok";
    return o;
}

/* The node entry of "nodes": name, url, status, and detail when it is not ok. */
static cJSON *node_entry(const char *name, const char *url, const char *status, const char *why)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    if (url)
        cJSON_AddStringToObject(e, "url", url);
    else
        cJSON_AddNullToObject(e, "url");
    cJSON_AddStringToObject(e, "status", status);
    if (why)
        cJSON_AddStringToObject(e, "detail", why);
    else
        cJSON_AddNullToObject(e, "detail");
    return e;
}

/* Health: every field of a node's own health document goes into its entry. */
static void copy_fields(cJSON *to, const cJSON *from, const char *const *keys)
{
    for (int i = 0; keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, keys[i]);
        if (v && !cJSON_GetObjectItemCaseSensitive(to, keys[i]))
            cJSON_AddItemToObject(to, keys[i], cJSON_Duplicate(v, 1));
    }
}

static const char *const health_keys[] = {"version", "uptime_s", "agents", "agents_loading",
                                          NULL};

/* The merged answer of c: this node's own answer with the others' added. */
static cJSON *merge(api_server *s, cluster_call *c)
{
    const rqd_peer *me = self_peer(&s->o);
    cJSON *out = c->local, *nodes = cJSON_CreateArray();
    cJSON *agents = cJSON_GetObjectItemCaseSensitive(out, "agents");
    int down = 0;

    c->local = NULL;
    cJSON *mine = node_entry(s->o.node, me ? me->url : NULL, "ok", NULL);
    if (c->kind == API_CLUSTER_AGENTS)
        rqd_json_add_int(mine, "agents", cJSON_GetArraySize(agents));
    else
        copy_fields(mine, out, health_keys);
    cJSON_AddItemToArray(nodes, mine);
    for (int i = 0; i < c->n; i++) {
        peer_xfer *x = &c->x[i];
        const char *status;
        char why[CURL_ERROR_SIZE + 64];
        cJSON *ans = peer_answer(x, &status, why, sizeof why);
        const cJSON *list = ans ? cJSON_GetObjectItemCaseSensitive(ans, "agents") : NULL;
        if (ans && c->kind == API_CLUSTER_AGENTS && !cJSON_IsArray(list)) {
            status = "error";
            snprintf(why, sizeof why, "its answer has no \"agents\" list");
        }
        cJSON *e = node_entry(x->peer->name, x->peer->url, status,
                              strcmp(status, "ok") == 0 ? NULL : why);
        down += strcmp(status, "ok") != 0;
        if (strcmp(status, "ok") == 0 && c->kind == API_CLUSTER_AGENTS) {
            int k = 0;
            for (const cJSON *it = list->child; it; it = it->next) {
                if (!cJSON_IsObject(it) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "name")))
                    continue;
                cJSON *dup = cJSON_Duplicate(it, 1);
                cJSON_DeleteItemFromObjectCaseSensitive(dup, "node");
                cJSON_AddStringToObject(dup, "node", x->peer->name);
                cJSON_AddItemToArray(agents, dup);
                k++;
            }
            rqd_json_add_int(e, "agents", k);
        } else if (strcmp(status, "ok") == 0) {
            copy_fields(e, ans, health_keys);
        }
        cJSON_AddItemToArray(nodes, e);
        cJSON_Delete(ans);
    }
    if (agents)
        sort_agents(agents);
    cJSON_AddItemToObject(out, "nodes", nodes);
    rqd_json_add_int(out, "nodes_unreachable", down);
    return out;
}

static void call_free(cluster_call *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->x[i].easy)
            curl_easy_cleanup(c->x[i].easy);
        rqd_buf_free(&c->x[i].body);
    }
    curl_slist_free_all(c->headers);
    cJSON_Delete(c->local);
    free(c);
}

/* On the peer thread: answers c's suspended request with the merge, resumes it, frees c. */
static void finish(api_server *s, cluster_call *c)
{
    api_req *r = c->r;
    cJSON *out = merge(s, c);
    call_free(c);
    r->deferred = 1; /* api_queue keeps the answer for the HTTP thread */
    int res = api_reply_json_take(r, 200, out);
    atomic_fetch_sub(&s->cluster->calls, 1);
    api_resume(r, res);
}

/* ------------------------------------------------------------------ transfers */

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    peer_xfer *x = arg;
    return rqd_buf_append(&x->body, p, size * n) == 0 ? size * n : 0; /* 0: abort */
}

static int xfer_setup(api_server *s, cluster_call *c, peer_xfer *x, const char *path)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", x->peer->url, path);
    rqd_buf_init(&x->body, API_CLUSTER_MAX_ANSWER);
    if ((x->easy = curl_easy_init()) == NULL)
        return -1;
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)s->o.peer_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)s->o.peer_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->error);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "redqd-peer");
    if (c->headers)
        curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, c->headers);
    return 0;
}

/* The token as an Authorization header list (NULL without a token or out of memory). */
static struct curl_slist *auth_header(api_server *s)
{
    char h[300];
    struct curl_slist *l = NULL;
    pthread_mutex_lock(&s->token_mu);
    if (s->have_token)
        snprintf(h, sizeof h, "Authorization: Bearer %s", s->token);
    pthread_mutex_unlock(&s->token_mu);
    if (s->have_token)
        l = curl_slist_append(NULL, h);
    explicit_bzero(h, sizeof h);
    return l;
}

static void *cluster_main(void *p)
{
    api_server *s = p;
    struct api_cluster *k = s->cluster;
    int in_flight = 0;

    pthread_setname_np(pthread_self(), "redqd-peers");
    for (;;) {
        pthread_mutex_lock(&k->mu);
        cluster_call *got = k->incoming;
        k->incoming = NULL;
        int stopping = k->stopping;
        pthread_mutex_unlock(&k->mu);
        for (cluster_call *c = got, *next; c; c = next) {
            next = c->next;
            for (int i = 0; i < c->n; i++) {
                if (curl_multi_add_handle(k->multi, c->x[i].easy) == CURLM_OK) {
                    in_flight++;
                    continue;
                }
                c->x[i].result = CURLE_OUT_OF_MEMORY; /* counts as not answered */
                curl_easy_cleanup(c->x[i].easy);
                c->x[i].easy = NULL;
                if (--c->left == 0)
                    finish(s, c);
            }
        }
        int running = 0;
        curl_multi_perform(k->multi, &running);
        CURLMsg *m;
        int q;
        while ((m = curl_multi_info_read(k->multi, &q)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            peer_xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            x->result = m->data.result;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &x->status);
            curl_multi_remove_handle(k->multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
            x->easy = NULL;
            in_flight--;
            if (--x->call->left == 0)
                finish(s, x->call);
        }
        if (stopping && in_flight == 0) {
            pthread_mutex_lock(&k->mu);
            int empty = k->incoming == NULL;
            pthread_mutex_unlock(&k->mu);
            if (empty)
                break;
        }
        curl_multi_poll(k->multi, NULL, 0, 1000, NULL); /* woken by curl_multi_wakeup */
    }
    return NULL;
}

int api_cluster_ask(api_req *r, int kind, cJSON *local)
{
    api_server *s = r->srv;
    struct api_cluster *k = s->cluster;
    int n = api_cluster_others(s);
    cluster_call *c = NULL;

    if (local == NULL)
        return api_problem_status(r, 503, "unavailable", "out of memory");
    if (k == NULL || n == 0) { /* a node alone: its own answer, itself as the one node */
        cluster_call alone = {.r = r, .kind = kind, .local = local};
        return api_reply_json_take(r, 200, merge(s, &alone));
    }
    if (atomic_fetch_add(&k->calls, 1) >= API_CLUSTER_CALLS) {
        atomic_fetch_sub(&k->calls, 1);
        cJSON_Delete(local);
        char d[160];
        snprintf(d, sizeof d, "%d cluster-wide requests are already waiting for other nodes; "
                 "retry shortly", API_CLUSTER_CALLS);
        return api_problem_status(r, 429, "busy", d);
    }
    if ((c = calloc(1, sizeof *c + (size_t)n * sizeof c->x[0])) == NULL) {
        atomic_fetch_sub(&k->calls, 1);
        cJSON_Delete(local);
        return api_problem_status(r, 503, "unavailable", "out of memory");
    }
    c->r = r;
    c->kind = kind;
    c->local = local;
    c->headers = auth_header(s);
    const char *path = kind == API_CLUSTER_AGENTS ? "/v1/agents?scope=node" : "/v1/health";
    for (int i = 0; i < s->o.n_peers; i++) {
        if (strcmp(s->o.peers[i].name, s->o.node) == 0)
            continue;
        peer_xfer *x = &c->x[c->n++];
        x->call = c;
        x->peer = &s->o.peers[i];
        x->result = CURLE_OUT_OF_MEMORY; /* until the transfer ends otherwise */
        if (xfer_setup(s, c, x, path) == 0)
            c->left++;
    }
    if (c->left == 0) { /* no transfer could even be set up: every other node marked */
        atomic_fetch_sub(&k->calls, 1);
        cJSON *out = merge(s, c);
        call_free(c);
        return api_reply_json_take(r, 200, out);
    }
    atomic_fetch_add(&s->suspended, 1);
    r->waiting = 1;
    r->ready = 0;
    MHD_suspend_connection(r->conn);
    pthread_mutex_lock(&k->mu);
    c->next = k->incoming;
    k->incoming = c;
    pthread_mutex_unlock(&k->mu);
    curl_multi_wakeup(k->multi);
    return MHD_YES;
}

int api_cluster_start(api_server *s)
{
    struct api_cluster *k;
    if (api_cluster_others(s) == 0)
        return RQD_OK; /* a node alone answers every cluster-wide request itself */
    if ((k = calloc(1, sizeof *k)) == NULL)
        return RQD_ENOMEM;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (k->multi = curl_multi_init()) == NULL) {
        free(k);
        return RQD_ENOMEM;
    }
    pthread_mutex_init(&k->mu, NULL);
    s->cluster = k;
    if (pthread_create(&k->thread, NULL, cluster_main, s) != 0) {
        curl_multi_cleanup(k->multi);
        pthread_mutex_destroy(&k->mu);
        free(k);
        s->cluster = NULL;
        return RQD_ENOMEM;
    }
    LOG(LOG_INFO, "cluster: node %s, %d other nodes asked for cluster-wide answers "
        "(--peer-timeout %d ms)", s->o.node, api_cluster_others(s), s->o.peer_timeout_ms);
    return RQD_OK;
}

void api_cluster_stop(api_server *s)
{
    struct api_cluster *k = s ? s->cluster : NULL;
    if (k == NULL)
        return;
    pthread_mutex_lock(&k->mu);
    k->stopping = 1;
    pthread_mutex_unlock(&k->mu);
    curl_multi_wakeup(k->multi);
    pthread_join(k->thread, NULL);
    curl_multi_cleanup(k->multi);
    curl_global_cleanup();
    pthread_mutex_destroy(&k->mu);
    free(k);
    s->cluster = NULL;
}
