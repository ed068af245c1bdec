/* api/h_move.c: POST/GET/DELETE /v1/agents/{name}/move -- moving an agent to another node
 * (docs/api.md "Moving an agent"; the registry's side is daemon/move.c). The target takes
 * the file with PUT .../checkpoint (api/h_train.c h_import). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "json_in.h"

/* POST: {"to": node} marks the agent moving; answers the agent (state.moving). */
int h_move_begin(api_req *r)
{
    static const char *const keys[] = {"to", NULL};
    rqd_err err = {0};
    const cJSON *to;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    cJSON *body = api_body_json(r, &err);
    int rc = body == NULL || api_json_keys(body, "", keys, &err) < 0 ||
                     (to = api_json_need(body, "", "to", &err)) == NULL
                 ? RQD_EINVAL
                 : RQD_OK;
    if (rc == RQD_OK && (!cJSON_IsString(to) || !api_valid_name(to->valuestring)))
        rc = rqd_err_set(&err, RQD_EINVAL, "to", "to must be a node name matching "
                         "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
    else if (rc == RQD_OK && strcmp(to->valuestring, r->srv->o.node) == 0)
        rc = rqd_err_set(&err, RQD_EINVAL, "to", "to names this node (%s): the agent is here "
                         "already", r->srv->o.node);
    if (rc == RQD_OK)
        rc = rqd_agent_move_begin(a, to->valuestring, &err);
    cJSON_Delete(body);
    return api_reply_agent(r, a, 200, rc, &err);
}

/* GET: the move file of a moving agent. */
int h_move_file(api_req *r)
{
    rqd_err err = {0};
    void *data = NULL;
    size_t len = 0;
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    int rc = rqd_agent_move_file(a, r->srv->o.node, &data, &len, &err);
    rqd_agent_put(a);
    if (rc < 0)
        return api_problem(r, &err);
    return api_reply_bytes_take(r, 200, "application/octet-stream", data, len);
}

/* DELETE: the move is cancelled; answers the agent, taking writes again. */
int h_move_cancel(api_req *r)
{
    rqd_err err = {0};
    rqd_agent *a = api_agent(r);
    if (a == NULL)
        return MHD_YES;
    int rc = rqd_agent_move_cancel(a, &err);
    return api_reply_agent(r, a, 200, rc, &err);
}
