/* tests/unit/test_rng.c: the generator's determinism, ranges, moments and subsets. */
#include <math.h>

#include "suites.h"

START_TEST(same_seed_same_stream_different_streams_differ)
{
    redq_rng a, b, c;
    redq_rng_seed(&a, 5, 1);
    redq_rng_seed(&b, 5, 1);
    redq_rng_seed(&c, 5, 2);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = redq_rng_next(&a);
        ck_assert_uint_eq(x, redq_rng_next(&b));
        differ += x != redq_rng_next(&c);
    }
    ck_assert_int_ge(differ, 99);
}
END_TEST

START_TEST(normal_moments_and_uniform_range)
{
    redq_rng r;
    double s = 0, s2 = 0;
    const int n = 200000;
    redq_rng_seed(&r, 9, 0);
    for (int i = 0; i < n; i++) {
        double x = redq_rng_normal(&r);
        s += x;
        s2 += x * x;
        float u = redq_rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
    }
    ck_assert_msg(fabs(s / n) < 0.01, "mean %g", s / n);
    ck_assert_msg(fabs(s2 / n - 1.0) < 0.01, "variance %g", s2 / n);
}
END_TEST

START_TEST(subsets_are_distinct_and_cover_all_members)
{
    redq_rng r;
    int seen[10] = {0}, out[10];
    redq_rng_seed(&r, 11, 0);
    for (int t = 0; t < 200; t++) {
        redq_rng_subset(&r, 10, 2, out);
        ck_assert(out[0] != out[1]);
        for (int k = 0; k < 2; k++) {
            ck_assert(out[k] >= 0 && out[k] < 10);
            seen[out[k]]++;
        }
    }
    for (int i = 0; i < 10; i++)
        ck_assert_msg(seen[i] > 15, "member %d drawn %d times in 400 draws", i, seen[i]);
    redq_rng_subset(&r, 10, 10, out); /* M = N: a permutation */
    int mask = 0;
    for (int k = 0; k < 10; k++)
        mask |= 1 << out[k];
    ck_assert_int_eq(mask, 1023);
}
END_TEST

Suite *suite_rng(void)
{
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("xoshiro");
    tcase_add_test(tc, same_seed_same_stream_different_streams_differ);
    tcase_add_test(tc, normal_moments_and_uniform_range);
    tcase_add_test(tc, subsets_are_distinct_and_cover_all_members);
    suite_add_tcase(s, tc);
    return s;
}
