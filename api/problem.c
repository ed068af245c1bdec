/* api/problem.c: RQD_E* codes to HTTP statuses and API.md's problem codes, and the
 * RFC 9457 problem+json document. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const struct {
    int code;
    unsigned status;
    const char *name, *title;
} map[] = {
    {RQD_EINVAL, 400, "invalid_argument", "Bad Request"},
    {RQD_ENOTFOUND, 404, "not_found", "Not Found"},
    {RQD_EEXIST, 409, "already_exists", "Conflict"},
    {RQD_ECONFLICT, 409, "conflict", "Conflict"},
    {RQD_ETOOBIG, 413, "payload_too_large", "Content Too Large"},
    {RQD_EBUSY, 429, "busy", "Too Many Requests"},
    {RQD_EUNAVAIL, 503, "unavailable", "Service Unavailable"},
    {RQD_EAGAIN, 503, "unavailable", "Service Unavailable"},
    {RQD_ENOMEM, 503, "unavailable", "Service Unavailable"},
    {RQD_EIO, 503, "unavailable", "Service Unavailable"},
};

static const char *title_of(unsigned status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

int api_problem_status(api_req *r, unsigned status, const char *code, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !cJSON_AddStringToObject(o, "type", "about:blank") ||
        !cJSON_AddStringToObject(o, "title", title_of(status)) ||
        !cJSON_AddNumberToObject(o, "status", status) || !cJSON_AddStringToObject(o, "code", code) ||
        !cJSON_AddStringToObject(o, "detail", detail)) {
        cJSON_Delete(o);
        return api_reply_text(r, 500, "application/problem+json",
                              "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
                              "\"status\":500,\"code\":\"internal\",\"detail\":\"out of memory\"}");
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL)
        return MHD_NO;
    return api_reply_bytes_take(r, status, "application/problem+json", text, strlen(text));
}

int api_problem(api_req *r, const rqd_err *e)
{
    /* Nothing was done and the same request will do it later: say when (API.md). */
    if (e->code == RQD_EAGAIN)
        r->retry_after = API_RETRY_AFTER_S;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].code == e->code)
            return api_problem_status(r, map[i].status, map[i].name,
                                      e->msg[0] ? e->msg : map[i].title);
    return api_problem_status(r, 500, "internal", e->msg[0] ? e->msg : "internal error");
}
