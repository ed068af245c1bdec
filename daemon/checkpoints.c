/* daemon/checkpoints.c: checkpoints of agents: automatic (every checkpoint_every updates,
 * at shutdown, at restore and import) and on request; download with or without the
 * replay buffer; restore; import under a new name; and the policy_version lease that
 * keeps versions unique across crashes (API.md "Training, stats, checkpoints"). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"

typedef struct {
    int64_t agent;
    int64_t v;
} lease_job;

static int do_lease(store *s, void *arg, rqd_err *err)
{
    lease_job *j = arg;
    return store_agent_bump_policy(s, j->agent, j->v, err);
}

static void lease_for(rqd_agent *a, redq_agent *core);

void rqd__policy_lease(rqd_agent *a)
{
    lease_for(a, a->core);
}

/* Under a->mu: the lease covering core's policy_version (core may be a learner about to
 * replace a->core). */
static void lease_for(rqd_agent *a, redq_agent *core)
{
    redq_info info;
    redq_agent_info(core, &info);
    if (info.policy_version + 1 < a->policy_lease)
        return;
    /* Durable before the version can be published: waited for, under a->mu. */
    lease_job j = {a->id, info.policy_version + RQD_POLICY_LEASE};
    rqd_err err = {0};
    if (rqd_writer_run(a->reg->writer, do_lease, &j, &err) == RQD_OK)
        a->policy_lease = j.v;
    else
        LOG(LOG_ERR, "agent %s: cannot extend the policy_version lease: %s", a->name, err.msg);
}

/* The state of core (no buffer) and its metadata, with pending updates as given. */
static int blob_of(redq_agent *core, double pending, int automatic, rqd_buf *out,
                   store_ckpt_info *info, rqd_err *err)
{
    redq_info ri;
    int rc = redq_agent_save(core, 0, out, err);
    if (rc < 0)
        return rc;
    redq_agent_info(core, &ri);
    memset(info, 0, sizeof *info);
    info->updates = ri.updates;
    info->env_steps = ri.env_steps;
    info->policy_version = ri.policy_version;
    info->pending_updates = pending;
    info->automatic = automatic;
    info->bytes = (int64_t)out->len;
    rqd_now_rfc3339(info->created_at);
    return RQD_OK;
}

int rqd__ckpt_blob(rqd_agent *a, int automatic, rqd_buf *out, store_ckpt_info *info,
                   rqd_err *err)
{
    return blob_of(a->core, a->pending, automatic, out, info, err);
}

typedef struct {
    int64_t agent;
    store_ckpt_info info;
    rqd_buf blob;
    int keep;
    int64_t id;
    char name[72];
    rqd_agent *a;           /* automatic ones: referenced, told the id once written */
    const char *config;     /* a restore that repairs an agent: its config, stored too */
} ckpt_job;

static int do_ckpt(store *s, void *arg, rqd_err *err)
{
    ckpt_job *j = arg;
    int rc = store_ckpt_insert(s, j->agent, &j->info, j->blob.data, j->blob.len, j->keep, &j->id,
                               err);
    if (rc == RQD_OK && j->config)
        rc = store_agent_set_config(s, j->agent, j->config, err);
    return rc;
}

static void free_ckpt_job(void *arg)
{
    ckpt_job *j = arg;
    rqd_buf_free(&j->blob);
    rqd_agent_put(j->a);
    free(j);
}

/* The writer thread, after the batch holding an automatic checkpoint: record it only
 * once it is committed, so that state.last_checkpoint never names one that is not. */
static void auto_ckpt_done(void *arg, int rc)
{
    ckpt_job *j = arg;
    if (rc < 0) {
        LOG(LOG_ERR, "agent %s: automatic checkpoint at update %lld failed", j->name,
            (long long)j->info.updates);
    } else if (j->a) {
        pthread_mutex_lock(&j->a->ckpt_mu);
        j->a->auto_ckpt = j->info;
        j->a->auto_ckpt.id = j->id;
        j->a->have_auto = 1;
        pthread_mutex_unlock(&j->a->ckpt_mu);
    }
    free_ckpt_job(j);
}

void rqd__ckpt_auto(rqd_agent *a)
{
    ckpt_job *j = calloc(1, sizeof *j);
    rqd_err err = {0};
    if (j == NULL)
        return;
    rqd_buf_init(&j->blob, 0);
    j->agent = a->id;
    j->keep = redq_agent_config(a->core)->keep_checkpoints;
    snprintf(j->name, sizeof j->name, "%s", a->name);
    j->a = a;
    atomic_fetch_add(&a->refs, 1);
    if (rqd__ckpt_blob(a, 1, &j->blob, &j->info, &err) < 0) {
        LOG(LOG_ERR, "agent %s: automatic checkpoint failed: %s", a->name, err.msg);
        free_ckpt_job(j);
        return;
    }
    a->last_auto_ckpt = j->info.updates; /* the schedule counts it; the state, once written */
    rqd_writer_post(a->reg->writer, do_ckpt, j, auto_ckpt_done);
}

int rqd_ckpt_create(rqd_agent *a, int automatic, store_ckpt_info *info, rqd_err *err)
{
    ckpt_job j = {0};
    int rc;
    /* Shutdown checkpoints (automatic) are taken of every agent with a learner, one that
     * stopped itself included: its learner is as it was before the bad updates. */
    if ((rc = automatic ? rqd__write_begin_any(a, err) : rqd__write_begin(a, err)) < 0)
        return rc;
    rqd_buf_init(&j.blob, 0);
    rqd_agent_lock(a);
    if (a->core == NULL) {
        pthread_mutex_unlock(&a->mu);
        rqd__write_end(a);
        return rqd_agent_usable(a, err);
    }
    j.agent = a->id;
    j.keep = redq_agent_config(a->core)->keep_checkpoints;
    rc = rqd__ckpt_blob(a, automatic, &j.blob, &j.info, err);
    pthread_mutex_unlock(&a->mu);
    if (rc == RQD_OK)
        rc = rqd_writer_run(a->reg->writer, do_ckpt, &j, err);
    if (rc == RQD_OK) {
        j.info.id = j.id;
        *info = j.info;
        rqd_agent_lock(a);
        if (automatic)
            a->last_auto_ckpt = j.info.updates;
        a->have_ckpt = 1;
        a->last_ckpt = j.info;
        pthread_mutex_unlock(&a->mu);
    }
    rqd__write_end(a);
    rqd_buf_free(&j.blob);
    return rc;
}

/* A stored checkpoint's blob and metadata through a read connection. */
static int fetch(rqd_agent *a, int64_t id, store_ckpt_info *info, void **blob, size_t *len,
                 rqd_err *err)
{
    store *rd = rqd_reader_get(a->reg, err);
    if (rd == NULL)
        return err->code ? err->code : RQD_EIO;
    int rc = store_ckpt_get(rd, a->id, id, info, blob, len, err);
    rqd_reader_put(a->reg, rd);
    if (rc == RQD_ENOTFOUND)
        rqd_err_set(err, rc, "id", "agent '%s' has no checkpoint %lld", a->name, (long long)id);
    return rc;
}

int rqd_ckpt_download(rqd_agent *a, int64_t id, int with_buffer, void **data, size_t *len,
                      rqd_err *err)
{
    store_ckpt_info info;
    redq_agent *tmp = NULL;
    rqd_buf out;
    int rc = fetch(a, id, &info, data, len, err);
    if (rc < 0 || !with_buffer)
        return rc;
    /* The checkpoint's learner with the buffer and env_steps of now (API.md). */
    rc = redq_agent_load(*data, *len, &tmp, err);
    free(*data);
    *data = NULL;
    if (rc < 0)
        return rc;
    rqd_buf_init(&out, 0);
    rqd_agent_lock(a);
    redq_info ri;
    if (a->core == NULL) { /* its buffer is not in memory */
        pthread_mutex_unlock(&a->mu);
        redq_agent_free(tmp);
        return rqd_agent_usable(a, err);
    }
    redq_agent_info(a->core, &ri);
    if ((rc = redq_agent_swap_buffer(tmp, a->core, err)) == RQD_OK) {
        redq_agent_set_env_steps(tmp, ri.env_steps);
        rc = redq_agent_save(tmp, 1, &out, err);
        redq_agent_swap_buffer(tmp, a->core, err);
    }
    pthread_mutex_unlock(&a->mu);
    redq_agent_free(tmp);
    if (rc < 0) {
        rqd_buf_free(&out);
        return rc;
    }
    *data = out.data;
    *len = out.len;
    return RQD_OK;
}

typedef struct {
    int64_t agent, id;
} del_job;

static int do_del(store *s, void *arg, rqd_err *err)
{
    del_job *j = arg;
    return store_ckpt_delete(s, j->agent, j->id, err);
}

int rqd_ckpt_delete(rqd_agent *a, int64_t id, rqd_err *err)
{
    del_job j = {a->id, id};
    int rc = rqd__write_begin_any(a, err);
    if (rc < 0)
        return rc;
    if ((rc = rqd__moving_refuse(a, err)) < 0) { /* its checkpoints stay as they are */
        rqd__write_end(a);
        return rc;
    }
    rc = rqd_writer_run(a->reg->writer, do_del, &j, err);
    rqd__write_end(a);
    if (rc == RQD_ENOTFOUND)
        rqd_err_set(err, rc, "id", "agent '%s' has no checkpoint %lld", a->name, (long long)id);
    return rc;
}

/* Under a->mu: takes the train waiters out of the list (a restore ends their calls). */
static rqd_waiter *take_train_waiters(rqd_agent *a)
{
    rqd_waiter *out = NULL, **pp = &a->waiters;
    while (*pp) {
        rqd_waiter *w = *pp;
        if (w->kind == RQD_WAIT_TRAIN) {
            *pp = w->next;
            w->next = out;
            out = w;
        } else {
            pp = &w->next;
        }
    }
    return out;
}

/* Under a->mu, for an agent that has no learner (it could not be loaded): gives core,
 * loaded from one of its checkpoints, the replay buffer and counters a restart would,
 * and the config text to store with it (the stored one may be what failed). */
static int repair(rqd_agent *a, redq_agent *core, const store_ckpt_info *ck, char **config,
                  long long *newest_head, rqd_err *err)
{
    rqd_rebuilt rb;
    int rc;
    if (redq_agent_obs_dim(core) != a->S || redq_agent_act_dim(core) != a->A)
        return rqd_err_set(err, RQD_EINVAL, "checkpoint", "checkpoint %lld is of another "
                           "shape than agent '%s'", (long long)ck->id, a->name);
    store *rd = rqd_reader_get(a->reg, err);
    if (rd == NULL)
        return err->code ? err->code : RQD_EIO;
    rc = rqd__rebuild_buffer(a->reg, rd, a->id, core, ck->env_steps, &rb, err);
    rqd_reader_put(a->reg, rd);
    if (rc < 0)
        return rc;
    *newest_head = rb.newest_head;
    redq_info info;
    redq_agent_info(core, &info);
    if (a->stored.policy_version > info.policy_version) /* every version below the lease */
        redq_agent_set_policy_version(core, a->stored.policy_version);
    cJSON *cj = redq_config_to_json(redq_agent_config(core));
    *config = cj ? cJSON_PrintUnformatted(cj) : NULL;
    cJSON_Delete(cj);
    return *config ? RQD_OK : rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
}

int rqd_ckpt_restore(rqd_agent *a, int64_t id, rqd_err *err)
{
    store_ckpt_info info;
    redq_agent *core = NULL;
    void *blob = NULL;
    size_t len;
    rqd_waiter *done = NULL, *cut = NULL;
    ckpt_job j = {0};
    char *config = NULL;
    int rc = fetch(a, id, &info, &blob, &len, err);
    if (rc < 0)
        return rc;
    rc = redq_agent_load(blob, len, &core, err);
    free(blob);
    if (rc < 0)
        return rc;
    /* A restore brings an unavailable agent back, but not one the loader is loading. */
    if ((rc = rqd__write_begin_any(a, err)) == RQD_OK &&
        atomic_load(&a->status) == RQD_AGENT_LOADING) {
        rqd__write_end(a);
        rc = rqd_err_set(err, RQD_EAGAIN, "name", "agent '%s' is still loading; retry "
                         "shortly", a->name);
    } else if (rc == RQD_OK && (rc = rqd__moving_refuse(a, err)) < 0) {
        rqd__write_end(a);
    }
    if (rc < 0) {
        redq_agent_free(core);
        return rc;
    }
    rqd_buf_init(&j.blob, 0);
    rqd_agent_lock(a); /* waits for the chunk in progress */
    int repairing = a->core == NULL;
    long long newest_head = 0;
    redq_info now;
    if (repairing) {
        rc = repair(a, core, &info, &config, &newest_head, err);
    } else {
        redq_agent_info(a->core, &now);
        rc = redq_agent_set_config(core, redq_agent_config(a->core), err);
        if (rc == RQD_OK)
            rc = redq_agent_swap_buffer(core, a->core, err); /* the data stays as it is */
        if (rc == RQD_OK) {
            redq_agent_set_env_steps(core, now.env_steps);
            redq_agent_set_policy_version(core, now.policy_version);
        }
    }
    if (rc == RQD_OK) {
        redq_agent_info(core, &now);
        if (now.policy_version >= RQD_MAX_COUNTER)
            rc = rqd_err_set(err, RQD_EINVAL, "checkpoint", "policy_version %lld is at its "
                             "limit (2^53 - 1)", now.policy_version);
    }
    if (rc == RQD_OK) {
        redq_agent_set_policy_version(core, now.policy_version + 1);
        /* Durable before anything changes: the restored learner is recorded as a new
         * automatic checkpoint (API.md), and its version is inside the lease. */
        j.agent = a->id;
        j.keep = redq_agent_config(core)->keep_checkpoints;
        j.config = config;
        lease_for(a, core);
        rc = blob_of(core, 0.0, 1, &j.blob, &j.info, err);
        if (rc == RQD_OK)
            rc = rqd_writer_run(a->reg->writer, do_ckpt, &j, err);
        if (rc < 0 && !repairing)
            redq_agent_swap_buffer(core, a->core, err); /* give the data back; nothing changed */
    }
    if (rc == RQD_OK) {
        pthread_rwlock_wrlock(&a->core_rw); /* acts in progress finish on the old learner */
        redq_agent *old = a->core;
        a->core = core;
        core = old;
        pthread_rwlock_unlock(&a->core_rw);
        /* Sync posts waiting for updates: answered now. Their targets are at most
         * done_total + pending (ingest.c feed()), so crediting pending releases them all;
         * done_total = owed_total could move it backwards (after a restart). */
        a->done_total += a->pending;
        a->pending = 0;
        cut = take_train_waiters(a);
        a->manual_pending = 0;
        a->manual_done = a->manual_total;
        done = rqd__take_ready(a);
        j.info.id = j.id;
        a->have_ckpt = 1;
        a->last_ckpt = j.info;
        a->last_auto_ckpt = j.info.updates;
        a->skipped_run = 0;
        a->error[0] = '\0';
        free(a->config_json);
        a->config_json = NULL;
        if (repairing)
            rqd__prune_init(a, newest_head);
        atomic_store(&a->status, RQD_AGENT_OK);
    }
    pthread_mutex_unlock(&a->mu);
    rqd__write_end(a);
    redq_agent_free(core);
    rqd_buf_free(&j.blob);
    free(config);
    rqd__call_waiters(done, 0);
    rqd__call_waiters(cut, RQD_ECONFLICT);
    if (rc == RQD_OK) {
        LOG(LOG_INFO, "agent %s: restored checkpoint %lld (updates %lld)%s", a->name,
            (long long)id, (long long)info.updates, repairing ? ": available again" : "");
        rqd_sched_kick(a);
    }
    return rc;
}

typedef struct {
    const char *name;
    int S, A;
    const float *low, *high;
    const char *config;
    ckpt_job ck;
    const void *data;
    size_t len;
    const rqd_import_extra *x;  /* a move file's rows, or NULL */
} import_job;

static int do_import(store *s, void *arg, rqd_err *err)
{
    import_job *j = arg;
    int rc = store_agent_insert(s, j->name, j->S, j->A, j->low, j->high, j->config, &j->ck.agent,
                                err);
    if (rc == RQD_OK)
        rc = store_agent_bump_policy(s, j->ck.agent, j->ck.info.policy_version + RQD_POLICY_LEASE,
                                     err);
    /* Recorded as the agent's first checkpoint, kept like a manual one: with the buffer
     * it came with, it is the base that a restart rebuilds the buffer from. */
    if (rc == RQD_OK)
        rc = store_ckpt_insert(s, j->ck.agent, &j->ck.info, j->data, j->len, 1 << 30, &j->ck.id,
                               err);
    if (rc == RQD_OK && j->x)
        rc = j->x->write(s, j->ck.agent, j->x->ctx, err);
    return rc;
}

int rqd_ckpt_import(rqd_registry *r, const char *name, const void *data, size_t len,
                    rqd_agent **out, rqd_err *err)
{
    return rqd__ckpt_import(r, name, data, len, NULL, out, err);
}

int rqd__ckpt_import(rqd_registry *r, const char *name, const void *data, size_t len,
                     const rqd_import_extra *x, rqd_agent **out, rqd_err *err)
{
    redq_agent *core = NULL;
    rqd_agent *a = NULL;
    char *cfg = NULL;
    cJSON *cj = NULL;
    int rc;

    if ((rc = rqd__name_reserve(r, name, err)) < 0)
        return rc;
    /* Everything in memory first: once the rows are committed nothing may fail. */
    if ((rc = redq_agent_load_within(data, len, &r->limits, &core, err)) < 0)
        goto out;
    redq_info ri;
    redq_agent_info(core, &ri);
    if (x && (redq_agent_obs_dim(core) != x->S || redq_agent_act_dim(core) != x->A)) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "move file: its checkpoint is of another shape "
                         "than its header says");
        goto out;
    }
    if (ri.policy_version >= RQD_MAX_COUNTER) {
        rc = rqd_err_set(err, RQD_EINVAL, "", "the checkpoint's policy_version %lld is at its "
                         "limit (2^53 - 1)", ri.policy_version);
        goto out;
    }
    redq_agent_set_policy_version(core, ri.policy_version + 1);
    import_job j = {name, redq_agent_obs_dim(core), redq_agent_act_dim(core),
                    redq_agent_low(core), redq_agent_high(core), NULL, {0}, data, len, x};
    j.ck.info.updates = ri.updates;
    j.ck.info.env_steps = ri.env_steps;
    j.ck.info.policy_version = ri.policy_version + 1;
    j.ck.info.pending_updates = x ? x->pending : 0.0; /* a restart owes them again */
    j.ck.info.automatic = 0;
    j.ck.info.bytes = (int64_t)len;
    rqd_now_rfc3339(j.ck.info.created_at);
    if ((cj = redq_config_to_json(redq_agent_config(core))) == NULL ||
        (cfg = cJSON_PrintUnformatted(cj)) == NULL ||
        (a = rqd__agent_wrap(r, 0, name, j.S, j.A, j.low, j.high, core,
                             j.ck.info.created_at)) == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        goto out;
    }
    core = NULL; /* a's */
    rqd__prune_init(a, 0); /* its base is the import checkpoint until a head qualifies */
    j.config = cfg;
    j.low = a->low; /* the learner's own copies are a's now */
    j.high = a->high;
    if ((rc = rqd_writer_run(r->writer, do_import, &j, err)) < 0)
        goto out;
    a->id = j.ck.agent;
    a->policy_lease = j.ck.info.policy_version + RQD_POLICY_LEASE;
    a->have_ckpt = 1;
    a->last_ckpt = j.ck.info;
    a->last_ckpt.id = j.ck.id;
    if (x) {
        a->pending = x->pending;
        x->loaded(a, x->ctx);
    }
    atomic_fetch_add(&a->refs, 1); /* the caller's; the first goes to the table */
    rqd__name_publish(r, a);
    *out = a;
    a = NULL;
    LOG(LOG_INFO, "agent %s: imported (updates %lld, env_steps %lld, buffer %lld)", name,
        ri.updates, ri.env_steps, ri.buffer_len);
out:
    if (rc < 0)
        rqd__name_release(r, name);
    rqd__agent_destroy(a);
    redq_agent_free(core);
    cJSON_Delete(cj);
    free(cfg);
    return rc;
}
