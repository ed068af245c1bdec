/* storage/checkpoints.c: checkpoint blobs with their metadata: insert (with pruning of
 * old automatic ones), list, fetch, delete.
 *
 * A checkpoints row holds the metadata; the state is in checkpoint_parts, cut into rows
 * of at most STORE__PART_BYTES (internal.h says why), numbered from 0 in the order of
 * its bytes. Parts reference their checkpoint ON DELETE CASCADE, so deleting, pruning
 * and deleting the agent remove them in the same statement. Reading reassembles them
 * into one malloc'd buffer of the row's `bytes` with one statement (one snapshot, so a
 * concurrent prune cannot leave half a state), and refuses as damaged a state whose
 * parts are missing, out of order or do not add up to `bytes`.
 *
 * Ids come from agents.next_ckpt_id, advanced in the transaction that inserts the
 * checkpoint, so an id is never handed out twice even after the newest is deleted.
 * Pruning runs in the same transaction: the newest keep_auto automatic checkpoints (by
 * id) survive, manual ones always do. keep_auto <= 0 prunes nothing, so that "keep 0"
 * can never delete the checkpoint just taken.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char SQL_NEXT_ID[] =
    "UPDATE agents SET next_ckpt_id = next_ckpt_id + 1 WHERE id = ?1"
    " RETURNING next_ckpt_id - 1";
static const char SQL_INSERT[] =
    "INSERT INTO checkpoints (agent, id, updates, env_steps, policy_version, pending,"
    " automatic, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
static const char SQL_PART_INSERT[] =
    "INSERT INTO checkpoint_parts (agent, ckpt, part, data) VALUES (?1, ?2, ?3, ?4)";
static const char SQL_PRUNE[] =
    "DELETE FROM checkpoints WHERE agent = ?1 AND automatic = 1 AND id NOT IN"
    " (SELECT id FROM checkpoints WHERE agent = ?1 AND automatic = 1"
    "  ORDER BY id DESC LIMIT ?2)";
#define SQL_COLUMNS "id, updates, env_steps, policy_version, pending, automatic, bytes, created_at"
static const char SQL_LIST[] =
    "SELECT " SQL_COLUMNS " FROM checkpoints WHERE agent = ?1 ORDER BY id";
/* ?2 < 0 selects the newest; an equality lookup either way. */
#define SQL_WHERE_ONE                                                                      \
    " FROM checkpoints WHERE agent = ?1 AND id = CASE WHEN ?2 < 0 THEN"                    \
    " (SELECT max(id) FROM checkpoints WHERE agent = ?1) ELSE ?2 END"
static const char SQL_GET[] = "SELECT " SQL_COLUMNS SQL_WHERE_ONE;
/* The row once per part (once with NULL parts when it has none), parts in order: the
 * parts' primary key gives that order, so SQLite sorts nothing (no copy of the state).
 * The last column is the bytes the parts hold, so that a damaged `bytes` is found before
 * it is allocated (length() reads a blob's header, not its pages). */
static const char SQL_GET_STATE[] =
    "SELECT c.id, c.updates, c.env_steps, c.policy_version, c.pending, c.automatic, c.bytes,"
    " c.created_at, p.part, p.data, (SELECT coalesce(sum(length(data)), 0) FROM"
    " checkpoint_parts WHERE agent = c.agent AND ckpt = c.id)"
    " FROM checkpoints c LEFT JOIN checkpoint_parts p"
    " ON p.agent = c.agent AND p.ckpt = c.id WHERE c.agent = ?1 AND c.id = CASE WHEN ?2 < 0"
    " THEN (SELECT max(id) FROM checkpoints WHERE agent = ?1) ELSE ?2 END ORDER BY p.part";
static const char SQL_DELETE[] = "DELETE FROM checkpoints WHERE agent = ?1 AND id = ?2";

/* Parts of states written from now on (store_test_part_size). */
static size_t part_bytes = STORE__PART_BYTES;

void store_test_part_size(size_t bytes)
{
    part_bytes = bytes > 0 ? bytes : STORE__PART_BYTES;
}

int store__ckpt_parts_put(store *s, int64_t agent, int64_t id, const void *state, size_t len,
                          rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    size_t off = 0, n;
    int64_t part = 0;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_PART_INSERT, &st, err)) < 0)
        goto out;
    for (; off < len; off += n, part++) {
        n = len - off < part_bytes ? len - off : part_bytes;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, agent);
        sqlite3_bind_int64(st, 2, id);
        sqlite3_bind_int64(st, 3, part);
        src = sqlite3_bind_blob64(st, 4, (const unsigned char *)state + off, n, SQLITE_STATIC);
        if (src != SQLITE_OK) {
            rc = store__fail(s, src, err, "insert checkpoint: bind state");
            goto out;
        }
        if ((src = store__step(s, st)) != SQLITE_DONE) {
            rc = store__fail(s, src, err, "insert checkpoint state");
            goto out;
        }
    }
out:
    store__done(st);
    return rc;
}

/* The SQL_COLUMNS of the current row. */
static void read_info(sqlite3_stmt *st, store_ckpt_info *c)
{
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    c->updates = sqlite3_column_int64(st, 1);
    c->env_steps = sqlite3_column_int64(st, 2);
    c->policy_version = sqlite3_column_int64(st, 3);
    c->pending_updates = store__column_double(st, 4);
    c->automatic = sqlite3_column_int(st, 5);
    c->bytes = sqlite3_column_int64(st, 6);
    store__column_text(st, 7, c->created_at, sizeof c->created_at);
}

static int read_list_row(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err)
{
    (void)ctx;
    (void)err;
    read_info(st, row);
    return RQD_OK;
}

int store_ckpt_insert(store *s, int64_t agent, const store_ckpt_info *info, const void *blob,
                      size_t len, int keep_auto, int64_t *id_out, rqd_err *err)
{
    sqlite3_stmt *next = NULL, *ins = NULL, *prune = NULL;
    char now[32];
    int64_t id = 0;
    int rc = RQD_OK, src, token = 0;

    if ((rc = store__stmt(s, SQL_NEXT_ID, &next, err)) < 0 ||
        (rc = store__stmt(s, SQL_INSERT, &ins, err)) < 0 ||
        (rc = store__stmt(s, SQL_PRUNE, &prune, err)) < 0)
        goto out;
    if ((rc = store__atomic_begin(s, &token, err)) < 0)
        goto out;

    sqlite3_bind_int64(next, 1, agent);
    src = store__step(s, next);
    if (src == SQLITE_DONE) {
        rc = rqd_err_set(err, RQD_ENOTFOUND, "", "insert checkpoint: agent %lld not found",
                         (long long)agent);
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = store__fail(s, src, err, "insert checkpoint: next id");
        goto out;
    }
    id = sqlite3_column_int64(next, 0);
    if ((src = store__step(s, next)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "insert checkpoint: next id");
        goto out;
    }

    if (info->created_at[0] == '\0')
        rqd_now_rfc3339(now);
    else
        snprintf(now, sizeof now, "%s", info->created_at); /* kept, e.g. on import */
    sqlite3_bind_int64(ins, 1, agent);
    sqlite3_bind_int64(ins, 2, id);
    sqlite3_bind_int64(ins, 3, info->updates);
    sqlite3_bind_int64(ins, 4, info->env_steps);
    sqlite3_bind_int64(ins, 5, info->policy_version);
    store__bind_double(ins, 6, info->pending_updates);
    sqlite3_bind_int(ins, 7, info->automatic != 0);
    sqlite3_bind_int64(ins, 8, (sqlite3_int64)len);
    sqlite3_bind_text(ins, 9, now, -1, SQLITE_STATIC);
    if ((src = store__step(s, ins)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "insert checkpoint");
        goto out;
    }
    if ((rc = store__ckpt_parts_put(s, agent, id, blob, len, err)) < 0)
        goto out;

    if (info->automatic && keep_auto > 0) {
        sqlite3_bind_int64(prune, 1, agent);
        sqlite3_bind_int(prune, 2, keep_auto);
        if ((src = store__step(s, prune)) != SQLITE_DONE) {
            rc = store__fail(s, src, err, "prune automatic checkpoints");
            goto out;
        }
    }
    if (id_out)
        *id_out = id;
out:
    store__done(next);
    store__done(ins);
    store__done(prune);
    return store__atomic_end(s, token, rc, err);
}

int store_ckpt_list(store *s, int64_t agent, store_ckpt_info **rows, int *n, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *rows = NULL;
    *n = 0;
    if ((rc = store__stmt(s, SQL_LIST, &st, err)) < 0)
        return rc;
    sqlite3_bind_int64(st, 1, agent);
    return store__collect(s, st, sizeof **rows, read_list_row, NULL, NULL, "list checkpoints",
                          (void **)rows, n, err);
}

static int damaged(rqd_err *err, int64_t id, int64_t bytes)
{
    return rqd_err_set(err, RQD_EIO, "", "checkpoint %lld is damaged: its parts do not make "
                       "its %lld bytes", (long long)id, (long long)bytes);
}

/* The state of the checkpoint on st's current row (SQL_GET_STATE), reassembled from its
 * parts into a malloc'd *out of the row's `bytes`; steps st through the other parts. */
static int read_state(store *s, sqlite3_stmt *st, void **out, size_t *len_out, rqd_err *err)
{
    int64_t id = sqlite3_column_int64(st, 0), bytes = sqlite3_column_int64(st, 6);
    int64_t expect = 0;
    size_t off = 0, total = (size_t)bytes;
    unsigned char *buf = NULL;
    int rc = RQD_OK, src = SQLITE_ROW;

    if (bytes < 0 || bytes != sqlite3_column_int64(st, 10)) {
        rc = damaged(err, id, bytes);
        goto out;
    }
    if ((buf = malloc(total ? total : 1)) == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "get checkpoint: out of memory (%zu bytes)",
                         total);
        goto out;
    }
    /* With no parts the one row has a NULL part: nothing to copy. */
    for (; src == SQLITE_ROW && sqlite3_column_type(st, 8) != SQLITE_NULL;
         src = store__step(s, st)) {
        const void *p = sqlite3_column_blob(st, 9);
        size_t n = (size_t)sqlite3_column_bytes(st, 9);

        if (p == NULL && sqlite3_errcode(s->db) == SQLITE_NOMEM) {
            rc = rqd_err_set(err, RQD_ENOMEM, "", "get checkpoint: out of memory");
            goto out;
        }
        if (sqlite3_column_int64(st, 8) != expect || n > total - off)
            break; /* a part missing, or more bytes than the row says: damaged below */
        if (n > 0)
            memcpy(buf + off, p, n);
        off += n;
        expect++;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = store__fail(s, src, err, "get checkpoint state");
        goto out;
    }
    /* Stopped at a part (not the NULL of no parts), or short. */
    if (off != total || (src == SQLITE_ROW && sqlite3_column_type(st, 8) != SQLITE_NULL)) {
        rc = damaged(err, id, bytes);
        goto out;
    }
    *out = buf;
    *len_out = total;
    buf = NULL;
out:
    free(buf);
    return rc;
}

int store_ckpt_get(store *s, int64_t agent, int64_t id, store_ckpt_info *info, void **blob,
                   size_t *len, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int rc = RQD_OK, src;

    if (blob)
        *blob = NULL;
    if (len)
        *len = 0;
    if ((rc = store__stmt(s, blob ? SQL_GET_STATE : SQL_GET, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, id);
    src = store__step(s, st);
    if (src == SQLITE_DONE) {
        rc = id < 0 ? rqd_err_set(err, RQD_ENOTFOUND, "", "agent %lld has no checkpoint",
                                  (long long)agent)
                    : rqd_err_set(err, RQD_ENOTFOUND, "", "checkpoint %lld not found",
                                  (long long)id);
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = store__fail(s, src, err, "get checkpoint");
        goto out;
    }
    if (info)
        read_info(st, info);
    if (blob && (rc = read_state(s, st, blob, &n, err)) == RQD_OK && len)
        *len = n;
out:
    store__done(st);
    return rc;
}

int store_ckpt_delete(store *s, int64_t agent, int64_t id, rqd_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = RQD_OK, src;

    if ((rc = store__stmt(s, SQL_DELETE, &st, err)) < 0)
        goto out;
    sqlite3_bind_int64(st, 1, agent);
    sqlite3_bind_int64(st, 2, id);
    if ((src = store__step(s, st)) != SQLITE_DONE) {
        rc = store__fail(s, src, err, "delete checkpoint");
        goto out;
    }
    if (sqlite3_changes(s->db) == 0)
        rc = rqd_err_set(err, RQD_ENOTFOUND, "", "checkpoint %lld not found", (long long)id);
out:
    store__done(st);
    return rc;
}
