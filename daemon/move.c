/* daemon/move.c: moving an agent to another node without losing anything acknowledged
 * (docs/api.md "Moving an agent", docs/operations.md "Running several nodes").
 *
 * A move is: mark the agent moving here (POST .../move), download its move file (GET
 * .../move), create it from that file on the target (PUT .../checkpoint there), point the
 * router at the target, delete it here. From the mark on, the agent here refuses every
 * write with 503 and Retry-After, so that nothing can be acknowledged here that the file
 * does not carry; clients retry and reach the target once the router points there. The
 * learner stops training at the mark, so the file's learner is the one the agent has:
 * the updates it still owes travel in the file and are owed again on the target.
 *
 * The file carries the batch ids with their answers: a post acknowledged here whose
 * answer was lost, retried on the target with its batch_id, is answered as the first one
 * was and stores nothing again (exactly once across the move). It carries the history
 * (stats rows, episodes, evaluations) too, so that nothing acknowledged stays behind
 * when the agent is deleted here; stats rows are renumbered on the target (row numbers
 * are per node), everything else keeps its values.
 *
 * THREADS: every function runs on an offload thread (the routes are `wait`), or at
 * open. The mark is set and cleared with a->ingest_mu (which every write takes) and
 * a->mu (which trainers take) held, so no write or update is half way through then.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "log.h"
#include "movefile.h"

int rqd__moving_refuse(rqd_agent *a, rqd_err *err)
{
    if (!a->moving)
        return RQD_OK;
    if (a->moving_to[0])
        return rqd_err_set(err, RQD_EAGAIN, "name", "agent '%s' is moving to node %s and takes "
                           "no writes until it is there; retry shortly", a->name, a->moving_to);
    return rqd_err_set(err, RQD_EAGAIN, "name", "agent '%s' is moving to another node and takes "
                       "no writes until it is there; retry shortly", a->name);
}

int rqd__moving_restore(rqd_registry *r, store *s, rqd_err *err)
{
    store_moving_row *rows = NULL;
    int n = 0, rc = store_moving_list(s, &rows, &n, err);
    for (int i = 0; rc == RQD_OK && i < n; i++)
        for (int j = 0; j < r->n; j++)
            if (r->agents[j]->id == rows[i].agent) {
                r->agents[j]->moving = 1;
                r->agents[j]->moving_since = rows[i].since;
                LOG(LOG_NOTICE, "agent %s: still moving to another node (since %lld): it takes "
                    "no writes until the move ends or is cancelled", r->agents[j]->name,
                    (long long)rows[i].since);
            }
    free(rows);
    return rc;
}

typedef struct {
    int64_t agent, since;
} mark_job;

static int do_mark(store *s, void *arg, rqd_err *err)
{
    mark_job *j = arg;
    return store_moving_set(s, j->agent, j->since, err);
}

/* Under a->mu: takes every waiter; train calls are cut (conflict), sync posts and steps
 * answered (their data is stored). */
static void cut_waiters(rqd_agent *a, rqd_waiter **train, rqd_waiter **sync)
{
    *train = *sync = NULL;
    while (a->waiters) {
        rqd_waiter *w = a->waiters;
        a->waiters = w->next;
        rqd_waiter **to = w->kind == RQD_WAIT_TRAIN ? train : sync;
        w->next = *to;
        *to = w;
    }
    a->manual_pending = 0; /* what the cut train calls had left undone */
    a->manual_done = a->manual_total;
}

int rqd_agent_move_begin(rqd_agent *a, const char *to, rqd_err *err)
{
    rqd_waiter *train = NULL, *sync = NULL;
    int rc = rqd__write_begin_any(a, err); /* the ingest order: no write half way */
    if (rc < 0)
        return rc;
    if ((rc = rqd_agent_usable(a, err)) < 0)
        goto out;
    if (a->moving) { /* again: the same move (a client's retry, or after a restart) */
        rqd_agent_lock(a);
        if (a->moving_to[0] && strcmp(a->moving_to, to) != 0)
            rc = rqd_err_set(err, RQD_ECONFLICT, "to", "agent '%s' is already moving to node "
                             "%s; cancel that move first (DELETE .../move)", a->name,
                             a->moving_to);
        else
            snprintf(a->moving_to, sizeof a->moving_to, "%s", to);
        pthread_mutex_unlock(&a->mu);
        goto out;
    }
    mark_job j = {a->id, (int64_t)time(NULL)};
    if ((rc = rqd_writer_run(a->reg->writer, do_mark, &j, err)) < 0)
        goto out;
    rqd_agent_lock(a); /* waits for a trainer's chunk in progress */
    a->moving = 1;
    a->moving_since = j.since;
    snprintf(a->moving_to, sizeof a->moving_to, "%s", to);
    cut_waiters(a, &train, &sync);
    pthread_mutex_unlock(&a->mu);
    LOG(LOG_NOTICE, "agent %s: moving to node %s: writes are refused until it is deleted "
        "here or the move is cancelled", a->name, to);
out:
    rqd__write_end(a);
    rqd__call_waiters(sync, 1);               /* as at their deadline: 200, what is owed */
    rqd__call_waiters(train, RQD_ECONFLICT);
    return rc;
}

int rqd_agent_move_cancel(rqd_agent *a, rqd_err *err)
{
    int rc = rqd__write_begin_any(a, err);
    if (rc < 0)
        return rc;
    if (a->moving) {
        mark_job j = {a->id, 0};
        if ((rc = rqd_writer_run(a->reg->writer, do_mark, &j, err)) == RQD_OK) {
            rqd_agent_lock(a);
            a->moving = 0;
            a->moving_to[0] = '\0';
            pthread_mutex_unlock(&a->mu);
            LOG(LOG_NOTICE, "agent %s: move cancelled; it takes writes and trains again", a->name);
        }
    }
    rqd__write_end(a);
    rqd_sched_kick(a);
    return rc;
}

/* ------------------------------------------------------------------ the file */

static int put_batch(void *ctx, const char *batch_id, const char *answer)
{
    rqd_move_w_batch(ctx, batch_id, answer);
    return 0;
}

static int put_eval(void *ctx, const store_eval_row *e, const double *returns,
                    const int64_t *lengths)
{
    rqd_move_w_eval(ctx, e, returns, lengths);
    return 0;
}

/* The rows SQLite holds of the agent, into w's sections, through the read connection s
 * (one read transaction would not add anything: the agent takes no writes). */
static int write_rows(rqd_move_writer *w, store *s, rqd_agent *a, rqd_err *err)
{
    store_episode_row *eps = NULL;
    store_stream_row *streams = NULL;
    store_stats_row *stats = NULL;
    int n = 0, rc;

    rqd_move_w_section(w, "BTCH");
    if ((rc = store_batch_scan(s, a->id, put_batch, w, err)) < 0)
        return rc;
    rqd_move_w_section(w, "EPIS");
    if ((rc = store_episode_list(s, a->id, -1, a->S, a->A, &eps, &n, err)) < 0)
        return rc;
    for (int i = n - 1; i >= 0; i--) /* newest first there, oldest first here */
        rqd_move_w_episode(w, &eps[i]);
    store_episode_rows_free(eps, n);
    rqd_move_w_section(w, "STRM");
    if ((rc = store_stream_list(s, a->id, &streams, &n, err)) < 0)
        return rc;
    for (int i = 0; i < n; i++)
        rqd_move_w_stream(w, &streams[i]);
    free(streams);
    rqd_move_w_section(w, "STAT");
    if ((rc = store_stats_range(s, a->id, 0, INT_MAX, &stats, &n, err)) < 0)
        return rc;
    for (int i = 0; i < n; i++)
        rqd_move_w_stats(w, &stats[i]);
    free(stats);
    rqd_move_w_section(w, "EVAL");
    return store_eval_scan(s, a->id, put_eval, w, err);
}

int rqd_agent_move_file(rqd_agent *a, const char *node, void **data, size_t *len, rqd_err *err)
{
    rqd_move_file head;
    rqd_buf ckpt, out;
    rqd_move_writer w;
    store *rd = NULL;
    int rc = rqd__write_begin_any(a, err); /* no cancel or delete meanwhile */

    if (rc < 0)
        return rc;
    rqd_buf_init(&ckpt, 0);
    rqd_buf_init(&out, 0);
    if (!a->moving) {
        rc = rqd_err_set(err, RQD_ECONFLICT, "name", "agent '%s' is not moving: start the move "
                         "first (POST .../move), so that it takes no write the file would "
                         "leave behind", a->name);
        goto out;
    }
    /* Every stats row made before the mark is in SQLite (read-your-writes). */
    if ((rc = rqd_agent_stats_sync(a, err)) < 0)
        goto out;
    memset(&head, 0, sizeof head);
    rqd_agent_lock(a);
    if (a->core == NULL) {
        pthread_mutex_unlock(&a->mu);
        rc = rqd_agent_usable(a, err);
        goto out;
    }
    rc = redq_agent_save(a->core, 1, &ckpt, err); /* frozen since the mark */
    head.pending = a->pending;
    pthread_mutex_unlock(&a->mu);
    if (rc < 0)
        goto out;
    snprintf(head.name, sizeof head.name, "%s", a->name);
    snprintf(head.node, sizeof head.node, "%s", node);
    snprintf(head.created_at, sizeof head.created_at, "%s", a->created_at);
    head.S = a->S;
    head.A = a->A;
    head.ckpt = ckpt.data;
    head.ckpt_len = ckpt.len;
    if ((rd = rqd_reader_get(a->reg, err)) == NULL) {
        rc = err->code ? err->code : RQD_EIO;
        goto out;
    }
    /* One snapshot: the pruner may delete episodes meanwhile, and each must be in the
     * file either as a row or in the dropped count. */
    if ((rc = store_read_begin(rd, err)) < 0)
        goto out;
    if ((rc = store_dropped_get(rd, a->id, &head.dropped, err)) == RQD_OK) {
        rqd_move_w_begin(&w, &out, &head);
        rc = write_rows(&w, rd, a, err);
    }
    store_rollback(rd);
    if (rc == RQD_OK && (rc = rqd_move_w_end(&w)) < 0)
        rc = rqd_err_set(err, rc, "", "agent '%s': cannot write its move file (%s)", a->name,
                         rc == RQD_EINVAL ? "an open episode lacks its last step" : "out of memory");
out:
    rqd_reader_put(a->reg, rd);
    rqd__write_end(a);
    rqd_buf_free(&ckpt);
    if (rc < 0) {
        rqd_buf_free(&out);
        return rc;
    }
    LOG(LOG_INFO, "agent %s: move file written (%zu bytes)", a->name, out.len);
    *data = out.data;
    *len = out.len;
    return RQD_OK;
}

/* ------------------------------------------------------------------ import */

typedef struct {
    rqd_move_file m;
    rqd_registry *r;
} import_ctx;

/* In the import's transaction: every row the file carries. */
static int write_moved(store *s, int64_t agent, void *arg, rqd_err *err)
{
    import_ctx *c = arg;
    rqd_move_file *m = &c->m;
    int rc = RQD_OK;
    for (int i = 0; rc == RQD_OK && i < m->n_batches; i++)
        rc = store_batch_put(s, agent, m->batches[i].id, m->batches[i].answer, err);
    for (int i = 0; rc == RQD_OK && i < m->n_episodes; i++)
        rc = store_episode_put(s, agent, &m->episodes[i], m->S, m->A, err);
    for (int i = 0; rc == RQD_OK && i < m->n_streams; i++)
        rc = store_stream_put(s, agent, &m->streams[i], err);
    if (rc == RQD_OK && m->n_stats > 0) {
        /* Numbers from the trainers' counter (API.md: rows only ever increase), so none
         * can meet a row a trainer numbered and has not written yet. */
        int64_t first = atomic_fetch_add(&c->r->next_stats_row, m->n_stats);
        for (int i = 0; i < m->n_stats; i++)
            m->stats[i].row = first + i;
        rc = store_stats_append(s, agent, m->stats, m->n_stats, err);
    }
    for (int i = 0; rc == RQD_OK && i < m->n_evals; i++)
        rc = store_eval_append(s, agent, &m->evals[i].row, m->evals[i].returns,
                               m->evals[i].lengths, NULL, err);
    /* Ended episodes the old node's retention deleted still count in state.episodes. */
    if (rc == RQD_OK && (m->dropped.episodes > 0 || m->dropped.ended_at[0] != '\0'))
        rc = store_dropped_add(s, agent, &m->dropped, err);
    return rc;
}

/* Committed, not yet published: the open episodes and streams as a restart loads them. */
static void load_moved(rqd_agent *a, void *arg)
{
    import_ctx *c = arg;
    rqd_err err = {0};
    store *rd = rqd_reader_get(c->r, &err);
    int rc = rd ? rqd__load_episodes(rd, a, &err) : RQD_EIO;
    if (rc == RQD_OK)
        rc = rqd_returns_load(&a->returns, rd, a->id, &err);
    rqd_reader_put(c->r, rd);
    if (rc < 0) /* stored all the same: a restart loads it whole */
        rqd__agent_fail(a, "its episodes could not be loaded after the move (%s); restart "
                        "the daemon to load them", err.msg);
}

int rqd_agent_move_import(rqd_registry *r, const char *name, const void *data, size_t len,
                          rqd_agent **out, rqd_err *err)
{
    import_ctx c = {.r = r};
    int rc = rqd_move_decode(data, len, &c.m, err);
    if (rc == RQD_OK) {
        rqd_import_extra x = {c.m.S, c.m.A, c.m.pending, write_moved, load_moved, &c};
        rc = rqd__ckpt_import(r, name, c.m.ckpt, c.m.ckpt_len, &x, out, err);
    }
    if (rc == RQD_OK)
        LOG(LOG_NOTICE, "agent %s: moved here from node %s (%d batch ids, %d episodes, %d stats "
            "rows, %d evaluations, %.0f updates owed)", name, c.m.node, c.m.n_batches,
            c.m.n_episodes, c.m.n_stats, c.m.n_evals, c.m.pending);
    rqd_move_file_free(&c.m);
    return rc;
}
