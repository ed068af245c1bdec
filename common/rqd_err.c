/* common/rqd_err.c: filling rqd_err and naming its codes. */
#include "rqd_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int rqd_err_set(rqd_err *e, int code, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return code;
    e->code = code;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

void rqd_err_clear(rqd_err *e)
{
    if (e == NULL)
        return;
    memset(e, 0, sizeof *e);
}

const char *rqd_strerror(int code)
{
    switch (code) {
    case RQD_OK: return "ok";
    case RQD_EINVAL: return "invalid_argument";
    case RQD_ENOTFOUND: return "not_found";
    case RQD_EEXIST: return "already_exists";
    case RQD_ECONFLICT: return "conflict";
    case RQD_ETOOBIG: return "payload_too_large";
    case RQD_EBUSY: return "busy";
    case RQD_EUNAVAIL: return "unavailable";
    case RQD_EAGAIN: return "unavailable";
    case RQD_ENOMEM: return "out_of_memory";
    case RQD_EIO: return "io_error";
    default: return "internal";
    }
}
