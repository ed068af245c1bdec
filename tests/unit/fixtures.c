/* tests/unit/fixtures.c: small agents and random data shared by the suites. */
#include <stdlib.h>
#include <string.h>

#include "suites.h"

redq_config test_config(int A)
{
    redq_config c;
    redq_config_default(&c, A);
    c.hidden[0] = 16;
    c.hidden[1] = 8;
    c.n_hidden = 2;
    c.ensemble_size = 3;
    c.subset_size = 2;
    c.batch_size = 7;
    c.buffer_size = 1000;
    c.start_timesteps = 0;
    c.actor_delay = 2;
    c.seed = 42;
    return c;
}

redq_agent *test_agent(const redq_config *c, int S, int A)
{
    float low[RQD_MAX_ACT_DIM], high[RQD_MAX_ACT_DIM];
    redq_agent *a = NULL;
    rqd_err err = {0};
    for (int j = 0; j < A; j++) {
        low[j] = -2.0f;
        high[j] = 2.0f;
    }
    int rc = redq_agent_new(c, S, A, low, high, &a, &err);
    ck_assert_msg(rc == 0, "redq_agent_new: %s (%s)", err.msg, err.field);
    return a;
}

void test_fill(redq_agent *a, int n, uint64_t seed)
{
    const int S = redq_agent_obs_dim(a), A = redq_agent_act_dim(a);
    redq_rng r;
    float obs[64], act[16], next[64];
    rqd_err err = {0};

    ck_assert(S <= 64 && A <= 16);
    redq_rng_seed(&r, seed, 99);
    for (int i = 0; i < n; i++) {
        redq_transition t = {obs, act, redq_rng_normal(&r), next, redq_rng_uniform(&r) < 0.05f,
                             0, NULL};
        for (int j = 0; j < S; j++) {
            obs[j] = redq_rng_normal(&r);
            next[j] = redq_rng_normal(&r);
        }
        for (int j = 0; j < A; j++)
            act[j] = redq_agent_low(a)[j] +
                     (redq_agent_high(a)[j] - redq_agent_low(a)[j]) * redq_rng_uniform(&r);
        ck_assert_int_eq(redq_agent_add(a, &t, 1, &err), 0);
    }
}

void test_save(const redq_agent *a, int with_buffer, rqd_buf *b)
{
    rqd_err err = {0};
    rqd_buf_init(b, 0);
    ck_assert_msg(redq_agent_save(a, with_buffer, b, &err) == 0, "save: %s", err.msg);
}
