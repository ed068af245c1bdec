/* redq/serial.h: little-endian field writers and bounds-checked readers for the
 * checkpoint format (redq/ckpt.c). Writers return 0 or RQD_ENOMEM/RQD_ETOOBIG; readers
 * return 0, or -1 when the field would run past end (nothing is read then). */
#ifndef REDQ_SERIAL_H
#define REDQ_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/rqd_buf.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "redq's checkpoint and safetensors writers assume a little-endian host"
#endif

int redq__put_u32(rqd_buf *b, uint32_t v);
int redq__put_i64(rqd_buf *b, long long v);
int redq__put_f64(rqd_buf *b, double v);
int redq__put_f32s(rqd_buf *b, const float *v, size_t n);
int redq__put_str(rqd_buf *b, const char *s); /* u32 length, then the bytes */

int redq__get_u32(const unsigned char **p, const unsigned char *end, uint32_t *v);
int redq__get_i64(const unsigned char **p, const unsigned char *end, long long *v);
int redq__get_f64(const unsigned char **p, const unsigned char *end, double *v);
int redq__get_f32s(const unsigned char **p, const unsigned char *end, float *v, size_t n);
/* Reads a string into out (cap bytes with its NUL); -1 if longer. */
int redq__get_str(const unsigned char **p, const unsigned char *end, char *out, size_t cap);

#endif
