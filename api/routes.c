/* api/routes.c: the route table (STYLE R9), read top to bottom, and path matching. A
 * path that matches with another method is 405 with Allow; HEAD is served as GET.
 * `wait` marks the routes that may wait for a commit, an agent's lock or training: they
 * run on the offload threads (api/offload.c), so that no HTTP thread ever waits. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const api_route routes[] = {
    /* method   pattern                                       handler           body     open wait */
    {"GET",    "/v1/health",                                  h_health,         BODY_NONE, 1, 0},
    {"GET",    "/metrics",                                    h_metrics,        BODY_NONE, 0, 0},
    {"GET",    "/v1/openapi.json",                            h_openapi,        BODY_NONE, 0, 0},
    {"GET",    "/",                                           h_dashboard,      BODY_NONE, 1, 0},
    {"GET",    "/assets/{id}",                                h_dashboard,      BODY_NONE, 1, 0},
    {"POST",   "/v1/agents",                                  h_agents_create,  BODY_JSON, 0, 1},
    {"PUT",    "/v1/agents/{name}",                           h_agents_put,     BODY_JSON, 0, 1},
    {"GET",    "/v1/agents",                                  h_agents_list,    BODY_NONE, 0, 0},
    {"GET",    "/v1/agents/{name}",                           h_agents_get,     BODY_NONE, 0, 0},
    {"PATCH",  "/v1/agents/{name}",                           h_agents_patch,   BODY_JSON, 0, 1},
    {"DELETE", "/v1/agents/{name}",                           h_agents_delete,  BODY_NONE, 0, 1},
    {"POST",   "/v1/agents/{name}/act",                       h_act,            BODY_JSON, 0, 0},
    {"POST",   "/v1/agents/{name}/transitions",               h_transitions,    BODY_JSON, 0, 1},
    {"POST",   "/v1/agents/{name}/episodes",                  h_episode_start,  BODY_JSON, 0, 1},
    {"GET",    "/v1/agents/{name}/episodes",                  h_episode_list,   BODY_NONE, 0, 0},
    {"POST",   "/v1/agents/{name}/episodes/{id}/step",        h_episode_step,   BODY_JSON, 0, 1},
    {"DELETE", "/v1/agents/{name}/episodes/{id}",             h_episode_delete, BODY_NONE, 0, 1},
    {"POST",   "/v1/agents/{name}/train",                     h_train,          BODY_JSON, 0, 1},
    {"GET",    "/v1/agents/{name}/stats",                     h_stats,          BODY_NONE, 0, 1},
    {"POST",   "/v1/agents/{name}/checkpoints",               h_ckpt_create,    BODY_JSON, 0, 1},
    {"GET",    "/v1/agents/{name}/checkpoints",               h_ckpt_list,      BODY_NONE, 0, 0},
    {"GET",    "/v1/agents/{name}/checkpoints/{id}",          h_ckpt_get,       BODY_NONE, 0, 1},
    {"DELETE", "/v1/agents/{name}/checkpoints/{id}",          h_ckpt_delete,    BODY_NONE, 0, 1},
    {"POST",   "/v1/agents/{name}/restore",                   h_restore,        BODY_JSON, 0, 1},
    {"PUT",    "/v1/agents/{name}/checkpoint",                h_import,         BODY_OCTETS, 0, 1},
    {"POST",   "/v1/agents/{name}/move",                      h_move_begin,     BODY_JSON, 0, 1},
    {"GET",    "/v1/agents/{name}/move",                      h_move_file,      BODY_NONE, 0, 1},
    {"DELETE", "/v1/agents/{name}/move",                      h_move_cancel,    BODY_NONE, 0, 1},
    {"GET",    "/v1/agents/{name}/policy",                    h_policy,         BODY_NONE, 0, 0},
    {"POST",   "/v1/agents/{name}/evaluations",               h_eval_post,      BODY_JSON, 0, 1},
    {"GET",    "/v1/agents/{name}/evaluations",               h_eval_list,      BODY_NONE, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};

int api_route_count(void)
{
    return (int)(sizeof routes / sizeof routes[0]) - 1;
}

const char *api_route_label(int index)
{
    static char labels[API_MAX_ROUTES][80];
    if (index < 0 || index >= api_route_count())
        return "unmatched";
    if (labels[index][0] == '\0') /* built once; benign if two threads race: same text */
        snprintf(labels[index], sizeof labels[index], "%s %s", routes[index].method,
                 routes[index].pattern);
    return labels[index];
}

/* Matches path against pattern, capturing {name} and {id}. */
static int match(const char *pattern, const char *path, api_req *r)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t seg = strcspn(s, "/");
            char *dst = strncmp(p, "{name}", 6) == 0 ? r->name : r->id;
            size_t cap = strncmp(p, "{name}", 6) == 0 ? sizeof r->name : sizeof r->id;
            if (seg == 0 || seg >= cap)
                return seg >= cap ? -1 : 0; /* -1: too long a segment, still this route */
            memcpy(dst, s, seg);
            dst[seg] = '\0';
            p = close + 1;
            s += seg;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return 0;
        }
    }
    return *p == '\0' && *s == '\0';
}

const api_route *api_route_match(const char *method, const char *path, api_req *r,
                                 int *path_known, char *allow, size_t allow_len, int *index)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    const api_route *found = NULL;
    size_t used = 0;

    *path_known = 0;
    allow[0] = '\0';
    *index = -1;
    for (int i = 0; routes[i].method; i++) {
        int ok = match(routes[i].pattern, path, r);
        if (ok == 0)
            continue;
        *path_known = ok; /* -1: a segment is too long */
        if (ok > 0 && strcmp(routes[i].method, m) == 0 && found == NULL) {
            found = &routes[i];
            *index = i;
        }
        if (ok > 0 && !strstr(allow, routes[i].method))
            used += (size_t)snprintf(allow + used, used < allow_len ? allow_len - used : 0, "%s%s",
                                     used ? ", " : "", routes[i].method);
        if (ok > 0 && strcmp(routes[i].method, "GET") == 0 && !strstr(allow, "HEAD"))
            used += (size_t)snprintf(allow + used, used < allow_len ? allow_len - used : 0,
                                     ", HEAD");
    }
    return found;
}
