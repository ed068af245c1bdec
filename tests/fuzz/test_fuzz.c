/* tests/fuzz/test_fuzz.c: the fuzz target under gcc's ASan+UBSan in `make test`: every
 * committed corpus file, a freshly made checkpoint, and a fixed number of deterministic
 * mutations of each (bit flips, truncations, insertions, splices). A crash, leak or
 * undefined behaviour fails the test; the clang/libFuzzer build (`make fuzz`) explores
 * further. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../redq/redq.h"
#include "fuzz.h"

#define MUTATIONS 4000 /* per seed */

typedef struct {
    uint8_t *data;
    size_t len;
} seed;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int load_seeds(const char *dir, seed *out, int cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return 0;
    while (n < cap && (e = readdir(d)) != NULL) {
        char path[512];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        uint8_t *buf = malloc(1 << 16);
        size_t got = fread(buf, 1, 1 << 16, f);
        fclose(f);
        out[n].data = buf;
        out[n].len = got;
        n++;
    }
    closedir(d);
    return n;
}

/* A real checkpoint (with buffer) as a seed, minus its CRC (the target appends one). */
static seed checkpoint_seed(void)
{
    redq_config c;
    redq_agent *a = NULL;
    rqd_err err = {0};
    float low[2] = {-1, -1}, high[2] = {1, 1}, obs[3] = {0.1f, 0.2f, 0.3f}, act[2] = {0, 0};
    rqd_buf b;
    redq_config_default(&c, 2);
    c.hidden[0] = 4;
    c.hidden[1] = 3;
    c.ensemble_size = 2;
    c.batch_size = 2;
    c.buffer_size = 16;
    c.estimation_step = 2;
    ck_assert_int_eq(redq_agent_new(&c, 3, 2, low, high, &a, &err), 0);
    redq_transition t = {obs, act, 1.0f, obs, 0, 0, "e"};
    for (int i = 0; i < 5; i++)
        redq_agent_add(a, &t, 1, &err);
    rqd_buf_init(&b, 0);
    ck_assert_int_eq(redq_agent_save(a, 1, &b, &err), 0);
    redq_agent_free(a);
    seed s = {malloc(b.len), b.len - 3}; /* selector byte + blob without its CRC */
    s.data[0] = 0;
    memcpy(s.data + 1, b.data, b.len - 4);
    rqd_buf_free(&b);
    return s;
}

static void mutate_and_run(const seed *s)
{
    uint8_t *m = malloc(s->len + 64);
    for (int k = 0; k < MUTATIONS; k++) {
        size_t len = s->len;
        memcpy(m, s->data, len);
        int ops = 1 + (int)(next() % 4);
        for (int o = 0; o < ops && len > 1; o++) {
            size_t at = 1 + next() % (len - 1); /* keep the selector byte */
            switch (next() % 4) {
            case 0: m[at] ^= (uint8_t)(1u << (next() % 8)); break;
            case 1: len = at; break;
            case 2: m[at] = (uint8_t)next(); break;
            default:
                if (len + 1 < s->len + 64) {
                    memmove(m + at + 1, m + at, len - at);
                    m[at] = "{}[],:\"0e-1"[next() % 11];
                    len++;
                }
            }
        }
        LLVMFuzzerTestOneInput(m, len);
    }
    free(m);
}

START_TEST(corpus_and_mutations_run_clean)
{
    seed seeds[256];
    int n = load_seeds("tests/fuzz/corpus", seeds, 255);
    ck_assert_msg(n > 0, "no corpus in tests/fuzz/corpus (run from the repository root)");
    seeds[n++] = checkpoint_seed();
    for (int i = 0; i < n; i++) {
        LLVMFuzzerTestOneInput(seeds[i].data, seeds[i].len);
        mutate_and_run(&seeds[i]);
        free(seeds[i].data);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("parsers");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, corpus_and_mutations_run_clean);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
