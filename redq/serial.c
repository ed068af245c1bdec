/* redq/serial.c: the checkpoint format's field codecs (host is little-endian: serial.h). */
#include "serial.h"

#include <string.h>

int redq__put_u32(rqd_buf *b, uint32_t v) { return rqd_buf_append(b, &v, sizeof v); }
int redq__put_i64(rqd_buf *b, long long v) { return rqd_buf_append(b, &v, sizeof v); }
int redq__put_f64(rqd_buf *b, double v) { return rqd_buf_append(b, &v, sizeof v); }

int redq__put_f32s(rqd_buf *b, const float *v, size_t n)
{
    return rqd_buf_append(b, v, n * sizeof(float));
}

int redq__put_str(rqd_buf *b, const char *s)
{
    size_t n = strlen(s);
    int rc = redq__put_u32(b, (uint32_t)n);
    return rc ? rc : rqd_buf_append(b, s, n);
}

static int take(const unsigned char **p, const unsigned char *end, void *v, size_t n)
{
    if ((size_t)(end - *p) < n)
        return -1;
    if (n)
        memcpy(v, *p, n);
    *p += n;
    return 0;
}

int redq__get_u32(const unsigned char **p, const unsigned char *end, uint32_t *v)
{
    return take(p, end, v, sizeof *v);
}

int redq__get_i64(const unsigned char **p, const unsigned char *end, long long *v)
{
    return take(p, end, v, sizeof *v);
}

int redq__get_f64(const unsigned char **p, const unsigned char *end, double *v)
{
    return take(p, end, v, sizeof *v);
}

int redq__get_f32s(const unsigned char **p, const unsigned char *end, float *v, size_t n)
{
    if (n > (size_t)(end - *p) / sizeof(float))
        return -1;
    return take(p, end, v, n * sizeof(float));
}

int redq__get_str(const unsigned char **p, const unsigned char *end, char *out, size_t cap)
{
    uint32_t n;
    const unsigned char *save = *p;
    if (redq__get_u32(p, end, &n) || (size_t)n >= cap || take(p, end, out, n)) {
        *p = save;
        return -1;
    }
    out[n] = '\0';
    return 0;
}
