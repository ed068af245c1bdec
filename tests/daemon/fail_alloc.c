/* tests/daemon/fail_alloc.c: allocation-failure injection for build/test_daemon, linked
 * with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc: every allocation made by our own
 * code (daemon/, redq/, storage/) goes through these. A test arms a countdown on its own
 * thread; the nth allocation from then on fails, on that thread only, so that the writer
 * and trainer threads are not disturbed (their failures are injected otherwise:
 * rqd_writer_fail_next). Libraries' own allocations (SQLite, cJSON, libc) are not
 * wrapped. */
#include <stddef.h>

#include "daemon_tests.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);

static __thread long countdown; /* 0: off; else the allocations left before one fails */
static __thread long failed;

void fail_alloc_arm(long nth)
{
    countdown = nth;
    failed = 0;
}

long fail_alloc_disarm(void)
{
    countdown = 0;
    return failed;
}

static int fail_now(void)
{
    if (countdown > 0 && --countdown == 0) {
        failed++;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t k, size_t n) { return fail_now() ? NULL : __real_calloc(k, n); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
