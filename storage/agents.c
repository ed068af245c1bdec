/* storage/agents.c: agent rows: create, configure, publish policy versions, list, and
 * delete with every row that belongs to the agent.
 *
 * Ids come from the counter meta.next_agent_id, advanced in the transaction that inserts
 * the agent (schema.c says why not AUTOINCREMENT), so an id is never handed out twice,
 * after deletes and restarts too: a request for a deleted agent can never reach a new one.
 *
 * Deleting is one DELETE of the agents row; ON DELETE CASCADE (schema.c) removes its
 * transitions, checkpoints, stats, episodes and batch ids inside the same statement, so
 * the delete is one transaction whatever the caller has open.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_NEXT_ID[] =
    "UPDATE meta SET value = value + 1 WHERE key = 'next_agent_id' RETURNING value - 1";
static const char SQL_INSERT[] =
    "INSERT INTO agents (id, name, obs_dim, act_dim, low, high, config, created_at)"
    " VALUES (?8, ?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char SQL_SET_CONFIG[] = "UPDATE agents SET config = ?2 WHERE id = ?1";
static const char SQL_BUMP_POLICY[] =
    "UPDATE agents SET policy_version = max(policy_version, ?2) WHERE id = ?1";
static const char SQL_DELETE[] = "DELETE FROM agents WHERE id = ?1";
static const char SQL_LIST[] =
    "SELECT id, name, obs_dim, act_dim, low, high, config, created_at, policy_version,"
    " next_ckpt_id FROM agents ORDER BY name"; /* BINARY collation: byte order */

int store_agent_insert(store *s, const char *name, int obs_dim, int act_dim, const float *low,
                       const float *high, const char *config_json, int64_t *id_out,
                       rqd_err *err)
{
    sqlite3_stmt *next = NULL, *st = NULL;
    char now[32];
    int64_t id = 0;
    int rc = RQD_OK, src, token = 0;

    assert(obs_dim > 0 && act_dim > 0);
    if (strlen(name) >= sizeof ((store_agent_row *)0)->name) {
        rc = rqd_err_set(err, RQD_EINVAL, "name", "agent name longer than %zu bytes",
                         sizeof ((store_agent_row *)0)->name - 1);
        goto out;
    }
    if ((rc = store__stmt(s, SQL_NEXT_ID, &next, err)) < 0 ||
        (rc = store__stmt(s, SQL_INSERT, &st, err)) < 0 ||
        (rc = store__atomic_begin(s, &token, err)) < 0)
        goto out;
    src = store__step(s, next);
    if (src == SQLITE_ROW) {
        id = sqlite3_column_int64(next, 0);
        src = store__step(s, next);
    } else if (src == SQLITE_DONE) { /* the migration made the row: a damaged file */
        rc = rqd_err_set(err, RQD_EIO, "", "insert agent: the agent id counter is missing");
        goto out;
    }
    if (src != SQLITE_DONE) {
        rc = store__fail(s, src, err, "insert agent: next id");
        goto out;
    }
    rqd_now_rfc3339(now);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, obs_dim);
    sqlite3_bind_int(st, 3, act_dim);
    if ((src = store__bind_floats(st, 4, low, act_dim)) != SQLITE_OK ||
        (src = store__bind_floats(st, 5, high, act_dim)) != SQLITE_OK) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "insert agent: %s", sqlite3_errstr(src));
        goto out;
    }
    sqlite3_bind_text(st, 6, config_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, id);
    src = store__step(s, st);
    if (src != SQLITE_DONE) {
        rc = store__fail(s, src, err, "insert agent");
        if (src == SQLITE_CONSTRAINT_UNIQUE)
            rqd_err_set(err, RQD_EEXIST, "name", "agent \"%s\" already exists", name);
        else if (rc == RQD_EEXIST) /* the id: a counter behind the rows, a damaged file */
            rc = rqd_err_set(err, RQD_EIO, "", "insert agent: id %lld is taken (the agent id "
                             "counter is damaged)", (long long)id);
        goto out;
    }
    if (id_out)
        *id_out = id;
out:
    store__done(next);
    store__done(st);
    return store__atomic_end(s, token, rc, err);
}

/* One UPDATE or DELETE of the agent with id ?1 and an optional int64 or text ?2. */
static int agent_change(store *s, const char *sql, int64_t id, const int64_t *v,
                        const char *text, const char *what, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, sql, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    if (v)
        sqlite3_bind_int64(st, 2, *v);
    else if (text)
        sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    src = store__step(s, st);
    if (src != SQLITE_DONE) {
        rc = store__fail(s, src, err, what);
        goto out;
    }
    if (sqlite3_changes(s->db) == 0)
        rc = rqd_err_set(err, RQD_ENOTFOUND, "", "%s: agent %lld not found", what,
                         (long long)id);
out:
    store__done(st);
    return rc;
}

int store_agent_set_config(store *s, int64_t id, const char *config_json, rqd_err *err)
{
    return agent_change(s, SQL_SET_CONFIG, id, NULL, config_json, "set agent config", err);
}

int store_agent_bump_policy(store *s, int64_t id, int64_t v, rqd_err *err)
{
    return agent_change(s, SQL_BUMP_POLICY, id, &v, NULL, "bump policy version", err);
}

int store_agent_delete(store *s, int64_t id, rqd_err *err)
{
    return agent_change(s, SQL_DELETE, id, NULL, NULL, "delete agent", err);
}

void store_agent_rows_free(store_agent_row *rows, int n)
{
    if (rows == NULL)
        return;
    for (int i = 0; i < n; i++) {
        free(rows[i].low);
        free(rows[i].high);
        free(rows[i].config_json);
    }
    free(rows);
}

static int read_agent(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    store_agent_row *r = row;
    const unsigned char *config = sqlite3_column_text(st, 6);
    int rc;

    (void)ctx;
    r->id = sqlite3_column_int64(st, 0);
    store__column_text(st, 1, r->name, sizeof r->name);
    r->obs_dim = sqlite3_column_int(st, 2);
    r->act_dim = sqlite3_column_int(st, 3);
    store__column_text(st, 7, r->created_at, sizeof r->created_at);
    r->policy_version = sqlite3_column_int64(st, 8);
    r->next_ckpt_id = sqlite3_column_int64(st, 9);
    if (config != NULL && (r->config_json = strdup((const char *)config)) == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "list agents: out of memory");
    if ((rc = store__column_floats(st, 4, r->act_dim, &r->low, "agent low", err)) < 0)
        return rc;
    return store__column_floats(st, 5, r->act_dim, &r->high, "agent high", err);
}

static void release_agents(void *rows, int n)
{
    store_agent_rows_free(rows, n);
}

int store_agent_list(store *s, store_agent_row **rows, int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, SQL_LIST, &st, err)) < 0)
        return rc;
    return store__collect(s, st, sizeof **rows, read_agent, NULL, release_agents,
                          "list agents", (void **)rows, n, err);
}
