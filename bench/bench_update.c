/* bench/bench_update.c: critic updates per second of the REDQ core (build/bench_update).
 *
 * Mirrors bench/torch_redq_ref.py so that the two can be compared on one
 * machine in one run (bench/run_bench.sh): the same configurations, Tianshou's
 * mujoco_redq.py hyper-parameters with alpha "auto", a replay buffer of 20000 random
 * transitions, and the rate timed over whole cycles of actor_delay updates so that the
 * actor step is amortised exactly 1/actor_delay, as the reference does.
 *
 * Modes (the parallelism the daemon can use on a 2-core machine):
 *   single   one agent, serial exec, one thread
 *   splitK   one agent whose update spreads ensemble members over an rqd_pool of K threads
 *   agentsK  K agents, each updated by its own thread with serial exec
 * split2 and agents2 are the ones run_bench.sh asks for.
 *
 * Usage: bench_update [--config NAME ...] [--mode MODE ...] [--min-time S] [--repeats R]
 *                     [--warmup S] [--act-time S]
 * Output: one JSON line per (config, mode) on stdout, progress on stderr. Exit status 1
 * if the core returned an error, 2 on bad usage, 3 if a loss came out non-finite.
 *
 * OpenBLAS runs single-threaded (openblas_set_num_threads(1) before any GEMM): all
 * parallelism here is the pool's or the agents' threads, as in the daemon.
 *
 * THREADS
 * -------
 * main() runs single and splitK on its own thread (the pool adds K-1 workers). agentsK
 * starts K threads, each owning one agent for its whole life; they meet at a barrier
 * before the warm-up and before every timed repeat so that the repeats overlap.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../daemon/pool.h"
#include "../redq/redq.h"

/* ------------------------------------------------------------------ what is measured */

/* torch_redq_ref.py CONFIGS: (obs, act, hidden x 2, ensemble N, subset M, batch). */
typedef struct {
    const char *name;
    int obs, act, hidden, ensemble, subset, batch;
} bench_cfg;

static const bench_cfg CONFIGS[] = {
    {"pendulum", 3, 1, 256, 10, 2, 256},
    {"halfcheetah", 17, 6, 256, 10, 2, 256},
    {"humanoid", 376, 17, 256, 10, 2, 256},
    {"small", 3, 1, 64, 4, 2, 64},
};
#define NCONFIGS (int)(sizeof CONFIGS / sizeof CONFIGS[0])

/* torch_redq_ref.py HYPER. */
#define ACTOR_DELAY 20
#define BUFFER_ROWS 20000
#define MAX_REPEATS 1000
#define MAX_AGENTS 64

typedef struct {
    char name[16];
    int threads; /* pool threads per agent (single: 1) */
    int agents;  /* agents updated at once, one thread each */
} bench_mode;

typedef struct {
    const bench_cfg *cfg[NCONFIGS];
    int ncfg;
    bench_mode mode[8];
    int nmode;
    double min_time, warmup, act_time;
    int repeats;
} bench_opts;

/* One agent's measurements over the repeats. */
typedef struct {
    double upd_s[MAX_REPEATS];   /* seconds per update, one per repeat */
    double load[MAX_REPEATS];    /* other processes' CPU share during it, -1 unknown */
    double ups_median, ups_best;
    redq_stats last;             /* of the last redq_agent_update call */
    redq_info info;
    int failed;                  /* the core returned an error (printed) */
} agent_result;

typedef struct {
    double median_us, min_us, mean_us, p99_us;
    long calls;
} act_result;

/* ------------------------------------------------------------------ small helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Median of n values (sorts a copy). */
static double median(const double *v, int n)
{
    double tmp[MAX_REPEATS];
    memcpy(tmp, v, sizeof(double) * (size_t)n);
    qsort(tmp, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

static double min_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

/* Busy CPU seconds of the machine (from /proc/stat, -1 if unreadable) and of this
 * process, for the same noise indicator as torch_redq_ref.py's other_cpu_load. */
static void cpu_seconds(double *machine, double *self)
{
    unsigned long long v[8] = {0};
    struct rusage ru;
    FILE *f = fopen("/proc/stat", "r");

    *machine = -1;
    if (f != NULL) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8)
            *machine = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
                       (double)sysconf(_SC_CLK_TCK);
        fclose(f);
    }
    getrusage(RUSAGE_SELF, &ru);
    *self = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
            (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static double other_load(double m0, double s0, double m1, double s1, double dt)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (m0 < 0 || m1 < 0 || dt <= 0)
        return -1;
    double l = ((m1 - m0) - (s1 - s0)) / (dt * (double)(ncpu > 0 ? ncpu : 1));
    return l < 0 ? 0 : l; /* clock-tick granularity */
}

/* A value for JSON: non-finite numbers become null. */
static void json_num(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v))
        fprintf(f, "\"%s\":%.6g%s", key, v, comma ? "," : "");
    else
        fprintf(f, "\"%s\":null%s", key, comma ? "," : "");
}

static void json_list(FILE *f, const char *key, const double *v, int n, double scale, int comma)
{
    fprintf(f, "\"%s\":[", key);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.4f", i ? "," : "", v[i] * scale);
    fprintf(f, "]%s", comma ? "," : "");
}

static const char *cpu_model(char *buf, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(buf, len, "unknown");
    if (f == NULL)
        return buf;
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(buf, len, "%s", colon + 2);
            buf[strcspn(buf, "\n\"\\")] = '\0'; /* one line, nothing to escape */
            break;
        }
    }
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------------ random data */

/* splitmix64: the bench's own generator (STYLE R20: no rand()). */
typedef struct {
    uint64_t s;
} bench_rng;

static uint64_t rng_next(bench_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_uniform(bench_rng *r) /* [0, 1) */
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static float rng_normal(bench_rng *r)
{
    double u = 1.0 - rng_uniform(r), v = rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
}

/* ------------------------------------------------------------------ the agent */

static void make_config(const bench_cfg *bc, uint64_t seed, redq_config *c)
{
    redq_config_default(c, bc->act);
    c->hidden[0] = c->hidden[1] = bc->hidden;
    c->n_hidden = 2;
    c->ensemble_size = bc->ensemble;
    c->subset_size = bc->subset;
    c->batch_size = bc->batch;
    c->gamma = 0.99;
    c->tau = 0.005;
    c->actor_lr = c->critic_lr = 1e-3;
    c->alpha_lr = 3e-4;
    c->actor_delay = ACTOR_DELAY;
    c->alpha_auto = 1;           /* the reference tunes alpha, log_alpha starting at 0 */
    c->alpha = 1.0;
    c->target_entropy = -(double)bc->act;
    c->estimation_step = 1;
    c->buffer_size = BUFFER_ROWS;
    c->start_timesteps = 0;
    c->training = REDQ_TRAIN_MANUAL;
    c->seed = seed;
}

/* BUFFER_ROWS transitions as the reference draws them: obs, next obs and rewards
 * N(0, 1), actions U(-1, 1), 1% terminated. */
static int fill_buffer(redq_agent *a, const bench_cfg *bc, uint64_t seed, rqd_err *err)
{
    enum { CHUNK = 500 };
    const int S = bc->obs, A = bc->act;
    float *obs = malloc(sizeof(float) * CHUNK * (size_t)S);
    float *next = malloc(sizeof(float) * CHUNK * (size_t)S);
    float *act = malloc(sizeof(float) * CHUNK * (size_t)A);
    redq_transition *t = malloc(sizeof *t * CHUNK);
    bench_rng r = {seed ^ 0x5eedda7aULL};
    int rc = RQD_OK;

    if (obs == NULL || next == NULL || act == NULL || t == NULL) {
        rc = rqd_err_set(err, RQD_ENOMEM, "", "out of memory for the random transitions");
        goto out;
    }
    for (int done = 0; done < BUFFER_ROWS && rc == RQD_OK; done += CHUNK) {
        for (int i = 0; i < CHUNK; i++) {
            for (int j = 0; j < S; j++) {
                obs[i * S + j] = rng_normal(&r);
                next[i * S + j] = rng_normal(&r);
            }
            for (int j = 0; j < A; j++)
                act[i * A + j] = (float)(2.0 * rng_uniform(&r) - 1.0);
            t[i] = (redq_transition){.obs = obs + i * S, .action = act + i * A,
                                     .reward = rng_normal(&r), .next_obs = next + i * S,
                                     .terminated = rng_uniform(&r) < 0.01};
        }
        rc = redq_agent_add(a, t, CHUNK, err);
    }
out:
    free(obs);
    free(next);
    free(act);
    free(t);
    return rc;
}

static int make_agent(const bench_cfg *bc, uint64_t seed, redq_agent **out, rqd_err *err)
{
    float low[RQD_MAX_ACT_DIM], high[RQD_MAX_ACT_DIM];
    redq_agent *a = NULL;
    redq_config c;
    int rc;

    for (int j = 0; j < bc->act; j++) {
        low[j] = -1.0f;
        high[j] = 1.0f;
    }
    make_config(bc, seed, &c);
    if ((rc = redq_agent_new(&c, bc->obs, bc->act, low, high, &a, err)) < 0)
        return rc;
    if ((rc = fill_buffer(a, bc, seed, err)) < 0) {
        redq_agent_free(a);
        return rc;
    }
    *out = a;
    return RQD_OK;
}

/* ------------------------------------------------------------------ timing */

/* Runs whole cycles of ACTOR_DELAY updates for at least min_time seconds; *per_update
 * gets seconds per update and *load the other processes' CPU share meanwhile. */
static int time_cycles(redq_agent *a, const redq_exec *ex, double min_time, double *per_update,
                       double *load, redq_stats *st, rqd_err *err)
{
    double m0, s0, m1, s1, t0 = now_s(), dt;
    long cycles = 0;
    int rc;

    cpu_seconds(&m0, &s0);
    do {
        if ((rc = redq_agent_update(a, ACTOR_DELAY, ex, st, err)) < 0)
            return rc;
        cycles++;
        dt = now_s() - t0;
    } while (dt < min_time);
    cpu_seconds(&m1, &s1);
    *per_update = dt / (double)(cycles * ACTOR_DELAY);
    if (load != NULL)
        *load = other_load(m0, s0, m1, s1, dt);
    return RQD_OK;
}

static void finish_result(agent_result *r, int repeats, redq_agent *a)
{
    r->ups_median = 1.0 / median(r->upd_s, repeats);
    r->ups_best = 1.0 / min_of(r->upd_s, repeats);
    redq_agent_info(a, &r->info);
}

/* Deterministic eval action for one observation, each call timed alone, for act_time
 * seconds (at least 1000 calls). */
static int time_act(redq_agent *a, const bench_cfg *bc, double act_time, act_result *res,
                    rqd_err *err)
{
    enum { MAX_CALLS = 200000 };
    double *us = malloc(sizeof(double) * MAX_CALLS);
    float obs[RQD_MAX_OBS_DIM], out[RQD_MAX_ACT_DIM];
    bench_rng r = {42};
    double sum = 0, t_end = now_s() + act_time;
    long n = 0;
    int rc = RQD_OK;

    if (us == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory for act timings");
    for (int j = 0; j < bc->obs; j++)
        obs[j] = rng_normal(&r);
    for (int i = 0; i < 100 && rc == RQD_OK; i++) /* warm: snapshot, caches */
        rc = redq_agent_act(a, obs, 1, REDQ_EVAL, out, err);
    while (rc == RQD_OK && n < MAX_CALLS && (n < 1000 || now_s() < t_end)) {
        double t0 = now_s();
        rc = redq_agent_act(a, obs, 1, REDQ_EVAL, out, err);
        us[n] = (now_s() - t0) * 1e6;
        sum += us[n++];
    }
    if (rc == RQD_OK) {
        qsort(us, (size_t)n, sizeof(double), cmp_double);
        *res = (act_result){.median_us = us[n / 2], .min_us = us[0], .mean_us = sum / (double)n,
                            .p99_us = us[(n * 99) / 100], .calls = n};
    }
    free(us);
    return rc;
}

/* ------------------------------------------------------------------ single and splitK */

/* One agent on this thread, its update spread over a pool of m->threads. */
static int run_one_agent(const bench_cfg *bc, const bench_mode *m, const bench_opts *o,
                         agent_result *res, act_result *act, rqd_err *err)
{
    redq_agent *a = NULL;
    rqd_pool *pool = NULL;
    redq_exec ex, *use = NULL;
    double ignore;
    int rc;

    if (m->threads > 1) {
        if ((rc = rqd_pool_new(m->threads, &pool)) < 0) {
            rqd_err_set(err, rc, "", "cannot start a pool of %d threads", m->threads);
            goto out;
        }
        ex = rqd_pool_exec(pool);
        use = &ex;
    }
    if ((rc = make_agent(bc, 1, &a, err)) < 0)
        goto out;
    if ((rc = time_cycles(a, use, o->warmup, &ignore, NULL, &res->last, err)) < 0)
        goto out;
    for (int i = 0; i < o->repeats; i++) {
        rc = time_cycles(a, use, o->min_time, &res->upd_s[i], &res->load[i], &res->last, err);
        if (rc < 0)
            goto out;
        fprintf(stderr, "[bench_update]   %s %s repeat %d: %.1f updates/s\n", bc->name, m->name,
                i + 1, 1.0 / res->upd_s[i]);
    }
    finish_result(res, o->repeats, a);
    if (act != NULL)
        rc = time_act(a, bc, o->act_time, act, err);
out:
    redq_agent_free(a);
    rqd_pool_free(pool);
    return rc;
}

/* ------------------------------------------------------------------ agentsK */

typedef struct {
    const bench_cfg *bc;
    const bench_opts *o;
    int index, nagents;
    pthread_barrier_t *barrier;
    atomic_int *finished;        /* agents done with the current repeat */
    agent_result *res;
    rqd_err err;
    int rc;
} agent_thread;

/* Keeps this agent busy with single updates until every agent has finished its timed
 * part of the repeat, so that each agent's timing saw all the others running. */
static int keep_busy(agent_thread *t, redq_agent *a)
{
    redq_stats st;
    int rc = RQD_OK;
    while (rc == RQD_OK && atomic_load(t->finished) < t->nagents)
        rc = redq_agent_update(a, 1, NULL, &st, &t->err);
    return rc;
}

/* One repeat: wait for all, time, then load the machine until all are done. A thread
 * that failed keeps taking part in the barriers (with no work) so that none hangs. */
static void agent_repeat(agent_thread *t, redq_agent *a, double min_time, double *upd,
                         double *load)
{
    /* Everyone has left the previous keep_busy before the count is reset, and sees it
     * reset before anyone starts timing. */
    if (pthread_barrier_wait(t->barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
        atomic_store(t->finished, 0);
    pthread_barrier_wait(t->barrier);
    if (t->rc == RQD_OK)
        t->rc = time_cycles(a, NULL, min_time, upd, load, &t->res->last, &t->err);
    atomic_fetch_add(t->finished, 1);
    if (t->rc == RQD_OK)
        t->rc = keep_busy(t, a);
}

static void *agent_main(void *arg)
{
    agent_thread *t = arg;
    redq_agent *a = NULL;
    double ignore, ignore_load;

    t->rc = make_agent(t->bc, 1 + (uint64_t)t->index, &a, &t->err);
    agent_repeat(t, a, t->o->warmup, &ignore, &ignore_load);
    for (int i = 0; i < t->o->repeats; i++) {
        agent_repeat(t, a, t->o->min_time, &t->res->upd_s[i], &t->res->load[i]);
        if (t->rc == RQD_OK)
            fprintf(stderr, "[bench_update]   %s agents%d agent %d repeat %d: %.1f updates/s\n",
                    t->bc->name, t->nagents, t->index, i + 1, 1.0 / t->res->upd_s[i]);
    }
    if (t->rc == RQD_OK)
        finish_result(t->res, t->o->repeats, a);
    redq_agent_free(a);
    return NULL;
}

static int run_agents(const bench_cfg *bc, const bench_mode *m, const bench_opts *o,
                      agent_result *res, rqd_err *err)
{
    agent_thread t[MAX_AGENTS];
    pthread_t tid[MAX_AGENTS];
    pthread_barrier_t barrier;
    atomic_int finished = 0;
    int started = 0, rc = RQD_OK;

    pthread_barrier_init(&barrier, NULL, (unsigned)m->agents);
    for (; started < m->agents; started++) {
        t[started] = (agent_thread){.bc = bc, .o = o, .index = started, .nagents = m->agents,
                                    .barrier = &barrier, .finished = &finished,
                                    .res = &res[started]};
        if (pthread_create(&tid[started], NULL, agent_main, &t[started]) != 0)
            break;
    }
    if (started < m->agents) {
        /* The started threads would wait at the barrier for ever: nothing to recover. */
        fprintf(stderr, "bench_update: cannot start %d agent threads\n", m->agents);
        exit(1);
    }
    for (int i = 0; i < m->agents; i++)
        pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < m->agents && rc == RQD_OK; i++)
        if (t[i].rc < 0) {
            *err = t[i].err;
            rc = t[i].rc;
        }
    return rc;
}

/* ------------------------------------------------------------------ output */

static int stats_finite(const agent_result *r)
{
    return isfinite(r->last.critic_loss) && isfinite(r->last.actor_loss) &&
           isfinite(r->last.alpha) && isfinite(r->last.alpha_loss);
}

static void print_agent_fields(FILE *f, const agent_result *r, int repeats)
{
    json_num(f, "updates_per_s", r->ups_median, 1);
    json_num(f, "updates_per_s_best", r->ups_best, 1);
    json_num(f, "update_ms", 1e3 / r->ups_median, 1);
    json_num(f, "final_critic_loss", r->last.critic_loss, 1);
    json_num(f, "final_actor_loss", r->last.actor_loss, 1);
    json_num(f, "final_alpha", r->last.alpha, 1);
    json_num(f, "final_q_mean", r->last.q_mean, 1);
    fprintf(f, "\"updates_done\":%lld,\"losses_finite\":%s,\"runs\":{", r->info.updates,
            stats_finite(r) ? "true" : "false");
    json_list(f, "update_ms", r->upd_s, repeats, 1e3, 1);
    json_list(f, "other_cpu_load", r->load, repeats, 1.0, 0);
    fprintf(f, "},");
}

static void print_line(const bench_cfg *bc, const bench_mode *m, const bench_opts *o,
                       const agent_result *res, const act_result *act)
{
    char cpu[256];
    FILE *f = stdout;
    fprintf(f, "{\"bench\":\"redqd_update\",\"config\":\"%s\",\"mode\":\"%s\",\"threads\":%d,"
            "\"agents\":%d,\"obs_dim\":%d,\"act_dim\":%d,\"hidden\":[%d,%d],\"ensemble\":%d,"
            "\"subset\":%d,\"batch\":%d,\"actor_delay\":%d,\"buffer\":%d,\"repeats\":%d,",
            bc->name, m->name, m->threads * m->agents, m->agents, bc->obs, bc->act, bc->hidden,
            bc->hidden, bc->ensemble, bc->subset, bc->batch, ACTOR_DELAY, BUFFER_ROWS,
            o->repeats);
    json_num(f, "min_time_s", o->min_time, 1);
    json_num(f, "warmup_s", o->warmup, 1);
    if (m->agents == 1) {
        print_agent_fields(f, &res[0], o->repeats);
    } else {
        /* headline: the mean and the slowest of the agents' median rates */
        double sum = 0, lo = res[0].ups_median;
        for (int i = 0; i < m->agents; i++) {
            sum += res[i].ups_median;
            lo = res[i].ups_median < lo ? res[i].ups_median : lo;
        }
        json_num(f, "updates_per_s", sum / m->agents, 1);
        json_num(f, "updates_per_s_min_agent", lo, 1);
        json_num(f, "updates_per_s_total", sum, 1);
        json_num(f, "update_ms", 1e3 * m->agents / sum, 1);
        fprintf(f, "\"per_agent\":[");
        for (int i = 0; i < m->agents; i++) {
            fprintf(f, "%s{", i ? "," : "");
            print_agent_fields(f, &res[i], o->repeats);
            fprintf(f, "\"agent\":%d}", i);
        }
        fprintf(f, "],");
    }
    if (act != NULL) {
        json_num(f, "act_us", act->median_us, 1);
        json_num(f, "act_us_min", act->min_us, 1);
        json_num(f, "act_us_mean", act->mean_us, 1);
        json_num(f, "act_us_p99", act->p99_us, 1);
        fprintf(f, "\"act_calls\":%ld,", act->calls);
    } else {
        fprintf(f, "\"act_us\":null,");
    }
    fprintf(f, "\"blas\":\"%s\",\"blas_core\":\"%s\",\"blas_threads\":%d,\"blas_parallel\":%d,"
            "\"cpu\":\"%s\",\"nproc\":%ld}\n", openblas_get_config(), openblas_get_corename(),
            openblas_get_num_threads(), openblas_get_parallel(), cpu_model(cpu, sizeof cpu),
            sysconf(_SC_NPROCESSORS_ONLN));
    fflush(f);
}

/* ------------------------------------------------------------------ options */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_update [--config pendulum|halfcheetah|humanoid|small ...]\n"
               "                    [--mode single|split2|agents2 ...] [--min-time S]\n"
               "                    [--repeats R] [--warmup S] [--act-time S]\n"
               "  defaults: every config, modes single split2 agents2, --min-time 3,\n"
               "  --repeats 3, --warmup 2, --act-time 1 (act latency, single mode only)\n");
}

static const bench_cfg *find_config(const char *name)
{
    for (int i = 0; i < NCONFIGS; i++)
        if (strcmp(CONFIGS[i].name, name) == 0)
            return &CONFIGS[i];
    return NULL;
}

/* "single", "splitK" or "agentsK" with K in [2, 64]. */
static int parse_mode(const char *s, bench_mode *m)
{
    char *end = NULL;
    long k = 0;
    if (strcmp(s, "single") == 0) {
        *m = (bench_mode){"single", 1, 1};
        return 0;
    }
    int split = strncmp(s, "split", 5) == 0, agents = strncmp(s, "agents", 6) == 0;
    if (split || agents)
        k = strtol(s + (split ? 5 : 6), &end, 10);
    if (k < 2 || k > MAX_AGENTS || *end != '\0')
        return -1;
    snprintf(m->name, sizeof m->name, "%s", s);
    m->threads = split ? (int)k : 1;
    m->agents = split ? 1 : (int)k;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return *end == '\0' && isfinite(*out) && *out >= 0 ? 0 : -1;
}

/* Takes the values after an option that accepts several: up to the next "--" word,
 * each possibly a comma-separated list. Returns the index of the last value used. */
static int parse_list(int argc, char **argv, int i, bench_opts *o, int is_mode)
{
    int j = i + 1;
    for (; j < argc && strncmp(argv[j], "--", 2) != 0; j++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", argv[j]);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
             tok = strtok_r(NULL, ",", &save)) {
            if (is_mode) {
                if (o->nmode == 8 || parse_mode(tok, &o->mode[o->nmode]) < 0)
                    return -1;
                o->nmode++;
            } else {
                const bench_cfg *c = find_config(tok);
                if (c == NULL || o->ncfg == NCONFIGS)
                    return -1;
                o->cfg[o->ncfg++] = c;
            }
        }
    }
    return j - 1 > i ? j - 1 : -1;
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.min_time = 3.0, .warmup = 2.0, .act_time = 1.0, .repeats = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        double d;
        if (strcmp(a, "--config") == 0 || strcmp(a, "--mode") == 0) {
            if ((i = parse_list(argc, argv, i, o, a[2] == 'm')) < 0)
                return -1;
        } else if (strcmp(a, "--min-time") == 0 && has && parse_double(argv[++i], &d) == 0) {
            o->min_time = d;
        } else if (strcmp(a, "--warmup") == 0 && has && parse_double(argv[++i], &d) == 0) {
            o->warmup = d;
        } else if (strcmp(a, "--act-time") == 0 && has && parse_double(argv[++i], &d) == 0) {
            o->act_time = d;
        } else if (strcmp(a, "--repeats") == 0 && has) {
            o->repeats = atoi(argv[++i]);
            if (o->repeats < 1 || o->repeats > MAX_REPEATS)
                return -1;
        } else {
            return -1;
        }
    }
    for (int i = 0; o->ncfg == 0 && i < NCONFIGS; i++)
        o->cfg[i] = &CONFIGS[i];
    o->ncfg = o->ncfg ? o->ncfg : NCONFIGS;
    if (o->nmode == 0) {
        parse_mode("single", &o->mode[o->nmode++]);
        parse_mode("split2", &o->mode[o->nmode++]);
        parse_mode("agents2", &o->mode[o->nmode++]);
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

/* Runs one (config, mode); returns 0, 1 on a core error, 3 on a non-finite loss. */
static int run_case(const bench_cfg *bc, const bench_mode *m, const bench_opts *o)
{
    static agent_result res[MAX_AGENTS]; /* large: kept off the stack */
    act_result act;
    rqd_err err;
    int single = m->threads == 1 && m->agents == 1, rc;

    memset(res, 0, sizeof res);
    rqd_err_clear(&err);
    fprintf(stderr, "[bench_update] %s mode=%s ...\n", bc->name, m->name);
    if (m->agents == 1)
        rc = run_one_agent(bc, m, o, &res[0], single ? &act : NULL, &err);
    else
        rc = run_agents(bc, m, o, res, &err);
    if (rc < 0) {
        fprintf(stderr, "bench_update: %s %s: %s: %s\n", bc->name, m->name, rqd_strerror(rc),
                err.msg);
        return 1;
    }
    print_line(bc, m, o, res, single ? &act : NULL);
    for (int i = 0; i < m->agents; i++)
        if (!stats_finite(&res[i])) {
            fprintf(stderr, "bench_update: %s %s: agent %d ended with a non-finite loss "
                    "(critic %g, actor %g, alpha %g)\n", bc->name, m->name, i,
                    res[i].last.critic_loss, res[i].last.actor_loss, res[i].last.alpha);
            return 3;
        }
    return 0;
}

int main(int argc, char **argv)
{
    bench_opts o;
    int status = 0;

    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (parse_opts(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    /* Before any GEMM: all parallelism is ours (pool, agent threads), never OpenBLAS's. */
    openblas_set_num_threads(1);
    fprintf(stderr, "[bench_update] OpenBLAS %s (core %s), %d thread(s), parallel=%d\n",
            openblas_get_config(), openblas_get_corename(), openblas_get_num_threads(),
            openblas_get_parallel());
    for (int c = 0; c < o.ncfg; c++)
        for (int m = 0; m < o.nmode; m++) {
            int rc = run_case(o.cfg[c], &o.mode[m], &o);
            status = rc > status ? rc : status;
        }
    return status;
}
