/* tests/unit/suites.h: every unit suite of build/test_unit, and helpers they share. */
#ifndef TESTS_SUITES_H
#define TESTS_SUITES_H

#include <check.h>

#include "../../redq/internal.h"

Suite *suite_linear(void);
Suite *suite_grad(void);
Suite *suite_update(void);
Suite *suite_replay(void);
Suite *suite_act(void);
Suite *suite_adam(void);
Suite *suite_config(void);
Suite *suite_ckpt(void);
Suite *suite_policy(void);
Suite *suite_rng(void);
Suite *suite_store(void);
Suite *suite_json(void);

/* A small agent for tests: obs S, act A with bounds [-2, 2] (or the given ones), the
 * config's defaults overridden by a tiny network and batch, start_timesteps 0. */
redq_config test_config(int A);
redq_agent *test_agent(const redq_config *c, int S, int A);
/* Adds n random transitions (obs N(0,1), actions uniform in bounds, rewards N(0,1)). */
void test_fill(redq_agent *a, int n, uint64_t seed);
/* The agent's complete state as bytes (caller frees b with rqd_buf_free). */
void test_save(const redq_agent *a, int with_buffer, rqd_buf *b);

#endif
