/* storage/schema.c: the schema and its migrations, keyed on PRAGMA user_version.
 *
 * migrations[v] brings a file from version v to v+1: its SQL first (tables, columns,
 * indexes, and the row moves SQL can say), then its C step when it has one (row moves
 * that need storage/'s own code), then the runner sets user_version to v+1. All pending
 * ones run in one BEGIN IMMEDIATE transaction, so a crash leaves the old version or the
 * new, never a mix. A new version appends an entry here and bumps STORE_SCHEMA_VERSION;
 * entries are never edited once released.
 *
 * Version 2 (issue 9): a checkpoint's state is stored in checkpoint_parts, rows of at
 * most STORE__PART_BYTES, because one blob may not pass SQLite's length limit (1e9 bytes
 * by default) and a large agent's state does; and agent ids come from the counter row
 * meta.next_agent_id, so that an id is never handed out twice (INTEGER PRIMARY KEY
 * alone reuses the highest id once its row is deleted). AUTOINCREMENT would say the
 * same, but adding it means rebuilding `agents`, which five tables reference with ON
 * DELETE CASCADE: SQLite's rebuild procedure needs foreign_keys off, which cannot be
 * switched inside the migration's transaction, and dropping the old table with it on
 * would delete every agent's rows. The counter is one row and one UPDATE per create.
 *
 * Every per-agent table references agents(id) ON DELETE CASCADE, so deleting an agent is
 * one DELETE (foreign_keys=ON is set by store_open). Every child table's primary key (or
 * index) starts with agent, which the cascade needs to find the rows without a scan.
 * Floats are little-endian float32 blobs; doubles that are not known (NaN) are NULL.
 */
#include <assert.h>
#include <stdio.h>

#include "internal.h"

#define STR_(x) #x
#define STR(x) STR_(x)

typedef struct {
    const char *sql;                     /* run first, as one script */
    int (*step)(store *s, rqd_err *err); /* then, when not NULL */
} migration;

static int move_states_into_parts(store *s, rqd_err *err);

static const migration migrations[STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: the first schema. */
    {"PRAGMA application_id = " STR(STORE__APPLICATION_ID) ";"
    "CREATE TABLE agents ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT UNIQUE NOT NULL,"
    "  obs_dim INTEGER NOT NULL,"
    "  act_dim INTEGER NOT NULL,"
    "  low BLOB,"                          /* act_dim floats, environment scale */
    "  high BLOB,"
    "  config TEXT,"                       /* JSON */
    "  created_at TEXT NOT NULL,"
    "  policy_version INTEGER NOT NULL DEFAULT 0,"
    "  next_ckpt_id INTEGER NOT NULL DEFAULT 1"
    ");"
    "CREATE TABLE transitions ("
    "  agent INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"              /* env_steps after it, 1-based */
    "  data BLOB NOT NULL,"                /* obs | action | reward | next_obs */
    "  terminated INTEGER NOT NULL,"
    "  truncated INTEGER NOT NULL,"
    "  env_id TEXT,"                       /* NULL = the default stream */
    "  PRIMARY KEY (agent, seq)"
    ") WITHOUT ROWID;"
    "CREATE TABLE checkpoints ("
    "  agent INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
    "  id INTEGER NOT NULL,"
    "  updates INTEGER NOT NULL,"
    "  env_steps INTEGER NOT NULL,"
    "  policy_version INTEGER NOT NULL,"
    "  pending REAL,"
    "  automatic INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  created_at TEXT NOT NULL,"
    "  state BLOB NOT NULL,"               /* last, so listing never reads it */
    "  PRIMARY KEY (agent, id)"
    ");"
    "CREATE TABLE stats ("
    "  row INTEGER PRIMARY KEY AUTOINCREMENT," /* never reused, increasing across agents */
    "  agent INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
    "  update_no INTEGER NOT NULL,"
    "  env_steps INTEGER NOT NULL,"
    "  time REAL,"                         /* Unix seconds */
    "  actor_loss REAL, critic_loss REAL, alpha REAL, alpha_loss REAL,"
    "  q_mean REAL, q_std REAL, train_time REAL"
    ");"
    "CREATE INDEX stats_by_agent ON stats (agent, row);"
    "CREATE TABLE episodes ("
    "  agent INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
    "  id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"              /* per-agent insertion order, breaks start ties */
    "  mode INTEGER NOT NULL,"
    "  ret REAL,"
    "  length INTEGER NOT NULL,"
    "  started_at TEXT NOT NULL,"
    "  ended_at TEXT,"                     /* NULL while open */
    "  abandoned INTEGER NOT NULL,"
    "  last_obs BLOB,"                     /* while open only */
    "  last_action BLOB,"
    "  PRIMARY KEY (agent, id)"
    ");"
    "CREATE INDEX episodes_by_start ON episodes (agent, started_at, seq);"
    "CREATE INDEX episodes_by_seq ON episodes (agent, seq);"
    "CREATE TABLE batches ("
    "  agent INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
    "  batch_id TEXT NOT NULL,"
    "  answer TEXT NOT NULL,"              /* the JSON answered the first time */
    "  PRIMARY KEY (agent, batch_id)"
    ") WITHOUT ROWID;"
    "PRAGMA user_version = 1;", NULL},
    /* 1 -> 2: checkpoint states in parts (checkpoints.c), agent ids from a counter
     * (agents.c). The ids handed out so far are those of the agents left: v1 reused the
     * deleted ones above them anyway. */
    {"CREATE TABLE checkpoint_parts ("
     "  agent INTEGER NOT NULL,"
     "  ckpt INTEGER NOT NULL,"
     "  part INTEGER NOT NULL,"             /* 0, 1, ... in the order of the bytes */
     "  data BLOB NOT NULL,"                /* at most STORE__PART_BYTES */
     "  PRIMARY KEY (agent, ckpt, part),"
     "  FOREIGN KEY (agent, ckpt) REFERENCES checkpoints (agent, id) ON DELETE CASCADE"
     ");"
     "CREATE TABLE meta ("
     "  key TEXT PRIMARY KEY,"
     "  value INTEGER NOT NULL"
     ") WITHOUT ROWID;"
     "INSERT INTO meta (key, value)"
     "  SELECT 'next_agent_id', coalesce(max(id), 0) + 1 FROM agents;",
     move_states_into_parts},
    /* 2 -> 3: returns from transitions and evaluations (issue 11). Episodes say where
     * they came from; each transitions stream (agent, env_id; '' for none) keeps the
     * episode it is adding up; evaluations are rows like stats. */
    {"ALTER TABLE episodes ADD COLUMN source INTEGER NOT NULL DEFAULT 0;" /* 1: transitions */
     "ALTER TABLE episodes ADD COLUMN env_id TEXT;"
     "CREATE INDEX episodes_by_end ON episodes (agent, ended_at, seq);"
     "CREATE TABLE streams ("
     "  agent INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
     "  env_id TEXT NOT NULL,"
     "  ret REAL NOT NULL,"
     "  length INTEGER NOT NULL,"
     "  started_at TEXT NOT NULL,"
     "  PRIMARY KEY (agent, env_id)"
     ") WITHOUT ROWID;"
     "CREATE TABLE evaluations ("
     "  row INTEGER PRIMARY KEY AUTOINCREMENT," /* never reused, increasing across agents */
     "  agent INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
     "  env_steps INTEGER NOT NULL,"
     "  updates INTEGER NOT NULL,"
     "  policy_version INTEGER NOT NULL,"
     "  time TEXT NOT NULL,"
     "  n INTEGER NOT NULL,"
     "  mean REAL, std REAL, min REAL, max REAL,"
     "  mean_length REAL,"                  /* NULL without lengths */
     "  returns BLOB,"                      /* n float64, as posted */
     "  lengths BLOB"                       /* n int64, or NULL */
     ");"
     "CREATE INDEX evaluations_by_agent ON evaluations (agent, row);",
     NULL},
};

/* Version 2's C step: every checkpoints.state into checkpoint_parts, cut as
 * store_ckpt_insert cuts new ones, then the column goes. One state is in memory at a
 * time (a version 1 state is below SQLite's blob limit, so it was readable whole). */
static int move_states_into_parts(store *s, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    src = sqlite3_prepare_v2(s->db, "SELECT agent, id, state FROM checkpoints", -1, &st, NULL);
    if (src != SQLITE_OK) {
        rc = store__fail(s, src, err, "prepare");
        goto out;
    }
    while ((src = store__step(s, st)) == SQLITE_ROW) {
        /* The blob first, then its length (the order sqlite3_column_blob asks for). */
        const void *state = sqlite3_column_blob(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);

        if (state == NULL && sqlite3_errcode(s->db) == SQLITE_NOMEM) {
            rc = rqd_err_set(err, RQD_ENOMEM, "", "move checkpoint states: out of memory");
            goto out;
        }
        rc = store__ckpt_parts_put(s, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                   state, len, err);
        if (rc < 0)
            goto out;
    }
    if (src != SQLITE_DONE) {
        rc = store__fail(s, src, err, "move checkpoint states");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = store__exec(s, "ALTER TABLE checkpoints DROP COLUMN state", err);
out:
    sqlite3_finalize(st);
    return rc;
}

static int read_version(store *s, sqlite3_int64 *version, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = store__stmt(s, "PRAGMA user_version", &st, err), src;
    if (rc == RQD_OK && (src = store__step(s, st)) != SQLITE_ROW)
        rc = store__fail(s, src, err, "read user_version");
    if (rc == RQD_OK)
        *version = sqlite3_column_int64(st, 0);
    store__done(st);
    return rc;
}

int store__migrate(store *s, const char *path, int target, rqd_err *err)
{
    sqlite3_int64 version = 0;
    rqd_err why = {0};
    char sql[48];
    int rc, token = 0;

    assert(target >= 1 && target <= STORE_SCHEMA_VERSION);
    /* Read once outside a transaction: a current file is opened without writing. */
    if ((rc = read_version(s, &version, err)) < 0 || version == target)
        return rc;
    /* Again under the write lock: another process may have migrated meanwhile. */
    if ((rc = store__atomic_begin(s, &token, err)) < 0 ||
        (rc = read_version(s, &version, err)) < 0)
        goto out;
    if (version < 0 || version > target) {
        rc = rqd_err_set(err, RQD_EIO, "",
                         "%s: schema version %lld is newer than this build's %d; upgrade redqd",
                         path, (long long)version, target);
        goto out;
    }
    for (sqlite3_int64 v = version; v < target; v++) {
        const migration *m = &migrations[v];

        snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)v + 1);
        if ((rc = store__exec(s, m->sql, &why)) < 0 ||
            (m->step != NULL && (rc = m->step(s, &why)) < 0) ||
            (rc = store__exec(s, sql, &why)) < 0) {
            rqd_err_set(err, rc, "", "%s: migration to version %lld failed: %s", path,
                        (long long)v + 1, why.msg);
            goto out;
        }
    }
out:
    return store__atomic_end(s, token, rc, err);
}
