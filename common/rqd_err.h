/* common/rqd_err.h: the error type every module returns through (STYLE R2).
 *
 * A function returns RQD_OK (0) or a negative RQD_E* code and, on failure, fills the
 * caller's rqd_err with the JSON path of the offending field (if any) and one sentence.
 * rqd_err is a fixed-size struct so that filling it can never fail.
 */
#ifndef RQD_ERR_H
#define RQD_ERR_H

#include "rqd_attrs.h"

enum {
    RQD_OK = 0,
    RQD_EINVAL = -1,     /* bad input: 400 invalid_argument */
    RQD_ENOTFOUND = -2,  /* 404 not_found */
    RQD_EEXIST = -3,     /* 409 already_exists */
    RQD_ECONFLICT = -4,  /* 409 conflict: wrong state */
    RQD_ETOOBIG = -5,    /* 413 payload_too_large */
    RQD_EBUSY = -6,      /* 429 busy */
    RQD_EUNAVAIL = -7,   /* 503 unavailable */
    RQD_ENOMEM = -8,     /* allocation failed: 500/503 */
    RQD_EIO = -9,        /* storage or I/O failure */
    RQD_EINTERNAL = -10, /* a bug: 500 internal */
    RQD_EAGAIN = -11,    /* 503 unavailable with Retry-After: nothing was done, the same
                            request will succeed later (an agent moving or loading) */
};

typedef struct {
    int code;        /* RQD_E* (negative), RQD_OK when unset */
    char field[64];  /* JSON path of the offending field, "" if none */
    char msg[192];   /* one sentence, no trailing newline */
} rqd_err;

/* Fills e (if not NULL) and returns code, so that callers can write
 * `return rqd_err_set(err, RQD_EINVAL, "gamma", "must be in [0, 1]");`. */
int rqd_err_set(rqd_err *e, int code, const char *field, const char *fmt, ...)
    RQD_PRINTF(4, 5);

/* Clears e to RQD_OK with empty field and message. */
void rqd_err_clear(rqd_err *e);

/* A short constant name for a code: "invalid_argument", "not_found", ... */
const char *rqd_strerror(int code);

#endif
