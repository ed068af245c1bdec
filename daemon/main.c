/* daemon/main.c: the composition root. Reads the settings, opens the registry (database,
 * agents, writer, trainers), starts the HTTP server, and runs the libuv loop that owns
 * signals and timers; rqd_shutdown() is the one shutdown order (STYLE R12).
 *
 * THREADS
 * -------
 * main thread    the uv loop: signals, the 1 s timer (stats flush, waiter deadlines,
 *                request deadlines, malloc_trim, watchdog), the prune timer (every
 *                RQD_PRUNE_TICK_MS: posts the pruning jobs that are due, daemon/prune.c),
 *                the progress timer. No request work.
 * HTTP threads   MHD's pool (api/http.c).
 * trainers       daemon/trainer.c; writer: daemon/writer.c.
 */
#include <cblas.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../api/api.h"
#include "datadir.h"
#include "log.h"
#include "notify.h"
#include "registry.h"
#include "settings.h"

typedef struct {
    rqd_settings set;
    rqd_registry *reg;
    api_server *api;
    uv_loop_t *loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t tick, progress, prune;
    uv_async_t prune_now;       /* a pruning job left work (the writer thread sends it) */
    int stopping;
    int watchdog_every;         /* ticks between WATCHDOG=1, 0 = none */
    int ticks;
} rqd;

/* Memory is given back after a burst of large requests. glibc serves a block of 128 KiB
 * or more from a mapping of its own, unmapped when freed, but raises that threshold to
 * the size of every such block freed (up to 32 MiB): after one 16 MiB body, the next
 * bodies and their float arrays come from the heap, whose free pages stay with the
 * process. Four 16 MiB acts at once took RSS from 10 to 71 MiB and left it there. A fixed
 * threshold (which also fixes the trim threshold) keeps every large block in a mapping
 * of its own; the 1 s tick's malloc_trim returns the free pages the arenas keep of the
 * small ones (cJSON's nodes). Measured by tests/integration/test_input.py: back to the
 * baseline within a tick. Fewer arenas (M_ARENA_MAX 2) changed nothing measurable. */
static void rqd_memory_setup(void)
{
    if (mallopt(M_MMAP_THRESHOLD, 128 * 1024) != 1)
        LOG(LOG_WARNING, "mallopt(M_MMAP_THRESHOLD) failed: memory may stay high after bursts");
}

static void rqd_shutdown(rqd *d)
{
    rqd_notify("STOPPING=1\nSTATUS=Stopping: finishing requests, checkpointing agents");
    LOG(LOG_NOTICE, "shutting down: new requests get 503, checkpointing every agent");
    api_stop_accepting(d->api);        /* new work answers 503 unavailable */
    rqd_registry_refuse_waits(d->reg); /* and no new wait for training begins */
    api_resume_all(d->api);            /* before MHD_stop_daemon, always */
    rqd_registry_shutdown(d->reg);     /* trainers finish their chunk; checkpoints; writer */
    api_free(d->api);                  /* in-flight requests have finished */
    d->api = NULL;
    rqd_registry_free(d->reg);
    d->reg = NULL;
    LOG(LOG_NOTICE, "stopped cleanly");
}

static void on_second_signal(int signum)
{
    static const char msg[] = "redqd: second signal: exiting immediately\n";
    (void)signum;
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(1);
}

static void on_signal(uv_signal_t *h, int signum)
{
    rqd *d = h->data;
    if (signum == SIGHUP) {
        rqd_err err = {0};
        if (api_reload_token(d->api, &err) < 0)
            LOG(LOG_ERR, "SIGHUP: %s; keeping the old token", err.msg);
        else
            LOG(LOG_NOTICE, "SIGHUP: token reloaded");
        return;
    }
    if (d->stopping) { /* a second signal: exit at once; SQLite's WAL keeps what committed */
        LOG(LOG_WARNING, "second signal: exiting immediately");
        _exit(1);
    }
    d->stopping = 1;
    /* rqd_shutdown runs on this loop thread for seconds: the loop will not see another
     * signal, so the second one is handled in signal context (write and _exit only;
     * everything acknowledged is already committed). */
    uv_signal_stop(&d->sig_term);
    uv_signal_stop(&d->sig_int);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_second_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    uv_timer_stop(&d->tick);
    uv_timer_stop(&d->progress);
    uv_timer_stop(&d->prune);
    rqd_shutdown(d);
    uv_stop(d->loop);
}

static void on_tick(uv_timer_t *t)
{
    rqd *d = t->data;
    rqd_registry_flush_stats(d->reg);
    rqd_registry_wake_waiters(d->reg, 1, 0.0 + (double)uv_hrtime() * 1e-9);
    api_deadline_reap(d->api);
    malloc_trim(0); /* rqd_memory_setup says why */
    if (d->watchdog_every && ++d->ticks % d->watchdog_every == 0)
        rqd_notify("WATCHDOG=1");
}

/* Faster than the 1 s tick: one job per agent deletes at most RQD_PRUNE_ROWS rows, and an
 * agent that ingests tens of thousands of transitions a second needs several a second to
 * keep its stored ring at buffer_size (rqd_limits.h). A tick with nothing due reads a few
 * fields under each agent's leaf lock. */
static void on_prune(uv_timer_t *t)
{
    rqd *d = t->data;
    rqd_registry_prune(d->reg);
}

static void on_prune_now(uv_async_t *h)
{
    rqd *d = h->data;
    if (!d->stopping && d->reg != NULL) /* may be delivered after the shutdown */
        rqd_registry_prune(d->reg);
}

static void wake_pruner(void *arg)
{
    uv_async_send(arg);
}

/* The loader thread, once every agent is loaded. */
static void on_loaded(void *arg, int n)
{
    (void)arg;
    (void)n;
    rqd_notify("READY=1\nSTATUS=Serving");
}

static void on_progress(uv_timer_t *t)
{
    rqd *d = t->data;
    char status[160];
    int loading = rqd_registry_loading(d->reg), n = rqd_registry_count(d->reg);
    rqd_registry_log_progress(d->reg);
    if (loading > 0) { /* READY=1 waits for them: keep TimeoutStartSec from running out */
        snprintf(status, sizeof status, "STATUS=Serving; loading agents (%d of %d left)\n"
                 "EXTEND_TIMEOUT_USEC=30000000", loading, n);
        LOG(LOG_INFO, "loading agents: %d of %d left", loading, n);
    } else {
        snprintf(status, sizeof status, "STATUS=Serving %d agents", n);
    }
    rqd_notify(status);
}

int main(int argc, char **argv)
{
    static rqd d;
    rqd_err err = {0};
    char db[600];
    int rc;

    rqd_log_init();
    if ((rc = rqd_settings_load(&d.set, argc, argv, &err)) != 0) {
        if (rc == 1)
            return 0;
        fprintf(stderr, "redqd: %s\n", err.msg);
        return 2;
    }
    rqd_log_level = d.set.log_level;
    rqd_memory_setup();
    /* Signals are caught from here on, before anything listens: a SIGTERM that comes as
     * soon as the first request is answered waits for the loop and shuts down cleanly. */
    d.loop = uv_default_loop();
    uv_signal_init(d.loop, &d.sig_term);
    uv_signal_init(d.loop, &d.sig_int);
    uv_signal_init(d.loop, &d.sig_hup);
    d.sig_term.data = d.sig_int.data = d.sig_hup.data = &d;
    uv_signal_start(&d.sig_term, on_signal, SIGTERM);
    uv_signal_start(&d.sig_int, on_signal, SIGINT);
    uv_signal_start(&d.sig_hup, on_signal, SIGHUP);
    signal(SIGPIPE, SIG_IGN);

    /* Trainers call OpenBLAS single-threaded; parallelism comes from agents. */
    openblas_set_num_threads(1);
    LOG(LOG_INFO, "OpenBLAS: %s, %d thread(s)", openblas_get_config(), openblas_get_num_threads());
    int lock_fd; /* held until exit: one daemon per data directory */
    if (rqd_datadir_take(d.set.data_dir, &lock_fd, &err) < 0) {
        LOG(LOG_ERR, "%s", err.msg);
        return 1;
    }
    snprintf(db, sizeof db, "%s/redqd.db", d.set.data_dir);
    rqd_notify("STATUS=Checking the database and listing agents");
    rqd_registry_opts ro = {db, d.set.sqlite_full, d.set.trainer_threads, d.set.max_agents,
                            d.set.max_db_size, d.set.sqlite_max_length, d.set.limits};
    if (rqd_registry_open(&ro, &d.reg, &err) < 0) {
        LOG(LOG_ERR, "cannot open %s: %s", db, err.msg);
        return 1;
    }
    api_opts ao = {d.set.bind, d.set.port, d.set.http_threads, d.set.max_body, d.set.max_import,
                   d.set.token_file, d.set.max_connections, d.set.connection_timeout,
                   d.set.sync_timeout, d.set.tls_cert, d.set.tls_key, d.set.max_per_ip,
                   d.set.header_timeout, d.set.min_transfer_rate, d.set.max_waiting,
                   d.set.node, d.set.peers, d.set.n_peers, d.set.peer_timeout_ms};
    if (api_start(&ao, d.reg, &d.api, &err) < 0) {
        LOG(LOG_ERR, "%s", err.msg);
        rqd_registry_shutdown(d.reg);
        rqd_registry_free(d.reg);
        return 1;
    }
    LOG(LOG_NOTICE, "redqd listening on %s://%s:%d (data %s, %d agents, %d trainer threads%s)",
        d.set.tls_cert[0] ? "https" : "http", d.set.bind, d.set.port, db, rqd_registry_count(d.reg), d.set.trainer_threads,
        d.set.token_file[0] ? ", token required" : "");

    uv_timer_init(d.loop, &d.tick);
    uv_timer_init(d.loop, &d.progress);
    uv_timer_init(d.loop, &d.prune);
    d.tick.data = d.progress.data = d.prune.data = &d;
    unsigned long long wd = rqd_notify_watchdog_usec();
    if (wd > 0) /* every half of WatchdogSec, in 1 s ticks */
        d.watchdog_every = (int)(wd / 2000000ULL) > 0 ? (int)(wd / 2000000ULL) : 1;
    uv_timer_start(&d.tick, on_tick, 1000, 1000);
    uv_timer_start(&d.progress, on_progress, 10000, 10000);
    uv_timer_start(&d.prune, on_prune, RQD_PRUNE_TICK_MS, RQD_PRUNE_TICK_MS);
    uv_async_init(d.loop, &d.prune_now, on_prune_now);
    d.prune_now.data = &d;
    rqd_registry_on_prune_work(d.reg, wake_pruner, &d.prune_now);
    /* The agents load while the daemon serves (those not loaded yet answer 503 "loading");
     * systemd hears READY=1 once all have. */
    if (rqd_registry_load(d.reg, on_loaded, &d, &err) < 0) {
        LOG(LOG_ERR, "%s", err.msg);
        rqd_shutdown(&d);
        return 1;
    }
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&d.sig_term, NULL);
    uv_close((uv_handle_t *)&d.sig_int, NULL);
    uv_close((uv_handle_t *)&d.sig_hup, NULL);
    uv_close((uv_handle_t *)&d.tick, NULL);
    uv_close((uv_handle_t *)&d.progress, NULL);
    uv_close((uv_handle_t *)&d.prune, NULL);
    uv_close((uv_handle_t *)&d.prune_now, NULL);
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    return 0;
}
