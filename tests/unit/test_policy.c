/* tests/unit/test_policy.c: policy snapshots and the safetensors file (API.md "The
 * policy file"): header, shapes, offsets, [out, in] layout, metadata, and the eval action
 * recomputed from the file alone. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"

static const float *tensor(const rqd_buf *f, const cJSON *hdr, const char *name, int rows,
                           int cols)
{
    long long hl;
    memcpy(&hl, f->data, 8);
    const cJSON *t = cJSON_GetObjectItem(hdr, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    ck_assert_str_eq(cJSON_GetObjectItem(t, "dtype")->valuestring, "F32");
    const cJSON *shape = cJSON_GetObjectItem(t, "shape");
    ck_assert_int_eq(cJSON_GetArraySize(shape), cols ? 2 : 1);
    ck_assert_int_eq(cJSON_GetArrayItem(shape, 0)->valueint, rows);
    if (cols)
        ck_assert_int_eq(cJSON_GetArrayItem(shape, 1)->valueint, cols);
    const cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
    double s = cJSON_GetArrayItem(off, 0)->valuedouble, e = cJSON_GetArrayItem(off, 1)->valuedouble;
    ck_assert(e - s == 4.0 * rows * (cols ? cols : 1));
    ck_assert((size_t)(8 + hl + (long long)e) <= f->len);
    return (const float *)(const void *)(f->data + 8 + hl + (long long)s);
}

START_TEST(safetensors_layout_and_eval_from_the_file)
{
    redq_config c = test_config(2);
    redq_agent *a = test_agent(&c, 3, 2);
    rqd_err err = {0};
    rqd_buf f;
    test_fill(a, 20, 1);
    ck_assert_int_eq(redq_agent_update(a, 4, NULL, NULL, &err), 0); /* actor_delay 2: v2 */
    redq_policy *p = redq_agent_policy(a);
    ck_assert_int_eq(redq_policy_version(p), 2);
    rqd_buf_init(&f, 0);
    ck_assert_int_eq(redq_policy_safetensors(p, &f, &err), 0);
    long long hl;
    memcpy(&hl, f.data, 8);
    ck_assert(hl % 8 == 0 && (size_t)hl + 8 < f.len);
    char *text = strndup((const char *)f.data + 8, (size_t)hl);
    cJSON *hdr = cJSON_Parse(text);
    ck_assert_msg(hdr != NULL, "header is not JSON: %s", text);
    const cJSON *meta = cJSON_GetObjectItem(hdr, "__metadata__");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "obs_dim")->valuestring, "3");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "act_dim")->valuestring, "2");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "policy_version")->valuestring, "2");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "activation")->valuestring, "relu");
    cJSON *low = cJSON_Parse(cJSON_GetObjectItem(meta, "action_low")->valuestring);
    ck_assert(cJSON_IsArray(low) && cJSON_GetArrayItem(low, 1)->valuedouble == -2.0);
    cJSON_Delete(low);

    const float *w0 = tensor(&f, hdr, "hidden.0.weight", 16, 3);
    const float *b0 = tensor(&f, hdr, "hidden.0.bias", 16, 0);
    const float *w1 = tensor(&f, hdr, "hidden.1.weight", 8, 16);
    const float *b1 = tensor(&f, hdr, "hidden.1.bias", 8, 0);
    const float *mw = tensor(&f, hdr, "mu.weight", 2, 8);
    const float *mb = tensor(&f, hdr, "mu.bias", 2, 0);
    tensor(&f, hdr, "log_std.weight", 2, 8);
    tensor(&f, hdr, "log_std.bias", 2, 0);
    ck_assert(w0[1 * 3 + 2] == a->actor[a->actor_shape.w[0] + 2 * 16 + 1]); /* [out][in] */

    /* The eval action as a PyTorch user computes it from the file. */
    float obs[3] = {0.3f, -0.7f, 0.2f}, act[2];
    double h0[16], h1[8];
    for (int o = 0; o < 16; o++) {
        double s = b0[o];
        for (int i = 0; i < 3; i++)
            s += (double)w0[o * 3 + i] * obs[i];
        h0[o] = s > 0 ? s : 0;
    }
    for (int o = 0; o < 8; o++) {
        double s = b1[o];
        for (int i = 0; i < 16; i++)
            s += (double)w1[o * 16 + i] * h0[i];
        h1[o] = s > 0 ? s : 0;
    }
    ck_assert_int_eq(redq_policy_eval(p, obs, 1, act, &err), 0);
    for (int j = 0; j < 2; j++) {
        double mu = mb[j];
        for (int i = 0; i < 8; i++)
            mu += (double)mw[j * 8 + i] * h1[i];
        double want = -2.0 + 4.0 * (tanh(mu) + 1) / 2;
        ck_assert_msg(fabs(act[j] - want) < 1e-5, "action %d: %g vs %g", j, act[j], want);
    }
    free(text);
    cJSON_Delete(hdr);
    rqd_buf_free(&f);
    redq_policy_release(p);
    redq_agent_free(a);
}
END_TEST

START_TEST(a_held_snapshot_survives_updates_and_the_agent)
{
    redq_config c = test_config(1);
    c.actor_delay = 1;
    redq_agent *a = test_agent(&c, 3, 1);
    rqd_err err = {0};
    float obs[3] = {1, 2, 3}, x1, x2;
    redq_policy *p = redq_agent_policy(a);
    ck_assert_int_eq(redq_policy_eval(p, obs, 1, &x1, &err), 0);
    test_fill(a, 20, 2);
    ck_assert_int_eq(redq_agent_update(a, 5, NULL, NULL, &err), 0);
    redq_policy *q = redq_agent_policy(a);
    ck_assert_int_eq(redq_policy_version(q), 5);
    redq_agent_free(a);
    ck_assert_int_eq(redq_policy_eval(p, obs, 1, &x2, &err), 0); /* still version 0 */
    ck_assert(x1 == x2);
    ck_assert_int_eq(redq_policy_version(p), 0);
    redq_policy_release(p);
    redq_policy_release(q);
}
END_TEST

Suite *suite_policy(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("snapshot");
    tcase_add_test(tc, safetensors_layout_and_eval_from_the_file);
    tcase_add_test(tc, a_held_snapshot_survives_updates_and_the_agent);
    suite_add_tcase(s, tc);
    return s;
}
