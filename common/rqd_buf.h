/* common/rqd_buf.h: a growable byte buffer with a hard cap (request bodies, checkpoint
 * blobs, CSV). It never grows past its cap: an append that would is refused whole. */
#ifndef RQD_BUF_H
#define RQD_BUF_H

#include <stddef.h>

typedef struct {
    unsigned char *data; /* malloc'd; owned by the buffer; NULL when empty */
    size_t len;          /* bytes in use */
    size_t cap;          /* bytes allocated */
    size_t max;          /* hard cap on len; 0 = SIZE_MAX */
} rqd_buf;

void rqd_buf_init(rqd_buf *b, size_t max);
/* Frees the data; the buffer is empty and reusable afterwards. NULL is a no-op. */
void rqd_buf_free(rqd_buf *b);
/* 0, or RQD_ETOOBIG past the cap, RQD_ENOMEM; on failure nothing is appended. */
int rqd_buf_append(rqd_buf *b, const void *p, size_t n);
/* Makes room for n more bytes and returns a pointer to them (len grows by n), or NULL. */
void *rqd_buf_extend(rqd_buf *b, size_t n);

#endif
