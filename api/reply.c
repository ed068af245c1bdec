/* api/reply.c: answers: an MHD response queued with the headers its status needs
 * (Retry-After, WWW-Authenticate), or kept for MHD's callback when an offload thread
 * made it; and the JSON, text, byte and empty answers built on that. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int api__queue_now(api_req *r, unsigned status, struct MHD_Response *resp)
{
    int ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    api_deadline_answer_queued(r->srv, r->dl);
    r->answered = 1;
    r->status = status;
    return ret;
}

int api_queue(api_req *r, unsigned status, struct MHD_Response *resp, const char *ctype)
{
    if (resp == NULL)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 429)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 503 && r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->deferred) { /* an offload thread: MHD takes answers only in its callback */
        if (r->resp)
            MHD_destroy_response(r->resp);
        r->resp = resp;
        r->status = status;
        return MHD_YES;
    }
    return api__queue_now(r, status, resp);
}

int api_reply_bytes_take(api_req *r, unsigned status, const char *ctype, void *data, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        free(data);
    return api_queue(r, status, resp, ctype);
}

int api_reply_text(api_req *r, unsigned status, const char *ctype, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    return api_queue(r, status, resp, ctype);
}

int api_reply_json_take(api_req *r, unsigned status, cJSON *obj)
{
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (text == NULL)
        return api_problem_status(r, 503, "unavailable", "out of memory rendering the answer");
    return api_reply_bytes_take(r, status, "application/json", text, strlen(text));
}

int api_reply_empty(api_req *r, unsigned status)
{
    return api_queue(r, status,
                     MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT), NULL);
}
