/* storage/internal.h: what the files of storage/ share and nobody else sees (STYLE R1:
 * store__ names are storage-private, so `grep store__` outside storage/ must find nothing).
 *
 * One struct store per connection. Every statement step goes through store__step, the
 * one place where the fault hook of store_fault_inject fires (STYLE R18). Statements are
 * prepared once per connection and cached (store__stmt); a function that takes one from
 * the cache hands it back with store__done (reset and unbind) on its one exit path.
 */
#ifndef STORE_INTERNAL_H
#define STORE_INTERNAL_H

#include <sqlite3.h>

#include "../common/rqd_clock.h"
#include "store.h"

/* PRAGMA application_id of a redqd database: "rqdd" in ASCII. A file carrying another id
 * (or tables but no id) belongs to some other program and is refused, never migrated. */
#define STORE__APPLICATION_ID 0x72716464

/* Distinct cached statements per connection. storage/ has about 70; the cache refuses
 * (RQD_EINTERNAL) rather than grows, so a new statement past it is noticed in tests. */
#define STORE__MAX_STMTS 96

/* Largest checkpoint_parts row. A checkpoint's state is cut into parts because SQLite
 * refuses a value over SQLITE_MAX_LENGTH (1e9 bytes by default; at most 2^31 - 1), and a
 * large agent's state passes it (1.45 GB for hidden_sizes [2048, 2048, 2048] and 10
 * critics). SQLite copies one part into a record buffer to write it, and into a column
 * buffer to read it: at 16 MiB these stay below glibc's largest mmap threshold (32 MiB),
 * so the buffer of one part is reused for the next instead of mapped and faulted in anew
 * (measured on 1.45 GB: insert 12-14 s at 16 MiB, 22-25 s at 64 MiB; reads 7-8 s against
 * 11-14 s). A 4 GiB state is 256 rows. store_test_part_size lowers it for tests. */
#define STORE__PART_BYTES ((size_t)16 << 20)

/* Milliseconds a connection waits for another's write lock before SQLITE_BUSY. The writer
 * holds it for one group commit, which takes milliseconds; 5 s covers a slow disk. */
#define STORE__BUSY_TIMEOUT_MS 5000

struct store {
    sqlite3 *db;
    int mode;            /* STORE_RW or STORE_RO */
    int fault_nth;       /* steps until the injected fault fires; 0 = none armed */
    int fault_rc;        /* the SQLite result code it returns */
    int last_injected;   /* the latest store__step failure came from the hook */
    long long default_max_pages; /* PRAGMA max_page_count before the first cap; 0 = unread */
    int n_stmts;
    struct {
        const char *sql; /* the statement's text; looked up by pointer (a static string) */
        sqlite3_stmt *st;
    } stmts[STORE__MAX_STMTS];
};

/* db.c ------------------------------------------------------------------------------ */

/* sqlite3_step, or the injected fault when it is due. */
int store__step(store *s, sqlite3_stmt *st);
/* The cached statement for sql (a static string, looked up by address) into *out,
 * prepared on first use. Hand it back with store__done. */
int store__stmt(store *s, const char *sql, sqlite3_stmt **out, rqd_err *err);
/* Resets and unbinds a cached statement (NULL is a no-op), ending its read. */
void store__done(sqlite3_stmt *st);
/* Runs every statement of sql (no parameters, rows ignored) through store__step. */
int store__exec(store *s, const char *sql, rqd_err *err);
/* Fills err after SQLite result code rc and returns the RQD code it maps to: constraint
 * (primary key, unique) -> RQD_EEXIST, foreign key -> RQD_ENOTFOUND, NOMEM ->
 * RQD_ENOMEM, anything else RQD_EIO. The message is "<what>: <sqlite's message>", except
 * that a full database (SQLITE_FULL: the disk, or store_set_max_size's cap) always reads
 * "<what>: database or disk is full", as does an I/O error whose errno is ENOSPC. */
int store__fail(store *s, int rc, rqd_err *err, const char *what);

/* Makes room for element len of the array *v (elements of size bytes, *cap allocated,
 * doubling): 0, or RQD_ENOMEM naming what ("list agents: out of memory"). */
int store__grow(void **v, int *cap, int len, size_t size, const char *what, rqd_err *err);
/* Fills the zeroed element row from the current row of st: 0 or a negative RQD code. */
typedef int (*store__read_fn)(sqlite3_stmt *st, void *row, void *ctx, rqd_err *err);
/* Every list call: steps the bound statement st (and releases it) and reads each row into
 * a new array of size-byte elements with read. *rows is NULL and *n 0 when nothing was
 * read or on failure, when release (if not NULL) first frees what the elements read so
 * far own, and the array. what names the list in errors ("list agents"). */
int store__collect(store *s, sqlite3_stmt *st, size_t size, store__read_fn read, void *ctx,
                   void (*release)(void *rows, int n), const char *what, void **rows, int *n,
                   rqd_err *err);
/* A page of an agent's rows through store__collect: sql binds ?1 the agent, ?2 the row
 * after which the page starts, ?3 the most rows it holds. */
int store__page(store *s, const char *sql, int64_t agent, int64_t since, int limit, size_t size,
                store__read_fn read, const char *what, void **rows, int *n, rqd_err *err);

/* A multi-statement call made atomic by itself: BEGIN IMMEDIATE when no transaction is
 * open, else SAVEPOINT store_call inside the caller's. store__atomic_end commits or
 * releases when rc is RQD_OK and rolls back otherwise; it returns the final code. */
int store__atomic_begin(store *s, int *token, rqd_err *err);
int store__atomic_end(store *s, int token, int rc, rqd_err *err);

/* schema.c -------------------------------------------------------------------------- */

/* Brings a read-write connection from its user_version (0 = a new, empty file) to
 * target (STORE_SCHEMA_VERSION but in store_test_create_version) in one BEGIN IMMEDIATE
 * transaction, setting application_id with the first migration. Writes nothing when the
 * file is already there. path is for messages only. */
int store__migrate(store *s, const char *path, int target, rqd_err *err);

/* checkpoints.c --------------------------------------------------------------------- */

/* Writes the state of checkpoint (agent, id) as checkpoint_parts rows 0, 1, ... of at
 * most STORE__PART_BYTES each (none for len 0). Binds pointers into state: SQLite copies
 * one part at a time into its record, never the whole. */
int store__ckpt_parts_put(store *s, int64_t agent, int64_t id, const void *state, size_t len,
                          rqd_err *err);

/* util.c ---------------------------------------------------------------------------- */

/* n floats as little-endian float32 into dst[4n] and back (the blob format). */
void store__floats_encode(unsigned char *dst, const float *src, int n);
void store__floats_decode(float *dst, const unsigned char *src, int n);
/* Binds n floats as a blob (NULL when v is NULL); SQLite owns the encoded copy. */
int store__bind_floats(sqlite3_stmt *st, int idx, const float *v, int n);
/* A blob column of exactly n floats into a malloc'd array (*out = NULL for SQL NULL).
 * RQD_EIO naming `what` when the size is not 4n, RQD_ENOMEM when malloc fails. */
int store__column_floats(sqlite3_stmt *st, int col, int n, float **out, const char *what,
                         rqd_err *err);
/* NaN is stored as NULL and read back as NaN. */
int store__bind_double(sqlite3_stmt *st, int idx, double v);
double store__column_double(sqlite3_stmt *st, int col);
/* A text column into buf (truncated to size-1 bytes; "" for NULL). */
void store__column_text(sqlite3_stmt *st, int col, char *buf, size_t size);

#endif
