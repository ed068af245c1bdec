/* daemon/datadir.h: the data directory: created with its parents, and held by one daemon
 * at a time (an flock on <dir>/redqd.lock, which the kernel releases when the holder
 * dies, SIGKILL included, so a crash never leaves a stale lock). */
#ifndef RQD_DATADIR_H
#define RQD_DATADIR_H

#include "../common/rqd_err.h"

/* Creates dir (and its parents) if missing and takes its lock; *fd_out holds it until
 * the process exits (or rqd_datadir_release). RQD_EUNAVAIL naming the directory and
 * the PID of the daemon that holds it; RQD_EIO when it cannot be created or locked. */
int rqd_datadir_take(const char *dir, int *fd_out, rqd_err *err);
void rqd_datadir_release(int fd);

#endif
