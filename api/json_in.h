/* api/json_in.h: strict readers over cJSON for request bodies (API.md "Input"): finite
 * float32 numbers, integral integers, exact lengths, JSON booleans, no unknown or
 * repeated keys. Errors name the field by its JSON path ("transitions[3].obs[1]").
 * Nothing here knows HTTP, so the fuzz target links it alone. */
#ifndef API_JSON_IN_H
#define API_JSON_IN_H

#include <stddef.h>

#include "../common/rqd_err.h"
#include "json_scan.h"

typedef struct cJSON cJSON;

/* Parses len bytes after api_json_scan has passed them (no bounds but the RQD_MAX_JSON_*
 * limits); only whitespace may follow the value. A syntax error gives its byte offset,
 * anything else names the field. Caller frees with cJSON_Delete. */
cJSON *api_json_parse(const char *text, size_t len, rqd_err *err);
/* The same with a route's bounds (json_scan.h). A member of the top-level object that a
 * bound reads one element at a time is left out of the tree (an empty array stands in
 * its place) and the first such array's text goes to *each (p NULL when there is none):
 * read it with api_json_next and api_json_parse_span. */
cJSON *api_json_parse_bounded(const char *text, size_t len, const api_json_bound *b, int nb,
                              api_json_span *each, rqd_err *err);
/* One value of scanned text (an element of an `each` array) as a tree; NULL only when
 * out of memory (RQD_ENOMEM). */
cJSON *api_json_parse_span(api_json_span v, rqd_err *err);

/* obj must be an object whose keys are all in allowed (NULL-terminated), none twice. */
int api_json_keys(const cJSON *obj, const char *path, const char *const *allowed, rqd_err *err);
/* A required member (err names path.key when absent). */
const cJSON *api_json_need(const cJSON *obj, const char *path, const char *key, rqd_err *err);

int api_json_float(const cJSON *v, const char *field, float *out, rqd_err *err);
/* An observation, reward or action bound: a finite float32 of magnitude at most max_abs
 * (API.md --max-abs-value; the message names the flag). */
int api_json_value(const cJSON *v, const char *field, double max_abs, float *out, rqd_err *err);
int api_json_bool(const cJSON *v, const char *field, int *out, rqd_err *err);
/* An integer in [lo, hi]. */
int api_json_int(const cJSON *v, const char *field, long long lo, long long hi, long long *out,
                 rqd_err *err);
/* An array of exactly n finite float32 numbers (what names what n is, for the message). */
int api_json_floats(const cJSON *v, const char *field, int n, const char *what, float *out,
                    rqd_err *err);
/* The same, each value at most max_abs in magnitude (api_json_value). */
int api_json_values(const cJSON *v, const char *field, int n, const char *what, double max_abs,
                    float *out, rqd_err *err);

/* Agent names: ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ */
int api_valid_name(const char *s);
/* batch_id: 1 to 128 of [A-Za-z0-9_.:-] */
int api_valid_batch_id(const char *s);

#endif
