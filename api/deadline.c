/* api/deadline.c: whole-request deadlines, against clients that send a request a byte at
 * a time (slowloris).
 *
 * libmicrohttpd's --connection-timeout only closes a connection that has been silent that
 * long; a client that trickles one byte every few seconds keeps it forever. So each
 * request carries a deadline, as with Apache's mod_reqtimeout (and slow readers one too):
 *
 *   - once the first bytes of a request arrive (or of the TLS handshake), its request
 *     line and headers must be complete within --request-header-timeout;
 *   - the body then has that long again, plus one second per --min-transfer-rate bytes
 *     received (--min-transfer-rate), so an upload of any size goes through as long as
 *     it keeps that rate;
 *   - once the body is complete there is no deadline while the request is handled,
 *     however long it waits for training (sync posts, train calls);
 *   - once the answer is queued, it must be taken at that rate too: the same grace, plus
 *     one second per --min-transfer-rate bytes the client has acknowledged (a client
 *     that reads a large answer a byte at a time holds its buffers and connection).
 *
 * A connection with no request under way (just accepted, or kept alive after an answer)
 * has no deadline: the idle timeout is for it. MHD does not say when the bytes of a
 * request begin to arrive, nor how much of an answer the client took, so the main
 * loop's 1 s tick (api_deadline_reap) asks the kernel (TCP_INFO: the time since data
 * last arrived, the bytes the client acknowledged); a request is thus given between its
 * deadline and a second more.
 *
 * A late connection's socket is shut down; MHD then sees the connection end and closes
 * it in its own thread, the only safe way to close an MHD connection from outside. A
 * socket is only touched under the list's mutex, and MHD reports a connection closed
 * (and it leaves the list) before it closes the descriptor, so the descriptor shut down
 * is never one reused by a newer connection.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../daemon/log.h"
#include "internal.h"

enum { PHASE_IDLE, PHASE_HEADERS, PHASE_BODY, PHASE_HANDLING, PHASE_SENDING };

struct api_conn {
    struct api_conn *prev, *next;
    int fd;
    int phase;
    double idle_from;           /* PHASE_IDLE: since when (accept, or the last answer) */
    double deadline;            /* PHASE_HEADERS and PHASE_BODY: monotonic seconds */
    double body_from;           /* when the headers were complete */
    long long body_bytes;       /* received so far */
    double send_from;           /* PHASE_SENDING: when its rate was first measured, or 0 */
    unsigned long long acked0;  /* the client's acknowledged bytes then */
    char peer[48];              /* for the log */
};

struct api_deadlines {
    pthread_mutex_t mu;
    api_conn *head;
    double header_s;            /* --request-header-timeout */
    double min_rate;            /* --min-transfer-rate, bytes/s; 0 = no rate rule */
};

int api_deadline_init(api_server *s, int header_timeout, long long min_rate)
{
    api_deadlines *d = calloc(1, sizeof *d);
    if (d == NULL)
        return RQD_ENOMEM;
    pthread_mutex_init(&d->mu, NULL);
    d->header_s = header_timeout;
    d->min_rate = (double)min_rate;
    s->deadlines = d;
    return RQD_OK;
}

void api_deadline_free(api_server *s)
{
    api_deadlines *d = s->deadlines;
    if (d == NULL)
        return;
    /* MHD is stopped: every connection was reported closed and left the list. */
    pthread_mutex_destroy(&d->mu);
    free(d);
    s->deadlines = NULL;
}

static void peer_name(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, cap, "?");
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, out,
                  (socklen_t)cap);
}

void api_deadline_on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                                enum MHD_ConnectionNotificationCode code)
{
    api_server *s = cls;
    api_deadlines *d = s->deadlines;
    api_conn *c = *socket_ctx;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL || (c = calloc(1, sizeof *c)) == NULL)
            return; /* untracked: only the idle timeout applies to it */
        c->fd = ci->connect_fd;
        peer_name(conn, c->peer, sizeof c->peer);
        c->phase = PHASE_IDLE;
        c->idle_from = rqd_mono();
        pthread_mutex_lock(&d->mu);
        c->next = d->head;
        if (d->head)
            d->head->prev = c;
        d->head = c;
        pthread_mutex_unlock(&d->mu);
        *socket_ctx = c;
        return;
    }
    if (c == NULL) /* MHD_CONNECTION_NOTIFY_CLOSED of an untracked one */
        return;
    pthread_mutex_lock(&d->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&d->mu);
    free(c);
    *socket_ctx = NULL;
}

api_conn *api_deadline_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Moves c to phase, starting that phase's clock. */
static void enter(api_server *s, api_conn *c, int phase)
{
    api_deadlines *d = s->deadlines;
    if (c == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    double now = rqd_mono();
    c->phase = phase;
    if (phase == PHASE_BODY) {
        c->body_from = now;
        c->body_bytes = 0;
        c->deadline = now + d->header_s;
    } else if (phase == PHASE_IDLE) {
        c->idle_from = now;
    } else if (phase == PHASE_SENDING) {
        c->send_from = 0; /* measured from the next tick: no syscall on the answer's path */
        if (d->min_rate <= 0)
            c->phase = PHASE_HANDLING;
    }
    pthread_mutex_unlock(&d->mu);
}

void api_deadline_headers_done(api_server *s, api_conn *c) { enter(s, c, PHASE_BODY); }
void api_deadline_clear(api_server *s, api_conn *c) { enter(s, c, PHASE_HANDLING); }
void api_deadline_next_request(api_server *s, api_conn *c) { enter(s, c, PHASE_IDLE); }
void api_deadline_answer_queued(api_server *s, api_conn *c) { enter(s, c, PHASE_SENDING); }

void api_deadline_body(api_server *s, api_conn *c, size_t n)
{
    api_deadlines *d = s->deadlines;
    if (c == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    c->body_bytes += (long long)n;
    if (c->phase == PHASE_BODY && d->min_rate > 0)
        c->deadline = c->body_from + d->header_s + (double)c->body_bytes / d->min_rate;
    else if (c->phase == PHASE_BODY)
        c->phase = PHASE_HANDLING; /* no rate rule: the body may take its time */
    pthread_mutex_unlock(&d->mu);
}

static int tcp_info_of(int fd, struct tcp_info *ti)
{
    socklen_t len = sizeof *ti;
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) == 0 && len >= sizeof *ti ? 0 : -1;
}

/* Whether the kernel received data on fd after `since` (monotonic seconds). TCP_INFO
 * counts milliseconds in jiffies (4 ms at HZ=250), hence 10 ms of slack. */
static int data_since(int fd, double since, double now)
{
    struct tcp_info ti;
    if (tcp_info_of(fd, &ti) < 0)
        return 0; /* not TCP, or gone: the idle timeout still applies */
    return (double)ti.tcpi_last_data_recv * 1e-3 + 0.01 < now - since;
}

/* PHASE_SENDING: the deadline from the bytes the client acknowledged since the first
 * tick of the phase. */
static void sending_deadline(const api_deadlines *d, api_conn *c, double now)
{
    struct tcp_info ti;
    if (tcp_info_of(c->fd, &ti) < 0) {
        c->phase = PHASE_HANDLING; /* cannot tell: left to the idle timeout */
        return;
    }
    if (c->send_from == 0) {
        c->send_from = now;
        c->acked0 = ti.tcpi_bytes_acked;
    }
    c->deadline = c->send_from + d->header_s +
                  (double)(ti.tcpi_bytes_acked - c->acked0) / d->min_rate;
}

int api_deadline_reap(api_server *s)
{
    api_deadlines *d = s ? s->deadlines : NULL;
    int n = 0;
    if (d == NULL)
        return 0;
    double now = rqd_mono();
    pthread_mutex_lock(&d->mu);
    for (api_conn *c = d->head; c; c = c->next) {
        if (c->phase == PHASE_IDLE && data_since(c->fd, c->idle_from, now)) {
            c->phase = PHASE_HEADERS; /* a request has begun to arrive */
            c->deadline = now + d->header_s;
        }
        if (c->phase == PHASE_SENDING)
            sending_deadline(d, c, now);
        if (c->phase == PHASE_IDLE || c->phase == PHASE_HANDLING || now < c->deadline)
            continue;
        LOG(LOG_INFO, "closed a slow connection from %s: %s not complete in time", c->peer,
            c->phase == PHASE_SENDING ? "the answer taken" : c->phase == PHASE_BODY
                                                                  ? "the request body"
                                                                  : "the request headers");
        /* Once: MHD may take a moment to notice, and the socket is gone for good. No
         * linger: MHD's close() then resets the connection at once instead of
         * delivering the answer still queued to a client that does not read it. */
        c->phase = PHASE_HANDLING;
        struct linger abort_close = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
        shutdown(c->fd, SHUT_RDWR);
        n++;
    }
    pthread_mutex_unlock(&d->mu);
    atomic_fetch_add(&s->slow_closed, n);
    return n;
}
