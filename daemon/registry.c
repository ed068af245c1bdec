/* daemon/registry.c: the agent table: lookup, create, patch, delete, state snapshots and
 * read connections (the start-up reload is startup.c's, the stats flush stats_flush.c's,
 * the timers' other duties duties.c's). THREADS: registry.h. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#define MAX_IDLE_READERS 16

void rqd__episode_id(char out[40])
{
    unsigned char b[12];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)sizeof b) { /* the time and an address stand in */
        uint64_t x = (uint64_t)(rqd_mono() * 1e9) ^ (uint64_t)(uintptr_t)out;
        memcpy(b, &x, 8);
        memset(b + 8, 0, 4);
    }
    for (int i = 0; i < 12; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

double rqd__owed(const redq_config *c, long long env_steps_after)
{
    long long thr = c->start_timesteps > c->batch_size ? c->start_timesteps : c->batch_size;
    if (c->training == REDQ_TRAIN_MANUAL || env_steps_after < thr)
        return 0.0;
    return c->update_per_step;
}

rqd_agent *rqd__agent_wrap(rqd_registry *r, int64_t id, const char *name, int S, int A,
                           const float *low, const float *high, redq_agent *core,
                           const char *created_at)
{
    rqd_agent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->low = malloc(2 * sizeof(float) * (size_t)A);
    if (a->low == NULL) {
        free(a);
        return NULL;
    }
    a->high = a->low + A;
    memcpy(a->low, low, sizeof(float) * (size_t)A);
    memcpy(a->high, high, sizeof(float) * (size_t)A);
    a->reg = r;
    a->id = id;
    snprintf(a->name, sizeof a->name, "%s", name);
    snprintf(a->created_at, sizeof a->created_at, "%s", created_at);
    a->core = core;
    a->S = S;
    a->A = A;
    atomic_init(&a->refs, 1);
    atomic_init(&a->mu_wanted, 0);
    atomic_init(&a->status, core ? RQD_AGENT_OK : RQD_AGENT_UNAVAILABLE);
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->ingest_mu, NULL);
    pthread_mutex_init(&a->act_mu, NULL);
    pthread_rwlock_init(&a->core_rw, NULL);
    pthread_mutex_init(&a->ckpt_mu, NULL);
    pthread_mutex_init(&a->prune_mu, NULL);
    a->last_row_update = -1;
    a->last_return = NAN;
    a->ups_mark_time = rqd_mono();
    if (core) {
        redq_info info;
        redq_agent_info(core, &info);
        a->last_auto_ckpt = info.updates;
        a->ups_mark_updates = info.updates;
    }
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
    rqd_returns_free(&a->returns);
    free(a->rows);
    free(a->low); /* high is in the same block */
    free(a->config_json);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->ingest_mu);
    pthread_mutex_destroy(&a->act_mu);
    pthread_rwlock_destroy(&a->core_rw);
    pthread_mutex_destroy(&a->ckpt_mu);
    pthread_mutex_destroy(&a->prune_mu);
    free(a);
}

void rqd__agent_fail(rqd_agent *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->error, sizeof a->error, fmt, ap);
    va_end(ap);
    atomic_store(&a->status, RQD_AGENT_UNAVAILABLE);
}

int rqd_agent_usable(rqd_agent *a, rqd_err *err)
{
    int st = atomic_load(&a->status);
    if (st == RQD_AGENT_OK)
        return RQD_OK;
    if (st == RQD_AGENT_LOADING)
        return rqd_err_set(err, RQD_EAGAIN, "name", "agent '%s' is still loading; retry "
                           "shortly", a->name);
    rqd_agent_lock(a);
    rqd_err_set(err, RQD_EUNAVAIL, "name", "agent '%s' is unavailable: %s", a->name, a->error);
    pthread_mutex_unlock(&a->mu);
    return RQD_EUNAVAIL;
}

static int write_begin(rqd_agent *a, int any, rqd_err *err)
{
    pthread_mutex_lock(&a->ingest_mu);
    int rc = a->deleted ? rqd_err_set(err, RQD_ENOTFOUND, "name", "agent '%s' was deleted",
                                      a->name)
             : any      ? RQD_OK
                        : rqd_agent_usable(a, err);
    if (rc == RQD_OK && !any)
        rc = rqd__moving_refuse(a, err);
    if (rc < 0)
        pthread_mutex_unlock(&a->ingest_mu);
    return rc;
}

int rqd__write_begin(rqd_agent *a, rqd_err *err) { return write_begin(a, 0, err); }
int rqd__write_begin_any(rqd_agent *a, rqd_err *err) { return write_begin(a, 1, err); }

int rqd_agent_training(rqd_agent *a)
{
    rqd_agent_lock(a);
    int t = a->core ? redq_agent_config(a->core)->training : -1;
    pthread_mutex_unlock(&a->mu);
    return t;
}

double rqd_agent_pending(rqd_agent *a)
{
    rqd_agent_lock(a);
    double p = a->pending;
    pthread_mutex_unlock(&a->mu);
    return p;
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

/* Under r->mu: room in the table for one more agent. */
static int table_room(rqd_registry *r, int need, rqd_err *err)
{
    if (need <= r->cap)
        return RQD_OK;
    int cap = r->cap ? 2 * r->cap : 16;
    while (cap < need)
        cap *= 2;
    rqd_agent **v = realloc(r->agents, (size_t)cap * sizeof *v);
    if (v == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    r->agents = v;
    r->cap = cap;
    return RQD_OK;
}

/* Under r->mu: inserts a (there is room and its name is free). */
static void table_put(rqd_registry *r, rqd_agent *a, int at)
{
    memmove(r->agents + at + 1, r->agents + at, (size_t)(r->n - at) * sizeof *r->agents);
    r->agents[at] = a;
    r->n++;
}

int rqd__table_insert(rqd_registry *r, rqd_agent *a, rqd_err *err)
{
    int rc = RQD_OK;
    pthread_mutex_lock(&r->mu);
    int at = table_find(r, a->name);
    if (at >= 0)
        rc = rqd_err_set(err, RQD_EEXIST, "name", "agent '%s' already exists", a->name);
    else if ((rc = table_room(r, r->n + r->n_reserved + 1, err)) == RQD_OK)
        table_put(r, a, -at - 1);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int reserved_at(const rqd_registry *r, const char *name)
{
    for (int i = 0; i < r->n_reserved; i++)
        if (strcmp(r->reserved[i], name) == 0)
            return i;
    return -1;
}

int rqd__name_reserve(rqd_registry *r, const char *name, rqd_err *err)
{
    int rc = RQD_OK;
    pthread_mutex_lock(&r->mu);
    if (table_find(r, name) >= 0 || reserved_at(r, name) >= 0) {
        rc = rqd_err_set(err, RQD_EEXIST, "name", "agent '%s' already exists", name);
    } else if (r->n + r->n_reserved >= r->max_agents) {
        rc = rqd_err_set(err, RQD_EINVAL, "name", "this daemon already hosts %d agents, its "
                         "limit (--max-agents)", r->max_agents);
    } else if ((rc = table_room(r, r->n + r->n_reserved + 1, err)) == RQD_OK &&
               r->n_reserved == r->cap_reserved) {
        int cap = r->cap_reserved ? 2 * r->cap_reserved : 8;
        char(*v)[72] = realloc(r->reserved, (size_t)cap * sizeof *v);
        if (v == NULL) {
            rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        } else {
            r->reserved = v;
            r->cap_reserved = cap;
        }
    }
    if (rc == RQD_OK)
        snprintf(r->reserved[r->n_reserved++], sizeof r->reserved[0], "%s", name);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* Under r->mu. */
static void unreserve(rqd_registry *r, const char *name)
{
    int i = reserved_at(r, name);
    if (ALWAYS(i >= 0)) {
        memmove(r->reserved[i], r->reserved[i + 1],
                (size_t)(r->n_reserved - i - 1) * sizeof r->reserved[0]);
        r->n_reserved--;
    }
}

void rqd__name_publish(rqd_registry *r, rqd_agent *a)
{
    pthread_mutex_lock(&r->mu);
    unreserve(r, a->name);
    int at = table_find(r, a->name);
    /* The reservation kept the name free and the room made. */
    if (ALWAYS(at < 0 && r->n < r->cap))
        table_put(r, a, -at - 1);
    pthread_mutex_unlock(&r->mu);
}

void rqd__name_release(rqd_registry *r, const char *name)
{
    pthread_mutex_lock(&r->mu);
    unreserve(r, name);
    pthread_mutex_unlock(&r->mu);
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
    if (s == NULL && rqd__store_open(r, STORE_RO, &s, err) < 0)
        return NULL;
    return s;
}

int rqd__store_open(rqd_registry *r, int mode, store **out, rqd_err *err)
{
    int rc = store_open(r->db_path, mode, r->sync_full, mode == STORE_RW, out, err);
    if (rc == RQD_OK && r->max_value > 0 &&
        (rc = store_set_max_value(*out, r->max_value, err)) < 0) {
        store_close(*out);
        *out = NULL;
    }
    return rc;
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
    rqd_agent *a = NULL;
    char *text = NULL, now[32];
    int rc;

    if ((rc = rqd__name_reserve(r, name, err)) < 0)
        return rc;
    /* Everything in memory first: once the row is committed nothing may fail. */
    if ((rc = redq_limits_check(&r->limits, cfg, S, A, err)) < 0 ||
        (rc = redq_agent_new(cfg, S, A, low, high, &core, err)) < 0)
        goto out;
    rqd_now_rfc3339(now);
    if ((text = config_text(cfg)) == NULL ||
        (a = rqd__agent_wrap(r, 0, name, S, A, low, high, core, now)) == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        goto out;
    }
    core = NULL; /* a's */
    rqd__prune_init(a, 0);
    create_job j = {name, S, A, low, high, text, 0};
    if ((rc = rqd_writer_run(r->writer, do_create, &j, err)) < 0)
        goto out;
    a->id = j.id;
    a->policy_lease = RQD_POLICY_LEASE;
    atomic_fetch_add(&a->refs, 1); /* the caller's; the first goes to the table */
    rqd__name_publish(r, a);
    *out = a;
    a = NULL;
    LOG(LOG_INFO, "agent %s: created (obs %d, act %d, N %d, hidden %d layers)", name, S, A,
        cfg->ensemble_size, cfg->n_hidden);
out:
    if (rc < 0)
        rqd__name_release(r, name);
    rqd__agent_destroy(a);
    redq_agent_free(core);
    free(text);
    return rc;
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
    /* Validated before the commit: the in-memory step after it must not fail (the
     * settings that may not change were copied from the agent by the caller). */
    if ((rc = redq_config_validate(cfg, err)) < 0) {
        free(text);
        return rc;
    }
    /* Orders PATCHes among themselves and with posts, and keeps DELETE out. */
    if ((rc = rqd__write_begin(a, err)) < 0) {
        free(text);
        return rc;
    }
    patch_job j = {a->id, text};
    rc = rqd_writer_run(a->reg->writer, do_patch, &j, err);
    if (rc == RQD_OK) {
        rqd_agent_lock(a);
        int was = redq_agent_config(a->core)->training;
        rc = redq_agent_set_config(a->core, cfg, err);
        if (rc == RQD_OK)
            rqd__prune_config(a);
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
    rqd__write_end(a);
    free(text);
    rqd__call_waiters(wake, 0);
    rqd_sched_kick(a);
    return rc;
}

static int do_delete(store *s, void *arg, rqd_err *err)
{
    int rc = store_agent_delete(s, *(int64_t *)arg, err);
    return rc == RQD_OK ? store_moving_set(s, *(int64_t *)arg, 0, err) : rc; /* a move's end */
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

int rqd_agent_config(rqd_agent *a, redq_config *out, rqd_err *err)
{
    int rc = RQD_OK;
    rqd_agent_lock(a);
    if (a->core)
        *out = *redq_agent_config(a->core);
    else
        rc = rqd_err_set(err, RQD_EUNAVAIL, "name", "agent '%s' is unavailable: %s", a->name,
                         a->error);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

cJSON *rqd_agent_config_json(rqd_agent *a)
{
    cJSON *o;
    rqd_agent_lock(a);
    if (a->core)
        o = redq_config_to_json(redq_agent_config(a->core));
    else /* as stored; an object whatever the text (it may be what failed to load) */
        o = a->config_json ? cJSON_Parse(a->config_json) : NULL;
    pthread_mutex_unlock(&a->mu);
    if (o != NULL && !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o ? o : cJSON_CreateObject();
}

void rqd_agent_state_get(rqd_agent *a, rqd_agent_state *st)
{
    memset(st, 0, sizeof *st);
    rqd_agent_lock(a);
    st->status = atomic_load(&a->status);
    if (st->status != RQD_AGENT_OK)
        snprintf(st->error, sizeof st->error, "%s",
                 st->status == RQD_AGENT_LOADING ? "still loading" : a->error);
    st->skipped = a->skipped_total;
    if (a->core) {
        redq_agent_info(a->core, &st->info);
        st->training = redq_agent_config(a->core)->training;
    } else {
        st->info = a->stored;
        st->training = REDQ_TRAIN_PAUSED;
    }
    st->pending = a->pending;
    st->episodes_done = a->episodes_done;
    st->n_open = a->n_open;
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
    st->moving = a->moving;
    memcpy(st->moving_to, a->moving_to, sizeof st->moving_to);
    st->moving_since = a->moving_since;
    pthread_mutex_unlock(&a->mu);
}
