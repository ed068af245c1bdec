"""tests/integration/test_install.py: `make install PREFIX=...` puts the binary, the
systemd unit (paths filled in), the example config and the docs in place; the unit's
hardening scores 2.0 or better in `systemd-analyze security --offline` (where
systemd-analyze exists); `make uninstall` removes them but keeps an edited config."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class InstallTest(unittest.TestCase):
    def setUp(self):
        self.prefix = tempfile.mkdtemp(prefix="redqd-install-")

    def tearDown(self):
        shutil.rmtree(self.prefix, ignore_errors=True)

    def make(self, target):
        r = subprocess.run(["make", "-s", "-C", REPO, target, "PREFIX=" + self.prefix],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_install_and_uninstall(self):
        self.make("install")
        p = self.prefix
        binary = os.path.join(p, "bin", "redqd")
        unit = os.path.join(p, "lib", "systemd", "system", "redqd.service")
        conf = os.path.join(p, "etc", "redqd", "redqd.conf")
        for f in (binary, unit, conf, conf + ".example",
                  os.path.join(p, "share", "doc", "redqd", "operations.md")):
            self.assertTrue(os.path.isfile(f), f)
        self.assertTrue(os.access(binary, os.X_OK))
        r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--data-dir", r.stdout)
        text = open(unit).read()
        self.assertNotIn("@", text.replace("@system-service", "").replace("@privileged", "")
                         .replace("@resources", ""))
        self.assertIn("ExecStart=%s --config %s" % (binary, conf), text)
        self.assertIn("Type=notify", text)
        if shutil.which("systemd-analyze"):
            r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                                unit], capture_output=True, text=True, timeout=60)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
            self.assertIsNotNone(m, r.stdout + r.stderr)
            self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)
        with open(conf, "a") as f:
            f.write("# edited by the administrator\n")
        self.make("uninstall")
        self.assertFalse(os.path.exists(binary))
        self.assertFalse(os.path.exists(unit))
        self.assertTrue(os.path.exists(conf))  # an edited config stays


if __name__ == "__main__":
    unittest.main()
