"""Issue 10.6: the daemon serves while its agents load. After a restart GET /v1/health
answers before the agents are loaded (agents_loading counts those left; they are listed
with status "loading" and answer 503 "loading" to what needs their learner), agents that
finished loading serve, and READY=1 goes to systemd only once all have loaded."""

import json
import os
import socket
import subprocess
import tempfile
import time
import unittest

from tests.integration.harness import (BIN, Client, Daemon, agent_body, free_port, health_doc,
                                       small_config)


def rows(n, start=0):
    return [{"obs": [0.001 * (start + i)], "action": [0.5], "reward": 1.0,
             "next_obs": [0.001 * (start + i + 1)], "terminated": False, "truncated": False}
            for i in range(n)]


class LoadingTest(unittest.TestCase):

    def setUp(self):
        self.d = Daemon()
        self.d.start()
        self.tmp = tempfile.mkdtemp(prefix="redqd-ready-")
        self.sock_path = os.path.join(self.tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        os.unlink(self.sock_path)
        os.rmdir(self.tmp)
        self.d.cleanup()

    def test_serves_while_loading_and_ready_once_loaded(self):
        c = self.d.client
        # One big agent first in name order (its replay rebuild takes a while), then
        # small ones.
        big = agent_body("a-big", obs_dim=1, config=small_config(buffer_size=2000000))
        self.assertEqual(c.post("/v1/agents", big).status, 201)
        for k in range(12):
            r = c.post("/v1/agents/a-big/transitions", {"transitions": rows(50000, 50000 * k)})
            self.assertEqual(r.status, 200, repr(r))
        for name in ("b", "c", "d"):
            self.assertEqual(c.post("/v1/agents", agent_body(name, obs_dim=1)).status, 201)
            self.assertEqual(c.post("/v1/agents/%s/transitions" % name,
                                    {"transitions": rows(20)}).status, 200)
        self.d.stop_ok()

        env = self.d._env()
        env["NOTIFY_SOCKET"] = self.sock_path
        port = free_port()
        log = open(self.d.log_path, "ab")
        self.proc = subprocess.Popen([BIN, "--port", str(port), "--data-dir", self.d.data_dir,
                                      "--log-level", "debug"], stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
        log.close()
        self.sock.setblocking(False)
        first_health = None   # the first health answer, and when
        ready_at = None
        seen_loading = []
        deadline = time.monotonic() + 600  # a hang, not a bound on speed
        while ready_at is None and time.monotonic() < deadline:
            self.assertIsNone(self.proc.poll(), "redqd exited during startup")
            try:
                while True:
                    if "READY=1" in self.sock.recv(4096).decode():
                        ready_at = time.monotonic()
            except BlockingIOError:
                pass
            if first_health is None:
                try:
                    st, body = health_doc(port, timeout=5)
                    if st == 200:
                        first_health = (time.monotonic(), json.loads(body))
                except OSError:
                    pass
            if first_health is not None and ready_at is None:
                cl = Client(type("D", (), {"port": port})())
                agents = cl.get("/v1/agents").json()["agents"]
                for a in agents:
                    if a["status"] == "loading":
                        seen_loading.append(a["name"])
                        r = cl.post("/v1/agents/%s/act" % a["name"], {"obs": [0.0]})
                        if r.status != 200:  # it may have finished loading since
                            self.assertEqual(r.status, 503, repr(r))
                            self.assertIn("loading", r.json()["detail"])
                cl.close()
            time.sleep(0.01)
        self.assertIsNotNone(ready_at, "no READY=1")
        self.assertIsNotNone(first_health, "no health answer")
        # Health answered before READY=1: the daemon served while it loaded.
        self.assertLess(first_health[0], ready_at)
        self.assertIn("agents_loading", first_health[1])
        self.assertEqual(first_health[1]["agents"], 4)
        # The big agent was seen loading (its rebuild is 600 000 rows); at READY every
        # agent is loaded and whole.
        self.assertIn("a-big", seen_loading)
        cl = Client(type("D", (), {"port": port})())
        st, body = health_doc(port)
        self.assertEqual(json.loads(body)["agents_loading"], 0)
        for a in cl.get("/v1/agents").json()["agents"]:
            self.assertEqual(a["status"], "ok", a)
        state = cl.get("/v1/agents/a-big").json()["state"]
        self.assertEqual((state["env_steps"], state["buffer_len"]), (600000, 600000))
        self.assertEqual(cl.post("/v1/agents/a-big/act", {"obs": [0.0]}).status, 200)
        cl.close()
        self.proc.terminate()
        self.assertEqual(self.proc.wait(120), 0)


class EarlySigtermTest(unittest.TestCase):
    """A SIGTERM sent as soon as the first request is answered shuts the daemon down
    cleanly (exit 0): its handlers are in place before it listens. (They were installed
    after, and such a SIGTERM killed it outright about half the time.)"""

    def test_sigterm_right_after_the_first_answer(self):
        for i in range(10):
            d = Daemon()
            try:
                port = free_port()
                p = subprocess.Popen([BIN, "--port", str(port), "--data-dir", d.data_dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=d._env())
                while True:
                    self.assertIsNone(p.poll(), "redqd exited before it answered")
                    try:
                        if health_doc(port, timeout=5)[0] == 200:
                            break
                    except OSError:
                        time.sleep(0.001)
                p.terminate()
                self.assertEqual(p.wait(120), 0, "start %d: not a clean shutdown" % i)
            finally:
                d.cleanup()


if __name__ == "__main__":
    unittest.main()
