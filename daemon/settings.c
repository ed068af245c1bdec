/* daemon/settings.c: the settings table and its three sources (precedence: command line,
 * then REDQD_* environment, then the config file, then the defaults). */
#include "settings.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/rqd_limits.h"
#include "../common/rqd_version.h"
#include "../storage/store.h"
#include "log.h"

/* T_MAGNITUDE: a positive float32 bound, written as a C number ("1e9"). */
/* T_NODE: a node name; T_PEERS: "name=url,name=url,..." (rqd_peer). */
enum { T_STR, T_INT, T_SIZE, T_LEVEL, T_SYNC, T_MAGNITUDE, T_NODE, T_PEERS };

typedef struct {
    const char *name;  /* config-file key; flag is --name with '_' as '-' */
    const char *env;
    int type;
    size_t off;
    size_t cap;        /* T_STR: buffer size */
    const char *dflt;
    long long min, max;
    const char *help;
} setting;

#define OFF(f) offsetof(rqd_settings, f)
#define CAP(f) sizeof(((rqd_settings *)0)->f)

static const setting table[] = {
    {"bind", "REDQD_BIND", T_STR, OFF(bind), CAP(bind), "127.0.0.1", 0, 0,
     "address to listen on"},
    {"port", "REDQD_PORT", T_INT, OFF(port), 0, "8470", 1, 65535, "TCP port"},
    {"data_dir", "REDQD_DATA_DIR", T_STR, OFF(data_dir), CAP(data_dir), "./redqd-data", 0, 0,
     "directory of redqd.db"},
    {"http_threads", "REDQD_HTTP_THREADS", T_INT, OFF(http_threads), 0, "4", 1, 256,
     "HTTP worker threads"},
    {"trainer_threads", "REDQD_TRAINER_THREADS", T_INT, OFF(trainer_threads), 0, "2", 1, 256,
     "training threads shared fairly by all agents"},
    {"max_body", "REDQD_MAX_BODY", T_SIZE, OFF(max_body), 0, "16M", 1024, 1LL << 30,
     "largest JSON request body (bytes; K, M, G suffixes)"},
    {"max_import", "REDQD_MAX_IMPORT", T_SIZE, OFF(max_import), 0, "1G", 1024, 1LL << 40,
     "largest checkpoint import (bytes)"},
    {"log_level", "REDQD_LOG_LEVEL", T_LEVEL, OFF(log_level), 0, "info", 0, 0,
     "error, warning, notice, info or debug (one line per request)"},
    {"token_file", "REDQD_TOKEN_FILE", T_STR, OFF(token_file), CAP(token_file), "", 0, 0,
     "file whose first line is the API bearer token (SIGHUP rereads it)"},
    {"sqlite_sync", "REDQD_SQLITE_SYNC", T_SYNC, OFF(sqlite_full), 0, "normal", 0, 0,
     "normal (survives process crashes) or full (also power loss)"},
    {"max_agents", "REDQD_MAX_AGENTS", T_INT, OFF(max_agents), 0, "1024", 1, 1000000,
     "agents one daemon hosts"},
    {"max_connections", "REDQD_MAX_CONNECTIONS", T_INT, OFF(max_connections), 0, "512", 4,
     100000, "concurrent HTTP connections"},
    {"connection_timeout", "REDQD_CONNECTION_TIMEOUT", T_INT, OFF(connection_timeout), 0, "30",
     1, 3600, "seconds of silence before a connection is closed (slow clients)"},
    {"max_connections_per_ip", "REDQD_MAX_CONNECTIONS_PER_IP", T_INT, OFF(max_per_ip), 0, "0",
     0, 100000, "concurrent connections from one IP address (0 = only --max-connections)"},
    {"request_header_timeout", "REDQD_REQUEST_HEADER_TIMEOUT", T_INT, OFF(header_timeout), 0,
     "30", 1, 3600, "seconds a client has to send a request's line and headers (slowloris)"},
    {"min_transfer_rate", "REDQD_MIN_TRANSFER_RATE", T_SIZE, OFF(min_transfer_rate), 0, "1K", 0,
     1LL << 30, "bytes/s a request body must keep arriving at, and an answer be taken at, "
     "after a grace of --request-header-timeout (0 = no such rule)"},
    {"sync_timeout", "REDQD_SYNC_TIMEOUT", T_INT, OFF(sync_timeout), 0, "600", 1, 86400,
     "seconds a sync-mode post or a train call may wait for its updates"},
    {"max_waiting_requests", "REDQD_MAX_WAITING_REQUESTS", T_INT, OFF(max_waiting), 0, "256",
     1, 100000, "requests that may wait at once for storage or training (past it 429 busy)"},
    {"tls_cert", "REDQD_TLS_CERT", T_STR, OFF(tls_cert), CAP(tls_cert), "", 0, 0,
     "PEM certificate (chain) for HTTPS; needs --tls-key"},
    {"tls_key", "REDQD_TLS_KEY", T_STR, OFF(tls_key), CAP(tls_key), "", 0, 0,
     "PEM private key for HTTPS"},
    {"max_db_size", "REDQD_MAX_DB_SIZE", T_SIZE, OFF(max_db_size), 0, "0", 0, 1LL << 50,
     "bytes the database may grow to (0 = unlimited); past it writes answer 503"},
    {"sqlite_max_length", "REDQD_SQLITE_MAX_LENGTH", T_SIZE, OFF(sqlite_max_length), 0,
     "1000000000", STORE_MIN_VALUE_LIMIT, STORE_MAX_VALUE_LIMIT,
     "SQLite's limit on the bytes of one value; checkpoints are stored in 16 MiB parts, so "
     "lowering it changes nothing but lets tests show that on states of a few hundred MB"},
    {"max_obs_dim", "REDQD_MAX_OBS_DIM", T_INT, OFF(limits.obs_dim), 0, "4096", 1,
     RQD_MAX_OBS_DIM, "largest obs_dim of a new agent"},
    {"max_act_dim", "REDQD_MAX_ACT_DIM", T_INT, OFF(limits.act_dim), 0, "256", 1,
     RQD_MAX_ACT_DIM, "largest act_dim of a new agent"},
    {"max_hidden_layers", "REDQD_MAX_HIDDEN_LAYERS", T_INT, OFF(limits.hidden_layers), 0, "8",
     1, RQD_MAX_HIDDEN_LAYERS, "most hidden layers in a new agent's networks"},
    {"max_hidden_width", "REDQD_MAX_HIDDEN_WIDTH", T_INT, OFF(limits.hidden_width), 0, "4096",
     1, RQD_MAX_HIDDEN_WIDTH, "widest hidden layer of a new agent"},
    {"max_ensemble", "REDQD_MAX_ENSEMBLE", T_INT, OFF(limits.ensemble), 0, "64", 1,
     RQD_MAX_ENSEMBLE, "largest ensemble_size of a new agent"},
    {"max_batch", "REDQD_MAX_BATCH", T_INT, OFF(limits.batch), 0, "8192", 1, RQD_MAX_BATCH,
     "largest batch_size of a new agent"},
    {"max_buffer", "REDQD_MAX_BUFFER", T_SIZE, OFF(limits.buffer), 0, "100000000", 1,
     RQD_MAX_BUFFER, "largest buffer_size (transitions) of a new agent"},
    {"max_agent_memory", "REDQD_MAX_AGENT_MEMORY", T_SIZE, OFF(limits.agent_bytes), 0, "4G",
     1LL << 20, (long long)RQD_MAX_AGENT_BYTES,
     "bytes a new agent's networks, optimisers and update scratch may need"},
    {"max_transitions_per_post", "REDQD_MAX_TRANSITIONS_PER_POST", T_INT,
     OFF(limits.transitions_per_post), 0, "65536", 1, 1 << 24, "transitions in one post"},
    {"max_obs_per_act", "REDQD_MAX_OBS_PER_ACT", T_INT, OFF(limits.obs_per_act), 0, "4096", 1,
     1 << 20, "observations in one act request"},
    {"max_open_episodes", "REDQD_MAX_OPEN_EPISODES", T_INT, OFF(limits.open_episodes), 0,
     "10000", 1, 10000000, "episodes one agent may have open at once"},
    {"max_abs_value", "REDQD_MAX_ABS_VALUE", T_MAGNITUDE, OFF(limits.max_abs_value), 0, "1e9",
     0, 0, "largest magnitude of an observation, reward or action bound a request may carry "
     "(a positive number; past 1e9 an update's sums may overflow float32)"},
    {"node", "REDQD_NODE", T_NODE, OFF(node), CAP(node), "", 0, 0,
     "this node's name in a cluster: a map value of the router and the 'node' of its "
     "agents (default: the host name)"},
    {"peers", "REDQD_PEERS", T_PEERS, OFF(peers_text), CAP(peers_text), "", 0, 0,
     "the cluster's nodes, 'name=http://host:port,...' (this one may be listed too): "
     "GET /v1/agents and ?scope=cluster ask them (docs/operations.md)"},
    {"peer_timeout", "REDQD_PEER_TIMEOUT", T_INT, OFF(peer_timeout_ms), 0, "1000", 50, 60000,
     "milliseconds a cluster-wide answer waits for each other node before marking it "
     "unreachable"},
    {"config", "REDQD_CONFIG", T_STR, OFF(config_file), CAP(config_file), "", 0, 0,
     "config file: one 'key = value' per line, keys as above with '_'"},
    {NULL, NULL, 0, 0, 0, NULL, 0, 0, NULL},
};

static int parse_size(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v)
        return -1;
    long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1LL << 10;
    else if (*end == 'M' || *end == 'm')
        mul = 1LL << 20;
    else if (*end == 'G' || *end == 'g')
        mul = 1LL << 30;
    if (mul != 1)
        end++;
    if (*end != '\0' || n < 0 || n > LLONG_MAX / mul)
        return -1;
    *out = n * mul;
    return 0;
}

/* A node name: an agent name's characters and length (API.md), so that it can be an
 * HAProxy backend suffix and map value as it is. */
static int node_name_ok(const char *v, size_t len)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    if (len < 1 || len > RQD_MAX_NODE_NAME || strchr(alnum, v[0]) == NULL || v[0] == '\0')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (v[i] == '\0' || (strchr(alnum, v[i]) == NULL && strchr("_.-", v[i]) == NULL))
            return 0;
    return 1;
}

/* "name=url,name=url,..." into s->peers: names unique and valid, URLs http(s)://host:port
 * with nothing after the authority (the API's paths are appended). */
static int parse_peers(rqd_settings *s, const char *v, const char *source, rqd_err *err)
{
    const char *p = v;
    s->n_peers = 0;
    while (*p) {
        size_t len = strcspn(p, ","), nlen = strcspn(p, "=");
        rqd_peer *e = &s->peers[s->n_peers];
        if (len == 0) {
            p++;
            continue;
        }
        if (s->n_peers == RQD_MAX_PEERS)
            return rqd_err_set(err, RQD_EINVAL, "peers", "peers: more than %d nodes (%s)",
                               RQD_MAX_PEERS, source);
        if (nlen >= len || !node_name_ok(p, nlen))
            return rqd_err_set(err, RQD_EINVAL, "peers", "peers: '%.*s' is not name=url with a "
                               "name of [A-Za-z0-9][A-Za-z0-9_.-]{0,63} (%s)", (int)(len > 80 ? 80 : len),
                               p, source);
        const char *url = p + nlen + 1;
        size_t ulen = len - nlen - 1, scheme = strncmp(url, "http://", 7) == 0 ? 7
                                               : strncmp(url, "https://", 8) == 0 ? 8 : 0;
        while (ulen > scheme && url[ulen - 1] == '/') /* "http://h:1/" is http://h:1 */
            ulen--;
        if (scheme == 0 || ulen <= scheme || ulen >= sizeof e->url ||
            memchr(url + scheme, '/', ulen - scheme) || memchr(url, '?', ulen) ||
            memchr(url, ' ', ulen))
            return rqd_err_set(err, RQD_EINVAL, "peers", "peers: node '%.*s' needs a URL "
                               "http://host:port or https://host:port without a path, not "
                               "'%.*s' (%s)", (int)nlen, p, (int)(ulen > 120 ? 120 : ulen), url,
                               source);
        memcpy(e->name, p, nlen);
        e->name[nlen] = '\0';
        memcpy(e->url, url, ulen);
        e->url[ulen] = '\0';
        for (int i = 0; i < s->n_peers; i++)
            if (strcmp(s->peers[i].name, e->name) == 0)
                return rqd_err_set(err, RQD_EINVAL, "peers", "peers: node '%s' is listed "
                                   "twice (%s)", e->name, source);
        s->n_peers++;
        p += len;
    }
    return 0;
}

static int apply(rqd_settings *s, const setting *t, const char *v, const char *source,
                 rqd_err *err)
{
    char *base = (char *)s + t->off;
    long long n;
    char *end;

    switch (t->type) {
    case T_STR:
        if (strlen(v) >= t->cap)
            return rqd_err_set(err, RQD_EINVAL, t->name, "%s: longer than %zu bytes (%s)",
                               t->name, t->cap - 1, source);
        strcpy(base, v);
        return 0;
    case T_INT:
        errno = 0;
        n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < t->min || n > t->max)
            return rqd_err_set(err, RQD_EINVAL, t->name, "%s=%s: must be an integer in [%lld, %lld] (%s)",
                               t->name, v, t->min, t->max, source);
        *(int *)base = (int)n;
        return 0;
    case T_SIZE:
        if (parse_size(v, &n) < 0 || n < t->min || n > t->max)
            return rqd_err_set(err, RQD_EINVAL, t->name, "%s=%s: must be a size in [%lld, %lld] (%s)",
                               t->name, v, t->min, t->max, source);
        *(long long *)base = n;
        return 0;
    case T_LEVEL:
        if ((n = rqd_log_parse_level(v)) < 0)
            return rqd_err_set(err, RQD_EINVAL, t->name,
                               "%s=%s: must be error, warning, notice, info or debug (%s)", t->name, v, source);
        *(int *)base = (int)n;
        return 0;
    case T_MAGNITUDE: {
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end || !(d > 0) || !(d <= FLT_MAX))
            return rqd_err_set(err, RQD_EINVAL, t->name, "%s=%s: must be a positive number of "
                               "at most %g (%s)", t->name, v, (double)FLT_MAX, source);
        *(double *)base = d;
        return 0;
    }
    case T_NODE:
        if (*v && !node_name_ok(v, strlen(v)))
            return rqd_err_set(err, RQD_EINVAL, t->name, "%s=%.80s: must match "
                               "[A-Za-z0-9][A-Za-z0-9_.-]{0,63} (%s)", t->name, v, source);
        strcpy(base, v);
        return 0;
    case T_PEERS:
        if (strlen(v) >= t->cap)
            return rqd_err_set(err, RQD_EINVAL, t->name, "%s: longer than %zu bytes (%s)",
                               t->name, t->cap - 1, source);
        strcpy(base, v);
        return parse_peers(s, v, source, err);
    case T_SYNC:
        if (strcmp(v, "normal") != 0 && strcmp(v, "full") != 0)
            return rqd_err_set(err, RQD_EINVAL, t->name, "%s=%s: must be normal or full (%s)",
                               t->name, v, source);
        *(int *)base = strcmp(v, "full") == 0;
        return 0;
    }
    return rqd_err_set(err, RQD_EINTERNAL, t->name, "bad setting type");
}

static const setting *by_flag(const char *flag)
{
    char name[80];
    if (strncmp(flag, "--", 2) != 0 || strlen(flag) >= sizeof name)
        return NULL;
    snprintf(name, sizeof name, "%s", flag + 2);
    for (char *p = name; *p; p++)
        if (*p == '-')
            *p = '_';
    for (const setting *t = table; t->name; t++)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static void usage(void)
{
    printf("usage: redqd [options]\n\nredqd %s: REDQ agents behind a REST API "
           "(docs/api.md, docs/operations.md).\n\noptions (each also REDQD_<NAME>, or "
           "'name = value' in the --config file):\n", REDQD_VERSION);
    for (const setting *t = table; t->name; t++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", t->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        printf("  %-24s %s (default: %s; env %s)\n", flag, t->help, t->dflt[0] ? t->dflt : "none",
               t->env);
    }
    printf("  %-24s print this help\n  %-24s print the version\n", "--help", "--version");
}

static int load_file(rqd_settings *s, const char *path, rqd_err *err)
{
    FILE *f = fopen(path, "r");
    char line[1024], src[600];
    int lineno = 0, rc = 0;

    if (f == NULL)
        return rqd_err_set(err, RQD_EINVAL, "config", "cannot open config file %s", path);
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line, *eq, *k, *v;
        p[strcspn(p, "\r\n")] = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\0')
            continue;
        if ((eq = strchr(p, '=')) == NULL) {
            rc = rqd_err_set(err, RQD_EINVAL, "config", "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        k = p;
        v = eq + 1;
        for (char *e = eq - 1; e >= k && (*e == ' ' || *e == '\t'); e--)
            *e = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        for (char *e = v + strlen(v) - 1; e >= v && (*e == ' ' || *e == '\t'); e--)
            *e = '\0';
        const setting *t = NULL;
        for (const setting *u = table; u->name; u++)
            if (strcmp(u->name, k) == 0)
                t = u;
        snprintf(src, sizeof src, "%s:%d", path, lineno);
        if (t == NULL || strcmp(k, "config") == 0)
            rc = rqd_err_set(err, RQD_EINVAL, k, "%s: unknown setting '%s'", src, k);
        else
            rc = apply(s, t, v, src, err);
    }
    fclose(f);
    return rc;
}

int rqd_settings_load(rqd_settings *s, int argc, char **argv, rqd_err *err)
{
    const char *cfg = getenv("REDQD_CONFIG");
    int rc;

    memset(s, 0, sizeof *s);
    for (const setting *t = table; t->name; t++)
        if ((rc = apply(s, t, t->dflt, "default", err)) < 0)
            return rc;
    for (int i = 1; i < argc; i++) { /* --help first, and find --config */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("redqd %s\n", REDQD_VERSION);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            cfg = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            cfg = argv[i] + 9;
    }
    if (cfg && *cfg && (rc = load_file(s, cfg, err)) < 0)
        return rc;
    for (const setting *t = table; t->name; t++) {
        const char *v = getenv(t->env);
        if (v && t->off != OFF(config_file) && (rc = apply(s, t, v, "environment", err)) < 0)
            return rc;
    }
    for (int i = 1; i < argc; i++) {
        char flag[80];
        const char *val = NULL, *eq = strchr(argv[i], '=');
        snprintf(flag, sizeof flag, "%.*s", eq ? (int)(eq - argv[i]) : (int)strlen(argv[i]), argv[i]);
        const setting *t = by_flag(flag);
        if (t == NULL)
            return rqd_err_set(err, RQD_EINVAL, argv[i], "unknown option %s (see --help)", argv[i]);
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return rqd_err_set(err, RQD_EINVAL, t->name, "option %s needs a value", flag);
        if ((rc = apply(s, t, val, "command line", err)) < 0)
            return rc;
    }
    /* A new agent's learner state must be importable again (rqd_limits.h). */
    s->limits.state_bytes = s->max_import;
    if (s->node[0] == '\0') { /* the host name up to its first dot, when it is a valid name */
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) == 0)
            host[strcspn(host, ".")] = '\0';
        size_t n = strlen(host); /* node_name_ok: n <= RQD_MAX_NODE_NAME */
        memcpy(s->node, node_name_ok(host, n) ? host : "local", node_name_ok(host, n) ? n + 1 : 6);
    }
    return 0;
}
