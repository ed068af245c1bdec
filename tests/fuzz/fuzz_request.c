/* tests/fuzz/fuzz_request.c: the fuzz target for the JSON redqd parses from the network
 * (STYLE R18): bodies through the scan and the strict readers (first byte 0; 3: under
 * act's and transitions' bounds, long arrays read one element at a time), agent configs
 * (1) and PATCH bodies (2). Checkpoint files have their own target, fuzz_ckpt.c.
 *
 * Built two ways (fuzz.h): with clang's libFuzzer by `make fuzz` (coverage-guided,
 * bounded time), and with gcc+ASan+UBSan into build/san/test_fuzz, a Check test that
 * runs the corpus and a fixed number of mutations of it in `make test`. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/json_in.h"
#include "../../redq/redq.h"
#include "fuzz.h"

/* A body's values read the way the handlers read them: every key checked against a
 * list, numbers as floats, integers and booleans, arrays as exact-length float rows. */
static void read_body(const cJSON *body)
{
    static const char *const keys[] = {"obs", "action", "reward", "next_obs", "terminated",
                                       "truncated", "env_id", "transitions", "batch_id",
                                       "updates", "mode", "name", NULL};
    rqd_err err = {0};
    float v[8];
    long long k;
    int b;
    api_json_keys(body, "", keys, &err);
    for (const cJSON *c = body ? body->child : NULL; c; c = c->next) {
        api_json_float(c, "x", v, &err);
        api_json_int(c, "x", 0, 100000, &k, &err);
        api_json_bool(c, "x", &b, &err);
        api_json_floats(c, "x", 3, "expects", v, &err);
        if (cJSON_IsString(c)) {
            api_valid_name(c->valuestring);
            api_valid_batch_id(c->valuestring);
        }
        if (cJSON_IsArray(c))
            for (const cJSON *row = c->child; row; row = row->next)
                read_body(row);
    }
}

/* A body under the bounds of act and transitions (api/json_scan.c), its long arrays read
 * one element at a time as the handlers read them. */
static cJSON *parse_bounded(const char *text, size_t size, rqd_err *err)
{
    static const api_json_bound b[] = {
        {"obs", API_JSON_OF_NUMBERS, 3, 0, "values", "; expects 3"},
        {"obs", API_JSON_OF_ARRAYS, 8, 1, "observations", ", over 8"},
        {"obs[]", API_JSON_ANY, 3, 0, "values", "; expects 3"},
        {"transitions", API_JSON_ANY, 1000, 1, "transitions", ""},
    };
    api_json_span rows;
    api_json_span el;
    cJSON *body = api_json_parse_bounded(text, size, b, 4, &rows, err);
    api_json_iter it = api_json_iter_of(rows);
    for (int i = 0; body && rows.p && api_json_next(&it, &el); i++) {
        cJSON *one = api_json_parse_span(el, err);
        read_body(one);
        cJSON_Delete(one);
    }
    if (rows.p)
        (void)api_json_count(rows);
    return body;
}

static void parse_json(const uint8_t *data, size_t size, int what)
{
    rqd_err err = {0};
    char *text = malloc(size + 1);
    if (text == NULL)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    cJSON *body = what == 3 ? parse_bounded(text, size, &err) : api_json_parse(text, size, &err);
    if (body != NULL) {
        redq_config c;
        if (what == 1 && redq_config_from_json(body, 2, &c, &err) == 0) {
            cJSON *back = redq_config_to_json(&c);
            cJSON_Delete(back);
        } else if (what == 2) {
            redq_config_default(&c, 2);
            redq_config_patch(body, "", &c, &err);
        } else {
            read_body(body);
        }
    }
    cJSON_Delete(body);
    free(text);
}

int fuzz_request_one(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    parse_json(data + 1, size - 1, data[0] & 3);
    return 0;
}

FUZZ_ENTRY(fuzz_request_one)
