"""Issue 10.1: one daemon per data directory. A second redqd on a data directory in use
refuses to start at once, naming the directory and the PID that holds it; after the
holder is SIGKILLed (no clean exit, no chance to unlock) the next one takes over."""

import os
import subprocess
import unittest

from tests.integration.harness import BIN, Daemon, agent_body, free_port, rand_rows


class OneDaemonPerDataDirTest(unittest.TestCase):

    def setUp(self):
        self.d = Daemon()
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def second(self, data_dir):
        """A second redqd on the same data directory: (exit code, output)."""
        p = subprocess.run([BIN, "--port", str(free_port()), "--data-dir", data_dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           env=self.d._env())
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def test_second_daemon_refuses_and_takes_over_after_sigkill(self):
        c = self.d.client
        self.assertEqual(c.post("/v1/agents", agent_body("held")).status, 201)
        self.assertEqual(c.post("/v1/agents/held/transitions",
                                {"transitions": rand_rows(5, 3, 1)}).status, 200)
        rc, out = self.second(self.d.data_dir)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(self.d.data_dir, out)
        self.assertIn("PID %d" % self.d.proc.pid, out)
        self.assertIn("in use", out)
        # The first one never noticed: it serves, and its data is as it was.
        self.assertEqual(c.get("/v1/agents/held").json()["state"]["env_steps"], 5)
        with open(os.path.join(self.d.data_dir, "redqd.lock")) as f:
            self.assertEqual(f.read().strip(), str(self.d.proc.pid))

        self.d.kill()  # SIGKILL: the kernel drops the lock with the process
        self.d.start()
        self.assertEqual(self.d.client.get("/v1/agents/held").json()["state"]["env_steps"], 5)
        rc, out = self.second(self.d.data_dir)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("PID %d" % self.d.proc.pid, out)
        self.assertEqual(self.d.stop(), 0)

    def test_data_dir_parents_are_created(self):
        deep = os.path.join(self.d.tmp, "a", "b", "c")
        d2 = Daemon(data_dir=deep)
        try:
            d2.start()
            self.assertTrue(os.path.isfile(os.path.join(deep, "redqd.db")))
            self.assertEqual(d2.stop(), 0)
        finally:
            d2.cleanup()


if __name__ == "__main__":
    unittest.main()
