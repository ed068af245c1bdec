/* daemon/evaluations.c: evaluations a client records (API.md "Evaluations"), and the one
 * every eval episode of the episodes API records when it ends. A row takes the agent's
 * env_steps, updates and policy_version at the moment it is recorded: the learning curve
 * papers plot. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Under a->mu (it reads the counters). The summary of n returns; lengths may be NULL. */
static void summarise(rqd_agent *a, const double *returns, const int64_t *lengths, int n,
                      rqd_eval *e)
{
    redq_info info;
    memset(&e->row, 0, sizeof e->row);
    redq_agent_info(a->core, &info);
    e->row.env_steps = info.env_steps;
    e->row.updates = info.updates;
    e->row.policy_version = info.policy_version;
    rqd_now_rfc3339(e->row.time);
    e->row.n = n;
    double sum = 0, mn = returns[0], mx = returns[0], len = 0;
    for (int i = 0; i < n; i++) {
        sum += returns[i];
        mn = returns[i] < mn ? returns[i] : mn;
        mx = returns[i] > mx ? returns[i] : mx;
        if (lengths)
            len += (double)lengths[i];
    }
    double mean = sum / n, var = 0;
    for (int i = 0; i < n; i++)
        var += (returns[i] - mean) * (returns[i] - mean);
    e->row.mean = mean;
    e->row.std = sqrt(var / n); /* API.md: the population standard deviation */
    e->row.min = mn;
    e->row.max = mx;
    e->row.mean_length = lengths ? len / n : NAN;
    e->returns = returns;
    e->lengths = lengths;
}

void rqd__eval_one(rqd_agent *a, const double *ret, const int64_t *length, rqd_eval *e)
{
    summarise(a, ret, length, 1, e);
}

int rqd__eval_write(store *s, int64_t agent, const rqd_eval *e, rqd_err *err)
{
    rqd_eval *w = (rqd_eval *)e; /* the row number goes back to the caller's struct */
    return store_eval_append(s, agent, &e->row, e->returns, e->lengths, &w->row.row, err);
}

typedef struct {
    int64_t agent;
    const rqd_eval *e;
} eval_job;

static int do_eval(store *s, void *arg, rqd_err *err)
{
    eval_job *j = arg;
    return rqd__eval_write(s, j->agent, j->e, err);
}

int rqd_agent_evaluate(rqd_agent *a, const double *returns, const int64_t *lengths, int n,
                       store_eval_row *out, rqd_err *err)
{
    rqd_eval e;
    int rc = rqd__write_begin(a, err);
    if (rc < 0)
        return rc;
    rqd_agent_lock(a);
    summarise(a, returns, lengths, n, &e);
    pthread_mutex_unlock(&a->mu);
    eval_job j = {a->id, &e};
    if ((rc = rqd_writer_run(a->reg->writer, do_eval, &j, err)) == RQD_OK)
        *out = e.row;
    rqd__write_end(a);
    return rc;
}
