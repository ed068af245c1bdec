/* daemon/notify.c: sd_notify without libsystemd: a datagram to $NOTIFY_SOCKET ('@' is
 * the abstract namespace). */
#include "notify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

void rqd_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t n;

    if (path == NULL || path[0] == '\0')
        return;
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) {
        LOG(LOG_DEBUG, "NOTIFY_SOCKET is not a usable path");
        return;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        LOG(LOG_DEBUG, "sd_notify failed");
    close(fd);
}

unsigned long long rqd_notify_watchdog_usec(void)
{
    const char *u = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (u == NULL)
        return 0;
    if (pid && strtol(pid, NULL, 10) != (long)getpid())
        return 0;
    return strtoull(u, NULL, 10);
}
