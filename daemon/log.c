/* daemon/log.c: stderr logging, one line per call, safe from any thread (one fprintf
 * per line under stdio's lock). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rqd_clock.h" /* rqd_now_rfc3339: the one timestamp format */

int rqd_log_level = LOG_INFO;
static int under_journal;

static const char *const names[] = {"", "", "", "error", "warning", "notice", "info", "debug"};

int rqd_log_parse_level(const char *s)
{
    for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void rqd_log_init(void)
{
    under_journal = getenv("JOURNAL_STREAM") != NULL;
}

void rqd_logf(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (under_journal) {
        fprintf(stderr, "<%d>%s\n", level, msg);
        return;
    }
    char when[32];
    rqd_now_rfc3339(when);
    fprintf(stderr, "%s %-7s %s\n", when, names[level], msg);
}
