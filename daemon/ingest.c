/* daemon/ingest.c: data in and actions out: act, transitions posts (durable on return,
 * batch_id idempotency, back-pressure) and the episodes API, which forms transitions
 * from one call per environment step. THREADS: registry.h (ingest_mu, act_mu). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rqd_json.h"
#include "internal.h"
#include "log.h"

int rqd_agent_act(rqd_agent *a, const float *obs, int n, int mode, float *out,
                  long long *version, rqd_err *err)
{
    pthread_mutex_lock(&a->act_mu);
    pthread_rwlock_rdlock(&a->core_rw);
    if (a->core == NULL) {
        pthread_rwlock_unlock(&a->core_rw);
        pthread_mutex_unlock(&a->act_mu);
        return rqd_agent_usable(a, err);
    }
    redq_policy *p = redq_agent_policy(a->core);
    *version = redq_policy_version(p);
    int rc = redq_agent_act(a->core, obs, n, mode, out, err);
    redq_policy_release(p);
    pthread_rwlock_unlock(&a->core_rw);
    pthread_mutex_unlock(&a->act_mu);
    return rc;
}

redq_policy *rqd_agent_policy(rqd_agent *a)
{
    pthread_rwlock_rdlock(&a->core_rw);
    redq_policy *p = a->core ? redq_agent_policy(a->core) : NULL;
    pthread_rwlock_unlock(&a->core_rw);
    return p;
}

/* Under a->mu: what n more transitions would owe, and the back-pressure verdict. */
static int admit(rqd_agent *a, int n, double *owed, rqd_err *err)
{
    const redq_config *c = redq_agent_config(a->core);
    redq_info info;
    redq_agent_info(a->core, &info);
    double o = 0.0;
    if (info.env_steps > RQD_MAX_COUNTER - n) /* API.md: integers stay below 2^53 */
        return rqd_err_set(err, RQD_EINVAL, "transitions", "agent '%s' has received %lld "
                           "transitions; %d more would pass 2^53 - 1", a->name,
                           info.env_steps, n);
    for (int i = 1; i <= n; i++)
        o += rqd__owed(c, info.env_steps + i);
    if (o > c->max_pending_updates)
        return rqd_err_set(err, RQD_EINVAL, "transitions",
                           "%d transitions owe %g updates, more than max_pending_updates %g; "
                           "post fewer at a time", n, o, c->max_pending_updates);
    if (a->pending + o > c->max_pending_updates)
        return rqd_err_set(err, RQD_EBUSY, "", "%g updates are pending; this post would pass "
                           "max_pending_updates %g", a->pending, c->max_pending_updates);
    *owed = o;
    return RQD_OK;
}

/* The learner's view of n stored rows (pointing into t), malloc'd; NULL out of memory. */
static redq_transition *learner_rows(const store_transition *t, int n)
{
    redq_transition *rt = malloc(sizeof *rt * (size_t)(n > 0 ? n : 1));
    for (int i = 0; rt && i < n; i++)
        rt[i] = (redq_transition){t[i].obs, t[i].action, t[i].reward, t[i].next_obs,
                                  t[i].terminated, t[i].truncated, t[i].env_id};
    return rt;
}

/* Under a->mu, after the commit: feeds the learner (room reserved before the commit, so
 * it cannot fail) and counts what is owed. */
static int feed(rqd_agent *a, const redq_transition *rt, int n, double owed,
                double *wait_target, rqd_err *err)
{
    int rc = redq_agent_add(a->core, rt, n, err);
    if (NEVER(rc < 0)) { /* stored but not learnt from: the agent is no longer whole */
        rqd__agent_fail(a, "its learner could not take stored transitions (%s); restart the "
                        "daemon or restore a checkpoint to rebuild it", err->msg);
        return rc;
    }
    rqd__prune_added(a);
    a->pending += owed;
    a->owed_total += owed;
    /* The done_total at which every whole update owed so far (this post's included) is
     * done: the trainers run floor(pending) of them (trainer.c runnable()), so with a
     * fractional update_per_step the fraction left over is not waited for. Relative to
     * done_total, not owed_total: the two differ after a restart (pending is recomputed)
     * and whenever pending is cleared. */
    *wait_target = redq_agent_config(a->core)->training == REDQ_TRAIN_SYNC && owed > 0
                       ? a->done_total + floor(a->pending) : -1.0;
    return RQD_OK;
}

typedef struct {
    int64_t agent;
    int64_t first_seq;
    const store_transition *t;
    int n, S, A;
    const char *batch_id;
    const char *answer;
    const store_episode_row *episode; /* also written, when not NULL */
    const rqd_returns_plan *plan;     /* the post's episodes from transitions, or NULL */
    const rqd_eval *eval;             /* an eval episode that ended, or NULL */
    const rqd_head *head;             /* a replay head to store with the rows, or NULL */
} ingest_job;

static int do_ingest(store *s, void *arg, rqd_err *err)
{
    ingest_job *j = arg;
    int rc = RQD_OK;
    if (j->n > 0)
        rc = store_transitions_append(s, j->agent, j->first_seq, j->t, j->n, j->S, j->A, err);
    if (rc == RQD_OK && j->batch_id)
        rc = store_batch_put(s, j->agent, j->batch_id, j->answer, err);
    if (rc == RQD_OK && j->episode)
        rc = store_episode_put(s, j->agent, j->episode, j->S, j->A, err);
    if (rc == RQD_OK && j->plan)
        rc = rqd_returns_write(s, j->agent, j->plan, err);
    if (rc == RQD_OK && j->eval)
        rc = rqd__eval_write(s, j->agent, j->eval, err);
    if (rc == RQD_OK && j->head)
        rc = rqd__head_write(s, j->agent, j->head, err);
    return rc;
}

/* Under a->mu, after the commit: the episodes that ended count in the state. */
static void count_ended(rqd_agent *a, const store_episode_row *ended, int n)
{
    for (int i = 0; i < n; i++)
        if (ended[i].mode == STORE_EP_EXPLORE) {
            a->episodes_done++;
            a->last_return = ended[i].ret;
        }
}

static char *answer_json(int n, long long env_steps, double pending)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (o && rqd_json_add_int(o, "accepted", n) &&
        rqd_json_add_int(o, "env_steps", env_steps) &&
        rqd_json_add_number(o, "pending_updates", pending))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int rqd_ingest(rqd_agent *a, const store_transition *t, int n, const char *batch_id,
               char **answer, double *wait_target, rqd_err *err)
{
    double owed = 0;
    char *text = NULL, now[32];
    redq_transition *rt = NULL;
    rqd_returns_plan plan;
    rqd_head head = {0};
    int rc, planned = 0;

    *answer = NULL;
    *wait_target = -1.0;
    if ((rc = rqd__write_begin(a, err)) < 0)
        return rc;
    if (batch_id) { /* API.md: a known batch_id answers as the first post did */
        store *rd = rqd_reader_get(a->reg, err);
        if (rd == NULL) {
            rc = err->code ? err->code : RQD_EIO;
            goto out;
        }
        rc = store_batch_get(rd, a->id, batch_id, answer, err);
        rqd_reader_put(a->reg, rd);
        if (rc < 0 || *answer)
            goto out;
    }
    if ((rt = learner_rows(t, n)) == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        goto out;
    }
    rqd_agent_lock(a);
    redq_info info;
    redq_agent_info(a->core, &info);
    rc = admit(a, n, &owed, err);
    double pending_after = a->pending + owed;
    /* Sync mode answers after its updates (API.md): what is owed then, the fraction of an
     * update a fractional update_per_step leaves over. A retry answers the same. */
    if (redq_agent_config(a->core)->training == REDQ_TRAIN_SYNC && owed > 0)
        pending_after -= floor(pending_after);
    /* All or nothing: memory for the learner first, then the commit, then the learner. */
    if (rc == RQD_OK)
        rc = redq_agent_reserve(a->core, rt, n, err);
    /* The learner's assembler as it is before these rows, when a head is due. */
    if (rc == RQD_OK)
        rc = rqd__head_take(a, info.env_steps, &head, err);
    pthread_mutex_unlock(&a->mu);
    if (rc < 0)
        goto out;
    if ((text = answer_json(n, info.env_steps + n, pending_after)) == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        goto out;
    }
    rqd_now_rfc3339(now);
    if ((rc = rqd_returns_prepare(&a->returns, t, n, now, &plan, err)) < 0)
        goto out;
    planned = 1;
    ingest_job j = {a->id, info.env_steps + 1, t, n, a->S, a->A, batch_id, text, NULL, &plan,
                    NULL, &head};
    if ((rc = rqd_writer_run(a->reg->writer, do_ingest, &j, err)) < 0)
        goto out;
    rqd_agent_lock(a);
    feed(a, rt, n, owed, wait_target, err); /* the rows are durable: the answer is 200 */
    count_ended(a, plan.ended, plan.n_ended);
    rqd_returns_apply(&a->returns, &plan); /* frees the plan */
    planned = 0;
    pthread_mutex_unlock(&a->mu);
    rqd__head_stored(a, &head);
    *answer = text;
    text = NULL;
out:
    if (planned)
        rqd_returns_plan_free(&plan);
    rqd__write_end(a);
    rqd__head_free(&head);
    free(text);
    free(rt);
    if (rc == RQD_OK)
        rqd_sched_kick(a);
    return rc;
}

/* ------------------------------------------------------------------ episodes */

static rqd_episode **find_episode(rqd_agent *a, const char *id)
{
    rqd_episode **pp = &a->episodes;
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void episode_row(const rqd_agent *a, const rqd_episode *e, const char *ended_at,
                        int abandoned, store_episode_row *row)
{
    memset(row, 0, sizeof *row);
    snprintf(row->id, sizeof row->id, "%s", e->id);
    row->mode = e->mode;
    row->ret = e->ret;
    row->length = e->length;
    snprintf(row->started_at, sizeof row->started_at, "%s", e->started_at);
    snprintf(row->ended_at, sizeof row->ended_at, "%s", ended_at ? ended_at : "");
    row->abandoned = abandoned;
    row->last_obs = e->last_obs;
    row->last_action = e->last_action;
    (void)a;
}

int rqd_episode_start(rqd_agent *a, const float *obs, int mode, char id_out[40], float *action,
                      rqd_err *err)
{
    long long version;
    int rc;
    rqd_episode *e = calloc(1, sizeof *e);
    float *mem = malloc(sizeof(float) * (size_t)(a->S + a->A));

    if (e == NULL || mem == NULL) {
        free(e);
        free(mem);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    }
    e->last_obs = mem;
    e->last_action = mem + a->S;
    e->mode = mode == REDQ_EVAL ? STORE_EP_EVAL : STORE_EP_EXPLORE;
    rqd__episode_id(e->id);
    rqd_now_rfc3339(e->started_at);
    memcpy(e->last_obs, obs, sizeof(float) * (size_t)a->S);
    if ((rc = rqd__write_begin(a, err)) < 0) {
        free(e->last_obs);
        free(e);
        return rc;
    }
    rqd_agent_lock(a);
    int cap = a->reg->limits.open_episodes;
    rc = a->n_open >= cap
             ? rqd_err_set(err, RQD_EINVAL, "obs", "agent '%s' has %d open episodes, the limit "
                           "(--max-open-episodes)", a->name, cap)
             : RQD_OK;
    pthread_mutex_unlock(&a->mu);
    if (rc == RQD_OK)
        rc = rqd_agent_act(a, obs, 1, mode, e->last_action, &version, err);
    if (rc == RQD_OK) {
        store_episode_row row;
        episode_row(a, e, NULL, 0, &row);
        ingest_job j = {a->id, 0, NULL, 0, a->S, a->A, NULL, NULL, &row, NULL, NULL, NULL};
        rc = rqd_writer_run(a->reg->writer, do_ingest, &j, err);
    }
    if (rc == RQD_OK) {
        rqd_agent_lock(a);
        e->next = a->episodes;
        a->episodes = e;
        a->n_open++;
        pthread_mutex_unlock(&a->mu);
        memcpy(action, e->last_action, sizeof(float) * (size_t)a->A);
        snprintf(id_out, 40, "%s", e->id);
        e = NULL;
    }
    rqd__write_end(a);
    if (e) {
        free(e->last_obs);
        free(e);
    }
    return rc;
}

/* Answers 404 for an id never seen and 409 for an ended or abandoned one (one row read:
 * an agent may have ended millions of episodes). */
static int missing_episode(rqd_agent *a, const char *id, rqd_err *err)
{
    store_episode_row *row = NULL;
    int rc = RQD_EIO;
    store *rd = rqd_reader_get(a->reg, err);
    if (rd)
        rc = store_episode_get(rd, a->id, id, a->S, a->A, &row, err);
    store_episode_rows_free(row, row ? 1 : 0);
    rqd_reader_put(a->reg, rd);
    if (rc == RQD_OK)
        return rqd_err_set(err, RQD_ECONFLICT, "episode_id", "episode %s has ended", id);
    if (rc == RQD_ENOTFOUND)
        return rqd_err_set(err, RQD_ENOTFOUND, "episode_id", "no episode %s", id);
    return rc;
}

int rqd_episode_step(rqd_agent *a, const char *id, float reward, const float *obs, int terminated,
                     int truncated, int *done, double *ret, long long *length, float *action,
                     double *wait_target, rqd_err *err)
{
    double owed = 0.0;
    long long version;
    char now[32];
    int rc = RQD_OK;
    float next_action[RQD_MAX_ACT_DIM];
    rqd_head head = {0};

    *wait_target = -1.0;
    if ((rc = rqd__write_begin(a, err)) < 0)
        return rc;
    rqd_agent_lock(a);
    rqd_episode **pp = find_episode(a, id), *e = *pp;
    int explore = e && e->mode == STORE_EP_EXPLORE;
    redq_info info;
    redq_agent_info(a->core, &info);
    if (e && explore)
        rc = admit(a, 1, &owed, err);
    pthread_mutex_unlock(&a->mu);
    if (e == NULL) {
        rqd__write_end(a);
        return missing_episode(a, id, err);
    }
    if (rc < 0)
        goto out;
    *done = terminated || truncated;
    if (!*done && (rc = rqd_agent_act(a, obs, 1, explore ? REDQ_EXPLORE : REDQ_EVAL, next_action,
                                      &version, err)) < 0)
        goto out;
    /* The transition the daemon forms: the episode's own n-step stream. */
    char stream[48];
    snprintf(stream, sizeof stream, "ep:%s", e->id);
    store_transition t = {e->last_obs, e->last_action, reward, obs, terminated, truncated, stream};
    redq_transition rt = {t.obs, t.action, t.reward, t.next_obs, terminated, truncated, stream};
    if (explore) { /* all or nothing, as a post (rqd_ingest) */
        rqd_agent_lock(a);
        rc = redq_agent_reserve(a->core, &rt, 1, err);
        if (rc == RQD_OK)
            rc = rqd__head_take(a, info.env_steps, &head, err);
        pthread_mutex_unlock(&a->mu);
        if (rc < 0)
            goto out;
    }
    rqd_episode next = *e;
    float mem[2 * RQD_MAX_OBS_DIM + RQD_MAX_ACT_DIM];
    next.ret += reward;
    next.length += 1;
    next.last_obs = mem;
    next.last_action = mem + a->S;
    memcpy(next.last_obs, obs, sizeof(float) * (size_t)a->S);
    memcpy(next.last_action, *done ? e->last_action : next_action, sizeof(float) * (size_t)a->A);
    store_episode_row row;
    rqd_now_rfc3339(now);
    episode_row(a, &next, *done ? now : NULL, 0, &row);
    /* An eval episode that ends records its evaluation (API.md), with its last row. */
    double eval_ret = next.ret;
    int64_t eval_len = next.length;
    rqd_eval ev;
    if (*done && !explore) {
        rqd_agent_lock(a);
        rqd__eval_one(a, &eval_ret, &eval_len, &ev);
        pthread_mutex_unlock(&a->mu);
    }
    ingest_job j = {a->id, info.env_steps + 1, &t, explore, a->S, a->A, NULL, NULL, &row, NULL,
                    *done && !explore ? &ev : NULL, &head};
    if ((rc = rqd_writer_run(a->reg->writer, do_ingest, &j, err)) < 0)
        goto out;
    rqd_agent_lock(a);
    if (explore)
        feed(a, &rt, 1, owed, wait_target, err); /* durable: the answer is 200 */
    e->ret = next.ret;
    e->length = next.length;
    memcpy(e->last_obs, next.last_obs, sizeof(float) * (size_t)(a->S));
    memcpy(e->last_action, next.last_action, sizeof(float) * (size_t)(a->A));
    *ret = e->ret;
    *length = e->length;
    if (*done) {
        *pp = e->next;
        a->n_open--;
        if (explore) {
            a->episodes_done++;
            a->last_return = e->ret;
        }
        free(e->last_obs);
        free(e);
    } else {
        memcpy(action, next_action, sizeof(float) * (size_t)a->A);
    }
    pthread_mutex_unlock(&a->mu);
    rqd__head_stored(a, &head);
out:
    rqd__write_end(a);
    rqd__head_free(&head);
    if (rc == RQD_OK)
        rqd_sched_kick(a);
    return rc;
}

int rqd_episode_abandon(rqd_agent *a, const char *id, rqd_err *err)
{
    char now[32];
    int rc;
    if ((rc = rqd__write_begin(a, err)) < 0)
        return rc;
    rqd_agent_lock(a);
    rqd_episode **pp = find_episode(a, id), *e = *pp;
    pthread_mutex_unlock(&a->mu);
    if (e == NULL) {
        rqd__write_end(a);
        return missing_episode(a, id, err);
    }
    store_episode_row row;
    rqd_now_rfc3339(now);
    episode_row(a, e, now, 1, &row);
    ingest_job j = {a->id, 0, NULL, 0, a->S, a->A, NULL, NULL, &row, NULL, NULL, NULL};
    if ((rc = rqd_writer_run(a->reg->writer, do_ingest, &j, err)) == RQD_OK) {
        rqd_agent_lock(a);
        *pp = e->next;
        a->n_open--;
        pthread_mutex_unlock(&a->mu);
        free(e->last_obs);
        free(e);
    }
    rqd__write_end(a);
    return rc;
}
