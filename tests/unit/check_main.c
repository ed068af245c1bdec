/* tests/unit/check_main.c: the single Check runner of build/test_unit (CK_FORK, so a
 * crash fails one test, not the run); the exit code is the number of failures. */
#include <stdlib.h>

#include "suites.h"

int main(void)
{
    Suite *(*const suites[])(void) = {suite_rng,     suite_linear, suite_grad,  suite_update,
                                      suite_replay,  suite_act,    suite_adam,  suite_config,
                                      suite_ckpt,    suite_policy, suite_store, suite_json};
    SRunner *sr = srunner_create(suites[0]());

    for (size_t i = 1; i < sizeof suites / sizeof suites[0]; i++)
        srunner_add_suite(sr, suites[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
