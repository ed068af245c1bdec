/* tests/fuzz/fuzz.h: the fuzz targets, shared by both builds of each.
 *
 * `make fuzz` builds every target alone with clang -DFUZZ_LIBFUZZER, where FUZZ_ENTRY
 * makes it libFuzzer's entry point; build/san/test_fuzz (gcc, ASan+UBSan, `make test`)
 * links them all and calls each by name on its corpus. */
#ifndef TESTS_FUZZ_H
#define TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* JSON bodies through the strict readers, agent configs and PATCH bodies. */
int fuzz_request_one(const uint8_t *data, size_t size);
/* A checkpoint file through the loader (its CRC made valid first), then the agent. */
int fuzz_ckpt_one(const uint8_t *data, size_t size);

#ifdef FUZZ_LIBFUZZER
#define FUZZ_ENTRY(fn)                                                                     \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                          \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fn(data, size); }
#else
#define FUZZ_ENTRY(fn)
#endif

#endif
