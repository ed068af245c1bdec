/* tests/unit/test_update.c: the update's structure (REDQ.md "One critic update", "Actor
 * and alpha updates"): independent members, target initialisation and Polyak, the subset
 * target with min and mean, the actor delay, determinism and thread-independence; and
 * values that would poison an agent: a step whose loss or gradients are not finite
 * changes nothing, and no act answers a non-finite action. */
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

/* ------------------------------------------------------------------ poison */

/* Everything a skipped step must leave alone, compared bit for bit. */
static void assert_learner_equal(const redq_agent *x, const redq_agent *y, int critic_too)
{
    const size_t an = x->actor_shape.total * sizeof(float), cn = x->critic_floats * sizeof(float);
    ck_assert_msg(memcmp(x->actor, y->actor, an) == 0, "actor changed");
    ck_assert_msg(memcmp(x->actor_m, y->actor_m, an) == 0, "actor Adam m changed");
    ck_assert_msg(memcmp(x->actor_v, y->actor_v, an) == 0, "actor Adam v changed");
    ck_assert_msg(memcmp(&x->log_alpha, &y->log_alpha, sizeof x->log_alpha) == 0 &&
                      memcmp(&x->la_m, &y->la_m, sizeof x->la_m) == 0 &&
                      memcmp(&x->la_v, &y->la_v, sizeof x->la_v) == 0,
                  "alpha or its Adam state changed");
    ck_assert(x->actor_updates == y->actor_updates && x->policy_version == y->policy_version);
    if (!critic_too)
        return;
    ck_assert_msg(memcmp(x->critic, y->critic, cn) == 0, "critics changed");
    ck_assert_msg(memcmp(x->critic_m, y->critic_m, cn) == 0, "critic Adam m changed");
    ck_assert_msg(memcmp(x->critic_v, y->critic_v, cn) == 0, "critic Adam v changed");
    ck_assert_msg(memcmp(x->target, y->target, cn) == 0, "target critics changed");
    ck_assert(x->updates == y->updates);
}

/* Acts on ordinary observations are finite, and the published snapshot is the agent's
 * actor, finite, at its policy_version. */
static void assert_acts_finite(redq_agent *a)
{
    float obs[2 * S] = {0.3f, -0.2f, 0.5f, 1.0f, 0.0f, -1.0f}, out[2 * A];
    rqd_err err = {0};
    for (int mode = REDQ_EXPLORE; mode <= REDQ_EVAL; mode++) {
        ck_assert_int_eq(redq_agent_act(a, obs, 2, mode, out, &err), 0);
        for (int i = 0; i < 2 * A; i++)
            ck_assert_msg(isfinite(out[i]), "mode %d: action %g", mode, out[i]);
    }
    redq_policy *p = redq_agent_policy(a);
    ck_assert(redq_policy_version(p) == a->policy_version);
    ck_assert(memcmp(p->params, a->actor, a->actor_shape.total * sizeof(float)) == 0);
    for (size_t i = 0; i < a->actor_shape.total; i++)
        ck_assert(isfinite(p->params[i]));
    redq_policy_release(p);
}

/* Adds n transitions whose reward (or observations) are the given huge value. */
static void add_poison(redq_agent *a, int n, float reward, float obs_value)
{
    float obs[S], act[A] = {0.5f, -0.5f};
    rqd_err err = {0};
    for (int j = 0; j < S; j++)
        obs[j] = obs_value;
    redq_transition t = {obs, act, reward, obs, 0, 0, NULL};
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(redq_agent_add(a, &t, 1, &err), 0);
}

/* A trained agent whose whole (small) buffer is then poisoned: every update of the
 * poisoned buffer is skipped and changes nothing, serially and on two threads alike; a
 * buffer of ordinary data afterwards trains again. */
static void check_poison(float reward, float obs_value)
{
    redq_config c = test_config(A);
    c.buffer_size = 24;
    c.actor_delay = 1; /* every update would step the actor too */
    c.alpha_auto = 1;
    redq_agent *a = test_agent(&c, S, A), *t = NULL;
    redq_exec ex = {two_threads, NULL};
    redq_stats st;
    rqd_err err = {0};

    test_fill(a, 24, 8);
    ck_assert_int_eq(redq_agent_update(a, 5, NULL, &st, &err), 0);
    ck_assert_int_eq(st.skipped, 0);
    add_poison(a, 24, reward, obs_value);
    t = agent_clone(a);
    redq_agent *before = agent_clone(a);

    ck_assert_int_eq(redq_agent_update(a, 6, NULL, &st, &err), 0);
    ck_assert_int_eq(st.skipped, 6);
    ck_assert_int_eq(st.actor_skipped, 0); /* no actor step follows a skipped critic step */
    ck_assert_int_eq(st.actor_updated, 0);
    ck_assert(isnan(st.critic_loss) && isnan(st.q_mean));
    assert_learner_equal(a, before, 1);
    /* the same on two threads: the same skips, the same bytes */
    ck_assert_int_eq(redq_agent_update(t, 6, &ex, &st, &err), 0);
    ck_assert_int_eq(st.skipped, 6);
    rqd_buf sa, st_;
    test_save(a, 1, &sa);
    test_save(t, 1, &st_);
    ck_assert(sa.len == st_.len && memcmp(sa.data, st_.data, sa.len) == 0);
    rqd_buf_free(&sa);
    rqd_buf_free(&st_);
    assert_acts_finite(a);

    /* ordinary data overwrites the ring: updates are taken again */
    test_fill(a, 24, 9);
    ck_assert_int_eq(redq_agent_update(a, 3, NULL, &st, &err), 0);
    ck_assert_int_eq(st.skipped, 0);
    ck_assert_int_eq(st.actor_updated, 1);
    ck_assert(isfinite(st.critic_loss) && isfinite(st.actor_loss) && isfinite(st.alpha_loss));
    ck_assert(a->updates == before->updates + 3 && a->actor_updates == before->actor_updates + 3);
    ck_assert(memcmp(a->critic, before->critic, a->critic_floats * sizeof(float)) != 0);
    ck_assert(memcmp(a->actor, before->actor, a->actor_shape.total * sizeof(float)) != 0);
    assert_acts_finite(a);
    redq_agent_free(before);
    redq_agent_free(t);
    redq_agent_free(a);
}

START_TEST(huge_rewards_skip_the_update_and_change_nothing)
{
    check_poison(3.4e38f, 0.25f);
}
END_TEST

START_TEST(huge_observations_skip_the_update_and_change_nothing)
{
    check_poison(1.0f, 3e38f);
}
END_TEST

/* The critic step is finite, the actor step is not: critics whose action weights are
 * huge see only zero actions in the buffer (their gradient there is 0), but the
 * policy's actions blow their Q up. The critic step stands; the actor, alpha, their
 * Adam state, actor_updates and policy_version do not move, and the snapshot stays. */
START_TEST(a_skipped_actor_step_leaves_actor_and_alpha)
{
    redq_config c = test_config(A);
    c.actor_delay = 1;
    c.alpha_auto = 1;
    redq_agent *a = test_agent(&c, S, A);
    redq_stats st;
    rqd_err err = {0};
    float obs[S], act[A] = {0.0f, 0.0f}; /* mid-bounds: 0 in the network's scale */
    redq_rng r;

    redq_rng_seed(&r, 5, 1);
    for (int i = 0; i < 30; i++) {
        for (int j = 0; j < S; j++)
            obs[j] = redq_rng_normal(&r);
        redq_transition t = {obs, act, redq_rng_normal(&r), obs, 0, 0, NULL};
        ck_assert_int_eq(redq_agent_add(a, &t, 1, &err), 0);
    }
    ck_assert_int_eq(redq_agent_update(a, 2, NULL, &st, &err), 0);
    ck_assert_int_eq(st.skipped, 0);
    redq_agent *before = agent_clone(a);
    const redq__mlp *m = &a->critic_shape;
    const int H = m->out[0];
    for (int n = 0; n < a->N; n++) /* first layer W[in][out]: rows S.. are the action's */
        for (int j = S; j < S + A; j++)
            for (int h = 0; h < H; h++) {
                size_t i = (size_t)n * m->total + m->w[0] + (size_t)j * (size_t)H + (size_t)h;
                a->critic[i] = before->critic[i] = 3e38f;
            }
    redq_policy *p0 = redq_agent_policy(a);

    ck_assert_int_eq(redq_agent_update(a, 1, NULL, &st, &err), 0);
    ck_assert_int_eq(st.actor_skipped, 1);
    ck_assert_int_eq(st.skipped, 0); /* the critic step stood: not an update that changed nothing */
    ck_assert_int_eq(st.actor_updated, 0);
    ck_assert(isfinite(st.critic_loss));
    ck_assert(a->updates == before->updates + 1);
    ck_assert(memcmp(a->critic, before->critic, a->critic_floats * sizeof(float)) != 0);
    assert_learner_equal(a, before, 0);
    redq_policy *p1 = redq_agent_policy(a);
    ck_assert_ptr_eq(p0, p1); /* nothing was published */
    redq_policy_release(p0);
    redq_policy_release(p1);
    redq_agent_free(before);
    redq_agent_free(a);
}
END_TEST

/* An actor with a non-finite weight is never published; the previous snapshot serves. */
START_TEST(a_non_finite_actor_is_not_published)
{
    redq_config c = test_config(A);
    redq_agent *a = test_agent(&c, S, A);
    redq_policy *p0 = redq_agent_policy(a);
    a->actor[3] = NAN;
    a->policy_version++;
    ck_assert_int_eq(redq__publish_policy(a), RQD_EINVAL);
    redq_policy *p1 = redq_agent_policy(a);
    ck_assert_ptr_eq(p0, p1);
    ck_assert(redq_policy_version(p1) == 0);
    redq_policy_release(p0);
    redq_policy_release(p1);
    redq_agent_free(a);
}
END_TEST

/* No act answers a non-finite action: bounds whose width overflows float32 make every
 * kind of action infinite, and each is refused as unavailable. */
START_TEST(acts_never_answer_non_finite_actions)
{
    redq_config c = test_config(1);
    c.start_timesteps = 5;
    c.deterministic_eval = 1;
    float low = -3e38f, high = 3e38f, obs[S] = {0.1f, 0.2f, 0.3f}, out = 0;
    redq_agent *a = NULL;
    rqd_err err = {0};
    ck_assert_int_eq(redq_agent_new(&c, S, 1, &low, &high, &a, &err), 0);
    ck_assert_int_eq(redq_agent_act(a, obs, 1, REDQ_EXPLORE, &out, &err), RQD_EUNAVAIL); /* warm-up */
    ck_assert_str_eq(err.field, "obs");
    ck_assert_int_eq(redq_agent_act(a, obs, 1, REDQ_EVAL, &out, &err), RQD_EUNAVAIL);
    redq_agent_set_env_steps(a, 10);
    ck_assert_int_eq(redq_agent_act(a, obs, 1, REDQ_EXPLORE, &out, &err), RQD_EUNAVAIL);
    redq_agent_free(a);
    /* and huge observations: whatever the network makes of them, never a NaN answered */
    redq_config d = test_config(A);
    a = test_agent(&d, S, A);
    float big[S] = {3e38f, -3e38f, 3e38f}, two[A];
    for (int mode = REDQ_EXPLORE; mode <= REDQ_EVAL; mode++) {
        int rc = redq_agent_act(a, big, 1, mode, two, &err);
        ck_assert(rc == RQD_EUNAVAIL || (rc == 0 && isfinite(two[0]) && isfinite(two[1])));
    }
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
    tc = tcase_create("poison");
    tcase_add_test(tc, huge_rewards_skip_the_update_and_change_nothing);
    tcase_add_test(tc, huge_observations_skip_the_update_and_change_nothing);
    tcase_add_test(tc, a_skipped_actor_step_leaves_actor_and_alpha);
    tcase_add_test(tc, a_non_finite_actor_is_not_published);
    tcase_add_test(tc, acts_never_answer_non_finite_actions);
    suite_add_tcase(s, tc);
    return s;
}
