/* api/h_service.c: health, Prometheus metrics, the OpenAPI document and the dashboard
 * with its assets. docs/openapi.json, the page and its chart library (dygraphs, from
 * Debian's libjs-dygraphs, with the package's licence notice) are linked into the binary
 * at build time (the Makefile's EMBED and DASH_GEN), so the page works with no network. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/rqd_buf.h"
#include "../common/rqd_json.h"
#include "../common/rqd_version.h"
#include "internal.h"

extern const char _binary_docs_openapi_json_start[], _binary_docs_openapi_json_end[];
extern const char _binary_api_assets_dashboard_html_start[], _binary_api_assets_dashboard_html_end[];
extern const char _binary_api_assets_dygraph_min_js_start[], _binary_api_assets_dygraph_min_js_end[];
extern const char _binary_api_assets_dygraph_min_css_start[], _binary_api_assets_dygraph_min_css_end[];
extern const char _binary_api_assets_dygraphs_copyright_txt_start[],
    _binary_api_assets_dygraphs_copyright_txt_end[];

/* GET /assets/{name}. The page asks for them as NAME?v=TAG, TAG a hash of the library's
 * bytes put in at build time, so a year's caching never serves another build's library. */
static const struct {
    const char *name, *ctype, *start, *end;
} assets[] = {
    {"dygraph.min.js", "text/javascript; charset=utf-8", _binary_api_assets_dygraph_min_js_start,
     _binary_api_assets_dygraph_min_js_end},
    {"dygraph.min.css", "text/css; charset=utf-8", _binary_api_assets_dygraph_min_css_start,
     _binary_api_assets_dygraph_min_css_end},
    {"dygraphs-copyright.txt", "text/plain; charset=utf-8",
     _binary_api_assets_dygraphs_copyright_txt_start, _binary_api_assets_dygraphs_copyright_txt_end},
};

int h_health(api_req *r)
{
    int cluster;
    if (api_scope(r, 0, &cluster) < 0) /* this node alone unless asked: a router's check */
        return MHD_YES;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "version", REDQD_VERSION);
    rqd_json_add_int(o, "uptime_s", (long long)(rqd_mono() - r->srv->started));
    rqd_json_add_int(o, "agents", rqd_registry_count(r->srv->reg));
    rqd_json_add_int(o, "agents_loading", rqd_registry_loading(r->srv->reg));
    cJSON_AddStringToObject(o, "node", r->srv->o.node);
    if (cluster)
        return api_cluster_ask(r, API_CLUSTER_HEALTH, o);
    return api_reply_json_take(r, 200, o);
}

static int static_bytes(api_req *r, const char *start, const char *end, const char *ctype,
                        const char *cache)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        (size_t)(end - start), (void *)start, MHD_RESPMEM_PERSISTENT);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache);
    return api_queue(r, 200, resp, ctype);
}

int h_openapi(api_req *r)
{
    return static_bytes(r, _binary_docs_openapi_json_start, _binary_docs_openapi_json_end,
                        "application/json", "no-cache");
}

/* GET / (the page, revalidated every time) and GET /assets/{id} (cached for a year). */
int h_dashboard(api_req *r)
{
    if (r->id[0] == '\0')
        return static_bytes(r, _binary_api_assets_dashboard_html_start,
                            _binary_api_assets_dashboard_html_end, "text/html; charset=utf-8",
                            "no-cache");
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
        if (strcmp(r->id, assets[i].name) == 0)
            return static_bytes(r, assets[i].start, assets[i].end, assets[i].ctype,
                                "public, max-age=31536000, immutable");
    return api_problem_status(r, 404, "not_found", "no such asset");
}

/* ------------------------------------------------------------------ metrics */

static void line(rqd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(rqd_buf *b, const char *fmt, ...)
{
    char s[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s, sizeof s, fmt, ap);
    va_end(ap);
    if (n > 0)
        rqd_buf_append(b, s, (size_t)(n < (int)sizeof s ? n : (int)sizeof s - 1));
}

static void help(rqd_buf *b, const char *name, const char *type, const char *text)
{
    line(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static double finite_or_nan(double v) { return isfinite(v) ? v : NAN; }

/* One histogram series: counts[0..nb] per bucket (the last past every bound), label
 * "" or 'route="..."'. */
static void histogram(rqd_buf *b, const char *name, const char *label, const double *bounds,
                      int nb, const long long *counts, double sum)
{
    long long cum = 0;
    for (int i = 0; i <= nb; i++) {
        char le[32];
        cum += counts[i];
        if (i < nb)
            snprintf(le, sizeof le, "%g", bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        line(b, "%s_bucket{%s%sle=\"%s\"} %lld\n", name, label, label[0] ? "," : "", le, cum);
    }
    const char *open = label[0] ? "{" : "", *close = label[0] ? "}" : "";
    line(b, "%s_sum%s%s%s %.6f\n", name, open, label, close, sum);
    line(b, "%s_count%s%s%s %lld\n", name, open, label, close, cum);
}

/* The per-agent series: each row names a metric and says how its value is read off the
 * agent's state snapshot, so that a name and its value cannot drift apart. */
#define LAST(f) (x->have_stats ? finite_or_nan(x->last.f) : NAN)
#define AGENT_METRICS(X)                                                                        \
    X(ENV_STEPS, "redqd_agent_env_steps_total", "counter", "Transitions received.",           \
      (double)x->info.env_steps)                                                              \
    X(UPDATES, "redqd_agent_updates_total", "counter", "Critic updates done.",                \
      (double)x->info.updates)                                                                \
    X(ACTOR_UPDATES, "redqd_agent_actor_updates_total", "counter", "Actor updates done.",     \
      (double)x->info.actor_updates)                                                          \
    X(PENDING, "redqd_agent_pending_updates", "gauge", "Updates owed and not yet done.",      \
      x->pending)                                                                             \
    X(BUFFER, "redqd_agent_buffer_transitions", "gauge", "Rows in the replay buffer.",        \
      (double)x->info.buffer_len)                                                             \
    X(ALPHA, "redqd_agent_alpha", "gauge", "Entropy coefficient.", x->info.alpha)             \
    X(CRITIC_LOSS, "redqd_agent_critic_loss", "gauge", "Latest critic loss.",                 \
      LAST(critic_loss))                                                                      \
    X(ACTOR_LOSS, "redqd_agent_actor_loss", "gauge", "Latest actor loss.", LAST(actor_loss))  \
    X(ALPHA_LOSS, "redqd_agent_alpha_loss", "gauge",                                          \
      "Latest entropy-coefficient loss (auto alpha).", LAST(alpha_loss))                      \
    X(Q_MEAN, "redqd_agent_q_mean", "gauge", "Latest mean Q over batch and ensemble.",        \
      LAST(q_mean))                                                                           \
    X(Q_STD, "redqd_agent_q_std", "gauge", "Latest mean spread of Q across the ensemble.",    \
      LAST(q_std))                                                                            \
    X(EPISODES, "redqd_agent_episodes_total", "counter", "Explore episodes ended.",           \
      (double)x->episodes_done)                                                               \
    X(EPISODE_RETURN, "redqd_agent_episode_return", "gauge",                                  \
      "Return of the latest ended explore episode.", x->last_return)                          \
    X(POLICY_VERSION, "redqd_agent_policy_version", "gauge", "Published policy version.",     \
      (double)x->info.policy_version)                                                         \
    X(UPS, "redqd_agent_updates_per_second", "gauge", "Recent training rate.", x->ups)        \
    X(MEMORY, "redqd_agent_memory_bytes", "gauge",                                            \
      "Memory held by networks, optimisers and buffer.", (double)x->info.bytes)               \
    X(CKPT_BYTES, "redqd_agent_checkpoint_bytes", "gauge", "Size of the latest checkpoint.",  \
      x->have_ckpt ? (double)x->last_ckpt.bytes : NAN)                                        \
    X(SKIPPED, "redqd_agent_skipped_updates_total", "counter",                                \
      "Updates skipped because their loss or gradients were not finite.", (double)x->skipped) \
    X(AVAILABLE, "redqd_agent_available", "gauge",                                            \
      "1 when the agent is ok, 0 when loading or unavailable (state.status).",                \
      x->status == RQD_AGENT_OK ? 1.0 : 0.0)

#define METRIC_ID(id, name, type, help, value) M_##id,
enum { AGENT_METRICS(METRIC_ID) N_AGENT_METRICS };
#undef METRIC_ID

#define METRIC_ROW(id, name, type, help, value) {name, type, help},
static const struct {
    const char *name, *type, *help;
} agent_metrics[] = {AGENT_METRICS(METRIC_ROW)};
#undef METRIC_ROW

static double agent_metric(int m, const rqd_agent_state *x)
{
#define METRIC_CASE(id, name, type, help, value)                                                \
    case M_##id:                                                                                \
        return value;
    switch (m) { AGENT_METRICS(METRIC_CASE) }
#undef METRIC_CASE
    return NAN;
}
#undef LAST

int h_metrics(api_req *r)
{
    api_server *s = r->srv;
    rqd_buf b;
    rqd_agent **v;
    int n;

    rqd_buf_init(&b, 0);
    help(&b, "redqd_uptime_seconds", "gauge", "Seconds since the daemon started.");
    line(&b, "redqd_uptime_seconds %.0f\n", rqd_mono() - s->started);
    help(&b, "redqd_agents", "gauge", "Agents hosted.");
    line(&b, "redqd_agents %d\n", rqd_registry_count(s->reg));

    if (rqd_agent_list(s->reg, &v, &n) == RQD_OK) {
        rqd_agent_state *st = calloc((size_t)(n ? n : 1), sizeof *st);
        for (int i = 0; st && i < n; i++)
            rqd_agent_state_get(v[i], &st[i]);
        for (int m = 0; st && m < N_AGENT_METRICS; m++) {
            help(&b, agent_metrics[m].name, agent_metrics[m].type, agent_metrics[m].help);
            for (int i = 0; i < n; i++) {
                char num[40];
                line(&b, "%s{agent=\"%s\"} %s\n", agent_metrics[m].name, v[i]->name,
                     rqd_json_number_text(agent_metric(m, &st[i]), num, sizeof num));
            }
        }
        free(st);
        rqd_agent_list_free(v, n);
    }

    help(&b, "redqd_http_requests_total", "counter", "HTTP requests by route and status class.");
    for (int i = 0; i <= API_MAX_ROUTES; i++) {
        if (i >= api_route_count() && i != API_MAX_ROUTES)
            continue;
        for (int c = 1; c < 6; c++) {
            long long k = atomic_load(&s->req_count[i][c]);
            if (k)
                line(&b, "redqd_http_requests_total{route=\"%s\",code=\"%dxx\"} %lld\n",
                     api_route_label(i < api_route_count() ? i : -1), c, k);
        }
    }
    help(&b, "redqd_http_request_duration_seconds", "histogram", "HTTP request latency.");
    for (int i = 0; i <= API_MAX_ROUTES; i++) {
        if (i >= api_route_count() && i != API_MAX_ROUTES)
            continue;
        long long counts[API_LATENCY_BUCKETS + 1], total = 0;
        for (int k = 0; k <= API_LATENCY_BUCKETS; k++)
            total += counts[k] = atomic_load(&s->lat_bucket[i][k]);
        if (total == 0)
            continue;
        char label[160];
        snprintf(label, sizeof label, "route=\"%s\"",
                 api_route_label(i < api_route_count() ? i : -1));
        histogram(&b, "redqd_http_request_duration_seconds", label, api_latency_bounds,
                  API_LATENCY_BUCKETS, counts, (double)atomic_load(&s->lat_sum_us[i]) * 1e-6);
    }
    help(&b, "redqd_http_waiting_requests", "gauge", "Requests waiting for training (sync "
         "posts and episode steps, train calls; at most --max-waiting-requests).");
    line(&b, "redqd_http_waiting_requests %d\n", atomic_load(&s->training_waits));
    help(&b, "redqd_http_slow_connections_closed_total", "counter",
         "Connections closed for not sending their request, or taking the answer, in time "
         "(--request-header-timeout, --min-transfer-rate).");
    line(&b, "redqd_http_slow_connections_closed_total %lld\n",
         (long long)atomic_load(&s->slow_closed));
    rqd_writer_counts wc;
    rqd_writer_stats(rqd_registry_writer(s->reg), &wc);
    help(&b, "redqd_db_commit_duration_seconds", "histogram",
         "SQLite write transactions (group commits) and how long each took.");
    histogram(&b, "redqd_db_commit_duration_seconds", "", rqd_commit_bounds, RQD_COMMIT_BUCKETS,
              wc.bucket, wc.seconds);
    help(&b, "redqd_db_write_failures_total", "counter", "Failed write transactions.");
    line(&b, "redqd_db_write_failures_total %lld\n", wc.failures);
    help(&b, "redqd_stats_rows_dropped_total", "counter", "Stats rows given up because the "
         "database refused writes for too long (the others are written once it has room).");
    line(&b, "redqd_stats_rows_dropped_total %lld\n", rqd_registry_stats_dropped(s->reg));
    help(&b, "redqd_db_pruned_rows_total", "counter", "Stored rows deleted in the background: "
         "transitions that left their replay buffer, batch ids past their window, history "
         "past its retention.");
    line(&b, "redqd_db_pruned_rows_total %lld\n", rqd_registry_pruned_rows(s->reg));
    if (b.data == NULL)
        return api_problem_status(r, 503, "unavailable", "out of memory");
    return api_reply_bytes_take(r, 200, "text/plain; version=0.0.4", b.data, b.len);
}
