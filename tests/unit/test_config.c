/* tests/unit/test_config.c: the hyperparameter table: defaults, every bad value refused
 * with the key named, PATCH limited to the settings that may change. */
#include <cjson/cJSON.h>
#include <string.h>

#include "suites.h"

static int parse(const char *json, int act_dim, redq_config *c, rqd_err *err)
{
    cJSON *o = cJSON_Parse(json);
    ck_assert_msg(o != NULL, "test JSON does not parse: %s", json);
    int rc = redq_config_from_json(o, act_dim, c, err);
    cJSON_Delete(o);
    return rc;
}

START_TEST(defaults_are_api_md)
{
    redq_config c;
    rqd_err err = {0};
    ck_assert_int_eq(parse("{}", 3, &c, &err), 0);
    ck_assert_int_eq(c.n_hidden, 2);
    ck_assert_int_eq(c.hidden[0], 256);
    ck_assert_int_eq(c.ensemble_size, 10);
    ck_assert_int_eq(c.subset_size, 2);
    ck_assert(c.tau == 0.005 && c.gamma == 0.99 && c.alpha == 0.2 && !c.alpha_auto);
    ck_assert(c.target_entropy == -3.0 && c.alpha_lr == 3e-4);
    ck_assert_int_eq(c.estimation_step, 1);
    ck_assert_int_eq(c.actor_delay, 20);
    ck_assert(c.update_per_step == 20 && c.target_mode == REDQ_TARGET_MIN);
    ck_assert(c.noise_sigma < 0 && c.deterministic_eval && c.action_scaling && c.bound_clip);
    ck_assert(c.actor_lr == 3e-4 && c.critic_lr == 3e-4 && c.lr_total_updates == 0);
    ck_assert(c.batch_size == 256 && c.buffer_size == 1000000 && c.start_timesteps == 5000);
    ck_assert(c.training == REDQ_TRAIN_ASYNC && c.checkpoint_every == 10000);
    ck_assert(c.keep_checkpoints == 5 && c.max_pending_updates == 100000 && c.seed == 0);
    /* History is kept whole by default; thinning to every 10th once a window is set. */
    ck_assert(c.history_keep_rows == 0 && c.history_keep_days == 0 && c.history_thin == 10);
    cJSON *o = redq_config_to_json(&c);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "history_keep_rows")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "history_keep_days")));
    ck_assert_int_eq(cJSON_GetObjectItem(o, "history_thin")->valueint, 10);
    cJSON_Delete(o);
}
END_TEST

START_TEST(json_round_trip)
{
    redq_config c, d;
    rqd_err err = {0};
    const char *in = "{\"hidden_sizes\":[64,32,16],\"alpha\":\"auto\",\"target_mode\":\"mean\","
                     "\"exploration_noise\":{\"type\":\"gaussian\",\"sigma\":0.1},"
                     "\"lr_scheduler\":{\"type\":\"linear\",\"total_updates\":1000},"
                     "\"action_bound_method\":null,\"training\":\"manual\",\"seed\":7,"
                     "\"update_per_step\":0.5,\"history_keep_rows\":100000,"
                     "\"history_keep_days\":0.25,\"history_thin\":0}";
    ck_assert_int_eq(parse(in, 2, &c, &err), 0);
    ck_assert(c.alpha_auto && c.target_mode == REDQ_TARGET_MEAN && c.noise_sigma == 0.1);
    ck_assert(c.lr_total_updates == 1000 && !c.bound_clip && c.training == REDQ_TRAIN_MANUAL);
    ck_assert(c.n_hidden == 3 && c.hidden[2] == 16 && c.update_per_step == 0.5 && c.seed == 7);
    ck_assert(c.history_keep_rows == 100000 && c.history_keep_days == 0.25 &&
              c.history_thin == 0);
    cJSON *o = redq_config_to_json(&c);
    ck_assert_int_eq(redq_config_from_json(o, 2, &d, &err), 0);
    ck_assert(memcmp(&c, &d, sizeof c) == 0);
    ck_assert(cJSON_GetObjectItem(o, "target_entropy") != NULL); /* always echoed */
    cJSON_Delete(o);
}
END_TEST

/* Each bad config and the field its error must name. */
static const struct {
    const char *json, *field;
} bad[] = {
    {"{\"subset_size\":11}", "config.subset_size"},
    {"{\"ensemble_size\":4,\"subset_size\":5}", "config.subset_size"},
    {"{\"gamma\":1.5}", "config.gamma"},
    {"{\"gamma\":-0.1}", "config.gamma"},
    {"{\"tau\":0}", "config.tau"},
    {"{\"tau\":1.01}", "config.tau"},
    {"{\"hidden_sizes\":[]}", "config.hidden_sizes"},
    {"{\"hidden_sizes\":[64,0]}", "config.hidden_sizes[1]"},
    {"{\"hidden_sizes\":[1,2,3,4,5,6,7,8,9]}", "config.hidden_sizes"},
    {"{\"hidden_sizes\":[5000]}", "config.hidden_sizes[0]"},
    {"{\"hidden_sizes\":[64.5]}", "config.hidden_sizes[0]"},
    {"{\"ensemble_size\":0}", "config.ensemble_size"},
    {"{\"ensemble_size\":65}", "config.ensemble_size"},
    {"{\"batch_size\":0}", "config.batch_size"},
    {"{\"batch_size\":\"256\"}", "config.batch_size"},
    {"{\"buffer_size\":100,\"batch_size\":256}", "config.buffer_size"},
    {"{\"alpha\":-1}", "config.alpha"},
    {"{\"alpha\":\"automatic\"}", "config.alpha"},
    {"{\"actor_lr\":0}", "config.actor_lr"},
    {"{\"critic_lr\":-3e-4}", "config.critic_lr"},
    {"{\"alpha_lr\":1e39}", "config.alpha_lr"},
    {"{\"estimation_step\":0}", "config.estimation_step"},
    {"{\"actor_delay\":0}", "config.actor_delay"},
    {"{\"update_per_step\":-1}", "config.update_per_step"},
    {"{\"target_mode\":\"max\"}", "config.target_mode"},
    {"{\"exploration_noise\":{\"type\":\"ou\",\"sigma\":0.1}}", "config.exploration_noise.type"},
    {"{\"exploration_noise\":{\"type\":\"gaussian\",\"sigma\":-0.1}}", "exploration_noise.sigma"},
    {"{\"exploration_noise\":{\"type\":\"gaussian\"}}", "config.exploration_noise"},
    {"{\"exploration_noise\":{\"type\":\"gaussian\",\"sigma\":1,\"mu\":0}}", "config.exploration_noise.mu"},
    {"{\"deterministic_eval\":1}", "config.deterministic_eval"},
    {"{\"action_bound_method\":\"tanh\"}", "config.action_bound_method"},
    {"{\"lr_scheduler\":{\"type\":\"linear\",\"total_updates\":0}}", "lr_scheduler.total_updates"},
    {"{\"lr_scheduler\":{\"type\":\"cosine\",\"total_updates\":10}}", "config.lr_scheduler.type"},
    {"{\"start_timesteps\":-1}", "config.start_timesteps"},
    {"{\"training\":\"fast\"}", "config.training"},
    {"{\"keep_checkpoints\":0}", "config.keep_checkpoints"},
    {"{\"checkpoint_every\":-5}", "config.checkpoint_every"},
    {"{\"max_pending_updates\":10,\"update_per_step\":20}", "config.max_pending_updates"},
    {"{\"seed\":9007199254740992}", "config.seed"},
    {"{\"seed\":-1}", "config.seed"},
    {"{\"seed\":1.5}", "config.seed"},
    {"{\"learning_rate\":0.1}", "config.learning_rate"},
    {"{\"gamma\":0.9,\"gamma\":0.8}", "config.gamma"},
    {"{\"gamma\":null}", "config.gamma"},
    {"[1,2]", "config"},
    {"{\"history_keep_rows\":0}", "config.history_keep_rows"},
    {"{\"history_keep_rows\":2.5}", "config.history_keep_rows"},
    {"{\"history_keep_rows\":\"all\"}", "config.history_keep_rows"},
    {"{\"history_keep_days\":0}", "config.history_keep_days"},
    {"{\"history_keep_days\":-1}", "config.history_keep_days"},
    {"{\"history_thin\":-1}", "config.history_thin"},
    {"{\"history_thin\":null}", "config.history_thin"},
};

START_TEST(bad_values_name_their_field)
{
    redq_config c;
    rqd_err err = {0};
    int rc = parse(bad[_i].json, 1, &c, &err);
    ck_assert_msg(rc == RQD_EINVAL, "%s: accepted", bad[_i].json);
    ck_assert_msg(strstr(err.field, bad[_i].field) != NULL, "%s: field '%s' (%s), want '%s'",
                  bad[_i].json, err.field, err.msg, bad[_i].field);
    ck_assert(err.msg[0] != '\0');
}
END_TEST

START_TEST(patch_changes_only_mutable_settings)
{
    redq_config c, before;
    rqd_err err = {0};
    redq_config_default(&c, 1);
    before = c;
    cJSON *ok = cJSON_Parse("{\"training\":\"paused\",\"update_per_step\":5,\"actor_lr\":1e-3,"
                            "\"exploration_noise\":{\"type\":\"gaussian\",\"sigma\":0.2}}");
    ck_assert_int_eq(redq_config_patch(ok, "", &c, &err), 0);
    ck_assert(c.training == REDQ_TRAIN_PAUSED && c.update_per_step == 5 && c.actor_lr == 1e-3);
    cJSON_Delete(ok);
    redq_config mid = c;
    cJSON *fixed = cJSON_Parse("{\"training\":\"sync\",\"gamma\":0.5}");
    ck_assert_int_eq(redq_config_patch(fixed, "", &c, &err), RQD_EINVAL);
    ck_assert_str_eq(err.field, "gamma");
    ck_assert(memcmp(&c, &mid, sizeof c) == 0); /* nothing half-applied */
    cJSON_Delete(fixed);
    cJSON *cross = cJSON_Parse("{\"update_per_step\":200000}");
    ck_assert_int_eq(redq_config_patch(cross, "", &c, &err), RQD_EINVAL);
    cJSON_Delete(cross);
    cJSON *cross2 = cJSON_Parse("{\"max_pending_updates\":1,\"update_per_step\":2}");
    ck_assert_int_eq(redq_config_patch(cross2, "", &c, &err), RQD_EINVAL);
    ck_assert_str_eq(err.field, "max_pending_updates");
    cJSON_Delete(cross2);
    ck_assert(memcmp(&c, &mid, sizeof c) == 0);
    /* Retention may change while the agent runs, and null sets it back to "keep all". */
    cJSON *ret = cJSON_Parse("{\"history_keep_rows\":500,\"history_keep_days\":7,"
                             "\"history_thin\":3}");
    ck_assert_int_eq(redq_config_patch(ret, "", &c, &err), 0);
    ck_assert(c.history_keep_rows == 500 && c.history_keep_days == 7 && c.history_thin == 3);
    cJSON_Delete(ret);
    cJSON *back = cJSON_Parse("{\"history_keep_rows\":null,\"history_keep_days\":null}");
    ck_assert_int_eq(redq_config_patch(back, "", &c, &err), 0);
    ck_assert(c.history_keep_rows == 0 && c.history_keep_days == 0 && c.history_thin == 3);
    cJSON_Delete(back);
    (void)before;
}
END_TEST

START_TEST(agent_refuses_bad_dimensions_and_huge_networks)
{
    redq_config c;
    redq_agent *a = NULL;
    rqd_err err = {0};
    float low[2] = {-1, 1}, high[2] = {1, 1};
    redq_config_default(&c, 2);
    ck_assert_int_eq(redq_agent_new(&c, 3, 2, low, high, &a, &err), RQD_EINVAL);
    ck_assert_ptr_null(a);
    high[1] = 2;
    ck_assert_int_eq(redq_agent_new(&c, 0, 2, low, high, &a, &err), RQD_EINVAL);
    ck_assert_str_eq(err.field, "obs_dim");
    c.hidden[0] = c.hidden[1] = 4096;
    c.n_hidden = 8;
    for (int i = 0; i < 8; i++)
        c.hidden[i] = 4096;
    c.ensemble_size = 64;
    ck_assert_int_eq(redq_agent_new(&c, 3, 2, low, high, &a, &err), RQD_EINVAL);
    ck_assert_msg(strstr(err.msg, "limit") != NULL, "%s", err.msg);
}
END_TEST

Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, defaults_are_api_md);
    tcase_add_test(tc, json_round_trip);
    tcase_add_loop_test(tc, bad_values_name_their_field, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, patch_changes_only_mutable_settings);
    tcase_add_test(tc, agent_refuses_bad_dimensions_and_huge_networks);
    suite_add_tcase(s, tc);
    return s;
}
