/* api/json_in.h: strict readers over cJSON for request bodies (API.md "Input"): finite
 * float32 numbers, integral integers, exact lengths, JSON booleans, no unknown or
 * repeated keys. Errors name the field by its JSON path ("transitions[3].obs[1]").
 * Nothing here knows HTTP, so the fuzz target links it alone. */
#ifndef API_JSON_IN_H
#define API_JSON_IN_H

#include <stddef.h>

#include "../common/rqd_err.h"

typedef struct cJSON cJSON;

/* Parses len bytes; only whitespace may follow the value. A syntax error gives its byte
 * offset. Caller frees with cJSON_Delete. */
cJSON *api_json_parse(const char *text, size_t len, rqd_err *err);

/* obj must be an object whose keys are all in allowed (NULL-terminated), none twice. */
int api_json_keys(const cJSON *obj, const char *path, const char *const *allowed, rqd_err *err);
/* A required member (err names path.key when absent). */
const cJSON *api_json_need(const cJSON *obj, const char *path, const char *key, rqd_err *err);

int api_json_float(const cJSON *v, const char *field, float *out, rqd_err *err);
int api_json_bool(const cJSON *v, const char *field, int *out, rqd_err *err);
/* An integer in [lo, hi]. */
int api_json_int(const cJSON *v, const char *field, long long lo, long long hi, long long *out,
                 rqd_err *err);
/* An array of exactly n finite float32 numbers (what names what n is, for the message). */
int api_json_floats(const cJSON *v, const char *field, int n, const char *what, float *out,
                    rqd_err *err);

/* Agent names: ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ */
int api_valid_name(const char *s);
/* batch_id: 1 to 128 of [A-Za-z0-9_.:-] */
int api_valid_batch_id(const char *s);

#endif
