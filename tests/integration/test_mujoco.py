"""The C MuJoCo client (build/redq-mujoco, clients/mujoco/) against the real daemon.

Plumbing, not learning: a few hundred steps of each task with a small network in sync
mode. The client must create the agent, have every step acknowledged (the agent's
env_steps and, in sync mode, its updates are exact), record its evaluations (or print
them, while the daemon has no evaluations endpoint), print its CSV curve and exit 0. It
must also reuse an agent of the same settings, refuse one of other settings, ride out a
daemon killed and restarted under it (every transition stored once), and wait out 429
back-pressure.

REDQ_MUJOCO_BIN names another client binary (default build/redq-mujoco).
"""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
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
        cls.config = os.path.join(cls.tmp, "small.json")
        with open(cls.config, "w", encoding="utf-8") as f:
            json.dump(SMALL, f)

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

        other = os.path.join(self.tmp, "other.json")
        with open(other, "w", encoding="utf-8") as f:
            json.dump(dict(SMALL, hidden_sizes=[16, 16]), f)
        rc, out, err = self.run_client("hopper", name, 400, config=other)
        self.assertEqual(rc, 1, err)
        self.assertIn("hidden_sizes", err)
        self.assertEqual(self.state(name)["env_steps"], 360)  # nothing was posted

    def test_daemon_killed_and_restarted_under_the_client(self):
        """SIGKILL mid-run, a new daemon on the same port and data: the client retries
        (the same batch ids) and every transition is stored once."""
        name = "mj-crash"
        cfg = dict(SMALL, update_per_step=4)
        path = os.path.join(self.tmp, "crash.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        p = subprocess.Popen(self.client_args("hopper", name, 2000, config=path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
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
            out, err = p.communicate(timeout=TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 0, err)
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
        path = os.path.join(self.tmp, "busy.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        p = subprocess.Popen(self.client_args("hopper", name, 40, config=path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Transition 20 owes 2 updates; the next post (4 more) is past the cap.
            self.wait_until(lambda: self.env_steps(name) == 20, timeout=30,
                            what="the first 20 steps")
            time.sleep(1.5)  # at least one 429 and its Retry-After
            self.assertEqual(self.state(name)["env_steps"], 20)
            self.assertOK(self.c.patch("/v1/agents/" + name, {"training": "sync"}))
            out, err = p.communicate(timeout=TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 0, err)
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


if __name__ == "__main__":
    unittest.main()
