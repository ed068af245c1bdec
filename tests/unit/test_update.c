/* tests/unit/test_update.c: the update's structure (REDQ.md "One critic update", "Actor
 * and alpha updates"): independent members, target initialisation and Polyak, the subset
 * target with min and mean, the actor delay, determinism and thread-independence. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "suites.h"

#define S 3
#define A 2

static redq_agent *agent_clone(const redq_agent *a)
{
    rqd_buf b;
    redq_agent *c = NULL;
    rqd_err err = {0};
    test_save(a, 1, &b);
    ck_assert_int_eq(redq_agent_load(b.data, b.len, &c, &err), 0);
    rqd_buf_free(&b);
    return c;
}

START_TEST(members_differ_and_target_starts_equal)
{
    redq_config c = test_config(A);
    redq_agent *a = test_agent(&c, S, A);
    size_t T = a->critic_shape.total;
    for (int n = 1; n < a->N; n++)
        ck_assert_msg(memcmp(a->critic, a->critic + n * T, T * sizeof(float)) != 0,
                      "member %d equals member 0", n);
    ck_assert(memcmp(a->critic, a->target, a->critic_floats * sizeof(float)) == 0);
    redq_agent_free(a);
}
END_TEST

START_TEST(polyak_moves_the_target_by_tau)
{
    redq_config c = test_config(A);
    c.tau = 0.25;
    redq_agent *a = test_agent(&c, S, A);
    rqd_err err = {0};
    test_fill(a, 40, 1);
    ck_assert_int_eq(redq_agent_update(a, 3, NULL, NULL, &err), 0);
    redq_agent *before = agent_clone(a);
    ck_assert_int_eq(redq_agent_update(a, 1, NULL, NULL, &err), 0);
    for (size_t i = 0; i < a->critic_floats; i++) {
        float want = before->target[i] + 0.25f * (a->critic[i] - before->target[i]);
        ck_assert_msg(a->target[i] == want, "target[%zu] %.9g, want %.9g", i, a->target[i], want);
    }
    redq_agent_free(before);
    redq_agent_free(a);
}
END_TEST

/* qn holds the drawn target members' Q on (s', a'), and y the REDQ target. */
static void check_target(int mode, int M)
{
    redq_config c = test_config(A);
    c.target_mode = mode;
    c.ensemble_size = 4;
    c.subset_size = M;
    redq_agent *a = test_agent(&c, S, A);
    rqd_err err = {0};
    const int B = c.batch_size, X = S + A;
    test_fill(a, 40, 2);
    ck_assert_int_eq(redq_agent_update(a, 1, NULL, NULL, &err), 0);
    redq_agent *before = agent_clone(a);
    ck_assert_int_eq(redq_agent_update(a, 1, NULL, NULL, &err), 0);
    redq__scratch *s = a->scratch;
    double x[64 * X], q[64];
    for (int i = 0; i < B * X; i++)
        x[i] = s->xn[i];
    double *P = malloc(sizeof(double) * a->critic_shape.total);
    for (int k = 0; k < M; k++) {
        for (int j = 0; j < k; j++)
            ck_assert(s->subset[j] != s->subset[k]);
        const float *t = before->target + (size_t)s->subset[k] * a->critic_shape.total;
        for (size_t i = 0; i < a->critic_shape.total; i++)
            P[i] = t[i];
        ref_mlp(&a->critic_shape, P, x, B, q);
        for (int b = 0; b < B; b++)
            ck_assert_msg(fabs(s->qn[k * B + b] - q[b]) < 1e-5, "qn[%d][%d]", k, b);
    }
    double alpha = c.alpha;
    for (int b = 0; b < B; b++) {
        double v = mode == REDQ_TARGET_MIN ? INFINITY : 0.0;
        for (int k = 0; k < M; k++)
            v = mode == REDQ_TARGET_MIN ? fmin(v, s->qn[k * B + b]) : v + s->qn[k * B + b] / M;
        double y = s->rew[b] + s->disc[b] * (v - alpha * s->logp_next[b]);
        ck_assert_msg(fabs(s->y[b] - y) < 1e-5, "y[%d] %g vs %g", b, s->y[b], y);
    }
    free(P);
    redq_agent_free(before);
    redq_agent_free(a);
}

START_TEST(target_is_min_over_the_drawn_subset)
{
    check_target(REDQ_TARGET_MIN, 2);
    check_target(REDQ_TARGET_MIN, 3);
}
END_TEST

START_TEST(target_is_mean_over_the_drawn_subset)
{
    check_target(REDQ_TARGET_MEAN, 2);
}
END_TEST

START_TEST(actor_and_alpha_step_every_actor_delay_updates)
{
    redq_config c = test_config(A);
    c.actor_delay = 3;
    c.alpha_auto = 1;
    redq_agent *a = test_agent(&c, S, A);
    rqd_err err = {0};
    redq_stats st;
    test_fill(a, 40, 3);
    for (int u = 1; u <= 9; u++) {
        redq_agent *before = agent_clone(a);
        ck_assert_int_eq(redq_agent_update(a, 1, NULL, &st, &err), 0);
        int due = u % 3 == 0;
        int actor_changed = memcmp(before->actor, a->actor, a->actor_shape.total * 4) != 0;
        ck_assert_msg(actor_changed == due, "update %d: actor changed %d", u, actor_changed);
        ck_assert_int_eq(a->log_alpha != before->log_alpha, due);
        ck_assert_int_eq(st.actor_updated, due);
        ck_assert_int_eq(a->actor_updates, u / 3);
        ck_assert_int_eq(a->policy_version, u / 3);
        ck_assert(memcmp(before->critic, a->critic, a->critic_floats * 4) != 0);
        redq_agent_free(before);
    }
    ck_assert(isfinite(st.actor_loss) && isfinite(st.alpha_loss) && isfinite(st.critic_loss));
    ck_assert(st.q_std > 0.0);
    redq_agent_free(a);
}
END_TEST

START_TEST(same_seed_same_bytes_and_seeds_differ)
{
    redq_config c = test_config(A);
    redq_agent *a = test_agent(&c, S, A), *b = test_agent(&c, S, A);
    c.seed = 43;
    redq_agent *d = test_agent(&c, S, A);
    rqd_err err = {0};
    rqd_buf ba, bb, bd;
    test_fill(a, 50, 4);
    test_fill(b, 50, 4);
    test_fill(d, 50, 4);
    ck_assert_int_eq(redq_agent_update(a, 10, NULL, NULL, &err), 0);
    ck_assert_int_eq(redq_agent_update(b, 10, NULL, NULL, &err), 0);
    ck_assert_int_eq(redq_agent_update(d, 10, NULL, NULL, &err), 0);
    test_save(a, 1, &ba);
    test_save(b, 1, &bb);
    test_save(d, 1, &bd);
    ck_assert_uint_eq(ba.len, bb.len);
    ck_assert(memcmp(ba.data, bb.data, ba.len) == 0);
    ck_assert(ba.len != bd.len || memcmp(ba.data, bd.data, ba.len) != 0);
    rqd_buf_free(&ba);
    rqd_buf_free(&bb);
    rqd_buf_free(&bd);
    redq_agent_free(a);
    redq_agent_free(b);
    redq_agent_free(d);
}
END_TEST

/* A two-thread parallel_for: the second thread takes the odd tasks. */
typedef struct {
    void (*fn)(void *, int);
    void *arg;
    int n;
} job;

static void *odd_tasks(void *p)
{
    job *j = p;
    for (int i = 1; i < j->n; i += 2)
        j->fn(j->arg, i);
    return NULL;
}

static void two_threads(void *ctx, void (*fn)(void *, int), void *arg, int n)
{
    job j = {fn, arg, n};
    pthread_t t;
    (void)ctx;
    ck_assert_int_eq(pthread_create(&t, NULL, odd_tasks, &j), 0);
    for (int i = 0; i < n; i += 2)
        fn(arg, i);
    pthread_join(t, NULL);
}

START_TEST(threaded_members_give_the_serial_bytes)
{
    redq_config c = test_config(A);
    c.ensemble_size = 5;
    redq_agent *a = test_agent(&c, S, A), *b = test_agent(&c, S, A);
    redq_exec ex = {two_threads, NULL};
    rqd_err err = {0};
    rqd_buf ba, bb;
    test_fill(a, 60, 5);
    test_fill(b, 60, 5);
    ck_assert_int_eq(redq_agent_update(a, 8, NULL, NULL, &err), 0);
    ck_assert_int_eq(redq_agent_update(b, 8, &ex, NULL, &err), 0);
    test_save(a, 1, &ba);
    test_save(b, 1, &bb);
    ck_assert(ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0);
    rqd_buf_free(&ba);
    rqd_buf_free(&bb);
    redq_agent_free(a);
    redq_agent_free(b);
}
END_TEST

START_TEST(update_needs_a_full_batch)
{
    redq_config c = test_config(A);
    redq_agent *a = test_agent(&c, S, A);
    rqd_err err = {0};
    test_fill(a, c.batch_size - 1, 6);
    ck_assert_int_eq(redq_agent_update(a, 1, NULL, NULL, &err), RQD_ECONFLICT);
    test_fill(a, 1, 7);
    ck_assert_int_eq(redq_agent_update(a, 1, NULL, NULL, &err), 0);
    ck_assert_int_eq(redq_agent_update(a, 0, NULL, NULL, &err), RQD_EINVAL);
    redq_agent_free(a);
}
END_TEST

Suite *suite_update(void)
{
    Suite *s = suite_create("update");
    TCase *tc = tcase_create("structure");
    tcase_add_test(tc, members_differ_and_target_starts_equal);
    tcase_add_test(tc, polyak_moves_the_target_by_tau);
    tcase_add_test(tc, target_is_min_over_the_drawn_subset);
    tcase_add_test(tc, target_is_mean_over_the_drawn_subset);
    tcase_add_test(tc, actor_and_alpha_step_every_actor_delay_updates);
    tcase_add_test(tc, same_seed_same_bytes_and_seeds_differ);
    tcase_add_test(tc, threaded_members_give_the_serial_bytes);
    tcase_add_test(tc, update_needs_a_full_batch);
    suite_add_tcase(s, tc);
    return s;
}
