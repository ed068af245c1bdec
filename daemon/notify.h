/* daemon/notify.h: the sd_notify protocol (STYLE R13): a no-op without NOTIFY_SOCKET. */
#ifndef RQD_NOTIFY_H
#define RQD_NOTIFY_H

/* Sends one datagram ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1"); failures
 * are logged at debug level, never fatal. */
void rqd_notify(const char *msg);
/* Microseconds of WATCHDOG_USEC for this process, or 0. */
unsigned long long rqd_notify_watchdog_usec(void);

#endif
