/* daemon/settings.h: the daemon's settings (STYLE R15): one table gives the flags, the
 * REDQD_* environment variables, the config file keys, defaults, bounds and --help. */
#ifndef RQD_SETTINGS_H
#define RQD_SETTINGS_H

#include <stddef.h>

#include "../common/rqd_err.h"
#include "../common/rqd_limits.h"

/* One node of a cluster (--peers "a=http://10.0.0.1:8470,b=..."), docs/operations.md
 * "Running several nodes". */
typedef struct {
    char name[RQD_MAX_NODE_NAME + 1];  /* [A-Za-z0-9][A-Za-z0-9_.-]*, unique in the list */
    char url[256];                     /* http://host:port or https://host:port, no path */
} rqd_peer;

typedef struct {
    char bind[64];
    int port;
    char data_dir[512];
    int http_threads;
    int trainer_threads;
    long long max_body;
    long long max_import;
    int log_level;
    char token_file[512];
    int sqlite_full;          /* --sqlite-sync full */
    int max_agents;
    int max_connections;
    int connection_timeout;   /* seconds of silence before a connection is closed */
    int max_per_ip;           /* connections from one address; 0 = no such limit */
    int header_timeout;       /* seconds to send a request line and headers */
    long long min_transfer_rate;/* bytes/s a body must keep arriving at; 0 = no rule */
    int sync_timeout;         /* seconds a sync/train request may wait for training */
    int max_waiting;          /* requests suspended at once (offloaded or waiting) */
    char config_file[512];
    char tls_cert[512];       /* PEM certificate chain; with tls_key: HTTPS */
    char tls_key[512];        /* PEM private key */
    long long max_db_size;    /* bytes the database may grow to; 0 = unlimited */
    long long sqlite_max_length;/* SQLite's limit on one value's bytes */
    char node[RQD_MAX_NODE_NAME + 1]; /* this node's name (--node; default: the host name) */
    char peers_text[4096];    /* --peers as given */
    rqd_peer peers[RQD_MAX_PEERS]; /* parsed; this node's own entry included when listed */
    int n_peers;
    int peer_timeout_ms;      /* a cluster-wide answer waits this long for each node */
    rqd_limits limits;        /* what a request may create (--max-obs-dim, ...) */
} rqd_settings;

/* Fills s from defaults, then the config file (--config or REDQD_CONFIG), then REDQD_*,
 * then argv. Returns 0, 1 when --help/--version was printed (exit 0), or RQD_EINVAL with
 * err naming the setting and its source. */
int rqd_settings_load(rqd_settings *s, int argc, char **argv, rqd_err *err);

#endif
