/* common/rqd_buf.c: the capped growable byte buffer. */
#include "rqd_buf.h"

#include "rqd_err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void rqd_buf_init(rqd_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max ? max : SIZE_MAX;
}

void rqd_buf_free(rqd_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void *rqd_buf_extend(rqd_buf *b, size_t n)
{
    if (n > b->max - b->len)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        unsigned char *p = realloc(b->data, cap);
        if (p == NULL)
            return NULL;
        b->data = p;
        b->cap = cap;
    }
    void *out = b->data + b->len;
    b->len += n;
    return out;
}

int rqd_buf_append(rqd_buf *b, const void *p, size_t n)
{
    if (n > b->max - b->len)
        return RQD_ETOOBIG;
    void *dst = rqd_buf_extend(b, n);
    if (dst == NULL)
        return RQD_ENOMEM;
    if (n)
        memcpy(dst, p, n);
    return RQD_OK;
}
