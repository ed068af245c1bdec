/* api/json_in.c: the strict JSON readers, and the trees they read: built only from text
 * that api/json_scan.c has passed, so that no tree is larger than its limits allow. */
#include "json_in.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json_scan.h"

cJSON *api_json_parse(const char *text, size_t len, rqd_err *err)
{
    return api_json_parse_bounded(text, len, NULL, 0, NULL, err);
}

cJSON *api_json_parse_span(api_json_span v, rqd_err *err)
{
    /* The scan passed the text, so cJSON can only fail for memory. */
    cJSON *t = cJSON_ParseWithLengthOpts(v.p, v.n, NULL, 0);
    if (t == NULL)
        rqd_err_set(err, RQD_ENOMEM, "", "out of memory reading the body");
    return t;
}

/* The top-level object of scanned text, member by member, with an empty array in place
 * of each member whose bit is set in marked (the first of them goes to *each). */
static cJSON *parse_members(api_json_span body, unsigned long long marked, api_json_span *each,
                            rqd_err *err)
{
    api_json_span key, val;
    cJSON *o = cJSON_CreateObject();

    while (body.n > 0 && body.p[0] != '{') /* leading and trailing whitespace */
        body.p++, body.n--;
    while (body.n > 0 && body.p[body.n - 1] != '}')
        body.n--;
    api_json_iter it = api_json_iter_of(body);
    for (int i = 0; o && api_json_next_member(&it, &key, &val); i++) {
        cJSON *k = cJSON_ParseWithLengthOpts(key.p, key.n, NULL, 0), *v;
        if (marked >> i & 1) {
            v = cJSON_CreateArray();
            if (each && each->p == NULL)
                *each = val;
        } else {
            v = cJSON_ParseWithLengthOpts(val.p, val.n, NULL, 0);
        }
        if (k == NULL || v == NULL || !cJSON_AddItemToObject(o, k->valuestring, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            o = NULL;
        }
        cJSON_Delete(k);
    }
    if (o == NULL)
        rqd_err_set(err, RQD_ENOMEM, "", "out of memory reading the body");
    return o;
}

cJSON *api_json_parse_bounded(const char *text, size_t len, const api_json_bound *b, int nb,
                              api_json_span *each, rqd_err *err)
{
    unsigned long long marked = 0;
    if (each)
        *each = (api_json_span){NULL, 0};
    if (api_json_scan(text, len, b, nb, &marked, err) < 0)
        return NULL;
    if (marked == 0)
        return api_json_parse_span((api_json_span){text, len}, err);
    return parse_members((api_json_span){text, len}, marked, each, err);
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
    return api_json_value(v, field, FLT_MAX, out, err);
}

int api_json_value(const cJSON *v, const char *field, double max_abs, float *out, rqd_err *err)
{
    if (!cJSON_IsNumber(v))
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be a number", field);
    double d = v->valuedouble;
    if (!isfinite(d) || fabs(d) > FLT_MAX)
        return rqd_err_set(err, RQD_EINVAL, field, "%s must be a finite float32 number", field);
    if (d > max_abs)
        return rqd_err_set(err, RQD_EINVAL, field, "%s %.10g is over the limit of %g "
                           "(--max-abs-value)", field, d, max_abs);
    if (d < -max_abs)
        return rqd_err_set(err, RQD_EINVAL, field, "%s %.10g is below the limit of -%g "
                           "(--max-abs-value)", field, d, max_abs);
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
    return api_json_values(v, field, n, what, FLT_MAX, out, err);
}

int api_json_values(const cJSON *v, const char *field, int n, const char *what, double max_abs,
                    float *out, rqd_err *err)
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
        if ((rc = api_json_value(c, sub, max_abs, &out[i], err)) < 0)
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
