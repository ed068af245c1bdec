/* storage/schema.c: the schema and its migrations, keyed on PRAGMA user_version.
 *
 * migrations[v] brings a file from version v to v+1 and ends by setting user_version
 * to v+1; all pending ones run in one BEGIN IMMEDIATE transaction, so a crash leaves the
 * old version or the new, never a mix. A new version appends an entry here and bumps
 * STORE_SCHEMA_VERSION; entries are never edited once released.
 *
 * Every per-agent table references agents(id) ON DELETE CASCADE, so deleting an agent is
 * one DELETE (foreign_keys=ON is set by store_open). Every child table's primary key (or
 * index) starts with agent, which the cascade needs to find the rows without a scan.
 * Floats are little-endian float32 blobs; doubles that are not known (NaN) are NULL.
 */
#include <stdio.h>

#include "internal.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: the first schema. */
    "PRAGMA application_id = " STR(STORE__APPLICATION_ID) ";"
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
    "PRAGMA user_version = 1;",
};

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

int store__migrate(store *s, const char *path, rqd_err *err)
{
    sqlite3_int64 version = 0;
    rqd_err why = {0};
    int rc, token = 0;

    /* Read once outside a transaction: a current file is opened without writing. */
    if ((rc = read_version(s, &version, err)) < 0 || version == STORE_SCHEMA_VERSION)
        return rc;
    /* Again under the write lock: another process may have migrated meanwhile. */
    if ((rc = store__atomic_begin(s, &token, err)) < 0 ||
        (rc = read_version(s, &version, err)) < 0)
        goto out;
    if (version < 0 || version > STORE_SCHEMA_VERSION) {
        rc = rqd_err_set(err, RQD_EIO, "",
                         "%s: schema version %lld is newer than this build's %d; upgrade redqd",
                         path, (long long)version, STORE_SCHEMA_VERSION);
        goto out;
    }
    for (sqlite3_int64 v = version; v < STORE_SCHEMA_VERSION; v++) {
        if ((rc = store__exec(s, migrations[v], &why)) < 0) {
            rqd_err_set(err, rc, "", "%s: migration to version %lld failed: %s", path,
                        (long long)v + 1, why.msg);
            goto out;
        }
    }
out:
    return store__atomic_end(s, token, rc, err);
}
