/* common/rqd_json.h: numbers in JSON answers, integers printed exactly.
 *
 * cJSON 1.7 prints a number through "%d" only when it fits an int. Otherwise it prints
 * "%1.15g" and keeps that if it reads back within a relative 2^-52, so 9007199254740991
 * goes out as 9.00719925474099e+15 (9007199254740990 to the client) and 10^15 as 1e+15.
 * API.md: integers up to 2^53 - 1 are echoed exactly, never with a fraction or an
 * exponent. Every integer in an answer (config, state, rows, counters) goes through
 * these. */
#ifndef RQD_JSON_H
#define RQD_JSON_H

#include <stddef.h>

typedef struct cJSON cJSON;

/* An integer: a cJSON number when it fits an int (printed with "%d"), else a raw
 * "%lld" numeral (cJSON_IsRaw: read it back from the printed text, not the tree). NULL
 * when out of memory. */
cJSON *rqd_json_int(long long v);

/* A number that may be fractional (pending_updates): integral values up to 2^53 in
 * magnitude as rqd_json_int, the others as cJSON prints them. */
cJSON *rqd_json_number(double v);

/* v as text the way rqd_json_number prints it (integral values exactly, others "%.10g"):
 * for answers that are not JSON (Prometheus metrics). Returns s. */
const char *rqd_json_number_text(double v, char *s, size_t n);

/* Adds key: v to obj; returns the new item, or NULL when out of memory. */
cJSON *rqd_json_add_int(cJSON *obj, const char *key, long long v);
cJSON *rqd_json_add_number(cJSON *obj, const char *key, double v);

#endif
