/* api/json_scan.c: the pass over a JSON body before any tree is built (json_scan.h says
 * why), and the iterators over text it has passed.
 *
 * A recursive descent over RFC 8259's grammar. Recursion is bounded by
 * RQD_MAX_JSON_DEPTH, which is checked before a container is entered; the only other
 * state is the path of the current value (for bounds and messages), one segment per
 * level. A refused array is counted to its end with a skip that checks nothing, so that
 * the message says how long it was without the pass doing more than reading it. */
#include "json_scan.h"

#include <stdio.h>
#include <string.h>

#include "../common/rqd_limits.h"

_Static_assert(RQD_MAX_JSON_MEMBERS <= 64, "api_json_scan's *each has one bit per member");

typedef struct {
    const char *key; /* a member: its name as written, without the quotes; NULL: an index */
    size_t klen;
    long long index;
} seg;

typedef struct {
    const char *text, *p, *end;
    const api_json_bound *b;
    int nb;
    seg path[RQD_MAX_JSON_DEPTH + 2]; /* path[1..n] leads to a value at depth n */
    long long values;                 /* values in the current tree */
    int tree;                         /* depth of the current tree's root (0: the body) */
    int member;                       /* ordinal of the top-level member being read */
    unsigned long long each;
    rqd_err *err;
} scan;

static char peek(const scan *s)
{
    return s->p < s->end ? *s->p : '\0'; /* NUL is no token: the end is a syntax error */
}

static void ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The code unit of the 4 hex digits at p (p + 4 <= end), or -1. */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Writes code point cp as UTF-8 into out[*o..cap-1) (what fits); advances *o by its full
 * length. */
static void put_utf8(char *out, size_t cap, size_t *o, unsigned long cp)
{
    unsigned char b[4];
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    static const unsigned char lead[] = {0, 0, 0xC0, 0xE0, 0xF0};
    for (size_t i = n - 1; i > 0; i--, cp >>= 6)
        b[i] = (unsigned char)(0x80 | (cp & 0x3F));
    b[0] = (unsigned char)(lead[n] | cp);
    for (size_t i = 0; i < n; i++, (*o)++)
        if (*o + 1 < cap)
            out[*o] = (char)b[i];
}

/* Decodes a member name as written (escapes checked by the scan) into out (NUL-terminated,
 * cut to cap - 1 bytes); returns its full decoded length. */
static size_t decode_key(const char *k, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (c == '\\') {
            c = k[++i];
            if (c == 'u') {
                unsigned long cp = (unsigned long)hex4(k + i + 1);
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) { /* a pair: \uD8xx\uDCxx */
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)hex4(k + i + 3) - 0xDC00);
                    i += 6;
                }
                put_utf8(out, cap, &o, cp);
                continue;
            }
            const char *from = "bfnrt", *to = "\b\f\n\r\t", *at = strchr(from, c);
            c = at ? to[at - from] : c; /* '"', '\\' and '/' stand for themselves */
        }
        if (o + 1 < cap)
            out[o] = c;
        o++;
    }
    if (cap > 0)
        out[o < cap ? o : cap - 1] = '\0';
    return o;
}

/* The path of the value at depth n, "transitions[3].obs", or "the body". */
static const char *name(const scan *s, int n, char *buf, size_t cap)
{
    size_t o = 0;
    if (n == 0)
        return "the body";
    for (int i = 1; i <= n && o + 1 < cap; i++) {
        if (s->path[i].key == NULL) {
            o += (size_t)snprintf(buf + o, cap - o, "[%lld]", s->path[i].index);
        } else {
            if (i > 1)
                buf[o++] = '.';
            o += decode_key(s->path[i].key, s->path[i].klen, buf + o, cap - o);
        }
        o = o < cap - 1 ? o : cap - 1; /* cut: the message stays one line of bounded size */
    }
    buf[o] = '\0';
    return buf;
}

static int syntax(scan *s, const char *what)
{
    return rqd_err_set(s->err, RQD_EINVAL, "", "malformed JSON at byte offset %zu: %s",
                       (size_t)(s->p - s->text), what);
}

/* Does the path to depth n match pat ("transitions[].obs")? */
static int path_is(const scan *s, int n, const char *pat)
{
    char key[80];
    for (int i = 1; i <= n; i++) {
        if (s->path[i].key == NULL) {
            if (strncmp(pat, "[]", 2) != 0)
                return 0;
            pat += 2;
            continue;
        }
        if (i > 1 && *pat == '.')
            pat++;
        size_t want = strcspn(pat, ".["), got = decode_key(s->path[i].key, s->path[i].klen,
                                                          key, sizeof key);
        if (got != want || got >= sizeof key || memcmp(key, pat, want) != 0)
            return 0;
        pat += want;
    }
    return *pat == '\0';
}

static const api_json_bound *bound_of(const scan *s, int n, char first)
{
    int kind = first == '[' ? API_JSON_OF_ARRAYS
               : first == '-' || (first >= '0' && first <= '9') ? API_JSON_OF_NUMBERS : -1;
    for (int i = 0; i < s->nb; i++)
        if ((s->b[i].holding == API_JSON_ANY || s->b[i].holding == kind) &&
            path_is(s, n, s->b[i].path))
            return &s->b[i];
    return NULL;
}

/* The closing quote of the string whose opening quote is at p, or end. */
static const char *string_end(const char *p, const char *end)
{
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\' && p + 1 < end)
            p++;
    return p;
}

/* Skips the value that starts at p in text the scan has passed: returns where it ends.
 * Iterative, so that no nesting takes stack. */
static const char *skip(const char *p, const char *end)
{
    long depth = 0;
    if (p < end && *p != '"' && *p != '[' && *p != '{') { /* a number or a literal */
        while (p < end && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\t' &&
               *p != '\n' && *p != '\r')
            p++;
        return p;
    }
    for (; p < end; p++) {
        char c = *p;
        if (c == '"') {
            p = string_end(p, end);
            if (depth == 0)
                return p < end ? p + 1 : end;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if ((c == ']' || c == '}') && --depth == 0) {
            return p + 1;
        }
    }
    return end;
}

/* Elements from p (the start of one) to the end of their array; *complete is 0 when the
 * text ends first. */
static long long count_rest(const char *p, const char *end, int *complete)
{
    long long k = 1;
    long depth = 0;
    *complete = 0;
    for (; p < end; p++) {
        char c = *p;
        if (c == '"') {
            p = string_end(p, end);
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (depth-- == 0) {
                *complete = 1;
                return k;
            }
        } else if (c == ',' && depth == 0) {
            k++;
        }
    }
    return k;
}

static int value(scan *s, int n);

/* The array at depth n has more than most elements (s->p is at the next one). */
static int too_long(scan *s, int n, const api_json_bound *b, long long most)
{
    char field[160];
    int complete;
    long long total = most + count_rest(s->p, s->end, &complete);
    const char *f = name(s, n, field, sizeof field), *over = complete ? "" : "more than ";
    if (!complete)
        total = most;
    if (b == NULL)
        return rqd_err_set(s->err, RQD_EINVAL, n ? f : "", "%s has %s%lld values; an array "
                           "here may hold at most %d", f, over, total, RQD_MAX_JSON_ARRAY);
    return rqd_err_set(s->err, RQD_EINVAL, n ? f : "", "%s has %s%lld %s%s", f, over, total,
                       b->noun, b->why);
}

/* Enters the array or object at s->p: 1 when it is empty (and read), else 0. */
static int enter(scan *s, char close)
{
    s->p++;
    ws(s);
    if (peek(s) != close)
        return 0;
    s->p++;
    return 1;
}

/* After an element of a container: 1 at its end (read), 0 after a ',', or the error. */
static int after(scan *s, char close)
{
    ws(s);
    if (peek(s) == close) {
        s->p++;
        return 1;
    }
    if (peek(s) != ',')
        return syntax(s, close == ']' ? "expected ',' or ']'" : "expected ',' or '}'");
    s->p++;
    ws(s);
    return 0;
}

static int array(scan *s, int n)
{
    if (enter(s, ']'))
        return RQD_OK;
    const api_json_bound *b = bound_of(s, n, peek(s));
    long long most = b ? b->most : RQD_MAX_JSON_ARRAY;
    int each = b && b->each && n == 1 && s->path[1].key != NULL;
    if (each)
        s->each |= 1ULL << s->member;
    for (long long i = 0;; i++) {
        long long outer = s->values;
        int outer_tree = s->tree, rc;
        if (i == most)
            return too_long(s, n, b, most);
        s->path[n + 1] = (seg){NULL, 0, i};
        if (each) { /* the element is a tree of its own */
            s->values = 0;
            s->tree = n + 1;
        }
        rc = value(s, n + 1);
        if (each) {
            s->values = outer;
            s->tree = outer_tree;
        }
        if (rc < 0 || (rc = after(s, ']')) != 0)
            return rc < 0 ? rc : RQD_OK;
    }
}

static int string(scan *s, int n, int is_key);

static int object(scan *s, int n)
{
    char field[160];
    if (enter(s, '}'))
        return RQD_OK;
    for (int m = 0;; m++) {
        int rc;
        if (m == RQD_MAX_JSON_MEMBERS) {
            const char *f = name(s, n, field, sizeof field);
            return rqd_err_set(s->err, RQD_EINVAL, n ? f : "", "%s has more than %d fields",
                               f, RQD_MAX_JSON_MEMBERS);
        }
        if (peek(s) != '"')
            return syntax(s, "expected a field name in double quotes");
        const char *k = s->p + 1;
        if ((rc = string(s, n, 1)) < 0)
            return rc;
        s->path[n + 1] = (seg){k, (size_t)(s->p - 1 - k), -1};
        ws(s);
        if (peek(s) != ':')
            return syntax(s, "expected ':' after a field name");
        s->p++;
        ws(s);
        if (n == 0)
            s->member = m;
        if ((rc = value(s, n + 1)) < 0 || (rc = after(s, '}')) != 0)
            return rc < 0 ? rc : RQD_OK;
    }
}

/* Length of the UTF-8 sequence at p (RFC 3629: no overlongs, surrogates or values past
 * U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* The string at s->p (a member name when is_key, of the object at depth n; else the
 * value at depth n). */
static int string(scan *s, int n, int is_key)
{
    char field[160];
    const char *f;
    s->p++; /* '"' */
    for (;;) {
        if (s->p >= s->end)
            return syntax(s, "a string is not closed");
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return RQD_OK;
        }
        if (c < 0x20)
            return syntax(s, "a control character in a string (escape it)");
        if (c >= 0x80) {
            size_t len = utf8_len((const unsigned char *)s->p, (const unsigned char *)s->end);
            if (len == 0) {
                f = name(s, n, field, sizeof field);
                return is_key ? rqd_err_set(s->err, RQD_EINVAL, n ? f : "", "a field name in "
                                            "%s is not valid UTF-8", f)
                              : rqd_err_set(s->err, RQD_EINVAL, f, "%s is not valid UTF-8", f);
            }
            s->p += len;
            continue;
        }
        if (c != '\\') {
            s->p++;
            continue;
        }
        if (s->end - s->p < 2)
            return syntax(s, "a string is not closed");
        if (s->p[1] != 'u') {
            if (strchr("\"\\/bfnrt", s->p[1]) == NULL || s->p[1] == '\0')
                return syntax(s, "an invalid escape in a string");
            s->p += 2;
            continue;
        }
        long cp = s->end - s->p >= 6 ? hex4(s->p + 2) : -1;
        if (cp < 0)
            return syntax(s, "\\u needs four hex digits");
        if (cp == 0) { /* cJSON would cut the string there: another name than the one sent */
            f = name(s, n, field, sizeof field);
            return is_key ? rqd_err_set(s->err, RQD_EINVAL, n ? f : "", "a field name in %s "
                                        "holds U+0000 (\\u0000), which strings may not contain", f)
                          : rqd_err_set(s->err, RQD_EINVAL, f, "%s holds U+0000 (\\u0000), "
                                        "which strings may not contain", f);
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return syntax(s, "a \\u escape is the second half of a surrogate pair alone");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = s->end - s->p >= 12 && s->p[6] == '\\' && s->p[7] == 'u' ? hex4(s->p + 8) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return syntax(s, "a \\u escape is the first half of a surrogate pair alone");
            s->p += 6;
        }
        s->p += 6;
    }
}

static int number(scan *s, int n)
{
    char field[160];
    const char *start = s->p;
    int digits;
    if (peek(s) == '-')
        s->p++;
    if (peek(s) == '0') {
        s->p++;
    } else {
        for (digits = 0; peek(s) >= '0' && peek(s) <= '9'; digits++)
            s->p++;
        if (digits == 0)
            return syntax(s, "expected a digit");
    }
    if (peek(s) == '.') {
        s->p++;
        for (digits = 0; peek(s) >= '0' && peek(s) <= '9'; digits++)
            s->p++;
        if (digits == 0)
            return syntax(s, "expected a digit after '.'");
    }
    if (peek(s) == 'e' || peek(s) == 'E') {
        s->p++;
        if (peek(s) == '+' || peek(s) == '-')
            s->p++;
        for (digits = 0; peek(s) >= '0' && peek(s) <= '9'; digits++)
            s->p++;
        if (digits == 0)
            return syntax(s, "expected a digit in the exponent");
    }
    if (s->p - start > RQD_MAX_JSON_NUMBER) {
        const char *f = name(s, n, field, sizeof field);
        return rqd_err_set(s->err, RQD_EINVAL, f, "%s is a number written with %td characters; "
                           "at most %d are read", f, s->p - start, RQD_MAX_JSON_NUMBER);
    }
    return RQD_OK;
}

static int literal(scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return syntax(s, "expected a value");
    s->p += n;
    return RQD_OK;
}

static int value(scan *s, int n)
{
    char field[160];
    char c = peek(s);
    if (++s->values > RQD_MAX_JSON_VALUES) {
        const char *f = name(s, s->tree, field, sizeof field);
        return rqd_err_set(s->err, RQD_EINVAL, s->tree ? f : "", "%s holds more than %d values "
                           "(numbers, strings, arrays, ...); no request needs that many",
                           f, RQD_MAX_JSON_VALUES);
    }
    if ((c == '[' || c == '{') && n >= RQD_MAX_JSON_DEPTH) {
        const char *f = name(s, n, field, sizeof field);
        return rqd_err_set(s->err, RQD_EINVAL, n ? f : "", "%s nests arrays and objects more "
                           "than %d levels deep", f, RQD_MAX_JSON_DEPTH);
    }
    switch (c) {
    case '{': return object(s, n);
    case '[': return array(s, n);
    case '"': return string(s, n, 0);
    case 't': return literal(s, "true");
    case 'f': return literal(s, "false");
    case 'n': return literal(s, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return number(s, n);
        return syntax(s, s->p < s->end ? "expected a value" : "the body ends early");
    }
}

int api_json_scan(const char *text, size_t len, const api_json_bound *b, int nb,
                  unsigned long long *each, rqd_err *err)
{
    scan s;
    int rc;

    memset(&s, 0, sizeof s);
    s.text = s.p = text;
    s.end = text + len;
    s.b = b;
    s.nb = b ? nb : 0;
    s.err = err;
    if (each)
        *each = 0;
    if (len == 0)
        return rqd_err_set(err, RQD_EINVAL, "", "the body is empty; a JSON object is expected");
    ws(&s);
    if ((rc = value(&s, 0)) < 0)
        return rc;
    ws(&s);
    if (s.p < s.end)
        return syntax(&s, "trailing data");
    if (each)
        *each = s.each;
    return RQD_OK;
}

/* ------------------------------------------------------------------ iteration */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

api_json_iter api_json_iter_of(api_json_span c)
{
    api_json_iter it = {NULL, NULL};
    if (c.p != NULL && c.n >= 2)
        it = (api_json_iter){c.p + 1, c.p + c.n - 1}; /* inside the brackets or braces */
    return it;
}

int api_json_next(api_json_iter *it, api_json_span *el)
{
    const char *p = skip_ws(it->p, it->end);
    if (p >= it->end)
        return 0;
    const char *e = skip(p, it->end);
    *el = (api_json_span){p, (size_t)(e - p)};
    p = skip_ws(e, it->end);
    it->p = p < it->end && *p == ',' ? p + 1 : it->end;
    return 1;
}

int api_json_next_member(api_json_iter *it, api_json_span *key, api_json_span *value)
{
    api_json_iter k = *it;
    if (!api_json_next(&k, key))
        return 0;
    const char *p = skip_ws(key->p + key->n, it->end);
    p = skip_ws(p + 1, it->end); /* ':' */
    const char *e = skip(p, it->end);
    *value = (api_json_span){p, (size_t)(e - p)};
    p = skip_ws(e, it->end);
    it->p = p < it->end && *p == ',' ? p + 1 : it->end;
    return 1;
}

long long api_json_count(api_json_span array)
{
    api_json_iter it = api_json_iter_of(array);
    const char *p = skip_ws(it.p, it.end);
    int complete;
    if (it.p == NULL || p >= it.end)
        return 0;
    return count_rest(p, it.end + 1, &complete); /* it.end is the closing bracket */
}
