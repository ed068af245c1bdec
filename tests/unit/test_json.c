/* tests/unit/test_json.c: the request parsers alone (api/json_scan.c, api/json_in.c)
 * and integer output (common/rqd_json.c): syntax errors by offset, every other refusal
 * by field, the bounds that keep a tree small, reading a long array one element at a
 * time, and integers printed exactly. */
#include <cjson/cJSON.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/json_in.h"
#include "../../common/rqd_json.h"
#include "../../common/rqd_limits.h"
#include "suites.h"

static int scan(const char *text, const api_json_bound *b, int nb, rqd_err *err)
{
    rqd_err_clear(err);
    return api_json_scan(text, strlen(text), b, nb, NULL, err);
}

/* Asserts that text is refused with a message holding want (and the field, if given). */
static void refused(const char *text, const api_json_bound *b, int nb, const char *field,
                    const char *want)
{
    rqd_err err;
    ck_assert_msg(scan(text, b, nb, &err) == RQD_EINVAL, "accepted: %.80s", text);
    ck_assert_msg(strstr(err.msg, want) != NULL, "%.80s: message '%s' lacks '%s'", text,
                  err.msg, want);
    if (field)
        ck_assert_msg(strcmp(err.field, field) == 0, "%.80s: field '%s', not '%s'", text,
                      err.field, field);
}

/* "[v,v,...]" of n copies of v, or the members of an object when key is set. */
static char *repeat(const char *open, const char *v, long n, const char *close)
{
    size_t lv = strlen(v), len = strlen(open) + (size_t)n * (lv + 1) + strlen(close) + 1;
    char *s = malloc(len), *p = s;
    p += sprintf(p, "%s", open);
    for (long i = 0; i < n; i++)
        p += sprintf(p, i ? ",%s" : "%s", v);
    sprintf(p, "%s", close);
    return s;
}

START_TEST(test_scan_accepts_what_cjson_reads)
{
    static const char *ok[] = {
        "{}", " [ ] ", "{\"a\":[1,-0,0.5,-1.25e-3,2E+10,true,false,null,\"x\\n\\u00e9\\ud83d\\ude00\"]}",
        "{\"name\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}", "0", "\"s\"", "\r\n\t{\"a\" : {\"b\" : []}}\n",
    };
    rqd_err err;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cJSON *t = api_json_parse(ok[i], strlen(ok[i]), &err);
        ck_assert_msg(t != NULL, "%s: %s", ok[i], err.msg);
        cJSON *ref = cJSON_Parse(ok[i]);
        ck_assert(cJSON_Compare(t, ref, 1));
        cJSON_Delete(ref);
        cJSON_Delete(t);
    }
}
END_TEST

START_TEST(test_syntax_errors_give_the_offset)
{
    static const struct {
        const char *text;
        const char *want;
    } bad[] = {
        {"{", "offset 1"},           {"[1,]", "offset 3"},      {"[01]", "offset 2"},
        {"[1.]", "offset 3"},        {"[1e]", "offset 3"},      {"{\"a\" 1}", "offset 5"},
        {"{} x", "trailing data"},   {"[\"a\x01\"]", "control"}, {"[\"\\x\"]", "escape"},
        {"[\"\\ud800\"]", "surrogate"}, {"[\"\\udc00\"]", "surrogate"}, {"[tru]", "offset 1"},
        {"{\"a\":NaN}", "offset 5"}, {"[Infinity]", "offset 1"}, {"   ", "offset 3"},
        {"[+1]", "offset 1"},        {"{a:1}", "offset 1"},     {"[\"abc", "not closed"},
        {"[1 2]", "offset 3"},       {"\xef\xbb\xbf{}", "offset 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refused(bad[i].text, NULL, 0, "", bad[i].want);
    refused("", NULL, 0, "", "the body is empty");
    /* a NUL byte inside the length is not whitespace */
    rqd_err err;
    ck_assert_int_eq(api_json_scan("{}\0{}", 5, NULL, 0, NULL, &err), RQD_EINVAL);
    ck_assert(strstr(err.msg, "offset 2") != NULL);
}
END_TEST

START_TEST(test_u0000_names_the_field)
{
    refused("{\"name\":\"a\\u0000b\"}", NULL, 0, "name", "name holds U+0000");
    refused("{\"batch_id\":\"\\u0000\"}", NULL, 0, "batch_id", "U+0000");
    refused("{\"transitions\":[{\"env_id\":\"e\"},{\"env_id\":\"x\\u0000\"}]}", NULL, 0,
            "transitions[1].env_id", "transitions[1].env_id holds U+0000");
    refused("{\"config\":{\"a\\u0000\":1}}", NULL, 0, "config", "a field name in config");
    refused("{\"a\\u0000\":1}", NULL, 0, "", "a field name in the body");
    /* escaped names are decoded in the path */
    refused("{\"c\\u006fnfig\":{\"x\\ty\":\"\\u0000\"}}", NULL, 0, "config.x\ty", "U+0000");
    /* "\\u0000" is a backslash and "u0000": allowed */
    rqd_err err;
    ck_assert_int_eq(scan("{\"name\":\"\\\\u0000\"}", NULL, 0, &err), RQD_OK);
}
END_TEST

START_TEST(test_invalid_utf8_names_the_field)
{
    refused("{\"env\":[\"ok\",\"\xff\"]}", NULL, 0, "env[1]", "not valid UTF-8");
    refused("{\"a\":\"\xc0\xaf\"}", NULL, 0, "a", "UTF-8");         /* overlong '/' */
    refused("{\"a\":\"\xed\xa0\x80\"}", NULL, 0, "a", "UTF-8");     /* a surrogate */
    refused("{\"a\":\"\xf4\x90\x80\x80\"}", NULL, 0, "a", "UTF-8"); /* past U+10FFFF */
    refused("{\"a\":\"\xe2\x82\"}", NULL, 0, "a", "UTF-8");         /* cut short */
    refused("{\"\xfe\":1}", NULL, 0, "", "a field name in the body is not valid UTF-8");
}
END_TEST

START_TEST(test_an_array_past_its_bound_is_counted_and_refused)
{
    const api_json_bound act[] = {
        {"obs", API_JSON_OF_NUMBERS, 3, 0, "values", "; agent 'x' expects 3"},
        {"obs", API_JSON_OF_ARRAYS, 2, 1, "observations", ", over the limit of 2 per act"},
        {"obs[]", API_JSON_ANY, 3, 0, "values", "; agent 'x' expects 3"},
    };
    rqd_err err;
    char *big = repeat("{\"obs\":[", "0", 8000000, "]}");
    ck_assert_int_eq(scan(big, act, 3, &err), RQD_EINVAL);
    ck_assert_str_eq(err.msg, "obs has 8000000 values; agent 'x' expects 3");
    ck_assert_str_eq(err.field, "obs");
    free(big);
    refused("{\"obs\":[[1,2,3],[1,2,3],[1]]}", act, 3, "obs",
            "obs has 3 observations, over the limit of 2 per act");
    refused("{\"obs\":[[1,2,3],[1,2,3,4]]}", act, 3, "obs[1]",
            "obs[1] has 4 values; agent 'x' expects 3");
    refused("{\"obs\":[0,0,0,0,[0,[0]],\"]\"]}", act, 3, "obs", "obs has 6 values");
    refused("{\"obs\":[0,0,0,0,0", act, 3, "obs", "obs has more than 3 values");
    ck_assert_int_eq(scan("{\"obs\":[[1,2,3],[4,5,6]],\"mode\":\"eval\"}", act, 3, &err), RQD_OK);
    ck_assert_int_eq(scan("{\"obs\":[1,2,3]}", act, 3, &err), RQD_OK);
    /* a name written with escapes is the same name */
    refused("{\"\\u006fbs\":[0,0,0,0]}", act, 3, "obs", "obs has 4 values");
    /* unbounded paths: RQD_MAX_JSON_ARRAY */
    char *long_arr = repeat("{\"config\":{\"hidden_sizes\":[", "1", RQD_MAX_JSON_ARRAY + 1, "]}}");
    refused(long_arr, act, 3, "config.hidden_sizes", "has 4097 values; an array here may hold at most 4096");
    free(long_arr);
    long_arr = repeat("[", "1", RQD_MAX_JSON_ARRAY, "]");
    ck_assert_int_eq(scan(long_arr, NULL, 0, &err), RQD_OK);
    free(long_arr);
}
END_TEST

START_TEST(test_depth_fields_values_and_numbers_are_bounded)
{
    rqd_err err;
    char deep[2 * RQD_MAX_JSON_DEPTH + 8];
    memset(deep, '[', RQD_MAX_JSON_DEPTH);
    memset(deep + RQD_MAX_JSON_DEPTH, ']', RQD_MAX_JSON_DEPTH);
    deep[2 * RQD_MAX_JSON_DEPTH] = '\0';
    ck_assert_int_eq(scan(deep, NULL, 0, &err), RQD_OK);
    memset(deep, '[', RQD_MAX_JSON_DEPTH + 1);
    memset(deep + RQD_MAX_JSON_DEPTH + 1, ']', RQD_MAX_JSON_DEPTH + 1);
    deep[2 * RQD_MAX_JSON_DEPTH + 2] = '\0';
    refused(deep, NULL, 0, NULL, "more than 16 levels deep");
    refused("{\"a\":[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]}", NULL, 0, NULL, "a[0][0]");

    char *fields = malloc(64 * 12 + 8), *p = fields;
    p += sprintf(p, "{\"config\":{");
    for (int i = 0; i < RQD_MAX_JSON_MEMBERS; i++)
        p += sprintf(p, "%s\"k%d\":1", i ? "," : "", i);
    sprintf(p, "}}");
    ck_assert_int_eq(scan(fields, NULL, 0, &err), RQD_OK);
    sprintf(p, ",\"k64\":1}}");
    refused(fields, NULL, 0, "config", "config has more than 64 fields");
    free(fields);

    /* 5 arrays of 4000 numbers: 20006 values in one tree */
    char *row = repeat("[", "0", 4000, "]");
    char *many = repeat("{\"rows\":[", row, 5, "]}");
    refused(many, NULL, 0, "", "the body holds more than 16384 values");
    /* the same read one element at a time: each element is its own tree */
    const api_json_bound each[] = {{"rows", API_JSON_ANY, 100, 1, "rows", ""}};
    unsigned long long marked = 0;
    ck_assert_int_eq(api_json_scan(many, strlen(many), each, 1, &marked, &err), RQD_OK);
    ck_assert_int_eq(marked, 1);
    free(many);
    char *fat = repeat("[", row, 5, "]"); /* one element over the limit alone */
    many = repeat("{\"mode\":1,\"rows\":[[0],", fat, 1, "]}");
    refused(many, each, 1, "rows[1]", "rows[1] holds more than 16384 values");
    free(many);
    free(fat);
    free(row);

    char num[80];
    snprintf(num, sizeof num, "{\"x\":0.%0*d}", RQD_MAX_JSON_NUMBER - 2, 1);
    ck_assert_int_eq(scan(num, NULL, 0, &err), RQD_OK);
    snprintf(num, sizeof num, "{\"x\":0.%0*d}", RQD_MAX_JSON_NUMBER - 1, 1);
    refused(num, NULL, 0, "x", "x is a number written with 64 characters");
}
END_TEST

START_TEST(test_each_member_is_left_out_and_read_one_at_a_time)
{
    const api_json_bound b[] = {{"transitions", API_JSON_ANY, 1000, 1, "transitions", ""}};
    const char *text = " {\"batch_id\":\"b1\", \"transitions\" : [ {\"r\":1} , [2,3],\"x]\" ,4 ],"
                       "\"z\":{\"transitions\":[1]}} ";
    api_json_span rows;
    rqd_err err = {0};
    cJSON *t = api_json_parse_bounded(text, strlen(text), b, 1, &rows, &err);
    ck_assert_msg(t != NULL, "%s", err.msg);
    ck_assert_str_eq(cJSON_GetObjectItem(t, "batch_id")->valuestring, "b1");
    const cJSON *ph = cJSON_GetObjectItem(t, "transitions");
    ck_assert(cJSON_IsArray(ph) && cJSON_GetArraySize(ph) == 0);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(t, "z"),
                                                            "transitions")), 1);
    ck_assert(rows.p != NULL && rows.p[0] == '[' && rows.p[rows.n - 1] == ']');
    ck_assert_int_eq(api_json_count(rows), 4);
    static const char *want[] = {"{\"r\":1}", "[2,3]", "\"x]\"", "4"};
    api_json_iter it = api_json_iter_of(rows);
    api_json_span el;
    int i = 0;
    while (api_json_next(&it, &el)) {
        ck_assert_int_lt(i, 4);
        ck_assert_int_eq(el.n, strlen(want[i]));
        ck_assert(memcmp(el.p, want[i], el.n) == 0);
        cJSON *one = api_json_parse_span(el, &err);
        ck_assert(one != NULL);
        cJSON_Delete(one);
        i++;
    }
    ck_assert_int_eq(i, 4);
    cJSON_Delete(t);

    /* an empty array, or one that is not an array, stays in the tree */
    t = api_json_parse_bounded("{\"transitions\":[]}", 18, b, 1, &rows, &err);
    ck_assert(t != NULL && rows.p == NULL);
    cJSON_Delete(t);
    t = api_json_parse_bounded("{\"transitions\":\"no\"}", 20, b, 1, &rows, &err);
    ck_assert(t != NULL && rows.p == NULL && cJSON_IsString(cJSON_GetObjectItem(t, "transitions")));
    cJSON_Delete(t);
    /* given twice: both left out (no tree holds either), the first one's text returned */
    const char *twice = "{\"transitions\":[1],\"transitions\":[2,3]}";
    t = api_json_parse_bounded(twice, strlen(twice), b, 1, &rows, &err);
    ck_assert(t != NULL && api_json_count(rows) == 1);
    ck_assert_int_eq(cJSON_GetArraySize(t), 2);
    cJSON_Delete(t);
}
END_TEST

/* Whatever the scan passes, cJSON reads whole: mutations of valid bodies. */
START_TEST(test_what_the_scan_passes_cjson_reads)
{
    static const char *seeds[] = {
        "{\"transitions\":[{\"obs\":[0.1,-2e-3,3],\"reward\":1.5,\"terminated\":false,"
        "\"env_id\":\"a\\\"b\\u00e9\"}],\"batch_id\":\"x.1\"}",
        "{\"name\":\"p\",\"config\":{\"hidden_sizes\":[64,64],\"alpha\":\"auto\","
        "\"exploration_noise\":{\"type\":\"gaussian\",\"sigma\":0.1},\"lr_scheduler\":null}}",
    };
    const char alphabet[] = "{}[],:\"\\0123456789.eE+-tfnul \xc3\xa9u";
    unsigned long long x = 88172645463325252ULL;
    char buf[512];
    rqd_err err;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++)
        for (int k = 0; k < 20000; k++) {
            size_t n = strlen(seeds[s]);
            memcpy(buf, seeds[s], n + 1);
            for (int m = 0; m < 1 + k % 3; m++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                size_t at = (size_t)(x % n);
                buf[at] = alphabet[(x >> 32) % (sizeof alphabet - 1)];
            }
            if (api_json_scan(buf, n, NULL, 0, NULL, &err) < 0)
                continue;
            const char *end = NULL;
            cJSON *t = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
            ck_assert_msg(t != NULL, "the scan passed what cJSON refuses: %s", buf);
            for (; end < buf + n; end++)
                ck_assert_msg(*end == ' ', "cJSON stopped early in: %s", buf);
            cJSON_Delete(t);
        }
}
END_TEST

START_TEST(test_values_past_max_abs_name_the_field_and_the_flag)
{
    rqd_err err = {0};
    float f, v[2];
    cJSON *n = cJSON_CreateNumber(3.4e38);
    ck_assert_int_eq(api_json_value(n, "transitions[3].reward", 1e9, &f, &err), RQD_EINVAL);
    ck_assert_str_eq(err.msg, "transitions[3].reward 3.4e+38 is over the limit of 1e+09 "
                              "(--max-abs-value)");
    ck_assert_str_eq(err.field, "transitions[3].reward");
    ck_assert_int_eq(api_json_float(n, "x", &f, &err), RQD_OK); /* a float32, no limit */
    cJSON_SetNumberValue(n, 1e39);
    ck_assert_int_eq(api_json_value(n, "x", 1e9, &f, &err), RQD_EINVAL);
    ck_assert(strstr(err.msg, "finite float32") != NULL);
    cJSON_Delete(n);
    cJSON *arr = cJSON_Parse("[1e9, -1000000001]");
    ck_assert_int_eq(api_json_values(arr, "obs", 2, "expects", 1e9, v, &err), RQD_EINVAL);
    ck_assert_str_eq(err.field, "obs[1]");
    ck_assert_str_eq(err.msg, "obs[1] -1000000001 is below the limit of -1e+09 (--max-abs-value)");
    ck_assert_int_eq(api_json_values(arr, "obs", 2, "expects", 2e9, v, &err), RQD_OK);
    ck_assert(v[0] == 1e9f);
    cJSON_Delete(arr);
}
END_TEST

static void printed(cJSON *item, const char *want)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "v", item);
    char *s = cJSON_PrintUnformatted(o), w[64];
    snprintf(w, sizeof w, "{\"v\":%s}", want);
    ck_assert_str_eq(s, w);
    free(s);
    cJSON_Delete(o);
}

START_TEST(test_integers_are_printed_exactly)
{
    printed(rqd_json_int(9007199254740991LL), "9007199254740991");
    printed(rqd_json_int(-9007199254740991LL), "-9007199254740991");
    printed(rqd_json_int(1000000000000000LL), "1000000000000000");
    printed(rqd_json_int(2147483648LL), "2147483648");
    printed(rqd_json_int(2147483647LL), "2147483647");
    printed(rqd_json_int(0), "0");
    printed(rqd_json_number(1e15), "1000000000000000");
    printed(rqd_json_number(9007199254740991.0), "9007199254740991");
    printed(rqd_json_number(2.5), "2.5");
    char t[40];
    ck_assert_str_eq(rqd_json_number_text(1e10, t, sizeof t), "10000000000"); /* was 1e+10 */
    ck_assert_str_eq(rqd_json_number_text(9007199254740991.0, t, sizeof t), "9007199254740991");
    ck_assert_str_eq(rqd_json_number_text(0.25, t, sizeof t), "0.25");
}
END_TEST

START_TEST(test_config_seed_is_echoed_exactly)
{
    redq_config c, back;
    rqd_err err = {0};
    cJSON *in = cJSON_Parse("{\"seed\":9007199254740991,\"checkpoint_every\":1000000000000000,"
                            "\"start_timesteps\":123456789012345,\"buffer_size\":100000000}");
    ck_assert_int_eq(redq_config_from_json(in, 1, &c, &err), 0);
    cJSON_Delete(in);
    cJSON *o = redq_config_to_json(&c);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    ck_assert_msg(strstr(text, "\"seed\":9007199254740991") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "\"checkpoint_every\":1000000000000000") != NULL, "%s", text);
    ck_assert(strstr(text, "\"start_timesteps\":123456789012345") != NULL);
    ck_assert(strstr(text, "e+") == NULL);
    in = cJSON_Parse(text);
    ck_assert_int_eq(redq_config_from_json(in, 1, &back, &err), 0);
    ck_assert(back.seed == 9007199254740991ULL && back.checkpoint_every == 1000000000000000LL);
    cJSON_Delete(in);
    free(text);
}
END_TEST

Suite *suite_json(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("scan");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_scan_accepts_what_cjson_reads);
    tcase_add_test(tc, test_syntax_errors_give_the_offset);
    tcase_add_test(tc, test_u0000_names_the_field);
    tcase_add_test(tc, test_invalid_utf8_names_the_field);
    tcase_add_test(tc, test_an_array_past_its_bound_is_counted_and_refused);
    tcase_add_test(tc, test_depth_fields_values_and_numbers_are_bounded);
    tcase_add_test(tc, test_each_member_is_left_out_and_read_one_at_a_time);
    tcase_add_test(tc, test_what_the_scan_passes_cjson_reads);
    suite_add_tcase(s, tc);
    tc = tcase_create("values");
    tcase_add_test(tc, test_values_past_max_abs_name_the_field_and_the_flag);
    tcase_add_test(tc, test_integers_are_printed_exactly);
    tcase_add_test(tc, test_config_seed_is_echoed_exactly);
    suite_add_tcase(s, tc);
    return s;
}
