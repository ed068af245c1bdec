/* api/json_in.c: the strict JSON readers. */
#include "json_in.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

cJSON *api_json_parse(const char *text, size_t len, rqd_err *err)
{
    const char *end = NULL;
    if (len == 0) {
        rqd_err_set(err, RQD_EINVAL, "", "the body is empty; a JSON object is expected");
        return NULL;
    }
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (v == NULL) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        rqd_err_set(err, RQD_EINVAL, "", "malformed JSON at byte offset %zu", off);
        return NULL;
    }
    for (const char *p = end; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            rqd_err_set(err, RQD_EINVAL, "", "malformed JSON at byte offset %zu: trailing data",
                        (size_t)(p - text));
            cJSON_Delete(v);
            return NULL;
        }
    /* cJSON keeps strings NUL-terminated: "a\u0000b" would silently become "a" (an agent
     * name, env_id or batch_id other than the one sent). The text is valid JSON here, so
     * a plain scan of its strings finds the escape. */
    int in_str = 0;
    for (const char *p = text; p < end; p++) {
        if (!in_str) {
            in_str = *p == '"';
        } else if (*p == '"') {
            in_str = 0;
        } else if (*p == '\\') {
            if (p + 5 < end && p[1] == 'u' && memcmp(p + 2, "0000", 4) == 0) {
                rqd_err_set(err, RQD_EINVAL, "", "a string holds \\u0000 at byte offset %zu; "
                            "strings may not contain U+0000", (size_t)(p - text));
                cJSON_Delete(v);
                return NULL;
            }
            p++; /* the escaped character */
        }
    }
    return v;
}

static void join(char *out, size_t cap, const char *path, const char *key)
{
    snprintf(out, cap, "%s%s%s", path, path[0] ? "." : "", key);
}

int api_json_keys(const cJSON *obj, const char *path, const char *const *allowed, rqd_err *err)
{
    char field[128];
    if (!cJSON_IsObject(obj))
        return rqd_err_set(err, RQD_EINVAL, path, "%s must be a JSON object",
                           path[0] ? path : "the body");
    for (const cJSON *c = obj->child; c; c = c->next) {
        int ok = 0;
        join(field, sizeof field, path, c->string);
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, c->string) == 0;
        if (!ok)
            return rqd_err_set(err, RQD_EINVAL, field, "unknown field %s", field);
        for (const cJSON *p = obj->child; p != c; p = p->next)
            if (strcmp(p->string, c->string) == 0)
                return rqd_err_set(err, RQD_EINVAL, field, "%s is given twice", field);
    }
    return RQD_OK;
}

const cJSON *api_json_need(const cJSON *obj, const char *path, const char *key, rqd_err *err)
{
    char field[128];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL) {
        join(field, sizeof field, path, key);
        rqd_err_set(err, RQD_EINVAL, field, "%s is required", field);
    }
    return v;
}

int api_json_float(const cJSON *v, const char *field, float *out, rqd_err *err)
{
    if (!cJSON_IsNumber(v))
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be a number", field);
    double d = v->valuedouble;
    if (!isfinite(d) || fabs(d) > FLT_MAX)
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be a finite float32 number", field);
    *out = (float)d;
    return RQD_OK;
}

int api_json_bool(const cJSON *v, const char *field, int *out, rqd_err *err)
{
    if (!cJSON_IsBool(v))
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be true or false", field);
    *out = cJSON_IsTrue(v);
    return RQD_OK;
}

int api_json_int(const cJSON *v, const char *field, long long lo, long long hi, long long *out,
                 rqd_err *err)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be an integer", field);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be in [%lld, %lld]", field, lo, hi);
    *out = (long long)v->valuedouble;
    return RQD_OK;
}

int api_json_floats(const cJSON *v, const char *field, int n, const char *what, float *out,
                    rqd_err *err)
{
    char sub[160];
    int i = 0, rc;
    if (!cJSON_IsArray(v))
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be an array of %d numbers", field, n);
    int got = cJSON_GetArraySize(v);
    if (got != n)
        return rqd_err_set(err, RQD_EINVAL, field, "%s has %d values; %s %d", field, got, what, n);
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        snprintf(sub, sizeof sub, "%s[%d]", field, i);
        if ((rc = api_json_float(c, sub, &out[i], err)) < 0)
            return rc;
    }
    return RQD_OK;
}

static int in_set(char c, const char *extra)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr(extra, c) != NULL);
}

int api_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64 || !in_set(s[0], ""))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!in_set(s[i], "_.-"))
            return 0;
    return 1;
}

int api_valid_batch_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!in_set(s[i], "_.:-"))
            return 0;
    return 1;
}
