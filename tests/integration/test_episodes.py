"""Episodes: one call per environment step; returns, lengths, eval episodes, abandoning,
the list, state.episodes, back-pressure on steps."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, Pendulum, rfc3339_utc as rfc3339  # noqa: E402


class EpisodesTest(DaemonTestCase):

    def start(self, name, obs, mode=None, status=201):
        body = {"obs": obs}
        if mode is not None:
            body["mode"] = mode
        r = self.c.post("/v1/agents/%s/episodes" % name, body)
        return self.assertOK(r, status)

    def step(self, name, eid, reward, obs, terminated=False, truncated=False):
        r = self.c.post("/v1/agents/%s/episodes/%s/step" % (name, eid),
                        {"reward": reward, "obs": obs, "terminated": terminated,
                         "truncated": truncated})
        return r

    def run_episode(self, name, env, length, mode=None, end="truncated"):
        obs = env.reset()
        e = self.start(name, obs, mode)
        self.assertIsInstance(e["episode_id"], str)
        self.assertTrue(e["episode_id"])
        eid, action = e["episode_id"], e["action"]
        total = 0.0
        for t in range(length):
            self.assertEqual(len(action), 1)
            self.assertTrue(-2.0 <= action[0] <= 2.0, action)
            obs, rew, _, _ = env.step(action[0])
            rew = round(rew, 3)
            total += rew
            last = t == length - 1
            r = self.assertOK(self.step(name, eid, rew, obs,
                                        terminated=last and end == "terminated",
                                        truncated=last and end == "truncated"))
            if last:
                self.assertEqual(r.get("done"), True, r)
                self.assertEqual(r["length"], length)
                self.assertAlmostEqual(r["return"], total, places=3)
                self.assertNotIn("action", r)
            else:
                self.assertNotIn("done", r) if "done" not in r else self.assertFalse(r["done"])
                action = r["action"]
        return eid, total

    def test_explore_and_eval_episodes(self):
        self.create("ep1", start_timesteps=1000)
        env = Pendulum(seed=1)
        eid, total = self.run_episode("ep1", env, 12)
        st = self.state("ep1")
        self.assertEqual((st["env_steps"], st["buffer_len"], st["episodes"]), (12, 12, 1))
        eid2, _ = self.run_episode("ep1", env, 5, end="terminated")
        st = self.state("ep1")
        self.assertEqual((st["env_steps"], st["buffer_len"], st["episodes"]), (17, 17, 2))
        # an eval episode feeds nothing and is not counted
        eid3, _ = self.run_episode("ep1", env, 7, mode="eval")
        st = self.state("ep1")
        self.assertEqual((st["env_steps"], st["buffer_len"], st["episodes"]), (17, 17, 2))
        eps = self.assertOK(self.c.get("/v1/agents/ep1/episodes"))["episodes"]
        self.assertEqual([e["id"] for e in eps], [eid3, eid2, eid])
        self.assertEqual([e["mode"] for e in eps], ["eval", "explore", "explore"])
        self.assertEqual([e["length"] for e in eps], [7, 5, 12])
        self.assertAlmostEqual(eps[2]["return"], total, places=3)
        for e in eps:
            self.assertIsNotNone(e["ended_at"])
            self.assertLessEqual(rfc3339(e["started_at"]) if "started_at" in e else
                                 rfc3339(e["ended_at"]), rfc3339(e["ended_at"]))
            self.assertFalse(e.get("abandoned", False))

    def test_eval_episode_deterministic(self):
        self.create("ep-eval", start_timesteps=0)
        o = [0.5, -0.5, 0.1]
        a = self.start("ep-eval", o, "eval")["action"]
        b = self.act("ep-eval", o, "eval")["action"]
        self.assertEqual(a, b)

    def test_unknown_ended_abandoned(self):
        self.create("ep2")
        o = [0.0, 1.0, 0.0]
        self.assertProblem(self.step("ep2", "nonexistent", 0.0, o), 404, "not_found")
        self.assertProblem(self.c.delete("/v1/agents/ep2/episodes/nonexistent"), 404,
                           "not_found")
        e = self.start("ep2", o)["episode_id"]
        self.assertOK(self.step("ep2", e, 1.0, o))
        r = self.assertOK(self.step("ep2", e, 2.0, o, terminated=True))
        self.assertEqual((r["done"], r["return"], r["length"]), (True, 3.0, 2))
        self.assertProblem(self.step("ep2", e, 1.0, o), 409, "conflict")
        self.assertProblem(self.c.delete("/v1/agents/ep2/episodes/" + e), 409, "conflict")
        # abandon an open one: 204, then 409 for DELETE and for steps
        f = self.start("ep2", o)["episode_id"]
        self.assertOK(self.step("ep2", f, 0.5, o))
        self.assertOK(self.step("ep2", f, 0.25, o))
        self.assertStatus(self.c.delete("/v1/agents/ep2/episodes/" + f), 204)
        self.assertProblem(self.c.delete("/v1/agents/ep2/episodes/" + f), 409, "conflict")
        self.assertProblem(self.step("ep2", f, 1.0, o), 409, "conflict")
        g = self.start("ep2", o, "eval")["episode_id"]      # left open
        h = self.start("ep2", o)["episode_id"]              # left open
        eps = self.assertOK(self.c.get("/v1/agents/ep2/episodes"))["episodes"]
        self.assertEqual([x["id"] for x in eps], [h, g, f, e])
        by = {x["id"]: x for x in eps}
        for x in eps:
            for k in ("id", "return", "length", "mode", "ended_at"):
                self.assertIn(k, x)
        self.assertIsNone(by[h]["ended_at"])
        self.assertIsNone(by[g]["ended_at"])
        self.assertEqual(by[g]["mode"], "eval")
        self.assertIs(by[f].get("abandoned"), True)
        self.assertIsNotNone(by[f]["ended_at"])
        self.assertEqual((by[f]["length"], by[f]["return"]), (2, 0.75))
        self.assertFalse(by[e].get("abandoned", False))
        self.assertFalse(by[h].get("abandoned", False))
        self.assertEqual((by[h]["length"], by[h]["return"]), (0, 0))
        # limit
        eps = self.assertOK(self.c.get("/v1/agents/ep2/episodes?limit=2"))["episodes"]
        self.assertEqual([x["id"] for x in eps], [h, g])
        for q in ("limit=0", "limit=10001", "limit=x"):
            self.assertProblem(self.c.get("/v1/agents/ep2/episodes?" + q), 400,
                               "invalid_argument", "limit")
        # state.episodes: explore episodes that ended (not abandoned, not eval)
        st = self.state("ep2")
        self.assertEqual(st["episodes"], 1)
        self.assertEqual(st["env_steps"], 4)
        # an episode id of another agent is unknown here
        self.create("ep2b")
        self.assertProblem(self.step("ep2b", h, 0.0, o), 404, "not_found")

    def test_list_default_limit(self):
        self.create("ep6")
        ids = [self.start("ep6", [0.0, 0.0, 0.0])["episode_id"] for _ in range(102)]
        eps = self.assertOK(self.c.get("/v1/agents/ep6/episodes"))["episodes"]
        self.assertEqual([e["id"] for e in eps], ids[::-1][:100])
        eps = self.assertOK(self.c.get("/v1/agents/ep6/episodes?limit=10000"))["episodes"]
        self.assertEqual(len(eps), 102)

    def test_bad_steps(self):
        self.create("ep3")
        o = [0.0, 1.0, 0.0]
        e = self.start("ep3", o)["episode_id"]
        cases = [({"reward": 0, "obs": [0, 0], "terminated": False, "truncated": False},
                  "obs"),
                 ({"reward": 0, "obs": [0, "x", 0], "terminated": False, "truncated": False},
                  "obs[1]"),
                 ({"reward": "1", "obs": o, "terminated": False, "truncated": False},
                  "reward"),
                 ({"reward": 0, "obs": o, "terminated": 0, "truncated": False},
                  "terminated"),
                 ({"reward": 0, "obs": o, "terminated": False, "truncated": None},
                  "truncated"),
                 ({"reward": 0, "obs": o, "terminated": False}, "truncated"),
                 ({"reward": 0, "obs": o, "terminated": False, "truncated": False, "x": 1},
                  "x")]
        for body, field in cases:
            r = self.c.post("/v1/agents/ep3/episodes/%s/step" % e, body)
            self.assertProblem(r, 400, "invalid_argument", field)
        for body, field in (({"obs": [0, 0]}, "obs"), ({"obs": o, "mode": "x"}, "mode"),
                            ({"obs": o, "y": 1}, "y"), ({}, "obs")):
            r = self.c.post("/v1/agents/ep3/episodes", body)
            self.assertProblem(r, 400, "invalid_argument", field)
        st = self.state("ep3")
        self.assertEqual(st["env_steps"], 0)
        eps = self.assertOK(self.c.get("/v1/agents/ep3/episodes"))["episodes"]
        self.assertEqual([(x["id"], x["length"]) for x in eps], [(e, 0)])
        self.assertProblem(self.c.post("/v1/agents/nobody/episodes", {"obs": o}), 404,
                           "not_found")

    def test_step_back_pressure(self):
        self.create("ep4", training="paused", batch_size=1, start_timesteps=0,
                    update_per_step=10, max_pending_updates=20)
        o = [0.0, 1.0, 0.0]
        e = self.start("ep4", o)["episode_id"]
        self.assertOK(self.step("ep4", e, 1.0, o))
        self.assertOK(self.step("ep4", e, 1.0, o))
        r = self.step("ep4", e, 1.0, o)
        self.assertProblem(r, 429, "busy")
        self.assertIsNotNone(r.header("Retry-After"))
        st = self.state("ep4")
        self.assertEqual((st["env_steps"], st["pending_updates"]), (2, 20))
        eps = self.assertOK(self.c.get("/v1/agents/ep4/episodes"))["episodes"]
        self.assertEqual(eps[0]["length"], 2)
        self.assertEqual(eps[0]["return"], 2.0)
        # eval episodes feed nothing: no back-pressure
        g = self.start("ep4", o, "eval")["episode_id"]
        self.assertOK(self.step("ep4", g, 1.0, o))
        self.assertOK(self.c.patch("/v1/agents/ep4", {"training": "manual"}))
        r = self.assertOK(self.step("ep4", e, 1.0, o, truncated=True))
        self.assertEqual((r["return"], r["length"]), (3.0, 3))

    def test_sync_steps(self):
        # in sync mode a step answers after its transition's updates
        self.create("ep5", training="sync", batch_size=4, start_timesteps=0,
                    update_per_step=2)
        env = Pendulum(seed=5)
        self.run_episode("ep5", env, 10)
        st = self.state("ep5")
        self.assertEqual((st["env_steps"], st["updates"], st["pending_updates"]), (10, 14, 0))


if __name__ == "__main__":
    unittest.main()
