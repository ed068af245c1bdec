/* common/rqd_json.c: numbers in JSON answers (rqd_json.h says why). */
#include "rqd_json.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>

cJSON *rqd_json_int(long long v)
{
    char text[24];
    if (v >= INT_MIN && v <= INT_MAX)
        return cJSON_CreateNumber((double)v);
    snprintf(text, sizeof text, "%lld", v);
    return cJSON_CreateRaw(text);
}

/* Integral and at most 2^53 in magnitude (false for NaN and infinities). */
static int integral(double v)
{
    return v == floor(v) && fabs(v) <= 9007199254740992.0;
}

cJSON *rqd_json_number(double v)
{
    return integral(v) ? rqd_json_int((long long)v) : cJSON_CreateNumber(v);
}

const char *rqd_json_number_text(double v, char *s, size_t n)
{
    if (integral(v))
        snprintf(s, n, "%lld", (long long)v);
    else
        snprintf(s, n, "%.10g", v);
    return s;
}

static cJSON *add(cJSON *obj, const char *key, cJSON *item)
{
    if (item != NULL && !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        item = NULL;
    }
    return item;
}

cJSON *rqd_json_add_int(cJSON *obj, const char *key, long long v)
{
    return add(obj, key, rqd_json_int(v));
}

cJSON *rqd_json_add_number(cJSON *obj, const char *key, double v)
{
    return add(obj, key, rqd_json_number(v));
}
