/* storage/values.c: how values look in the file: floats as little-endian float32 blobs
 * (the same bytes on every host, so a database or backup moves between machines), NaN
 * doubles as NULL, times as RFC 3339 UTC text with milliseconds. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

void store__floats_encode(unsigned char *dst, const float *src, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        dst[4 * i + 0] = (unsigned char)(u);
        dst[4 * i + 1] = (unsigned char)(u >> 8);
        dst[4 * i + 2] = (unsigned char)(u >> 16);
        dst[4 * i + 3] = (unsigned char)(u >> 24);
    }
}

void store__floats_decode(float *dst, const unsigned char *src, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                     (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
        memcpy(&dst[i], &u, 4);
    }
}

int store__bind_floats(sqlite3_stmt *st, int idx, const float *v, int n)
{
    unsigned char *buf = NULL;

    if (v == NULL)
        return sqlite3_bind_null(st, idx);
    buf = malloc(4 * (size_t)n + 1); /* + 1: a zero-length blob still needs a pointer */
    if (buf == NULL)
        return SQLITE_NOMEM;
    store__floats_encode(buf, v, n);
    return sqlite3_bind_blob(st, idx, buf, 4 * n, free); /* SQLite frees buf, even on error */
}

int store__column_floats(sqlite3_stmt *st, int col, int n, float **out, const char *what,
                         rqd_err *err)
{
    const unsigned char *p = NULL;
    int bytes, rc = RQD_OK;

    *out = NULL;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        goto out;
    p = sqlite3_column_blob(st, col);
    bytes = sqlite3_column_bytes(st, col);
    if (bytes != 4 * n) {
        rc = rqd_err_set(err, RQD_EIO, "", "%s: %d bytes stored, %d floats expected", what,
                         bytes, n);
        goto out;
    }
    *out = malloc(4 * (size_t)n + 1);
    if (*out == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "%s: out of memory", what);
        goto out;
    }
    if (n > 0)
        store__floats_decode(*out, p, n);
out:
    return rc;
}

int store__bind_double(sqlite3_stmt *st, int idx, double v)
{
    return isnan(v) ? sqlite3_bind_null(st, idx) : sqlite3_bind_double(st, idx, v);
}

double store__column_double(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

void store__column_text(sqlite3_stmt *st, int col, char *buf, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    snprintf(buf, size, "%s", t ? (const char *)t : "");
}
