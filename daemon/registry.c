/* daemon/registry.c: the agent table: start-up reload, lookup, create, patch, delete,
 * state snapshots, read connections, periodic duties (stats flush, progress lines,
 * waiter deadlines) and the registry's part of shutdown. THREADS: registry.h. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "log.h"

#define MAX_IDLE_READERS 16

double rqd__mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void rqd__now_rfc3339(char out[32])
{
    struct timespec ts;
    struct tm tm;
    char s[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", s, (int)(ts.tv_nsec / 1000000));
}

double rqd__owed(const redq_config *c, long long env_steps_after)
{
    long long thr = c->start_timesteps > c->batch_size ? c->start_timesteps : c->batch_size;
    if (c->training == REDQ_TRAIN_MANUAL || env_steps_after < thr)
        return 0.0;
    return c->update_per_step;
}

rqd_agent *rqd__agent_wrap(rqd_registry *r, int64_t id, const char *name, redq_agent *core,
                           const char *created_at)
{
    rqd_agent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->reg = r;
    a->id = id;
    snprintf(a->name, sizeof a->name, "%s", name);
    snprintf(a->created_at, sizeof a->created_at, "%s", created_at);
    a->core = core;
    a->S = redq_agent_obs_dim(core);
    a->A = redq_agent_act_dim(core);
    atomic_init(&a->refs, 1);
    atomic_init(&a->mu_wanted, 0);
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->ingest_mu, NULL);
    pthread_mutex_init(&a->act_mu, NULL);
    pthread_rwlock_init(&a->core_rw, NULL);
    pthread_mutex_init(&a->ckpt_mu, NULL);
    a->last_row_update = -1;
    a->last_return = NAN;
    a->ups_mark_time = rqd__mono();
    redq_info info;
    redq_agent_info(core, &info);
    a->last_auto_ckpt = info.updates;
    a->ups_mark_updates = info.updates;
    return a;
}

void rqd__agent_destroy(rqd_agent *a)
{
    if (a == NULL)
        return;
    for (rqd_episode *e = a->episodes, *n; e; e = n) {
        n = e->next;
        free(e->last_obs);
        free(e);
    }
    redq_agent_free(a->core);
    free(a->rows);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->ingest_mu);
    pthread_mutex_destroy(&a->act_mu);
    pthread_rwlock_destroy(&a->core_rw);
    pthread_mutex_destroy(&a->ckpt_mu);
    free(a);
}

void rqd_agent_put(rqd_agent *a)
{
    if (a != NULL && atomic_fetch_sub(&a->refs, 1) == 1)
        rqd__agent_destroy(a);
}

/* Index of name in the sorted table, or -(insertion point) - 1. */
static int table_find(const rqd_registry *r, const char *name)
{
    int lo = 0, hi = r->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(r->agents[mid]->name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -lo - 1;
}

int rqd__table_insert(rqd_registry *r, rqd_agent *a, rqd_err *err)
{
    int rc = RQD_OK;
    pthread_mutex_lock(&r->mu);
    int at = table_find(r, a->name);
    if (at >= 0) {
        rc = rqd_err_set(err, RQD_EEXIST, "name", "agent '%s' already exists", a->name);
    } else if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        rqd_agent **v = realloc(r->agents, (size_t)cap * sizeof *v);
        if (v == NULL)
            rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        else {
            r->agents = v;
            r->cap = cap;
        }
    }
    if (rc == RQD_OK) {
        at = -at - 1;
        memmove(r->agents + at + 1, r->agents + at, (size_t)(r->n - at) * sizeof *r->agents);
        r->agents[at] = a;
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

rqd_agent *rqd_agent_find(rqd_registry *r, const char *name)
{
    rqd_agent *a = NULL;
    pthread_mutex_lock(&r->mu);
    int at = table_find(r, name);
    if (at >= 0) {
        a = r->agents[at];
        atomic_fetch_add(&a->refs, 1);
    }
    pthread_mutex_unlock(&r->mu);
    return a;
}

int rqd_agent_list(rqd_registry *r, rqd_agent ***out, int *n)
{
    pthread_mutex_lock(&r->mu);
    rqd_agent **v = malloc(sizeof *v * (size_t)(r->n ? r->n : 1));
    if (v == NULL) {
        pthread_mutex_unlock(&r->mu);
        return RQD_ENOMEM;
    }
    for (int i = 0; i < r->n; i++) {
        v[i] = r->agents[i];
        atomic_fetch_add(&v[i]->refs, 1);
    }
    *n = r->n;
    pthread_mutex_unlock(&r->mu);
    *out = v;
    return RQD_OK;
}

void rqd_agent_list_free(rqd_agent **v, int n)
{
    for (int i = 0; i < n; i++)
        rqd_agent_put(v[i]);
    free(v);
}

int rqd_registry_count(rqd_registry *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

rqd_writer *rqd_registry_writer(rqd_registry *r) { return r->writer; }
const rqd_limits *rqd_registry_limits(const rqd_registry *r) { return &r->limits; }

/* ------------------------------------------------------------------ readers */

store *rqd_reader_get(rqd_registry *r, rqd_err *err)
{
    store *s = NULL;
    pthread_mutex_lock(&r->rd_mu);
    if (r->n_readers > 0)
        s = r->readers[--r->n_readers];
    pthread_mutex_unlock(&r->rd_mu);
    if (s == NULL && store_open(r->db_path, STORE_RO, r->sync_full, 0, &s, err) < 0)
        return NULL;
    return s;
}

void rqd_reader_put(rqd_registry *r, store *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&r->rd_mu);
    if (r->n_readers < MAX_IDLE_READERS) {
        if (r->n_readers == r->cap_readers) {
            int cap = r->cap_readers ? 2 * r->cap_readers : 4;
            store **v = realloc(r->readers, (size_t)cap * sizeof *v);
            if (v != NULL) {
                r->readers = v;
                r->cap_readers = cap;
            }
        }
        if (r->n_readers < r->cap_readers) {
            r->readers[r->n_readers++] = s;
            s = NULL;
        }
    }
    pthread_mutex_unlock(&r->rd_mu);
    store_close(s);
}

/* ------------------------------------------------------------------ create, patch, delete */

typedef struct {
    const char *name;
    int S, A;
    const float *low, *high;
    const char *config;
    int64_t id;
} create_job;

static int do_create(store *s, void *arg, rqd_err *err)
{
    create_job *j = arg;
    int rc = store_agent_insert(s, j->name, j->S, j->A, j->low, j->high, j->config, &j->id, err);
    return rc < 0 ? rc : store_agent_bump_policy(s, j->id, RQD_POLICY_LEASE, err);
}

static char *config_text(const redq_config *c)
{
    cJSON *o = redq_config_to_json(c);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

int rqd_agent_create(rqd_registry *r, const char *name, int S, int A, const float *low,
                     const float *high, const redq_config *cfg, rqd_agent **out, rqd_err *err)
{
    redq_agent *core = NULL;
    char *text = NULL, now[32];
    int rc;

    if (rqd_registry_count(r) >= r->max_agents)
        return rqd_err_set(err, RQD_EINVAL, "name", "this daemon already hosts %d agents, its "
                           "limit (--max-agents)", r->max_agents);
    rqd_agent *dup = rqd_agent_find(r, name);
    if (dup != NULL) {
        rqd_agent_put(dup);
        return rqd_err_set(err, RQD_EEXIST, "name", "agent '%s' already exists", name);
    }
    if ((rc = redq_limits_check(&r->limits, cfg, S, A, err)) < 0 ||
        (rc = redq_agent_new(cfg, S, A, low, high, &core, err)) < 0)
        return rc;
    if ((text = config_text(cfg)) == NULL) {
        redq_agent_free(core);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    }
    create_job j = {name, S, A, low, high, text, 0};
    rc = rqd_writer_run(r->writer, do_create, &j, err);
    free(text);
    if (rc < 0) {
        redq_agent_free(core);
        return rc;
    }
    rqd__now_rfc3339(now);
    rqd_agent *a = rqd__agent_wrap(r, j.id, name, core, now);
    if (a == NULL) {
        redq_agent_free(core);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    }
    a->policy_lease = RQD_POLICY_LEASE;
    if ((rc = rqd__table_insert(r, a, err)) < 0) {
        rqd__agent_destroy(a);
        return rc;
    }
    atomic_fetch_add(&a->refs, 1);
    *out = a;
    LOG(LOG_INFO, "agent %s: created (obs %d, act %d, N %d, hidden %d layers)", name, S, A,
        cfg->ensemble_size, cfg->n_hidden);
    return RQD_OK;
}

typedef struct {
    int64_t id;
    const char *config;
} patch_job;

static int do_patch(store *s, void *arg, rqd_err *err)
{
    patch_job *j = arg;
    return store_agent_set_config(s, j->id, j->config, err);
}

int rqd_agent_patch(rqd_agent *a, const redq_config *cfg, rqd_err *err)
{
    char *text = config_text(cfg);
    rqd_waiter *wake = NULL;
    int rc;

    if (text == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    pthread_mutex_lock(&a->ingest_mu); /* orders PATCHes among themselves and with posts */
    patch_job j = {a->id, text};
    rc = rqd_writer_run(a->reg->writer, do_patch, &j, err);
    if (rc == RQD_OK) {
        rqd_agent_lock(a);
        int was = redq_agent_config(a->core)->training;
        rc = redq_agent_set_config(a->core, cfg, err);
        /* Sync waiters wait for done_total to reach at most done_total + pending
         * (ingest.c feed()); crediting pending to done_total releases them all. */
        if (rc == RQD_OK && cfg->training == REDQ_TRAIN_MANUAL) {
            a->done_total += a->pending;
            a->pending = 0; /* API.md: switching to manual clears what is owed */
            wake = rqd__take_ready(a);
        } else if (rc == RQD_OK && was == REDQ_TRAIN_SYNC && cfg->training != REDQ_TRAIN_SYNC) {
            a->done_total += a->pending; /* nobody waits for sync updates any more */
            wake = rqd__take_ready(a);
        }
        pthread_mutex_unlock(&a->mu);
    }
    pthread_mutex_unlock(&a->ingest_mu);
    free(text);
    rqd__call_waiters(wake, 0);
    rqd_sched_kick(a);
    return rc;
}

static int do_delete(store *s, void *arg, rqd_err *err)
{
    return store_agent_delete(s, *(int64_t *)arg, err);
}

int rqd_agent_delete(rqd_registry *r, const char *name, rqd_err *err)
{
    rqd_agent *a = NULL;
    int rc;

    pthread_mutex_lock(&r->mu);
    int at = table_find(r, name);
    if (at >= 0) {
        a = r->agents[at]; /* the table's reference moves to us */
        memmove(r->agents + at, r->agents + at + 1, (size_t)(r->n - at - 1) * sizeof *r->agents);
        r->n--;
    }
    pthread_mutex_unlock(&r->mu);
    if (a == NULL)
        return rqd_err_set(err, RQD_ENOTFOUND, "name", "no agent named '%s'", name);
    pthread_mutex_lock(&a->ingest_mu);
    rqd_agent_lock(a);
    a->deleted = 1;
    rqd_waiter *w = a->waiters;
    a->waiters = NULL;
    pthread_mutex_unlock(&a->mu);
    rc = rqd_writer_run(r->writer, do_delete, &a->id, err);
    if (rc < 0) { /* nothing was deleted: the agent comes back as it was (API.md) */
        rqd_err why = {0};
        rqd_agent_lock(a);
        a->deleted = 0;
        rqd_waiter **tail = &a->waiters;
        while (*tail)
            tail = &(*tail)->next;
        *tail = w;
        w = NULL;
        pthread_mutex_unlock(&a->mu);
        if (rqd__table_insert(r, a, &why) == RQD_OK)
            atomic_fetch_add(&a->refs, 1); /* the table's again; ours is put below */
        else
            LOG(LOG_ERR, "agent %s: cannot be listed again after a failed delete: %s", name,
                why.msg);
    }
    pthread_mutex_unlock(&a->ingest_mu);
    rqd__call_waiters(w, RQD_ECONFLICT);
    if (rc == RQD_OK)
        LOG(LOG_INFO, "agent %s: deleted", name);
    rqd_agent_put(a);
    return rc;
}

void rqd_agent_config(rqd_agent *a, redq_config *out)
{
    rqd_agent_lock(a);
    *out = *redq_agent_config(a->core);
    pthread_mutex_unlock(&a->mu);
}

void rqd_agent_state_get(rqd_agent *a, rqd_agent_state *st)
{
    rqd_agent_lock(a);
    redq_agent_info(a->core, &st->info);
    st->pending = a->pending;
    st->episodes_done = a->episodes_done;
    st->n_open = a->n_open;
    st->training = redq_agent_config(a->core)->training;
    st->have_ckpt = a->have_ckpt;
    st->last_ckpt = a->last_ckpt;
    /* Automatic checkpoints count once committed (the writer records them). */
    pthread_mutex_lock(&a->ckpt_mu);
    if (a->have_auto && (!st->have_ckpt || a->auto_ckpt.id > st->last_ckpt.id)) {
        st->have_ckpt = 1;
        st->last_ckpt = a->auto_ckpt;
    }
    pthread_mutex_unlock(&a->ckpt_mu);
    st->last = a->last;
    st->have_stats = a->have_stats;
    st->ups = a->ups;
    st->last_return = a->last_return;
    pthread_mutex_unlock(&a->mu);
}

/* ------------------------------------------------------------------ periodic duties */

void rqd_registry_wake_waiters(rqd_registry *r, int status, double now)
{
    rqd_agent **v;
    int n;
    if (rqd_agent_list(r, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        rqd_waiter *due = NULL, **pp;
        rqd_agent_lock(v[i]);
        for (pp = &v[i]->waiters; *pp;) {
            rqd_waiter *w = *pp;
            if (status != 1 || w->deadline <= now) {
                *pp = w->next;
                w->next = due;
                due = w;
            } else {
                pp = &w->next;
            }
        }
        pthread_mutex_unlock(&v[i]->mu);
        rqd__call_waiters(due, status);
    }
    rqd_agent_list_free(v, n);
}

/* Stats rows whose write failed (the disk full, an I/O error) are kept and written
 * again at the next flush, before newer ones, so that the stats table has no hole once
 * space returns. At most this many wait (about 25 MiB); past it the oldest are given up,
 * counted in redqd_stats_rows_dropped_total and logged. */
#define RQD_STATS_RETRY_ROWS (1 << 18)

typedef struct stats_job {
    struct stats_job *next;
    rqd_registry *reg;
    int64_t agent;
    store_stats_row *rows;
    int n;
} stats_job;

static int do_stats(store *s, void *arg, rqd_err *err)
{
    stats_job *j = arg;
    return store_stats_append(s, j->agent, j->rows, j->n, err);
}

static void stats_job_free(stats_job *j)
{
    free(j->rows);
    free(j);
}

/* The writer's callback: a job that failed for want of space or I/O is kept for the next
 * flush; one refused otherwise (the agent was deleted) goes. */
static void stats_done(void *arg, int rc)
{
    stats_job *j = arg;
    rqd_registry *r = j->reg;
    long long dropped = 0;

    if (rc != RQD_EIO) {
        stats_job_free(j);
        return;
    }
    pthread_mutex_lock(&r->stats_mu);
    j->next = NULL;
    if (r->stats_retry_tail)
        r->stats_retry_tail->next = j;
    else
        r->stats_retry = j;
    r->stats_retry_tail = j;
    r->stats_retry_rows += j->n;
    while (r->stats_retry_rows > RQD_STATS_RETRY_ROWS && r->stats_retry != j) {
        stats_job *old = r->stats_retry;
        r->stats_retry = old->next;
        r->stats_retry_rows -= old->n;
        dropped += old->n;
        stats_job_free(old);
    }
    pthread_mutex_unlock(&r->stats_mu);
    if (dropped > 0) {
        atomic_fetch_add(&r->stats_dropped, dropped);
        LOG(LOG_WARNING, "%lld stats rows given up: the database has refused writes for a "
            "while (more than %d rows waiting)", dropped, RQD_STATS_RETRY_ROWS);
    }
}

void rqd__stats_retry_free(rqd_registry *r)
{
    while (r->stats_retry) {
        stats_job *j = r->stats_retry;
        r->stats_retry = j->next;
        stats_job_free(j);
    }
    r->stats_retry_tail = NULL;
    r->stats_retry_rows = 0;
}

long long rqd_registry_stats_dropped(rqd_registry *r)
{
    return atomic_load(&r->stats_dropped);
}

void rqd_registry_flush_stats(rqd_registry *r)
{
    rqd_agent **v;
    int n;

    /* The rows that failed before go first (the writer's queue is FIFO). */
    pthread_mutex_lock(&r->stats_mu);
    stats_job *retry = r->stats_retry;
    r->stats_retry = r->stats_retry_tail = NULL;
    r->stats_retry_rows = 0;
    pthread_mutex_unlock(&r->stats_mu);
    while (retry) {
        stats_job *next = retry->next;
        rqd_writer_post(r->writer, do_stats, retry, stats_done);
        retry = next;
    }
    if (rqd_agent_list(r, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        stats_job *j = calloc(1, sizeof *j);
        if (j == NULL)
            break;
        rqd_agent_lock(v[i]);
        j->reg = r;
        j->agent = v[i]->id;
        j->rows = v[i]->rows;
        j->n = v[i]->n_rows;
        v[i]->rows = NULL;
        v[i]->n_rows = v[i]->cap_rows = 0;
        pthread_mutex_unlock(&v[i]->mu);
        if (j->n == 0)
            stats_job_free(j);
        else
            rqd_writer_post(r->writer, do_stats, j, stats_done);
    }
    rqd_agent_list_free(v, n);
}

void rqd_registry_log_progress(rqd_registry *r)
{
    rqd_agent **v;
    int n;
    double now = rqd__mono();
    if (rqd_agent_list(r, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        rqd_agent *a = v[i];
        redq_info info;
        rqd_agent_lock(a);
        redq_agent_info(a->core, &info);
        double dt = now - a->ups_mark_time;
        long long du = info.updates - a->ups_mark_updates;
        if (dt > 0)
            a->ups = (double)du / dt;
        a->ups_mark_time = now;
        a->ups_mark_updates = info.updates;
        double pending = a->pending, loss = a->last.critic_loss, ret = a->last_return;
        int have = a->have_stats;
        pthread_mutex_unlock(&a->mu);
        if (du > 0)
            LOG(LOG_INFO, "agent %s: env_steps %lld, updates %lld (%.1f/s), pending %.0f, "
                "critic_loss %.4g, alpha %.4g, last return %.1f", a->name, info.env_steps,
                info.updates, du / dt, pending, have ? loss : NAN, info.alpha, ret);
    }
    rqd_agent_list_free(v, n);
}
