/* daemon/startup.c: the registry's life: open the database, reload every agent as it was
 * (API.md "Crashes and shutdown": the last checkpoint, then the transitions after it owe
 * their updates again), start writer and trainers; and the registry's shutdown. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "log.h"

typedef struct {
    redq_agent *core;
    rqd_err *err;
    long long next_seq;
    long long n;
} replay_ctx;

static int replay_one(void *p, int64_t seq, const store_transition *t)
{
    replay_ctx *c = p;
    redq_transition tr = {t->obs, t->action, t->reward, t->next_obs, t->terminated,
                          t->truncated, t->env_id};
    /* A gap before the first stored row: transitions an imported file counted but did
     * not carry. env_steps counts them all the same. */
    if (seq != c->next_seq)
        redq_agent_set_env_steps(c->core, seq - 1);
    c->next_seq = seq + 1;
    c->n++;
    return redq_agent_add(c->core, &tr, 1, c->err);
}

/* The buffer an imported agent's first checkpoint carried, if it did, into core (as its
 * starting point); *base gets that checkpoint's env_steps (0 without one). */
static int import_base(store *s, int64_t agent_id, redq_agent *core, long long *base,
                       rqd_err *err)
{
    store_ckpt_info *list = NULL;
    int n = 0, rc;

    *base = 0;
    if ((rc = store_ckpt_list(s, agent_id, &list, &n, err)) < 0)
        return rc;
    if (n > 0) {
        void *blob = NULL;
        size_t len = 0;
        store_ckpt_info info;
        rc = store_ckpt_get(s, agent_id, list[0].id, &info, &blob, &len, err);
        uint32_t flags = 0;
        if (rc == RQD_OK && len > 16)
            memcpy(&flags, (char *)blob + 12, 4);
        if (rc == RQD_OK && (flags & 1u)) {
            redq_agent *tmp = NULL;
            if ((rc = redq_agent_load(blob, len, &tmp, err)) == RQD_OK) {
                redq_info ti;
                redq_agent_info(tmp, &ti);
                *base = ti.env_steps;
                rc = redq_agent_swap_buffer(core, tmp, err);
                redq_agent_free(tmp);
            }
        }
        free(blob);
    }
    free(list);
    return rc;
}

int rqd__rebuild_buffer(rqd_registry *r, store *s, int64_t agent_id, redq_agent *core,
                        long long floor_steps, rqd_rebuilt *out, rqd_err *err)
{
    store_head_info head, *heads = NULL;
    void *blob = NULL;
    size_t len = 0;
    long long base = 0;
    int n = 0, rc;
    (void)r;

    memset(out, 0, sizeof *out);
    if ((rc = store_head_list(s, agent_id, &heads, &n, err)) < 0)
        return rc;
    out->newest_head = n > 0 ? heads[n - 1].seq : 0;
    free(heads);
    /* The base replay head, when pruning has set one: the transitions before it may be
     * gone (daemon/prune.c). Otherwise the import checkpoint's rows, or nothing. */
    rc = store_head_base(s, agent_id, &head, &blob, &len, err);
    if (rc == RQD_OK) {
        rc = redq_agent_head_load(core, blob, len, err);
        free(blob);
        if (rc < 0) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            return rqd_err_set(err, RQD_EIO, "", "its base replay head (env_steps %lld) cannot "
                               "be loaded: %s", (long long)head.seq, why);
        }
        base = head.seq;
    } else if (rc == RQD_ENOTFOUND) {
        rc = import_base(s, agent_id, core, &base, err);
    }
    if (rc < 0)
        return rc;
    redq_agent_set_env_steps(core, base);
    replay_ctx c = {core, err, base + 1, 0};
    if ((rc = store_transitions_scan(s, agent_id, base + 1, redq_agent_obs_dim(core),
                                     redq_agent_act_dim(core), replay_one, &c, err)) < 0)
        return rc;
    redq_info info;
    redq_agent_info(core, &info);
    if (info.buffer_missing > 0) /* the transitions after the base are not all there */
        return rqd_err_set(err, RQD_EIO, "", "its stored replay buffer is incomplete: the "
                           "%lld transitions after its base replay head (env_steps %lld) "
                           "leave %lld rows of the ring unknown", c.n, base,
                           info.buffer_missing);
    if (info.env_steps < floor_steps) /* an import whose file carried no buffer */
        redq_agent_set_env_steps(core, floor_steps);
    out->env_steps = info.env_steps > floor_steps ? info.env_steps : floor_steps;
    out->replayed = c.n;
    out->from = base;
    return RQD_OK;
}

int rqd__load_episodes(store *s, rqd_agent *a, rqd_err *err)
{
    store_episode_row *rows = NULL;
    int n = 0, rc;
    if ((rc = store_episode_open(s, a->id, a->S, a->A, &rows, &n, err)) < 0)
        return rc;
    for (int i = 0; i < n && rc == RQD_OK; i++) {
        rqd_episode *e = calloc(1, sizeof *e);
        float *mem = malloc(sizeof(float) * (size_t)(a->S + a->A));
        if (e == NULL || mem == NULL) {
            free(e);
            free(mem);
            rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
            break;
        }
        snprintf(e->id, sizeof e->id, "%s", rows[i].id);
        e->mode = rows[i].mode;
        e->ret = rows[i].ret;
        e->length = rows[i].length;
        snprintf(e->started_at, sizeof e->started_at, "%s", rows[i].started_at);
        e->last_obs = mem;
        e->last_action = mem + a->S;
        memcpy(e->last_obs, rows[i].last_obs, sizeof(float) * (size_t)a->S);
        memcpy(e->last_action, rows[i].last_action, sizeof(float) * (size_t)a->A);
        e->next = a->episodes;
        a->episodes = e;
        a->n_open++;
    }
    store_episode_rows_free(rows, n);
    if (rc < 0)
        return rc;
    /* state.episodes and last_return, counted by SQLite: no row is read into memory. */
    int64_t ended = 0;
    if ((rc = store_episode_ended(s, a->id, &ended, &a->last_return, err)) < 0)
        return rc;
    a->episodes_done = ended;
    return RQD_OK;
}

/* Reloads one stored agent into *out (not yet in the table). */
static int load_agent(rqd_registry *r, store *s, const store_agent_row *row, rqd_agent **out,
                      rqd_err *err)
{
    redq_config cfg;
    redq_agent *core = NULL;
    store_ckpt_info ck;
    void *blob = NULL;
    size_t len = 0;
    rqd_rebuilt rb = {0};
    int have_ckpt = 0, rc;
    cJSON *cj = cJSON_Parse(row->config_json ? row->config_json : "");

    rc = cj ? redq_config_from_json(cj, row->act_dim, &cfg, err)
            : rqd_err_set(err, RQD_EIO, "", "its stored config is not JSON");
    cJSON_Delete(cj);
    if (rc < 0)
        return rc;
    rc = store_ckpt_get(s, row->id, -1, &ck, &blob, &len, err);
    if (rc == RQD_OK) {
        have_ckpt = 1;
        rc = redq_agent_load(blob, len, &core, err);
        free(blob);
        if (rc == RQD_OK && (redq_agent_obs_dim(core) != row->obs_dim ||
                             redq_agent_act_dim(core) != row->act_dim))
            rc = rqd_err_set(err, RQD_EIO, "", "its checkpoint %lld is of another shape",
                             (long long)ck.id);
        if (rc == RQD_OK)
            rc = redq_agent_set_config(core, &cfg, err);
    } else if (rc == RQD_ENOTFOUND) {
        rc = redq_agent_new(&cfg, row->obs_dim, row->act_dim, row->low, row->high, &core, err);
    }
    if (rc == RQD_OK)
        rc = rqd__rebuild_buffer(r, s, row->id, core, have_ckpt ? ck.env_steps : 0, &rb, err);
    long long env_steps = rb.env_steps;
    rqd_agent *a = NULL;
    if (rc == RQD_OK && (a = rqd__agent_wrap(r, row->id, row->name, row->obs_dim, row->act_dim,
                                             row->low, row->high, core, row->created_at)) == NULL)
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    if (rc < 0) {
        redq_agent_free(core);
        return rc;
    }
    /* Updates owed again: what the checkpoint still owed plus the transitions after it. */
    long long from = have_ckpt ? ck.env_steps : 0;
    long long thr = cfg.start_timesteps > cfg.batch_size ? cfg.start_timesteps : cfg.batch_size;
    long long first_owing = from + 1 > thr ? from + 1 : thr;
    long long n_owing = env_steps >= first_owing ? env_steps - first_owing + 1 : 0;
    a->pending = cfg.training == REDQ_TRAIN_MANUAL
                     ? 0.0
                     : (have_ckpt ? ck.pending_updates : 0.0) + (double)n_owing * cfg.update_per_step;
    a->have_ckpt = have_ckpt;
    if (have_ckpt)
        a->last_ckpt = ck;
    rqd__prune_init(a, rb.newest_head);
    /* Every version below the stored lease may have been published: continue above it. */
    redq_info info;
    redq_agent_info(core, &info);
    long long v = row->policy_version > info.policy_version ? row->policy_version : info.policy_version;
    redq_agent_set_policy_version(core, v);
    a->policy_lease = row->policy_version;
    if ((rc = rqd__load_episodes(s, a, err)) < 0 ||
        (rc = rqd_returns_load(&a->returns, s, a->id, err)) < 0) {
        rqd__agent_destroy(a);
        return rc;
    }
    /* "replayed": what bounds the time a restart takes (docs/operations.md). */
    LOG(LOG_INFO, "agent %s: reloaded (env_steps %lld, updates %lld, buffer %lld, pending %.0f, "
        "checkpoint %s, %d open episodes; replayed %lld transitions from env_steps %lld)",
        a->name, env_steps, info.updates, info.buffer_len, a->pending,
        have_ckpt ? "yes" : "none", a->n_open, rb.replayed, rb.from);
    *out = a;
    return RQD_OK;
}

/* An agent whose stored state could not be loaded: kept, unavailable, with what the
 * database says of it, so that it is listed, explained, deletable and restorable. */
static rqd_agent *unavailable_agent(rqd_registry *r, store *s, const store_agent_row *row,
                                    const char *why)
{
    rqd_agent *a = rqd__agent_wrap(r, row->id, row->name, row->obs_dim, row->act_dim, row->low,
                                   row->high, NULL, row->created_at);
    if (a == NULL)
        return NULL;
    rqd__agent_fail(a, "%s", why);
    a->config_json = row->config_json ? strdup(row->config_json) : NULL;
    a->policy_lease = row->policy_version;
    a->stored.policy_version = row->policy_version;
    store_ckpt_info ck;
    rqd_err ignore = {0};
    if (store_ckpt_get(s, row->id, -1, &ck, NULL, NULL, &ignore) == RQD_OK) {
        a->have_ckpt = 1;
        a->last_ckpt = ck;
        a->stored.updates = ck.updates;
        a->stored.env_steps = ck.env_steps;
    }
    int64_t seq = 0;
    if (store_transitions_max_seq(s, row->id, &seq, &ignore) == RQD_OK && seq > a->stored.env_steps)
        a->stored.env_steps = seq;
    store_head_info head; /* pruning may have left no transition after it */
    if (store_head_base(s, row->id, &head, NULL, NULL, &ignore) == RQD_OK &&
        head.seq > a->stored.env_steps)
        a->stored.env_steps = head.seq;
    return a;
}

/* Under a->ingest_mu and a->mu: the placeholder a takes what load_agent built in f. */
static void adopt(rqd_agent *a, rqd_agent *f)
{
    pthread_rwlock_wrlock(&a->core_rw); /* acts read core under the read lock */
    a->core = f->core;
    f->core = NULL;
    pthread_rwlock_unlock(&a->core_rw);
    a->pending = f->pending;
    a->have_ckpt = f->have_ckpt;
    a->last_ckpt = f->last_ckpt;
    a->policy_lease = f->policy_lease;
    a->last_auto_ckpt = f->last_auto_ckpt;
    a->ups_mark_updates = f->ups_mark_updates;
    a->episodes = f->episodes;
    a->n_open = f->n_open;
    f->episodes = NULL;
    a->episodes_done = f->episodes_done;
    a->last_return = f->last_return;
    a->returns = f->returns;
    memset(&f->returns, 0, sizeof f->returns);
    a->next_head_at = f->next_head_at;
    pthread_mutex_lock(&a->prune_mu);
    a->prune = f->prune;
    pthread_mutex_unlock(&a->prune_mu);
    free(a->config_json);
    a->config_json = NULL;
    a->error[0] = '\0';
    atomic_store(&a->status, RQD_AGENT_OK);
}

/* Loads one listed agent; false when the registry is stopping. */
static int load_one(rqd_registry *r, store *s, const store_agent_row *row)
{
    rqd_agent *a = rqd_agent_find(r, row->name), *f = NULL;
    rqd_err why = {0};
    if (a == NULL || a->id != row->id) { /* deleted (and maybe made again) meanwhile */
        rqd_agent_put(a);
        return 1;
    }
    int rc = load_agent(r, s, row, &f, &why);
    pthread_mutex_lock(&a->ingest_mu);
    rqd_agent_lock(a);
    if (a->deleted) {
        /* nothing to keep */
    } else if (rc == RQD_OK) {
        adopt(a, f);
        rqd__policy_lease(a); /* durable before anything can be published */
    } else {
        rqd__agent_fail(a, "%s", why.msg);
        LOG(LOG_ERR, "agent %s: cannot be reloaded, kept as unavailable: %s", row->name,
            why.msg);
    }
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_unlock(&a->ingest_mu);
    rqd__agent_destroy(f);
    rqd_sched_kick(a);
    rqd_agent_put(a);
    return !atomic_load(&r->load_stop);
}

static void *loader_main(void *p)
{
    rqd_registry *r = p;
    rqd_err err = {0};
    double t0 = rqd_mono();
    int done = 0;
    pthread_setname_np(pthread_self(), "redqd-loader");
    store *s = rqd_reader_get(r, &err);
    for (int i = 0; i < r->n_load_rows; i++) {
        if (s == NULL) { /* no connection: every agent says why */
            rqd_agent *a = rqd_agent_find(r, r->load_rows[i].name);
            if (a) {
                rqd_agent_lock(a);
                if (atomic_load(&a->status) == RQD_AGENT_LOADING)
                    rqd__agent_fail(a, "the database could not be read: %s", err.msg);
                pthread_mutex_unlock(&a->mu);
                rqd_agent_put(a);
            }
            continue;
        }
        if (!load_one(r, s, &r->load_rows[i]))
            break;
        done++;
    }
    rqd_reader_put(r, s);
    if (!atomic_load(&r->load_stop)) {
        LOG(LOG_NOTICE, "%d agents loaded in %.2f s", done, rqd_mono() - t0);
        if (r->loaded_cb)
            r->loaded_cb(r->loaded_arg, done);
    }
    return NULL;
}

int rqd_registry_load(rqd_registry *r, void (*done)(void *arg, int n), void *arg, rqd_err *err)
{
    r->loaded_cb = done;
    r->loaded_arg = arg;
    if (pthread_create(&r->loader, NULL, loader_main, r) != 0)
        return rqd_err_set(err, RQD_EINTERNAL, "", "cannot start the loader thread");
    r->have_loader = 1;
    return RQD_OK;
}

static void loader_stop(rqd_registry *r)
{
    atomic_store(&r->load_stop, 1);
    if (r->have_loader)
        pthread_join(r->loader, NULL);
    r->have_loader = 0;
}

int rqd_registry_loading(rqd_registry *r)
{
    int k = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        k += atomic_load(&r->agents[i]->status) == RQD_AGENT_LOADING;
    pthread_mutex_unlock(&r->mu);
    return k;
}

int rqd_registry_open(const rqd_registry_opts *o, rqd_registry **out, rqd_err *err)
{
    rqd_registry *r = calloc(1, sizeof *r);
    store *s = NULL;
    store_agent_row *rows = NULL;
    int64_t next_row = 1;
    int n = 0, rc;

    if (r == NULL || (r->db_path = strdup(o->db_path)) == NULL) {
        free(r);
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->rd_mu, NULL);
    pthread_mutex_init(&r->run_mu, NULL);
    pthread_mutex_init(&r->stats_mu, NULL);
    pthread_cond_init(&r->run_cv, NULL);
    r->sync_full = o->sync_full;
    r->max_value = o->max_value;
    r->max_agents = o->max_agents;
    r->limits = o->limits;
    if ((rc = rqd__store_open(r, STORE_RW, &s, err)) < 0)
        goto fail;
    if (o->max_value > 0 && o->max_value < STORE_MAX_VALUE_LIMIT)
        LOG(LOG_INFO, "SQLite's limit on one value lowered to %lld bytes (--sqlite-max-length)",
            o->max_value);
    /* --max-db-size: on the one read-write connection, before any write can happen. */
    if (o->max_db_size > 0) {
        struct stat st;
        if ((rc = store_set_max_size(s, o->max_db_size, err)) < 0)
            goto fail;
        if (stat(o->db_path, &st) == 0 && (long long)st.st_size >= o->max_db_size)
            LOG(LOG_WARNING, "%s is already %lld bytes, at or past --max-db-size %lld: writes "
                "will answer 503 until the cap is raised", o->db_path, (long long)st.st_size,
                o->max_db_size);
        else
            LOG(LOG_INFO, "database size capped at %lld bytes (--max-db-size)", o->max_db_size);
    }
    store_space sp;
    if ((rc = store_space_get(s, &sp, err)) < 0)
        goto fail;
    r->incremental = sp.incremental;
    if (!sp.incremental)
        LOG(LOG_NOTICE, "%s was created before redqd kept its rings bounded (auto_vacuum is "
            "off): pages freed by pruning are reused for new rows, but the file does not "
            "shrink (%lld of %lld pages free now); docs/operations.md \"Running for months\" "
            "says how to switch it once, offline", o->db_path, (long long)sp.free_pages,
            (long long)sp.pages);
    if ((rc = store_agent_list(s, &rows, &n, err)) < 0)
        goto fail;
    /* Every agent is listed at once, "loading" (its stored name, shape and counters);
     * rqd_registry_load gives each its learner while the daemon already serves. */
    for (int i = 0; i < n; i++) {
        rqd_agent *a = unavailable_agent(r, s, &rows[i], "");
        if (a == NULL) {
            rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory listing agents");
            goto fail;
        }
        atomic_store(&a->status, RQD_AGENT_LOADING);
        if ((rc = rqd__table_insert(r, a, err)) < 0) {
            rqd__agent_destroy(a);
            goto fail;
        }
    }
    if ((rc = store_stats_next_row(s, &next_row, err)) < 0 ||
        (rc = rqd__moving_restore(r, s, err)) < 0)
        goto fail;
    atomic_store(&r->next_stats_row, next_row);
    r->load_rows = rows;
    r->n_load_rows = n;
    rows = NULL;
    if ((rc = rqd_writer_start(s, &r->writer, err)) < 0)
        goto fail;
    s = NULL; /* the writer owns it */
    if ((rc = rqd__trainers_start(r, o->trainer_threads, err)) < 0)
        goto fail;
    for (int i = 0; i < r->n; i++)
        rqd_sched_kick(r->agents[i]);
    *out = r;
    return RQD_OK;
fail:
    store_agent_rows_free(rows, n);
    store_close(s);
    rqd_registry_free(r);
    return rc;
}

void rqd_registry_shutdown(rqd_registry *r)
{
    loader_stop(r);
    rqd__trainers_stop(r);
    rqd_registry_wake_waiters(r, RQD_EUNAVAIL, 0);
    rqd_agent **v;
    int n;
    if (r->writer && rqd_agent_list(r, &v, &n) == RQD_OK) {
        for (int i = 0; i < n; i++) {
            rqd_err err = {0};
            store_ckpt_info info;
            if (v[i]->core == NULL) /* never loaded: its stored state stays as it is */
                continue;
            if (rqd_ckpt_create(v[i], 1, &info, &err) < 0)
                LOG(LOG_ERR, "agent %s: shutdown checkpoint failed: %s", v[i]->name, err.msg);
        }
        rqd_agent_list_free(v, n);
        rqd_registry_flush_stats(r);
    }
    rqd_writer_stop(r->writer);
}

void rqd_registry_free(rqd_registry *r)
{
    if (r == NULL)
        return;
    loader_stop(r);
    rqd__trainers_stop(r);
    /* Readers first: the connection closed last checkpoints the WAL into redqd.db and
     * removes it, and only the read-write one can (a read-only connection cannot take
     * the write lock), so a stopped daemon leaves one self-contained file. */
    for (int i = 0; i < r->n_readers; i++)
        store_close(r->readers[i]);
    free(r->readers);
    rqd_writer_free(r->writer);
    for (int i = 0; i < r->n; i++)
        rqd_agent_put(r->agents[i]);
    free(r->agents);
    free(r->reserved);
    store_agent_rows_free(r->load_rows, r->n_load_rows);
    free(r->q);
    free(r->trainers);
    free(r->db_path);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->rd_mu);
    pthread_mutex_destroy(&r->run_mu);
    pthread_cond_destroy(&r->run_cv);
    rqd__stats_retry_free(r);
    pthread_mutex_destroy(&r->stats_mu);
    free(r);
}
