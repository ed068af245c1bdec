/* tests/fuzz/test_fuzz.c: the fuzz targets under gcc's ASan+UBSan in `make test`: every
 * committed corpus file of each target, and a fixed number of deterministic mutations
 * of each (bit flips, truncations, random bytes, insertions, 64-bit values near the
 * edges). A crash, leak or undefined behaviour fails the test; the clang/libFuzzer
 * builds (`make fuzz`) explore further.
 *
 * The checkpoint corpus (tests/fuzz/corpus-ckpt) is made by this program, so that it
 * follows the format: `build/san/test_fuzz --write-ckpt-corpus tests/fuzz/corpus-ckpt`.
 * The test fails, saying so, when a committed checkpoint no longer loads as it is. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../redq/redq.h"
#include "fuzz.h"

#define MUTATIONS 4000      /* per request seed */
#define CKPT_MUTATIONS 3000 /* per checkpoint seed: each loads, acts, trains and saves */
#define MAX_SEED (1 << 16)

typedef struct {
    char name[256];
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
        uint8_t *buf = malloc(MAX_SEED);
        size_t got = fread(buf, 1, MAX_SEED, f);
        fclose(f);
        snprintf(out[n].name, sizeof out[n].name, "%s", e->d_name);
        out[n].data = buf;
        out[n].len = got;
        n++;
    }
    closedir(d);
    return n;
}

/* Applies 1 to 4 random edits to m (len bytes, room for 64 more) from byte 'from' on. */
static size_t mutate(uint8_t *m, size_t len, size_t cap, size_t from)
{
    static const int64_t edges[] = {INT64_MAX, INT64_MIN, -1, 0, 9007199254740991LL,
                                    9007199254740992LL, 1LL << 62, 0x7f800000, 0x7fc00000};
    int ops = 1 + (int)(next() % 4);
    for (int o = 0; o < ops && len > from + 1; o++) {
        size_t at = from + next() % (len - from);
        switch (next() % 5) {
        case 0: m[at] ^= (uint8_t)(1u << (next() % 8)); break;
        case 1: len = at; break;
        case 2: m[at] = (uint8_t)next(); break;
        case 3:
            if (at + 8 <= len) /* a counter, a length or a float pair at the edge */
                memcpy(m + at, &edges[next() % (sizeof edges / sizeof edges[0])], 8);
            break;
        default:
            if (len + 1 < cap) {
                memmove(m + at + 1, m + at, len - at);
                m[at] = "{}[],:\"0e-1"[next() % 11];
                len++;
            }
        }
    }
    return len;
}

static void mutate_and_run(const seed *s, int (*target)(const uint8_t *, size_t), size_t from,
                           int rounds)
{
    uint8_t *m = malloc(s->len + 64);
    for (int k = 0; k < rounds; k++) {
        memcpy(m, s->data, s->len);
        target(m, mutate(m, s->len, s->len + 64, from));
    }
    free(m);
}

START_TEST(request_corpus_and_mutations_run_clean)
{
    seed seeds[256];
    int n = load_seeds("tests/fuzz/corpus", seeds, 256);
    ck_assert_msg(n > 0, "no corpus in tests/fuzz/corpus (run from the repository root)");
    for (int i = 0; i < n; i++) {
        fuzz_request_one(seeds[i].data, seeds[i].len);
        mutate_and_run(&seeds[i], fuzz_request_one, 1, MUTATIONS); /* keep the selector */
        free(seeds[i].data);
    }
}
END_TEST

START_TEST(checkpoint_corpus_and_mutations_run_clean)
{
    seed seeds[64];
    int n = load_seeds("tests/fuzz/corpus-ckpt", seeds, 64);
    ck_assert_msg(n >= 4, "no corpus in tests/fuzz/corpus-ckpt (run from the repository root)");
    for (int i = 0; i < n; i++) {
        redq_agent *a = NULL;
        rqd_err err = {0};
        ck_assert_msg(redq_agent_load(seeds[i].data, seeds[i].len, &a, &err) == 0,
                      "tests/fuzz/corpus-ckpt/%s no longer loads (%s): regenerate it with "
                      "build/san/test_fuzz --write-ckpt-corpus tests/fuzz/corpus-ckpt",
                      seeds[i].name, err.msg);
        redq_agent_free(a);
        fuzz_ckpt_one(seeds[i].data, seeds[i].len);
        mutate_and_run(&seeds[i], fuzz_ckpt_one, 0, CKPT_MUTATIONS);
        free(seeds[i].data);
    }
}
END_TEST

/* ------------------------------------------------------------------ the checkpoint corpus */

typedef struct {
    const char *name;
    int n_step, with_buffer, alpha_auto, scaling, mean_target, updates;
    long long buffer;
} ckpt_recipe;

/* Small networks, every part of the format: with and without buffer, n-step streams
 * pending, a ring that wrapped, fixed and automatic alpha, both target modes. */
static const ckpt_recipe recipes[] = {
    {"fresh-no-buffer.ckpt", 1, 0, 0, 1, 0, 0, 64},
    {"one-step-buffer.ckpt", 1, 1, 1, 1, 0, 6, 64},
    {"nstep3-streams.ckpt", 3, 1, 1, 1, 0, 5, 64},
    {"nstep2-wrapped-ring.ckpt", 2, 1, 0, 0, 1, 4, 8},
    {"nstep3-no-buffer.ckpt", 3, 0, 1, 1, 1, 3, 64},
};

static int make_ckpt(const ckpt_recipe *r, rqd_buf *out, rqd_err *err)
{
    redq_config c;
    redq_agent *a = NULL;
    float low[2] = {-1.0f, -2.0f}, high[2] = {1.0f, 0.5f};
    int rc;

    redq_config_default(&c, 2);
    c.hidden[0] = 4;
    c.hidden[1] = 3;
    c.ensemble_size = 3;
    c.subset_size = 2;
    c.batch_size = 4;
    c.buffer_size = r->buffer;
    c.start_timesteps = 0;
    c.actor_delay = 2;
    c.estimation_step = r->n_step;
    c.alpha_auto = r->alpha_auto;
    c.action_scaling = r->scaling;
    c.target_mode = r->mean_target ? REDQ_TARGET_MEAN : REDQ_TARGET_MIN;
    c.seed = 7;
    if ((rc = redq_agent_new(&c, 3, 2, low, high, &a, err)) < 0)
        return rc;
    for (int i = 0; i < 14 && rc == 0; i++) {
        float obs[3] = {0.1f * (float)i, -0.3f, 0.7f}, next_obs[3] = {0.2f, 0.1f * (float)i, -0.5f};
        float act[2] = {0.3f - 0.1f * (float)(i % 5), -0.4f};
        /* two streams; "b" ends an episode at step 9, "a" stays pending */
        redq_transition t = {obs, act, 0.5f * (float)(i % 3) - 0.4f, next_obs, i == 9, 0,
                             i % 2 ? "a" : "b"};
        rc = redq_agent_add(a, &t, 1, err);
    }
    if (rc == 0 && r->updates > 0)
        rc = redq_agent_update(a, r->updates, NULL, NULL, err);
    if (rc == 0)
        rc = redq_agent_save(a, r->with_buffer, out, err);
    redq_agent_free(a);
    return rc;
}

static int write_ckpt_corpus(const char *dir)
{
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++) {
        char path[512];
        rqd_buf b;
        rqd_err err = {0};
        rqd_buf_init(&b, 0);
        if (make_ckpt(&recipes[i], &b, &err) < 0) {
            fprintf(stderr, "%s: %s\n", recipes[i].name, err.msg);
            return EXIT_FAILURE;
        }
        snprintf(path, sizeof path, "%s/%s", dir, recipes[i].name);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
            fprintf(stderr, "%s: %s\n", path, strerror(errno));
            return EXIT_FAILURE;
        }
        printf("%s: %zu bytes\n", path, b.len);
        rqd_buf_free(&b);
    }
    return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-ckpt-corpus") == 0)
        return write_ckpt_corpus(argv[2]);
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("parsers");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, request_corpus_and_mutations_run_clean);
    tcase_add_test(tc, checkpoint_corpus_and_mutations_run_clean);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
