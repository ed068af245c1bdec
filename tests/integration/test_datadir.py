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


class LiveBackupTest(unittest.TestCase):
    """Issue 10.5: a consistent backup of a live daemon with SQLite's own tool (the
    command of docs/operations.md), taken while posts go on; a daemon started on the copy
    has every transition acknowledged before the backup began."""

    def test_vacuum_into_while_posting_restores(self):
        import shutil
        import threading
        from tests.integration.harness import Client
        d = Daemon()
        d.start()
        backup_dir = os.path.join(d.tmp, "restored")
        try:
            self.assertEqual(d.client.post("/v1/agents", agent_body("live")).status, 201)
            acked = [0]
            stop = threading.Event()

            def post():
                cl = Client(d)
                while not stop.is_set():
                    r = cl.post("/v1/agents/live/transitions", {"transitions": rand_rows(20, 3, 1)})
                    if r.status == 200:
                        acked[0] = r.json()["env_steps"]
                cl.close()

            t = threading.Thread(target=post)
            t.start()
            while acked[0] < 200:  # posts under way
                pass
            before = acked[0]
            os.makedirs(backup_dir)
            out = subprocess.run(["sqlite3", os.path.join(d.data_dir, "redqd.db"),
                                  "VACUUM INTO '%s'" % os.path.join(backup_dir, "redqd.db")],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            self.assertEqual(out.returncode, 0, out.stdout)
            stop.set()
            t.join(60)
            self.assertEqual(d.stop(), 0)
            self.assertGreater(acked[0], before, "no post went on during the backup")

            r = Daemon(data_dir=backup_dir)
            try:
                r.start()
                st = r.client.get("/v1/agents/live").json()["state"]
                self.assertGreaterEqual(st["env_steps"], before)
                self.assertEqual(st["buffer_len"], st["env_steps"])
                self.assertEqual(r.client.post("/v1/agents/live/transitions", {
                    "transitions": rand_rows(1, 3, 1)}).status, 200)
                self.assertEqual(r.stop(), 0)
            finally:
                r.cleanup()
        finally:
            d.cleanup()
            shutil.rmtree(backup_dir, ignore_errors=True)
