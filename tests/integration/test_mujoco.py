"""The C MuJoCo client (build/redq-mujoco, clients/mujoco/) against the real daemon,
and against a scripted one for the routes the daemon may not have yet.

Plumbing, not learning: a few hundred steps of each task with a small network in sync
mode. The client must create the agent, have every step acknowledged (the agent's
env_steps and, in sync mode, its updates are exact), record its evaluations (or print
them, while the daemon has no evaluations endpoint), print its CSV curve and exit 0. It
must also reuse an agent of the same settings, refuse one of other settings, ride out a
daemon killed and restarted under it (every transition stored once), and wait out 429
back-pressure.

FakeDaemonTest runs the client against a scripted server that has PUT /v1/agents/{name}
and POST .../evaluations (API.md "(added)"), and checks what the client sends: the PUT
body, batch ids unique per post and repeated after a 429, one env_id per environment,
the evaluation bodies; and that a 409 from PUT stops the client.

REDQ_MUJOCO_BIN names another client binary (default build/redq-mujoco).
"""
import contextlib
import csv
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import REPO, DaemonTestCase  # noqa: E402

CLIENT = os.environ.get("REDQ_MUJOCO_BIN") or os.path.join(REPO, "build", "redq-mujoco")
# Small and quick: updates are owed from step 100 on, 2 per transition.
SMALL = {"hidden_sizes": [32, 32], "ensemble_size": 3, "subset_size": 2, "batch_size": 32,
         "update_per_step": 2, "actor_delay": 2, "start_timesteps": 100,
         "checkpoint_every": 0, "buffer_size": 10000}
COLUMNS = ["env_steps", "updates", "policy_version", "wall_s", "eval_mean", "eval_std",
           "eval_min", "eval_max", "eval_n", "eval_length_mean", "train_return_last10",
           "eval_row"]
TIMEOUT = 120


def owed(steps, cfg):
    """Updates a sync agent has done after `steps` transitions (API.md: owed from the
    transition that reaches max(start_timesteps, batch_size) on)."""
    first = max(cfg["start_timesteps"], cfg["batch_size"])
    return max(0, steps - first + 1) * cfg["update_per_step"]


class MujocoClientTest(DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="redq-mujoco-it-")
        cls.config = cls.config_file("small", SMALL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def config_file(cls, name, cfg):
        path = os.path.join(cls.tmp, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        return path

    def url(self):
        return "http://127.0.0.1:%d" % self.daemon.port

    def client_args(self, env, agent, steps, *extra, config=None):
        return [CLIENT, "--url", self.url(), "--env", env, "--agent", agent,
                "--steps", str(steps), "--seed", "3", "--config", config or self.config,
                "--envs", "2", "--eval-episodes", "2", "--eval-every", "150",
                "--log-every", "100"] + list(extra)

    def run_client(self, *args, **kw):
        p = subprocess.run(self.client_args(*args, **kw), capture_output=True, text=True,
                           timeout=TIMEOUT)
        return p.returncode, p.stdout, p.stderr

    @contextlib.contextmanager
    def client_in_background(self, *args, **kw):
        """The client runs while the test acts on the daemon; yields finish(), which
        waits for it and returns (exit code, stdout, stderr)."""
        p = subprocess.Popen(self.client_args(*args, **kw), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

        def finish():
            out, err = p.communicate(timeout=TIMEOUT)
            return p.returncode, out, err
        try:
            yield finish
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()

    def curve(self, out):
        rows = list(csv.DictReader(io.StringIO(out)))
        self.assertTrue(rows, out)
        self.assertEqual(list(rows[0].keys()), COLUMNS)
        return rows

    def env_steps(self, name):
        """The agent's env_steps, or -1 while the client has not created it yet."""
        r = self.c.get("/v1/agents/" + name)
        return self.assertOK(r)["state"]["env_steps"] if r.status != 404 else -1

    def evaluations(self, name):
        """The recorded evaluation rows, or None while the daemon has no endpoint."""
        r = self.c.get("/v1/agents/%s/evaluations" % name)
        if r.status in (404, 405):
            return None
        return self.assertOK(r)["rows"]

    def check_recorded(self, name, rows, err):
        recorded = self.evaluations(name)
        if recorded is None:
            self.assertIn("evaluations are printed only", err)
            self.assertTrue(all(r["eval_row"] == "" for r in rows), rows)
        else:
            self.assertEqual(len(recorded), len(rows))
            self.assertEqual([str(r["row"]) for r in recorded], [r["eval_row"] for r in rows])
            self.assertEqual([r["env_steps"] for r in recorded],
                             [int(r["env_steps"]) for r in rows])

    def test_both_tasks_end_to_end(self):
        for env, obs_dim, act_dim in (("hopper", 11, 3), ("halfcheetah", 17, 6)):
            with self.subTest(env=env):
                name = "mj-" + env
                rc, out, err = self.run_client(env, name, 300)
                self.assertEqual(rc, 0, err)
                self.assertIn("created agent '%s'" % name, err)
                agent = self.agent(name)
                self.assertEqual((agent["obs_dim"], agent["act_dim"]), (obs_dim, act_dim))
                self.assertEqual(agent["action_low"], [-1.0] * act_dim)
                self.assertEqual(agent["config"]["training"], "sync")
                self.assertEqual(agent["config"]["seed"], 3)
                st = agent["state"]
                self.assertEqual(st["env_steps"], 300)
                self.assertEqual(st["updates"], owed(300, SMALL))
                self.assertEqual(st["pending_updates"], 0)

                rows = self.curve(out)
                self.assertEqual([int(r["env_steps"]) for r in rows], [0, 150, 300])
                self.assertEqual(int(rows[-1]["updates"]), owed(300, SMALL))
                for r in rows:
                    self.assertEqual(int(r["eval_n"]), 2)
                    self.assertGreater(float(r["eval_length_mean"]), 0)
                if env == "halfcheetah":  # never terminates: every episode is 1000 steps
                    self.assertEqual(float(rows[-1]["eval_length_mean"]), 1000.0)
                self.check_recorded(name, rows, err)

    def test_reuse_continues_and_mismatch_is_refused(self):
        name = "mj-reuse"
        rc, out, err = self.run_client("hopper", name, 200)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.run_client("hopper", name, 360)
        self.assertEqual(rc, 0, err)
        self.assertIn("reusing agent '%s'" % name, err)
        rows = self.curve(out)
        self.assertEqual([int(r["env_steps"]) for r in rows], [300, 360])
        self.assertEqual(self.state(name)["env_steps"], 360)
        self.assertEqual(self.state(name)["updates"], owed(360, SMALL))

        other = self.config_file("other", dict(SMALL, hidden_sizes=[16, 16]))
        rc, out, err = self.run_client("hopper", name, 400, config=other)
        self.assertEqual(rc, 1, err)
        self.assertIn("hidden_sizes", err)
        self.assertEqual(self.state(name)["env_steps"], 360)  # nothing was posted

    def test_daemon_killed_and_restarted_under_the_client(self):
        """SIGKILL mid-run, a new daemon on the same port and data: the client retries
        (the same batch ids) and every transition is stored once."""
        name = "mj-crash"
        cfg = dict(SMALL, update_per_step=4)
        with self.client_in_background("hopper", name, 2000,
                                       config=self.config_file("crash", cfg)) as finish:
            self.wait_until(lambda: self.env_steps(name) >= 300, timeout=60,
                            what="300 steps before the kill")
            port = self.daemon.port
            self.daemon.kill()
            real_free_port = harness.free_port
            harness.free_port = lambda: port
            try:
                time.sleep(0.5)
                self.daemon.start()
            finally:
                harness.free_port = real_free_port
            rc, out, err = finish()
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"[1-9]\d* after a lost connection")
        st = self.state(name)
        self.assertEqual(st["env_steps"], 2000)
        self.wait_until(lambda: self.state(name)["pending_updates"] == 0, timeout=60,
                        what="owed updates worked off after the restart")
        self.assertEqual(self.state(name)["updates"], owed(2000, cfg))
        self.assertEqual(int(self.curve(out)[-1]["env_steps"]), 2000)

    def test_waits_out_back_pressure(self):
        """A paused agent owes updates until posts are answered 429; the client waits
        (Retry-After) and goes on once training resumes."""
        name = "mj-busy"
        cfg = dict(SMALL, training="paused", start_timesteps=20, batch_size=16,
                   max_pending_updates=4)
        with self.client_in_background("hopper", name, 40,
                                       config=self.config_file("busy", cfg)) as finish:
            # Transition 20 owes 2 updates; the next post (4 more) is past the cap.
            self.wait_until(lambda: self.env_steps(name) == 20, timeout=30,
                            what="the first 20 steps")
            time.sleep(1.5)  # at least one 429 and its Retry-After
            self.assertEqual(self.state(name)["env_steps"], 20)
            self.assertOK(self.c.patch("/v1/agents/" + name, {"training": "sync"}))
            rc, out, err = finish()
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"[1-9]\d* after 429 busy")
        self.assertEqual(self.state(name)["env_steps"], 40)
        self.assertEqual(int(self.curve(out)[-1]["env_steps"]), 40)

    def test_usage_errors(self):
        for args, code in (([CLIENT], 2), ([CLIENT, "--env", "hopper"], 2),
                           ([CLIENT, "--env", "walker", "--steps", "10", "--url", self.url()], 1),
                           ([CLIENT, "--env", "hopper", "--steps", "0"], 2)):
            with self.subTest(args=args[1:]):
                p = subprocess.run(args, capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, code, p.stderr)


class FakeDaemon(http.server.ThreadingHTTPServer):
    """Just enough of API.md for the client, with the added routes; records requests.
    put_status: what PUT /v1/agents/{name} answers (201, 200 or 409)."""

    def __init__(self, put_status=201):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.put_status = put_status
        self.requests = []          # (method, path, body or None)
        self.env_steps = 0
        self.busy_once = True       # the second transitions post gets one 429 first
        self.evaluations = 0
        self.lock = threading.Lock()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as the client expects

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle and the client's
        # delayed ACK hold every answer 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def answer(self, status, doc, headers=()):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json" if status >= 400
                         else "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def agent(self):
        return {"name": "fake", "obs_dim": 11, "act_dim": 3, "action_low": [-1.0] * 3,
                "action_high": [1.0] * 3, "config": {},
                "state": {"env_steps": self.server.env_steps, "updates": 0,
                          "policy_version": 0, "pending_updates": 0}}

    def handle_one(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        srv = self.server
        with srv.lock:
            srv.requests.append((method, self.path, body))
            if method == "PUT" and self.path == "/v1/agents/fake":
                if srv.put_status == 409:
                    return self.answer(409, {"status": 409, "code": "already_exists",
                                             "detail": "config.ensemble_size is 5, not 10"})
                return self.answer(srv.put_status, self.agent())
            if method == "GET" and self.path == "/v1/agents/fake":
                return self.answer(200, self.agent())
            if self.path == "/v1/agents/fake/act":
                return self.answer(200, {"action": [[0.0] * 3 for _ in body["obs"]],
                                         "policy_version": 0})
            if self.path == "/v1/agents/fake/transitions":
                posts = sum(1 for r in srv.requests if r[1] == self.path)
                if posts == 2 and srv.busy_once:
                    srv.busy_once = False
                    return self.answer(429, {"status": 429, "code": "busy", "detail": "busy"},
                                       [("Retry-After", "1")])
                srv.env_steps += len(body["transitions"])
                return self.answer(200, {"accepted": len(body["transitions"]),
                                         "env_steps": srv.env_steps, "pending_updates": 0})
            if self.path == "/v1/agents/fake/evaluations":
                srv.evaluations += 1
                return self.answer(201, {"row": 100 + srv.evaluations,
                                         "env_steps": srv.env_steps})
            return self.answer(404, {"status": 404, "code": "not_found", "detail": "no route"})

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PUT(self):
        self.handle_one("PUT")


class FakeDaemonTest(unittest.TestCase):

    def run_against(self, put_status):
        srv = FakeDaemon(put_status)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            p = subprocess.run([CLIENT, "--url", "http://127.0.0.1:%d" % srv.server_address[1],
                                "--env", "hopper", "--agent", "fake", "--steps", "6",
                                "--envs", "2", "--seed", "3", "--eval-every", "0",
                                "--eval-episodes", "2"],
                               capture_output=True, text=True, timeout=TIMEOUT)
        finally:
            srv.shutdown()
            srv.server_close()
        return p, srv.requests

    def test_put_transitions_and_evaluations(self):
        p, reqs = self.run_against(201)
        self.assertEqual(p.returncode, 0, p.stderr)
        method, path, body = reqs[0]
        self.assertEqual((method, path), ("PUT", "/v1/agents/fake"))
        self.assertEqual(body, {"obs_dim": 11, "action_low": [-1, -1, -1],
                                "action_high": [1, 1, 1],
                                "config": {"training": "sync", "seed": 3}})
        self.assertIn("created agent 'fake'", p.stderr)

        posts = [b for m, pth, b in reqs if pth.endswith("/transitions")]
        self.assertEqual(len(posts), 4)                    # 3 posts of 2, one sent twice
        ids = [b["batch_id"] for b in posts]
        self.assertEqual(ids[1], ids[2])                   # the 429 repeat
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(posts[1], posts[2])
        for b in posts:
            self.assertEqual(len(b["transitions"]), 2)
            streams = [t["env_id"] for t in b["transitions"]]
            self.assertEqual(len(set(streams)), 2)
            self.assertTrue(streams[0].endswith("-0") and streams[1].endswith("-1"), streams)
            self.assertEqual(streams[0][:-2], ids[0].rsplit("-", 1)[0])  # one run id
        self.assertRegex(p.stderr, r"1 after 429 busy")

        evals = [b for m, pth, b in reqs if pth.endswith("/evaluations")]
        self.assertEqual(len(evals), 2)                    # untrained, and at the end
        for b in evals:
            self.assertEqual(len(b["returns"]), 2)
            self.assertTrue(all(isinstance(n, int) and n > 0 for n in b["lengths"]))
        rows = list(csv.DictReader(io.StringIO(p.stdout)))
        self.assertEqual([r["eval_row"] for r in rows], ["101", "102"])
        self.assertEqual([r["env_steps"] for r in rows], ["0", "6"])

    def test_put_conflict_stops_the_client(self):
        p, reqs = self.run_against(409)
        self.assertEqual(p.returncode, 1)
        self.assertIn("config.ensemble_size is 5, not 10", p.stderr)
        self.assertEqual([(m, pth) for m, pth, _ in reqs], [("PUT", "/v1/agents/fake")])

    def test_put_existing_agent_is_reused(self):
        p, reqs = self.run_against(200)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("reusing agent 'fake'", p.stderr)
        self.assertNotIn("POST", [m for m, pth, _ in reqs if pth == "/v1/agents"])


if __name__ == "__main__":
    unittest.main()
