/* api/json_scan.h: one pass over a JSON body before any tree is built, and iteration
 * over the text it has checked.
 *
 * cJSON spends about 80 bytes of heap on every value: a 16 MiB body of zeros would be
 * 640 MiB of tree before a handler could say that the array is too long. The scan reads
 * the text once, allocates nothing, and refuses what no handler would take, naming the
 * field: syntax (RFC 8259, with the byte offset), strings that hold U+0000 or are not
 * UTF-8, nesting, objects with too many fields, arrays longer than their route allows,
 * and more values in one tree than common/rqd_limits.h's RQD_MAX_JSON_* allow. After it
 * passes, every tree built from the text is small (api/json_in.c). Nothing here knows
 * HTTP or cJSON, so the fuzz target and the unit tests link it alone. */
#ifndef API_JSON_SCAN_H
#define API_JSON_SCAN_H

#include <stddef.h>

#include "../common/rqd_err.h"

/* A value's text inside the body (not NUL-terminated). */
typedef struct {
    const char *p; /* NULL: no such value */
    size_t n;
} api_json_span;

/* Which arrays at a path a bound applies to, by their first element. */
enum { API_JSON_ANY = 0, API_JSON_OF_NUMBERS = 1, API_JSON_OF_ARRAYS = 2 };

/* A bound a route sets on the arrays at one path (from the agent's dims or the limits);
 * an array that no bound matches may hold RQD_MAX_JSON_ARRAY elements. Past the bound
 * the scan stops and says "<field> has <count> <noun><why>". */
typedef struct {
    const char *path;  /* "obs", "obs[]", "transitions[].obs": members by name, [] any index */
    int holding;       /* API_JSON_ANY, API_JSON_OF_NUMBERS or API_JSON_OF_ARRAYS */
    long long most;    /* elements allowed */
    int each;          /* on a member of the top-level object: its elements are read one at
                          a time (api_json_parse_bounded), so each counts as a tree of its
                          own towards RQD_MAX_JSON_VALUES; ignored deeper */
    const char *noun;  /* the elements, for the message: "values", "observations" */
    const char *why;   /* ends the message: "; agent 'x' expects 3" */
} api_json_bound;

/* Checks len bytes of text against the grammar, the RQD_MAX_JSON_* limits and
 * b[0..nb) (b may be NULL). Bit i of *each (when each is not NULL) is set when the
 * top-level object's i-th member is an array that a bound marks `each`. Returns
 * RQD_OK, or RQD_EINVAL with err naming the field (the byte offset for syntax). */
int api_json_scan(const char *text, size_t len, const api_json_bound *b, int nb,
                  unsigned long long *each, rqd_err *err);

/* Iteration over the elements of an array, or the members of an object, that
 * api_json_scan has passed: no checks are made again. */
typedef struct {
    const char *p, *end;
} api_json_iter;

api_json_iter api_json_iter_of(api_json_span container); /* p NULL: no elements */
/* The next element: 1 with *el set, or 0 after the last. */
int api_json_next(api_json_iter *it, api_json_span *el);
/* The next member: 1 with *key (its text with the quotes) and *value set, or 0. */
int api_json_next_member(api_json_iter *it, api_json_span *key, api_json_span *value);
/* Elements of an array (a span of scanned text). */
long long api_json_count(api_json_span array);

#endif
