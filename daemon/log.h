/* daemon/log.h: the one logger (STYLE R14): leveled, format-checked, free when
 * filtered, journald-aware. redq/ and storage/ never log; their callers do. */
#ifndef RQD_LOG_H
#define RQD_LOG_H

#include "../common/rqd_attrs.h"

enum { LOG_ERR = 3, LOG_WARNING = 4, LOG_NOTICE = 5, LOG_INFO = 6, LOG_DEBUG = 7 };

extern int rqd_log_level;

/* Parses "error", "warning", "notice", "info" or "debug"; -1 if unknown. */
int rqd_log_parse_level(const char *s);
/* Under systemd (JOURNAL_STREAM set) lines get a "<N>" prefix and no timestamp. */
void rqd_log_init(void);
void rqd_logf(int level, const char *fmt, ...) RQD_PRINTF(2, 3);

#define LOG(level, ...)                                                                       \
    do {                                                                                      \
        if ((level) <= rqd_log_level)                                                         \
            rqd_logf((level), __VA_ARGS__);                                                   \
    } while (0)

#endif
