/* bench/bare_mhd.c: the floor under redqd's HTTP numbers. A libmicrohttpd server with the
 * flags of api/http.c (internal polling thread, a pool of 4 threads, MHD_USE_AUTO) that
 * reads every request body and answers every POST with a fixed JSON body the size of an
 * act answer. bench/bench_http.sh runs the same wrk load against it and against
 * POST /v1/agents/NAME/act; the ratio is what redqd's routing, parsing, acting and JSON
 * writing cost.
 *
 *   bare_mhd PORT        (listens on 127.0.0.1:PORT until SIGINT or SIGTERM)
 *
 * Links only libmicrohttpd:  gcc -O2 bare_mhd.c $(pkg-config --cflags --libs libmicrohttpd)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_sigmask, sigwait */
#endif
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An act answer for act_dim 1, as redqd writes it. */
static const char ANSWER[] = "{\"action\":[0.123456789],\"policy_version\":12345}";

typedef struct {
    size_t body_bytes; /* read and dropped, as redqd reads the body before acting */
} req_ctx;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *data, size_t *size, void **req_cls)
{
    (void)cls;
    (void)url;
    (void)version;
    (void)data;
    req_ctx *r = *req_cls;
    if (r == NULL) { /* first call: headers only */
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        *req_cls = r;
        return MHD_YES;
    }
    if (*size != 0) {
        r->body_bytes += *size;
        *size = 0;
        return MHD_YES;
    }
    unsigned status = strcmp(method, "POST") == 0 ? MHD_HTTP_OK : MHD_HTTP_METHOD_NOT_ALLOWED;
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        sizeof ANSWER - 1, (void *)ANSWER, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    free(*req_cls);
    *req_cls = NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "bare_mhd: bad port %s\n", argv[1]);
        return 2;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* MHD's threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, on_request, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)4,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "bare_mhd: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    fprintf(stderr, "bare_mhd: listening on 127.0.0.1:%d\n", port);
    int sig = 0;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
