/* daemon/reads.c: what the API reads from SQLite rather than from an agent's memory
 * (stats rows, the episode list, checkpoint metadata, the answer stored under a
 * batch_id), each on a read-only connection from the registry's pool, so that api/
 * never holds a storage handle. */
#include "internal.h"

int rqd_agent_batch_answer(rqd_agent *a, const char *batch_id, char **answer, rqd_err *err)
{
    store *s = rqd_reader_get(a->reg, err);
    int rc = s ? store_batch_get(s, a->id, batch_id, answer, err) : err->code;
    rqd_reader_put(a->reg, s);
    return rc;
}

int rqd_agent_episodes(rqd_agent *a, int limit, store_episode_row **rows, int *n, rqd_err *err)
{
    store *s = rqd_reader_get(a->reg, err);
    int rc = s ? store_episode_list(s, a->id, limit, a->S, a->A, rows, n, err) : err->code;
    rqd_reader_put(a->reg, s);
    return rc;
}

int rqd_agent_stats(rqd_agent *a, int64_t since, int limit, store_stats_row **rows, int *n,
                    rqd_err *err)
{
    rqd_err why = {0};
    /* Read-your-writes; a write that fails (a full disk) leaves its rows in the retry
     * list, and the read shows what is there. */
    (void)rqd_agent_stats_sync(a, &why);
    store *s = rqd_reader_get(a->reg, err);
    int rc = s ? store_stats_range(s, a->id, since, limit, rows, n, err) : err->code;
    rqd_reader_put(a->reg, s);
    return rc;
}

int rqd_agent_checkpoints(rqd_agent *a, store_ckpt_info **rows, int *n, rqd_err *err)
{
    store *s = rqd_reader_get(a->reg, err);
    int rc = s ? store_ckpt_list(s, a->id, rows, n, err) : err->code;
    rqd_reader_put(a->reg, s);
    return rc;
}

int rqd_agent_evaluations(rqd_agent *a, int64_t since, int limit, store_eval_row **rows, int *n,
                          rqd_err *err)
{
    store *s = rqd_reader_get(a->reg, err);
    int rc = s ? store_eval_range(s, a->id, since, limit, rows, n, err) : err->code;
    rqd_reader_put(a->reg, s);
    return rc;
}
