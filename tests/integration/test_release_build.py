"""tests/integration/test_release_build.py: the daemon under test is built the way the
Makefile promises (its header): the release daemon (build/redqd, what `make run` and
`make install` ship) is compiled with -DNDEBUG, so no internal check can abort a shared
server: ALWAYS()/NEVER() keep their defensive branch (common/rqd_attrs.h) and assert()
is gone. A sanitizer build (build/san/redqd) and the unit tests stay strict.

The evidence is the binary's undefined symbols (nm -u): assert() calls glibc's
__assert_fail, which a -DNDEBUG build never references."""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, REPO  # noqa: E402


def undefined_symbols(path):
    r = subprocess.run(["nm", "-u", path], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("nm -u %s: %s" % (path, r.stderr))
    return {line.split()[-1].split("@")[0] for line in r.stdout.splitlines() if line.strip()}


@unittest.skipUnless(shutil.which("nm"), "nm (binutils) is not installed")
class ReleaseBuildTest(unittest.TestCase):
    def test_daemon_asserts_only_when_built_with_a_sanitizer(self):
        syms = undefined_symbols(BIN)
        sanitized = any(s.startswith("__asan_") or s.startswith("__ubsan_") for s in syms)
        if sanitized:
            self.assertTrue("__assert_fail" in syms,
                            "%s is a sanitizer build: its assertions must stay on" % BIN)
        else:
            self.assertFalse("__assert_fail" in syms,
                             "%s is a release build: it must be compiled with -DNDEBUG, "
                             "so that no assert() can abort the daemon" % BIN)

    def test_unit_tests_keep_their_assertions(self):
        unit = os.path.join(REPO, "build", "test_unit")
        if not os.path.exists(unit):
            self.skipTest("build/test_unit is not built")
        self.assertTrue("__assert_fail" in undefined_symbols(unit),
                        "build/test_unit must keep its assertions")


if __name__ == "__main__":
    unittest.main()
