/* daemon/datadir.c: one daemon per data directory (datadir.h). Two daemons on one
 * database would both reload every agent, train them, and checkpoint into each other's
 * rows at shutdown; SQLite's own locking cannot stop that, as each transaction is valid
 * on its own. */
#include "datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p: each missing component of dir, mode 0750. */
static int make_dirs(const char *dir, rqd_err *err)
{
    char path[1024];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return rqd_err_set(err, RQD_EINVAL, "data_dir", "--data-dir is longer than %zu bytes",
                           sizeof path - 1);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0750) < 0 && errno != EEXIST)
            return rqd_err_set(err, RQD_EIO, "data_dir", "cannot create the data directory "
                               "%s: %s", path, strerror(errno));
        *p = c;
        if (c == '\0')
            break;
    }
    return RQD_OK;
}

int rqd_datadir_take(const char *dir, int *fd_out, rqd_err *err)
{
    char lock[1100], pid[32] = "";
    int rc = make_dirs(dir, err), fd = -1;
    *fd_out = -1;
    if (rc < 0)
        return rc;
    snprintf(lock, sizeof lock, "%s/redqd.lock", dir);
    if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) < 0)
        return rqd_err_set(err, RQD_EIO, "data_dir", "cannot open %s: %s", lock,
                           strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        ssize_t n = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
        close(fd);
        if (e != EWOULDBLOCK)
            return rqd_err_set(err, RQD_EIO, "data_dir", "cannot lock %s: %s", lock,
                               strerror(e));
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        return rqd_err_set(err, RQD_EUNAVAIL, "data_dir", "the data directory %s is in use by "
                           "another redqd (PID %s); one daemon per data directory: stop it, "
                           "or give this one another --data-dir", dir, pid[0] ? pid : "unknown");
    }
    /* The holder's PID, for the message above and for operators (cat redqd.lock). */
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* The lock is held all the same; only the message of a second daemon suffers. */
    }
    *fd_out = fd;
    return RQD_OK;
}

void rqd_datadir_release(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the last descriptor releases the flock */
}
