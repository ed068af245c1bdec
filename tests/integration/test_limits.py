"""The limit flags (API.md "Limits": each has a flag): a daemon started with lowered
limits refuses, with 400 invalid_argument naming the field and the flag, what is past
them, accepts what is at them, and stores nothing for a refused request. Agents stored
under higher limits still load after a restart with lower ones; importing such an agent
is refused. Flags past the compile-time ceilings stop the daemon at start."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Daemon, DaemonTestCase, agent_body  # noqa: E402

OCTETS = "application/octet-stream"

LIMITS = ("--max-obs-dim", "8", "--max-act-dim", "2", "--max-hidden-layers", "2",
          "--max-hidden-width", "64", "--max-ensemble", "4", "--max-batch", "32",
          "--max-buffer", "1000", "--max-agent-memory", "1M",
          "--max-transitions-per-post", "10", "--max-obs-per-act", "3",
          "--max-open-episodes", "2")


class LimitFlagsTest(DaemonTestCase):
    daemon_args = LIMITS

    def refused(self, body, field, flag):
        r = self.c.post("/v1/agents", body)
        p = self.assertProblem(r, 400, "invalid_argument", field)
        self.assertIn(flag, p["detail"])
        self.assertProblem(self.c.get("/v1/agents/%s" % body["name"]), 404, "not_found")

    def test_agent_shape_limits(self):
        small = dict(hidden_sizes=[16, 16], ensemble_size=2, batch_size=8, buffer_size=100)
        self.refused(agent_body("l1", obs_dim=9, **small), "obs_dim", "--max-obs-dim")
        self.refused(agent_body("l2", act_dim=3, **small), "action_low", "--max-act-dim")
        self.refused(agent_body("l3", **dict(small, hidden_sizes=[8, 8, 8])),
                     "config.hidden_sizes", "--max-hidden-layers")
        self.refused(agent_body("l4", **dict(small, hidden_sizes=[65, 16])),
                     "config.hidden_sizes", "--max-hidden-width")
        self.refused(agent_body("l5", **dict(small, ensemble_size=5)),
                     "config.ensemble_size", "--max-ensemble")
        self.refused(agent_body("l6", **dict(small, batch_size=33)),
                     "config.batch_size", "--max-batch")
        self.refused(agent_body("l7", **dict(small, buffer_size=1001)),
                     "config.buffer_size", "--max-buffer")
        # each at its limit is accepted; this one's networks are well under 1 MiB
        self.create("l8", obs_dim=8, act_dim=2, hidden_sizes=[64, 64], ensemble_size=4,
                    subset_size=2, batch_size=32, buffer_size=1000)
        self.assertEqual(self.agent("l8")["obs_dim"], 8)

    def test_transitions_per_post(self):
        self.create("tp", obs_dim=1, act_dim=1, hidden_sizes=[16], ensemble_size=2,
                    batch_size=8, buffer_size=100)
        row = {"obs": [0.0], "action": [0.0], "reward": 0.0, "next_obs": [0.0],
               "terminated": False, "truncated": False}
        r = self.c.post("/v1/agents/tp/transitions", {"transitions": [row] * 11})
        p = self.assertProblem(r, 400, "invalid_argument", "transitions")
        self.assertIn("--max-transitions-per-post", p["detail"])
        self.assertEqual(self.state("tp")["env_steps"], 0)
        self.assertEqual(self.post_transitions("tp", [row] * 10)["env_steps"], 10)

    def test_obs_per_act(self):
        self.create("oa", obs_dim=1, act_dim=1, hidden_sizes=[16], ensemble_size=2,
                    batch_size=8, buffer_size=100)
        r = self.c.post("/v1/agents/oa/act", {"obs": [[0.0]] * 4})
        p = self.assertProblem(r, 400, "invalid_argument", "obs")
        self.assertIn("--max-obs-per-act", p["detail"])
        out = self.assertOK(self.c.post("/v1/agents/oa/act", {"obs": [[0.0]] * 3}))
        self.assertEqual(len(out["action"]), 3)

    def test_open_episodes(self):
        self.create("ep", obs_dim=1, act_dim=1, hidden_sizes=[16], ensemble_size=2,
                    batch_size=8, buffer_size=100)
        ids = [self.assertOK(self.c.post("/v1/agents/ep/episodes", {"obs": [0.0]}),
                             201)["episode_id"] for _ in range(2)]
        r = self.c.post("/v1/agents/ep/episodes", {"obs": [0.0]})
        p = self.assertProblem(r, 400, "invalid_argument")
        self.assertIn("--max-open-episodes", p["detail"])
        # one abandoned makes room for one more
        self.assertStatus(self.c.delete("/v1/agents/ep/episodes/%s" % ids[0]), 204)
        self.assertOK(self.c.post("/v1/agents/ep/episodes", {"obs": [0.0]}), 201)
        self.assertProblem(self.c.post("/v1/agents/ep/episodes", {"obs": [0.0]}), 400,
                           "invalid_argument")


class MemoryLimitTest(DaemonTestCase):
    daemon_args = ("--max-agent-memory", "1M")

    def test_estimate_over_the_limit_is_refused_before_allocating(self):
        # 10 members of [256, 256] need about 20 MiB (docs/architecture.md)
        body = agent_body("big", obs_dim=17, act_dim=6, hidden_sizes=[256, 256],
                          ensemble_size=10, batch_size=256)
        p = self.assertProblem(self.c.post("/v1/agents", body), 400, "invalid_argument",
                               "config.hidden_sizes")
        self.assertIn("--max-agent-memory", p["detail"])
        self.assertIn("MiB", p["detail"])
        self.create("fits", obs_dim=3, act_dim=1, hidden_sizes=[32, 32], ensemble_size=3)


class LoweredAfterTheFactTest(unittest.TestCase):
    """Limits hold requests, not what is stored: an agent created under the defaults
    loads after a restart with lower limits and keeps working, but its checkpoint cannot
    be imported as a new agent."""

    def test_stored_agent_loads_and_import_is_refused(self):
        d = Daemon()
        try:
            d.start()
            c = d.client
            r = c.post("/v1/agents", agent_body("wide", obs_dim=12, hidden_sizes=[32, 32]))
            self.assertEqual(r.status, 201, r)
            ck = c.post("/v1/agents/wide/checkpoints", data=b"")
            self.assertEqual(ck.status, 201, ck)
            blob = c.get("/v1/agents/wide/checkpoints/%d" % ck.json()["id"]).body
            self.assertEqual(d.stop(), 0)
            d.start(extra_args=("--max-obs-dim", "8"))
            c = d.client
            self.assertEqual(c.get("/v1/agents/wide").json()["obs_dim"], 12)
            r = c.post("/v1/agents/wide/act", {"obs": [0.0] * 12})
            self.assertEqual(r.status, 200, r)
            r = c.put("/v1/agents/wide2/checkpoint", data=blob, content_type=OCTETS)
            self.assertEqual(r.status, 400, r)
            self.assertIn("--max-obs-dim", r.json()["detail"])
            self.assertEqual(c.get("/v1/agents/wide2").status, 404)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


class FlagBoundsTest(unittest.TestCase):
    """A limit flag past its compile-time ceiling (or not a number) is refused at start:
    non-zero exit and a message naming the setting."""

    def run_bin(self, *args):
        return subprocess.run([BIN, "--port", "1", "--data-dir", "/nonexistent/x"] + list(args),
                              capture_output=True, text=True, timeout=30)

    def test_out_of_range(self):
        for flag, value in (("--max-obs-dim", "4097"), ("--max-act-dim", "0"),
                            ("--max-hidden-layers", "9"), ("--max-ensemble", "65"),
                            ("--max-batch", "x"), ("--max-buffer", "100000001"),
                            ("--max-agent-memory", "5G"), ("--max-obs-per-act", "-1"),
                            ("--sqlite-max-length", "16M"),
                            ("--sqlite-max-length", "1000000001")):
            p = self.run_bin(flag, value)
            self.assertNotEqual(p.returncode, 0, (flag, value))
            self.assertIn(flag[2:].replace("-", "_"), p.stderr + p.stdout, (flag, value))

    def test_help_lists_every_limit_flag(self):
        p = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        for flag in LIMITS[::2] + ("--max-body", "--max-import", "--max-agents",
                                   "--max-connections"):
            self.assertIn(flag, p.stdout)


if __name__ == "__main__":
    unittest.main()
