/* clients/mujoco/main.c: redq-mujoco, a REDQ training loop over HTTP (the loop of
 * clients/examples/pendulum.py, in C, on MuJoCo).
 *
 *   redq-mujoco --env hopper --steps 100000 [--url URL] [--seed S] [--agent NAME]
 *               [--config FILE] [--envs K] [--eval-every E] [--eval-episodes M]
 *
 * It creates the agent, or reuses one of the same name and settings (a reused agent
 * continues: --steps is the agent's total of environment steps, so running the same
 * command again after an interruption finishes the run). Then, until the agent has
 * --steps transitions: one batched explore act for the K environments, one step of
 * each, one transitions post of the K transitions (each environment is its own env_id
 * stream; every post has a batch_id, so a retried post is stored once). Every
 * --eval-every steps, M episodes with the eval policy (one batched act per step),
 * recorded with POST .../evaluations when the daemon has it, and one CSV line on stdout:
 *
 *   env_steps,updates,policy_version,wall_s,eval_mean,eval_std,eval_min,eval_max,
 *   eval_n,eval_length_mean,train_return_last10,eval_row
 *
 * (eval_row is empty when the daemon has no evaluations endpoint). Progress and notes
 * go to stderr. The agent's config defaults to the daemon's defaults with training
 * "sync" (each post answers after its updates: the exact REDQ loop) and seed = --seed.
 *
 * Exit status: 0 done, 1 an error (the daemon's answer is printed), 2 bad usage,
 * 130 interrupted (SIGINT or SIGTERM; the agent keeps what was posted).
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "env.h"
#include "http.h"

#define MAX_ENVS 256     /* --envs: one act carries K observations (the daemon takes 4096) */
#define MAX_EVAL_EPS 100 /* --eval-episodes */
#define MAX_DIM 64       /* observation and action sizes of the tasks here (17 and 6) */
#define TRAIN_WINDOW 10  /* train_return_last10: the newest training episodes */

typedef struct {
    const char *url, *token, *task, *agent, *config_file;
    long long steps, eval_every;
    long long seed;
    int envs, eval_episodes, log_every;
    double timeout_s;
} options;

typedef struct {
    const options *o;
    rq_client *c;
    loco_env *env[MAX_ENVS], *eval_env[MAX_EVAL_EPS];
    int S, A;
    double *obs, *act, *next; /* [K][S], [K][A], [S] */
    double ep_return[MAX_ENVS];
    double recent[TRAIN_WINDOW]; /* ring of the newest training returns */
    int n_recent, recent_at;
    int have_evaluations; /* 0 once the daemon answered that it has no endpoint */
    double t0;            /* wall clock at start */
} run;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: redq-mujoco --env hopper|halfcheetah --steps N [options]\n"
            "  --url URL          redqd address (default $REDQD_URL or http://127.0.0.1:8470)\n"
            "  --token T          API token (default $REDQD_TOKEN)\n"
            "  --agent NAME       agent name (default: the task's name)\n"
            "  --config FILE      agent config, a JSON object (default {}: the daemon's\n"
            "                     defaults); training defaults to \"sync\", seed to --seed\n"
            "  --steps N          the agent's environment steps to reach (a reused agent\n"
            "                     continues from its own count)\n"
            "  --seed S           seed of the environments and default agent seed (0)\n"
            "  --envs K           environments stepped together, one env_id each (1)\n"
            "  --eval-every E     evaluate every E environment steps (5000); 0: at the end\n"
            "  --eval-episodes M  episodes per evaluation (5)\n"
            "  --log-every L      a progress line on stderr every L steps (1000)\n"
            "  --timeout SEC      per request; a sync post waits for its updates (600)\n");
}

static long long parse_int(const char *opt, const char *s, long long lo, long long hi)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "redq-mujoco: %s must be an integer in [%lld, %lld]\n", opt, lo, hi);
        exit(2);
    }
    return v;
}

static void parse_options(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"url", 1, 0, 'u'},        {"token", 1, 0, 'T'},     {"env", 1, 0, 'e'},
        {"agent", 1, 0, 'a'},      {"config", 1, 0, 'c'},    {"steps", 1, 0, 'n'},
        {"seed", 1, 0, 's'},       {"envs", 1, 0, 'k'},      {"eval-every", 1, 0, 'E'},
        {"eval-episodes", 1, 0, 'M'}, {"log-every", 1, 0, 'L'}, {"timeout", 1, 0, 't'},
        {"help", 0, 0, 'h'},       {0, 0, 0, 0}};
    int ch;

    *o = (options){getenv("REDQD_URL"), getenv("REDQD_TOKEN"), NULL, NULL, NULL, -1, 5000,
                   0, 1, 5, 1000, 600.0};
    if (o->url == NULL || *o->url == '\0')
        o->url = "http://127.0.0.1:8470";
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'u': o->url = optarg; break;
        case 'T': o->token = optarg; break;
        case 'e': o->task = optarg; break;
        case 'a': o->agent = optarg; break;
        case 'c': o->config_file = optarg; break;
        case 'n': o->steps = parse_int("--steps", optarg, 1, 1LL << 40); break;
        case 's': o->seed = parse_int("--seed", optarg, 0, (1LL << 53) - 1); break;
        case 'k': o->envs = (int)parse_int("--envs", optarg, 1, MAX_ENVS); break;
        case 'E': o->eval_every = parse_int("--eval-every", optarg, 0, 1LL << 40); break;
        case 'M': o->eval_episodes = (int)parse_int("--eval-episodes", optarg, 1, MAX_EVAL_EPS); break;
        case 'L': o->log_every = (int)parse_int("--log-every", optarg, 1, 1 << 30); break;
        case 't': o->timeout_s = (double)parse_int("--timeout", optarg, 1, 86400); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc || o->task == NULL || o->steps < 0) {
        fprintf(stderr, "redq-mujoco: --env and --steps are required\n");
        usage(stderr);
        exit(2);
    }
    if (o->agent == NULL)
        o->agent = o->task;
}

/* The agent's settings: --config's object (or {}), with training "sync" and seed
 * --seed unless it sets them. */
static cJSON *load_config(const options *o, rqd_err *err)
{
    cJSON *cfg = NULL;
    char *text = NULL;

    if (o->config_file != NULL) {
        FILE *f = fopen(o->config_file, "rb");
        long n = -1;
        if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
            (text = malloc((size_t)n + 1)) != NULL && fread(text, 1, (size_t)n, f) == (size_t)n)
            text[n] = '\0';
        else {
            free(text);
            text = NULL;
        }
        if (f)
            fclose(f);
        if (text == NULL) {
            rqd_err_set(err, RQD_EIO, "config", "cannot read %s", o->config_file);
            return NULL;
        }
        cfg = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            rqd_err_set(err, RQD_EINVAL, "config", "%s is not a JSON object", o->config_file);
            return NULL;
        }
    } else if ((cfg = cJSON_CreateObject()) == NULL) {
        rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
        return NULL;
    }
    if (!cJSON_HasObjectItem(cfg, "training"))
        cJSON_AddStringToObject(cfg, "training", "sync");
    if (!cJSON_HasObjectItem(cfg, "seed"))
        cJSON_AddNumberToObject(cfg, "seed", (double)o->seed);
    return cfg;
}

static double state_number(const cJSON *agent, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(agent, "state"), key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int all_finite(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* The mean of the newest training returns (NAN before the first episode ends). */
static double recent_mean(const run *r)
{
    double sum = 0;
    for (int i = 0; i < r->n_recent; i++)
        sum += r->recent[i];
    return r->n_recent ? sum / r->n_recent : NAN;
}

/* ---- evaluation ---- */

/* M eval episodes stepped together, one batched eval act per step, then the record:
 * POST .../evaluations (while the daemon has it) and one CSV line. */
static int evaluate(run *r, rqd_err *err)
{
    const int M = r->o->eval_episodes, S = r->S, A = r->A;
    double obs[MAX_EVAL_EPS][MAX_DIM], batch[MAX_EVAL_EPS * MAX_DIM], act[MAX_EVAL_EPS * MAX_DIM];
    double ret[MAX_EVAL_EPS] = {0}, mean = 0, var = 0, lo = INFINITY, hi = -INFINITY, mlen = 0;
    int len[MAX_EVAL_EPS] = {0}, live[MAX_EVAL_EPS], n_live = M, rc;
    int64_t row = -1;
    cJSON *agent = NULL;

    for (int i = 0; i < M; i++) {
        loco_env_reset(r->eval_env[i], obs[i]);
        live[i] = i;
    }
    while (n_live > 0) {
        for (int j = 0; j < n_live; j++)
            memcpy(batch + (size_t)j * S, obs[live[j]], S * sizeof(double));
        if ((rc = rq_act(r->c, r->o->agent, batch, n_live, S, 1, act, A, err)) < 0)
            return rc;
        int still = 0;
        for (int j = 0; j < n_live; j++) {
            int i = live[j], term, trunc;
            ret[i] += loco_env_step(r->eval_env[i], act + (size_t)j * A, obs[i], &term, &trunc);
            len[i]++;
            if (!term && !trunc)
                live[still++] = i;
        }
        n_live = still;
    }
    for (int i = 0; i < M; i++) {
        mean += ret[i] / M;
        mlen += (double)len[i] / M;
        lo = fmin(lo, ret[i]);
        hi = fmax(hi, ret[i]);
    }
    for (int i = 0; i < M; i++)
        var += (ret[i] - mean) * (ret[i] - mean) / M; /* population std, as the daemon's */

    if (r->have_evaluations) {
        rc = rq_evaluation_post(r->c, r->o->agent, ret, len, M, &row, err);
        if (rc == RQD_ENOTFOUND) {
            fprintf(stderr, "note: %s; evaluations are printed only\n", err->msg);
            r->have_evaluations = 0;
        } else if (rc < 0)
            return rc;
    }
    if ((rc = rq_agent_get(r->c, r->o->agent, &agent, err)) < 0)
        return rc;
    printf("%.0f,%.0f,%.0f,%.1f,%.2f,%.2f,%.2f,%.2f,%d,%.1f,", state_number(agent, "env_steps"),
           state_number(agent, "updates"), state_number(agent, "policy_version"),
           now_s() - r->t0, mean, sqrt(var), lo, hi, M, mlen);
    if (r->n_recent > 0)
        printf("%.2f", recent_mean(r));
    printf(",");
    if (row >= 0)
        printf("%lld", (long long)row);
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "eval  steps %8.0f  return %8.1f +- %6.1f over %d episodes (length %.0f)\n",
            state_number(agent, "env_steps"), mean, sqrt(var), M, mlen);
    cJSON_Delete(agent);
    return RQD_OK;
}

/* ---- training ---- */

static void remember_return(run *r, double ret)
{
    r->recent[r->recent_at] = ret;
    r->recent_at = (r->recent_at + 1) % TRAIN_WINDOW;
    if (r->n_recent < TRAIN_WINDOW)
        r->n_recent++;
}

/* Steps the first n environments once under one batched explore act and posts their
 * transitions as one batch; *env_steps is the agent's count after it. */
static int train_step(run *r, int n, rq_batch *batch, const char *run_id, long long seq,
                      int64_t *env_steps, rqd_err *err)
{
    const int S = r->S, A = r->A;
    char env_id[64], batch_id[64];
    rq_ack ack;
    int rc;

    if ((rc = rq_act(r->c, r->o->agent, r->obs, n, S, 0, r->act, A, err)) < 0)
        return rc;
    for (int k = 0; k < n; k++) {
        double *obs = r->obs + (size_t)k * S, *a = r->act + (size_t)k * A;
        int term, trunc;
        double reward = loco_env_step(r->env[k], a, r->next, &term, &trunc);
        if (!all_finite(r->next, S) || !isfinite(reward))
            return rqd_err_set(err, RQD_EINTERNAL, "", "the simulation diverged (env %d)", k);
        snprintf(env_id, sizeof env_id, "%s-%d", run_id, k);
        if ((rc = rq_batch_add(batch, obs, a, reward, r->next, term, trunc, env_id, err)) < 0)
            return rc;
        r->ep_return[k] += reward;
        if (term || trunc) {
            remember_return(r, r->ep_return[k]);
            r->ep_return[k] = 0;
            loco_env_reset(r->env[k], obs);
        } else
            memcpy(obs, r->next, S * sizeof *obs);
    }
    snprintf(batch_id, sizeof batch_id, "%s-%lld", run_id, seq);
    if ((rc = rq_transitions_post(r->c, r->o->agent, batch, batch_id, &ack, err)) < 0)
        return rc;
    *env_steps = ack.env_steps;
    return RQD_OK;
}

static void progress(run *r, int64_t t, double *last_t, int64_t *last_steps, double *last_updates)
{
    cJSON *agent = NULL;
    rqd_err err = {0};
    double now = now_s(), updates = NAN, pending = NAN;

    if (rq_agent_get(r->c, r->o->agent, &agent, &err) == RQD_OK) {
        updates = state_number(agent, "updates");
        pending = state_number(agent, "pending_updates");
    }
    fprintf(stderr,
            "steps %8lld  env steps/s %7.1f  updates %9.0f  updates/s %7.1f  pending %6.0f  "
            "train return %8.1f (last %d)\n",
            (long long)t, (t - *last_steps) / fmax(now - *last_t, 1e-9), updates,
            (updates - *last_updates) / fmax(now - *last_t, 1e-9), pending,
            recent_mean(r), r->n_recent);
    *last_t = now;
    *last_steps = t;
    *last_updates = updates;
    cJSON_Delete(agent);
}

static int train(run *r, int64_t t, double updates, rqd_err *err)
{
    const options *o = r->o;
    const long long E = o->eval_every;
    long long next_eval = E > 0 ? (t / E + 1) * E : o->steps, seq = 0;
    long long next_log = (t / o->log_every + 1) * o->log_every;
    double last_t = now_s(), last_updates = updates;
    int64_t last_steps = t;
    rq_batch *batch = rq_batch_new(r->S, r->A);
    char run_id[40];
    int rc = RQD_OK, evaluated_at_end = 0;

    if (batch == NULL)
        return rqd_err_set(err, RQD_ENOMEM, "", "out of memory");
    /* Batch ids and env_ids of this run: a rerun of the command on the same agent must
     * not collide with the ids it stored before (they would be taken as repeats). */
    snprintf(run_id, sizeof run_id, "r%llx%x", (unsigned long long)time(NULL),
             (unsigned)getpid() ^ (unsigned)(now_s() * 1e6));
    for (int k = 0; k < o->envs; k++)
        loco_env_reset(r->env[k], r->obs + (size_t)k * r->S);
    if (t == 0 && (rc = evaluate(r, err)) < 0) /* the untrained policy: the curve's start */
        goto out;
    while (t < o->steps && !interrupted) {
        int n = (int)(o->steps - t < o->envs ? o->steps - t : o->envs);
        if ((rc = train_step(r, n, batch, run_id, seq++, &t, err)) < 0)
            goto out;
        if (t >= next_log) {
            progress(r, t, &last_t, &last_steps, &last_updates);
            next_log = (t / o->log_every + 1) * o->log_every;
        }
        if (t >= next_eval || t >= o->steps) {
            if ((rc = evaluate(r, err)) < 0)
                goto out;
            evaluated_at_end = t >= o->steps;
            next_eval = E > 0 ? (t / E + 1) * E : o->steps;
        }
    }
    if (!interrupted && !evaluated_at_end)
        rc = evaluate(r, err); /* the agent already had --steps: its evaluation only */
out:
    rq_batch_free(batch);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    run r = {0};
    rqd_err err = {0};
    cJSON *config = NULL, *agent = NULL;
    int rc, created = 0;

    parse_options(argc, argv, &o);
    r.o = &o;
    r.have_evaluations = 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* K training environments and M eval environments, each with its own seed. */
    for (int k = 0; k < o.envs; k++)
        if ((rc = loco_env_new(o.task, (uint64_t)o.seed * 1000003u + k, &r.env[k], &err)) < 0)
            goto out;
    for (int i = 0; i < o.eval_episodes; i++)
        if ((rc = loco_env_new(o.task, (uint64_t)o.seed * 1000003u + 500000 + i, &r.eval_env[i],
                               &err)) < 0)
            goto out;
    r.S = loco_env_obs_dim(r.env[0]);
    r.A = loco_env_act_dim(r.env[0]);
    r.obs = calloc((size_t)o.envs * r.S, sizeof(double));
    r.act = calloc((size_t)o.envs * r.A, sizeof(double));
    r.next = calloc((size_t)r.S, sizeof(double));
    if (r.obs == NULL || r.act == NULL || r.next == NULL) {
        rc = rqd_err_set(&err, RQD_ENOMEM, "", "out of memory");
        goto out;
    }

    if ((config = load_config(&o, &err)) == NULL) {
        rc = err.code;
        goto out;
    }
    if ((rc = rq_client_new(o.url, o.token, o.timeout_s, &r.c, &err)) < 0)
        goto out;
    double low[MAX_DIM], high[MAX_DIM];
    loco_env_action_box(r.env[0], low, high);
    rq_agent_spec spec = {r.S, r.A, low, high, config};
    if ((rc = rq_agent_ensure(r.c, o.agent, &spec, &agent, &created, &err)) < 0)
        goto out;
    int64_t t = (int64_t)state_number(agent, "env_steps");
    fprintf(stderr, "%s agent '%s' (%s, obs %d, act %d) at %lld env steps, %.0f updates\n",
            created ? "created" : "reusing", o.agent, o.task, r.S, r.A, (long long)t,
            state_number(agent, "updates"));
    printf("env_steps,updates,policy_version,wall_s,eval_mean,eval_std,eval_min,eval_max,"
           "eval_n,eval_length_mean,train_return_last10,eval_row\n");
    fflush(stdout);
    r.t0 = now_s();
    rc = train(&r, t, state_number(agent, "updates"), &err);
out:
    if (r.c != NULL) {
        long busy, lost;
        rq_client_retries(r.c, &busy, &lost);
        fprintf(stderr, "requests resent: %ld after 429 busy, %ld after a lost connection or 503\n",
                busy, lost);
    }
    if (rc < 0)
        fprintf(stderr, "redq-mujoco: %s\n", err.msg);
    else if (interrupted)
        fprintf(stderr, "redq-mujoco: interrupted; rerun the same command to continue\n");
    cJSON_Delete(agent);
    cJSON_Delete(config);
    rq_client_free(r.c);
    for (int k = 0; k < MAX_ENVS; k++)
        loco_env_free(r.env[k]);
    for (int i = 0; i < MAX_EVAL_EPS; i++)
        loco_env_free(r.eval_env[i]);
    free(r.obs);
    free(r.act);
    free(r.next);
    curl_global_cleanup();
    return rc < 0 ? 1 : interrupted ? 130 : 0;
}
