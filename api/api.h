/* api/api.h: the HTTP server (libmicrohttpd) serving API.md over the registry. */
#ifndef API_H
#define API_H

#include "../common/rqd_err.h"
#include "../daemon/registry.h"
#include "../daemon/settings.h"

typedef struct api_server api_server;

typedef struct {
    const char *bind;
    int port;
    int threads;
    long long max_body;
    long long max_import;
    const char *token_file;   /* "" = no authentication */
    int max_connections;
    int connection_timeout;
    int sync_timeout;
    const char *tls_cert;     /* "" = plain HTTP */
    const char *tls_key;
    int max_per_ip;           /* connections from one address; 0 = no such limit */
    int header_timeout;       /* seconds to send a request's line and headers */
    long long min_transfer_rate;/* bytes/s of bodies and answers; 0 = no such rule */
    int max_waiting;          /* requests suspended at once (offloaded or waiting) */
    const char *node;         /* this node's name */
    const rqd_peer *peers;    /* the cluster's nodes (--peers; may list this one) */
    int n_peers;
    int peer_timeout_ms;      /* how long a cluster-wide answer waits for a node */
} api_opts;

/* Starts the HTTP server: HTTPS only when tls_cert and tls_key are both set (their PEM
 * files are read now and kept until api_free), plain HTTP when neither is. Refuses with
 * RQD_EINVAL for one without the other, an unreadable or non-PEM file, or a libmicrohttpd
 * without TLS; with RQD_EIO when it cannot listen or GnuTLS refuses the pair. */
int api_start(const api_opts *o, rqd_registry *reg, api_server **out, rqd_err *err);
/* New requests answer 503 unavailable from now on. */
void api_stop_accepting(api_server *s);
/* Ends every wait for training (those requests answer 503), lets the offloaded requests
 * in progress finish, and returns once no connection is suspended: MHD forbids stopping
 * the daemon with a suspended connection. */
void api_resume_all(api_server *s);
/* Closes the connections past their request deadline (api/deadline.c); returns how
 * many. Called every second by the main loop. */
int api_deadline_reap(api_server *s);
/* Rereads the token file (SIGHUP); on failure the old token stays. */
int api_reload_token(api_server *s, rqd_err *err);
void api_free(api_server *s); /* stops the HTTP daemon; NULL is a no-op */

#endif
