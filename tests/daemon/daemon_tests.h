/* tests/daemon/daemon_tests.h: the suites of build/test_daemon (the daemon's registry,
 * without HTTP, on a real SQLite file) and what they share. */
#ifndef DAEMON_TESTS_H
#define DAEMON_TESTS_H

#include <check.h>

#include "../../daemon/internal.h"

Suite *suite_registry(void);
Suite *suite_move(void);
Suite *suite_owed(void);

/* A suite of one test case, name, whose tests (n of them) may take timeout_s seconds each. */
Suite *dt_suite(const char *name, int timeout_s, const TTest *const *tests, int n);

/* Allocation failures (fail_alloc.c): the nth allocation by our code on this thread from
 * now on fails; disarm returns how many failed. */
void fail_alloc_arm(long nth);
long fail_alloc_disarm(void);

/* A fresh data directory (under /tmp) and a registry on it; free with reg_close. */
typedef struct {
    char dir[128];
    char db[160];
    rqd_registry *r;
} test_reg;
void reg_open(test_reg *t, int max_agents);
void reg_reopen(test_reg *t); /* shut down and open again on the same file */
void reg_close(test_reg *t);  /* shut down, free, remove the directory */

/* A small agent's config (manual training) and creation (obs 3, act 1 in [-1, 1]). */
redq_config dt_config(void);
rqd_agent *dt_create(rqd_registry *r, const char *name);
rqd_agent *dt_create_with(rqd_registry *r, const char *name, const redq_config *c);
long long dt_env_steps(rqd_agent *a); /* transitions it has received */

#endif
