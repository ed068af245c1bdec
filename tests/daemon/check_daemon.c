/* tests/daemon/check_daemon.c: the Check runner of build/test_daemon (CK_FORK: a crash
 * fails one test, not the run), and the fixtures its suites share. */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../daemon/log.h"
#include "daemon_tests.h"

static pthread_mutex_t loaded_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t loaded_cv = PTHREAD_COND_INITIALIZER;
static int loaded;

static void on_loaded(void *arg, int n)
{
    (void)arg;
    (void)n;
    pthread_mutex_lock(&loaded_mu);
    loaded = 1;
    pthread_cond_broadcast(&loaded_cv);
    pthread_mutex_unlock(&loaded_mu);
}

/* Opens the registry on t->db and waits until every stored agent is loaded. */
static void open_loaded(test_reg *t, int max_agents)
{
    rqd_err err = {0};
    rqd_registry_opts o = {t->db, 0, 1, max_agents, 0, 0, RQD_LIMITS_DEFAULT};
    ck_assert_msg(rqd_registry_open(&o, &t->r, &err) == 0, "%s", err.msg);
    loaded = 0;
    ck_assert_msg(rqd_registry_load(t->r, on_loaded, NULL, &err) == 0, "%s", err.msg);
    pthread_mutex_lock(&loaded_mu);
    while (!loaded)
        pthread_cond_wait(&loaded_cv, &loaded_mu);
    pthread_mutex_unlock(&loaded_mu);
}

void reg_open(test_reg *t, int max_agents)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/redqd-dt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->db, sizeof t->db, "%s/redqd.db", t->dir);
    open_loaded(t, max_agents);
}

static void reg_stop(test_reg *t)
{
    rqd_registry_refuse_waits(t->r);
    rqd_registry_shutdown(t->r);
    rqd_registry_free(t->r);
    t->r = NULL;
}

void reg_reopen(test_reg *t)
{
    int max = t->r->max_agents;
    reg_stop(t);
    open_loaded(t, max);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void reg_close(test_reg *t)
{
    reg_stop(t);
    nftw(t->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

redq_config dt_config(void)
{
    redq_config c;
    redq_config_default(&c, 1);
    c.hidden[0] = 8;
    c.hidden[1] = 8;
    c.n_hidden = 2;
    c.ensemble_size = 2;
    c.subset_size = 2;
    c.batch_size = 4;
    c.buffer_size = 100000;
    c.start_timesteps = 0;
    c.actor_delay = 2;
    c.update_per_step = 1;
    c.training = REDQ_TRAIN_MANUAL;
    c.checkpoint_every = 0;
    return c;
}

rqd_agent *dt_create_with(rqd_registry *r, const char *name, const redq_config *c)
{
    float low[1] = {-1}, high[1] = {1};
    rqd_agent *a = NULL;
    rqd_err err = {0};
    ck_assert_msg(rqd_agent_create(r, name, 3, 1, low, high, c, &a, &err) == 0, "%s", err.msg);
    return a;
}

rqd_agent *dt_create(rqd_registry *r, const char *name)
{
    redq_config c = dt_config();
    return dt_create_with(r, name, &c);
}

long long dt_env_steps(rqd_agent *a)
{
    rqd_agent_state st;
    rqd_agent_state_get(a, &st);
    return st.info.env_steps;
}

Suite *dt_suite(const char *name, int timeout_s, const TTest *const *tests, int n)
{
    Suite *s = suite_create(name);
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout_s);
    for (int i = 0; i < n; i++)
        tcase_add_test(tc, tests[i]);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    rqd_log_level = LOG_WARNING; /* the registry logs every create and delete */
    SRunner *sr = srunner_create(suite_registry());
    srunner_add_suite(sr, suite_move());
    srunner_add_suite(sr, suite_owed());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
