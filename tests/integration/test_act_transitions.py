"""Acting and posting transitions: shapes, bounds, validation naming the field, nothing
half-applied, batch_id idempotency, owed updates and back-pressure."""
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, rand_rows, scaled, small_config  # noqa: E402

LOW, HIGH = [-1.0, 0.0], [1.0, 3.0]


class ActTest(DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.c.post("/v1/agents", {"name": "actor", "obs_dim": 3, "action_low": LOW,
                                      "action_high": HIGH,
                                      "config": small_config(start_timesteps=10)})
        assert r.status == 201, r

    def assertInBounds(self, action):
        self.assertEqual(len(action), 2)
        for v, lo, hi in zip(action, LOW, HIGH):
            self.assertIsInstance(v, (int, float))
            self.assertTrue(lo <= v <= hi, (action, LOW, HIGH))

    def test_single_and_batch(self):
        r = self.act("actor", [0.1, 0.2, 0.3])
        self.assertInBounds(r["action"])
        self.assertIsInstance(r["policy_version"], int)
        self.assertEqual(r["policy_version"], 0)
        for mode in ("explore", "eval"):
            r = self.act("actor", [[0.1, 0.2, 0.3], [0, 0, 0], [-1, 5, 2]], mode)
            self.assertEqual(len(r["action"]), 3)
            for a in r["action"]:
                self.assertInBounds(a)
        r = self.act("actor", [[0.5, 0.5, 0.5]])
        self.assertEqual(len(r["action"]), 1)
        self.assertInBounds(r["action"][0])
        rng = random.Random(3)
        obs = [[rng.uniform(-100, 100) for _ in range(3)] for _ in range(200)]
        for mode in ("explore", "eval"):
            for a in self.act("actor", obs, mode)["action"]:
                self.assertInBounds(a)

    def test_eval_deterministic_explore_random(self):
        o = [0.3, -0.2, 0.9]
        a1 = self.act("actor", o, "eval")["action"]
        a2 = self.act("actor", o, "eval")["action"]
        self.assertEqual(a1, a2)
        b = self.act("actor", [o, o, o], "eval")["action"]
        for a in b:
            for x, y in zip(a, a1):
                self.assertAlmostEqual(x, y, places=5)
        # before start_timesteps, explore actions are uniform random: they differ
        ex = [tuple(self.act("actor", o)["action"]) for _ in range(5)]
        self.assertGreater(len(set(ex)), 1, ex)

    def test_stochastic_eval(self):
        self.create("stoch", obs_dim=3, act_dim=1, start_timesteps=0)
        o = [0.2, 0.2, 0.2]
        self.assertEqual(self.act("stoch", o, "eval"), self.act("stoch", o, "eval"))
        self.assertOK(self.c.patch("/v1/agents/stoch", {"deterministic_eval": False}))
        acts = {tuple(self.act("stoch", o, "eval")["action"]) for _ in range(5)}
        self.assertGreater(len(acts), 1, "deterministic_eval false still gives the mean")
        # after start_timesteps, explore samples the policy: it varies too
        acts = {tuple(self.act("stoch", o)["action"]) for _ in range(5)}
        self.assertGreater(len(acts), 1)

    def test_bad_act(self):
        cases = [({"obs": [0.1, 0.2]}, "obs"),
                 ({"obs": [0.1, 0.2, 0.3, 0.4]}, "obs"),
                 ({"obs": []}, "obs"),
                 ({"obs": [0.1, "x", 0.3]}, "obs[1]"),
                 ({"obs": [0.1, None, 0.3]}, "obs[1]"),
                 ({"obs": [[0.1, 0.2, 0.3], [0.1, 0.2]]}, "obs[1]"),
                 ({"obs": [[0.1, 0.2, 0.3], [0.1, 0.2, "x"]]}, "obs[1][2]"),
                 ({"obs": [[0.1, 0.2, 0.3], 5]}, "obs[1]"),
                 ({"obs": [0.1, [0.2], 0.3]}, "obs[1]"),
                 ({"obs": "x"}, "obs"),
                 ({"obs": [0.1, 0.2, 0.3], "mode": "greedy"}, "mode"),
                 ({"obs": [0.1, 0.2, 0.3], "mode": 1}, "mode"),
                 ({"obs": [0.1, 0.2, 0.3], "extra": 1}, "extra"),
                 ({}, "obs"),
                 ({"obs": [[0.0] * 3] * 4097}, "obs"),
                 ({"obs": [[0.0] * 3] * 4097}, "4096")]
        for body, field in cases:
            r = self.c.post("/v1/agents/actor/act", body)
            self.assertProblem(r, 400, "invalid_argument", field)
        r = self.c.post("/v1/agents/actor/act", '{"obs": [0.1, 1e400, 0.3]}')
        self.assertProblem(r, 400, "invalid_argument", "obs[1]")
        r = self.c.post("/v1/agents/actor/act", '{"obs": [0.1, 1e39, 0.3]}')
        self.assertProblem(r, 400, "invalid_argument", "obs[1]")
        r = self.c.post("/v1/agents/nobody/act", {"obs": [0, 0, 0]})
        self.assertProblem(r, 404, "not_found")
        # at the limit
        self.assertEqual(len(self.act("actor", [[0.0] * 3] * 4096)["action"]), 4096)


class TransitionsTest(DaemonTestCase):

    def test_post_and_owed_updates(self):
        # owed once env_steps >= max(start_timesteps, batch_size) = 16
        self.create("tr1", obs_dim=3, act_dim=2, training="paused", batch_size=16,
                    start_timesteps=4, update_per_step=1)
        r = self.post_transitions("tr1", rand_rows(10, 3, 2))
        self.assertEqual(r, {"accepted": 10, "env_steps": 10, "pending_updates": 0})
        r = self.post_transitions("tr1", rand_rows(10, 3, 2))
        self.assertEqual(r, {"accepted": 10, "env_steps": 20, "pending_updates": 5})
        st = self.state("tr1")
        self.assertEqual((st["env_steps"], st["buffer_len"], st["pending_updates"],
                          st["updates"]), (20, 20, 5, 0))
        # fractional update_per_step: 0.5 per transition
        self.assertOK(self.c.patch("/v1/agents/tr1", {"update_per_step": 0.5}))
        r = self.post_transitions("tr1", rand_rows(3, 3, 2))
        self.assertEqual(r["pending_updates"], 6.5)
        self.assertEqual(self.state("tr1")["pending_updates"], 6.5)

    def test_optional_fields_and_clipping(self):
        self.create("tr2", obs_dim=2, act_dim=1)
        rows = rand_rows(4, 2, 1, env_id="env-a")
        rows[0]["action"] = [100.0]      # outside [low, high]: clipped, accepted
        rows[1]["terminated"] = True
        rows[1]["truncated"] = True
        rows[2]["truncated"] = True
        del rows[3]["env_id"]
        r = self.post_transitions("tr2", rows)
        self.assertEqual(r["accepted"], 4)
        r = self.post_transitions("tr2", rand_rows(1, 2, 1),
                                  batch_id="Az09_.:-" + "x" * 120)
        self.assertEqual(r["env_steps"], 5)

    def test_bad_row_stores_nothing(self):
        self.create("tr3", obs_dim=3, act_dim=2)
        self.post_transitions("tr3", rand_rows(2, 3, 2))

        def mutate(i, f):
            rows = rand_rows(6, 3, 2)
            f(rows[i])
            return rows

        cases = [
            (mutate(3, lambda r: r["obs"].__setitem__(1, "x")), "transitions[3].obs[1]"),
            (mutate(5, lambda r: r["next_obs"].__setitem__(2, None)),
             "transitions[5].next_obs[2]"),
            (mutate(0, lambda r: r.__setitem__("obs", [0.0, 0.0])), "transitions[0].obs"),
            (mutate(2, lambda r: r.__setitem__("action", [0.0])), "transitions[2].action"),
            (mutate(2, lambda r: r.__setitem__("action", [0.0, [1.0]])),
             "transitions[2].action[1]"),
            (mutate(1, lambda r: r.__setitem__("reward", "1")), "transitions[1].reward"),
            (mutate(1, lambda r: r.__setitem__("reward", None)), "transitions[1].reward"),
            (mutate(4, lambda r: r.__setitem__("terminated", 0)),
             "transitions[4].terminated"),
            (mutate(4, lambda r: r.__setitem__("truncated", 1)), "transitions[4].truncated"),
            (mutate(4, lambda r: r.__setitem__("terminated", "false")),
             "transitions[4].terminated"),
            (mutate(3, lambda r: r.__setitem__("foo", 1)), "transitions[3].foo"),
            (mutate(3, lambda r: r.__delitem__("next_obs")), "transitions[3].next_obs"),
            (mutate(3, lambda r: r.__delitem__("terminated")), "transitions[3].terminated"),
            (mutate(3, lambda r: r.__setitem__("env_id", 5)), "transitions[3].env_id"),
            (mutate(0, lambda r: r.clear()), "transitions[0]"),
        ]
        for rows, field in cases:
            r = self.c.post("/v1/agents/tr3/transitions", {"transitions": rows})
            self.assertProblem(r, 400, "invalid_argument", field)
        rows = rand_rows(3, 3, 2)
        rows[1] = [1, 2, 3]
        r = self.c.post("/v1/agents/tr3/transitions", {"transitions": rows})
        self.assertProblem(r, 400, "invalid_argument", "transitions[1]")
        for body, field in (({"transitions": []}, "transitions"),
                            ({"transitions": None}, "transitions"),
                            ({"transitions": {}}, "transitions"),
                            ({}, "transitions"),
                            ({"transitions": rand_rows(1, 3, 2), "x": 1}, "x"),
                            ({"transitions": rand_rows(1, 3, 2), "batch_id": ""}, "batch_id"),
                            ({"transitions": rand_rows(1, 3, 2), "batch_id": "a b"},
                             "batch_id"),
                            ({"transitions": rand_rows(1, 3, 2), "batch_id": "x" * 129},
                             "batch_id"),
                            ({"transitions": rand_rows(1, 3, 2), "batch_id": 5}, "batch_id")):
            r = self.c.post("/v1/agents/tr3/transitions", body)
            self.assertProblem(r, 400, "invalid_argument", field)
        # 1e400 and 1e39 in a row
        text = ('{"transitions": [{"obs": [0, 0, 0], "action": [0, 0], "reward": %s, '
                '"next_obs": [0, 0, 0], "terminated": false, "truncated": false}]}')
        for v in ("1e400", "-1e39"):
            r = self.c.post("/v1/agents/tr3/transitions", text % v)
            self.assertProblem(r, 400, "invalid_argument", "transitions[0].reward")
        st = self.state("tr3")
        self.assertEqual((st["env_steps"], st["buffer_len"]), (2, 2))
        self.assertProblem(self.c.post("/v1/agents/nobody/transitions",
                                       {"transitions": rand_rows(1, 3, 2)}), 404, "not_found")

    def test_batch_id_idempotent(self):
        self.create("tr4", obs_dim=3, act_dim=2, training="paused", batch_size=1,
                    update_per_step=2)
        first = self.c.post("/v1/agents/tr4/transitions",
                            {"transitions": rand_rows(3, 3, 2), "batch_id": "batch-1"})
        a1 = self.assertOK(first)
        self.assertEqual(a1, {"accepted": 3, "env_steps": 3, "pending_updates": 6})
        self.post_transitions("tr4", rand_rows(2, 3, 2))
        # same id, different content: answers as the first post did, stores nothing
        again = self.c.post("/v1/agents/tr4/transitions",
                            {"transitions": rand_rows(7, 3, 2), "batch_id": "batch-1"})
        self.assertEqual(self.assertOK(again), a1)
        # ... even an invalid content
        bad = self.c.post("/v1/agents/tr4/transitions",
                          {"transitions": [{"obs": "x"}], "batch_id": "batch-1", "junk": 1})
        self.assertEqual(self.assertOK(bad), a1)
        st = self.state("tr4")
        self.assertEqual((st["env_steps"], st["buffer_len"]), (5, 5))
        # batch ids are per agent
        self.create("tr4b", obs_dim=3, act_dim=2)
        r = self.post_transitions("tr4b", rand_rows(1, 3, 2), batch_id="batch-1")
        self.assertEqual(r["env_steps"], 1)
        # a failed post does not remember its id
        rows = rand_rows(2, 3, 2)
        rows[1]["reward"] = "x"
        r = self.c.post("/v1/agents/tr4/transitions", {"transitions": rows, "batch_id": "b2"})
        self.assertProblem(r, 400, "invalid_argument", "transitions[1].reward")
        r = self.post_transitions("tr4", rand_rows(2, 3, 2), batch_id="b2")
        self.assertEqual(r["env_steps"], 7)

    def test_back_pressure(self):
        self.create("bp", obs_dim=3, act_dim=2, training="paused", batch_size=1,
                    start_timesteps=0, update_per_step=10, max_pending_updates=20)
        # a post that alone would owe more than max_pending_updates
        r = self.c.post("/v1/agents/bp/transitions", {"transitions": rand_rows(3, 3, 2)})
        self.assertProblem(r, 400, "invalid_argument", "max_pending_updates")
        self.assertEqual(self.state("bp")["env_steps"], 0)
        self.assertEqual(self.post_transitions("bp", rand_rows(1, 3, 2))["pending_updates"], 10)
        self.assertEqual(self.post_transitions("bp", rand_rows(1, 3, 2))["pending_updates"], 20)
        for _ in range(3):
            r = self.c.post("/v1/agents/bp/transitions", {"transitions": rand_rows(1, 3, 2),
                                                         "batch_id": "bp-1"})
            self.assertProblem(r, 429, "busy")
            ra = r.header("Retry-After")
            self.assertIsNotNone(ra, "429 without Retry-After")
            self.assertGreaterEqual(int(ra), 0)
        st = self.state("bp")
        self.assertEqual((st["env_steps"], st["buffer_len"], st["pending_updates"]), (2, 2, 20))
        # the refused batch id was not remembered
        # train still runs in paused mode; the pending stay owed
        self.train("bp", 2)
        self.assertEqual(self.state("bp")["pending_updates"], 20)
        # lowering max_pending_updates below what is pending is allowed; posts get 429
        self.assertOK(self.c.patch("/v1/agents/bp", {"max_pending_updates": 10}))
        self.assertProblem(self.c.post("/v1/agents/bp/transitions",
                                       {"transitions": rand_rows(1, 3, 2)}), 429, "busy")
        # switching to manual clears what is owed
        a = self.assertOK(self.c.patch("/v1/agents/bp", {"training": "manual"}))
        self.assertEqual(a["state"]["pending_updates"], 0)
        self.assertEqual(self.state("bp")["pending_updates"], 0)
        r = self.post_transitions("bp", rand_rows(1, 3, 2), batch_id="bp-1")
        self.assertEqual(r, {"accepted": 1, "env_steps": 3, "pending_updates": 0})
        # acts never answer 429
        self.assertOK(self.c.patch("/v1/agents/bp", {"training": "paused",
                                                     "max_pending_updates": 10}))
        self.post_transitions("bp", rand_rows(1, 3, 2))
        self.assertProblem(self.c.post("/v1/agents/bp/transitions",
                                       {"transitions": rand_rows(1, 3, 2)}), 429, "busy")
        self.act("bp", [0, 0, 0])

    def test_back_pressure_async_recovers(self):
        # posts get 429 until the trainers catch up: filled while paused (deterministic),
        # then resumed in async mode
        self.create("bpa", obs_dim=3, act_dim=1, training="paused", batch_size=16,
                    hidden_sizes=[64, 64], update_per_step=20, max_pending_updates=100)
        self.post_transitions("bpa", rand_rows(16, 3, 1))   # the 16th owes 20
        for _ in range(4):
            self.post_transitions("bpa", rand_rows(1, 3, 1))
        r = self.c.post("/v1/agents/bpa/transitions", {"transitions": rand_rows(1, 3, 1)})
        self.assertProblem(r, 429, "busy")
        self.assertOK(self.c.patch("/v1/agents/bpa", {"training": "async"}))
        n200 = 0
        deadline = time.monotonic() + scaled(30)
        while n200 < 10 and time.monotonic() < deadline:
            r = self.c.post("/v1/agents/bpa/transitions", {"transitions": rand_rows(1, 3, 1)})
            if r.status == 429:
                self.assertProblem(r, 429, "busy")
                self.assertIsNotNone(r.header("Retry-After"))
                time.sleep(0.01)
            else:
                self.assertOK(r)
                n200 += 1
        self.assertEqual(n200, 10, "posts did not get through once the trainers caught up")
        self.wait_until(lambda: self.state("bpa")["pending_updates"] == 0, 30, "catch up")
        st = self.state("bpa")
        self.assertEqual((st["env_steps"], st["updates"]), (30, 15 * 20))

    def test_post_limit(self):
        self.create("lim", obs_dim=1, act_dim=1)
        row = {"obs": [0.0], "action": [0.0], "reward": 0.0, "next_obs": [0.0],
               "terminated": False, "truncated": False}
        r = self.c.post("/v1/agents/lim/transitions", {"transitions": [row] * 65537})
        self.assertProblem(r, 400, "invalid_argument", "65536")
        self.assertEqual(self.state("lim")["env_steps"], 0)
        r = self.post_transitions("lim", [row] * 65536)
        self.assertEqual(r["env_steps"], 65536)
        self.assertEqual(self.state("lim")["buffer_len"], 65536)


if __name__ == "__main__":
    unittest.main()
