"""Issue 11: returns from transitions, evaluations, and idempotent creation with PUT.

- Each transitions stream (agent x env_id) adds up rewards and lengths; a transition
  with terminated or truncated ends an episode recorded with source "transitions" and
  its env_id, counted in state.episodes and state.last_return; durable with the post,
  exact across restarts and SIGKILL (a stream cut by a crash goes on adding up), and
  idempotent under batch_id retries.
- POST/GET .../evaluations: a row against the agent's counters at that moment, paged
  like stats (JSON and CSV); an eval episode of the episodes API records one.
- PUT /v1/agents/{name}: 201 when created, 200 unchanged when the same, 409 naming the
  first difference otherwise.
"""

import math
import unittest

from tests.integration.harness import DaemonTestCase, agent_body, small_config


def row(reward, end=None, env_id=None):
    r = {"obs": [0.1, 0.2, 0.3], "action": [0.5], "reward": reward,
         "next_obs": [0.2, 0.3, 0.4], "terminated": end == "term", "truncated": end == "trunc"}
    if env_id is not None:
        r["env_id"] = env_id
    return r


class ReturnsFromTransitionsTest(DaemonTestCase):

    def episodes(self, name):
        eps = self.assertOK(self.c.get("/v1/agents/%s/episodes?limit=1000" % name))["episodes"]
        return [e for e in eps if e["source"] == "transitions"]

    def test_streams_add_up_and_end_episodes(self):
        self.create("ret")
        # Two interleaved streams and the default one, in one post.
        rows = [row(1.0, env_id="a"), row(10.0, env_id="b"), row(2.0, env_id="a"),
                row(5.0), row(20.0, "trunc", env_id="b"), row(3.0, "term", env_id="a"),
                row(7.0, env_id="a")]
        self.post_transitions("ret", rows)
        eps = self.episodes("ret")
        got = sorted((e["env_id"], e["return"], e["length"]) for e in eps)
        self.assertEqual(got, [("a", 6.0, 3), ("b", 30.0, 2)])
        for e in eps:
            self.assertEqual(e["mode"], "explore")
            self.assertIsNotNone(e["ended_at"])
        st = self.state("ret")
        self.assertEqual(st["episodes"], 2)
        self.assertEqual(st["last_return"], 6.0)  # "a" ended after "b" in the post

        # Streams go on across posts; the default stream has no env_id.
        self.post_transitions("ret", [row(1.5, env_id="a"), row(0.5, "term")])
        self.post_transitions("ret", [row(-1.0, "term", env_id="a")])
        eps = self.episodes("ret")
        got = sorted((e["env_id"] or "", e["return"], e["length"]) for e in eps)
        self.assertEqual(got, [("", 5.5, 2), ("a", 6.0, 3), ("a", 7.5, 3), ("b", 30.0, 2)])
        st = self.state("ret")
        self.assertEqual(st["episodes"], 4)
        self.assertEqual(st["last_return"], 7.5)
        null_env = [e for e in eps if e["env_id"] is None]
        self.assertEqual(len(null_env), 1)

    def test_retry_records_nothing_again(self):
        self.create("retry")
        body = [row(2.0, env_id="x"), row(3.0, "term", env_id="x"), row(4.0, env_id="y")]
        first = self.post_transitions("retry", body, batch_id="b-1")
        again = self.post_transitions("retry", body, batch_id="b-1")
        self.assertEqual(first, again)
        self.assertEqual(len(self.episodes("retry")), 1)
        self.assertEqual(self.state("retry")["episodes"], 1)
        self.post_transitions("retry", [row(1.0, "term", env_id="y")], batch_id="b-2")
        self.post_transitions("retry", [row(1.0, "term", env_id="y")], batch_id="b-2")
        y = [e for e in self.episodes("retry") if e["env_id"] == "y"]
        self.assertEqual([(e["return"], e["length"]) for e in y], [(5.0, 2)])

    def test_exact_across_restart_and_sigkill(self):
        self.create("durable")
        self.post_transitions("durable", [row(1.0, env_id="s"), row(2.0, env_id="s")])
        self.daemon.restart()
        self.post_transitions("durable", [row(4.0, env_id="s")])
        self.daemon.kill()  # SIGKILL: the stream's state is what the last post committed
        self.daemon.start()
        self.post_transitions("durable", [row(8.0, "term", env_id="s")])
        eps = self.episodes("durable")
        self.assertEqual([(e["return"], e["length"]) for e in eps], [(15.0, 4)])
        st = self.state("durable")
        self.assertEqual((st["episodes"], st["last_return"]), (1, 15.0))
        self.daemon.restart()
        st = self.state("durable")
        self.assertEqual((st["episodes"], st["last_return"]), (1, 15.0))


class EvaluationsTest(DaemonTestCase):

    def test_post_and_page(self):
        self.create("ev")
        r = self.assertOK(self.c.post("/v1/agents/ev/evaluations",
                                      {"returns": [1.0, 2.0, 4.0], "lengths": [10, 20, 30]}), 201)
        self.assertEqual(r["n"], 3)
        self.assertAlmostEqual(r["mean"], 7.0 / 3)
        self.assertAlmostEqual(r["std"], math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 +
                                                    (4 - 7 / 3) ** 2) / 3))
        self.assertEqual((r["min"], r["max"], r["mean_length"]), (1.0, 4.0, 20.0))
        self.assertEqual((r["env_steps"], r["updates"], r["policy_version"]), (0, 0, 0))
        self.assertIsInstance(r["row"], int)
        self.assertIsInstance(r["time"], str)
        self.post_transitions("ev", [row(0.0) for _ in range(20)])
        self.train("ev", 4)
        r2 = self.assertOK(self.c.post("/v1/agents/ev/evaluations", {"returns": [-5.5]}), 201)
        self.assertEqual((r2["n"], r2["std"], r2["mean_length"]), (1, 0, None))
        self.assertEqual((r2["env_steps"], r2["updates"]), (20, 4))
        self.assertGreater(r2["row"], r["row"])
        rows = self.assertOK(self.c.get("/v1/agents/ev/evaluations"))["rows"]
        self.assertEqual([x["row"] for x in rows], [r["row"], r2["row"]])
        self.assertEqual(rows[1], r2)
        page = self.assertOK(self.c.get("/v1/agents/ev/evaluations?since=%d&limit=5"
                                        % r["row"]))["rows"]
        self.assertEqual([x["row"] for x in page], [r2["row"]])
        csv = self.c.get("/v1/agents/ev/evaluations?format=csv")
        self.assertEqual(csv.ctype, "text/csv")
        lines = csv.body.decode().splitlines()
        self.assertEqual(lines[0], "row,env_steps,updates,policy_version,time,n,mean,std,min,"
                                   "max,mean_length")
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[2].endswith(",1,-5.5,0,-5.5,-5.5,"), lines[2])
        self.daemon.restart()
        self.assertEqual(self.assertOK(self.c.get("/v1/agents/ev/evaluations"))["rows"], rows)

    def test_bad_evaluations(self):
        self.create("evbad")
        cases = [({}, "returns"), ({"returns": []}, "returns"),
                 ({"returns": [1.0] * 1001}, "returns"), ({"returns": ["x"]}, "returns[0]"),
                 ({"returns": [1.0, 1e39]}, "returns[1]"),
                 ({"returns": [1.0], "lengths": [1, 2]}, "lengths"),
                 ({"returns": [1.0], "lengths": [0]}, "lengths[0]"),
                 ({"returns": [1.0], "lengths": [1.5]}, "lengths[0]"),
                 ({"returns": [1.0], "extra": 1}, "extra")]
        for body, field in cases:
            self.assertProblem(self.c.post("/v1/agents/evbad/evaluations", body), 400,
                               "invalid_argument", field=field)
        self.assertEqual(self.assertOK(self.c.get("/v1/agents/evbad/evaluations"))["rows"], [])
        self.assertProblem(self.c.get("/v1/agents/evbad/evaluations?limit=0"), 400,
                           "invalid_argument", field="limit")
        self.assertProblem(self.c.post("/v1/agents/nobody/evaluations", {"returns": [1]}), 404,
                           "not_found")

    def test_eval_episode_records_an_evaluation(self):
        self.create("eveps")
        ep = self.assertOK(self.c.post("/v1/agents/eveps/episodes",
                                       {"obs": [0, 0, 0], "mode": "eval"}), 201)["episode_id"]
        for i in range(3):
            r = self.assertOK(self.c.post("/v1/agents/eveps/episodes/%s/step" % ep, {
                "reward": 1.5, "obs": [0, 0, 0], "terminated": i == 2, "truncated": False}))
        self.assertTrue(r["done"])
        rows = self.assertOK(self.c.get("/v1/agents/eveps/evaluations"))["rows"]
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["n"], rows[0]["mean"], rows[0]["mean_length"]), (1, 4.5, 3))
        self.assertEqual(self.state("eveps")["episodes"], 0)  # eval episodes do not count


class PutAgentTest(DaemonTestCase):

    def test_put_creates_answers_same_and_refuses_other(self):
        body = agent_body("put1", config=small_config(seed=3))
        r = self.c.put("/v1/agents/put1", body=body)
        self.assertEqual(r.status, 201, repr(r))
        created = r.json()
        r = self.c.put("/v1/agents/put1", body=body)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json()["config"], created["config"])
        # name may be left out; settings left out count as their defaults.
        nameless = dict(body)
        del nameless["name"]
        self.assertEqual(self.c.put("/v1/agents/put1", body=nameless).status, 200)
        self.assertProblem(self.c.put("/v1/agents/put1", body=dict(
            body, config=small_config(seed=3, batch_size=32))), 409, "already_exists",
            contains="config.batch_size")
        self.assertProblem(self.c.put("/v1/agents/put1", body=dict(body, obs_dim=4)), 409,
                           "already_exists", contains="obs_dim")
        self.assertProblem(self.c.put("/v1/agents/put1", body=dict(body, action_high=[3.0])),
                           409, "already_exists", contains="action_high[0]")
        self.assertProblem(self.c.put("/v1/agents/put1", body=dict(body, name="other")), 400,
                           "invalid_argument", field="name")
        self.assertProblem(self.c.put("/v1/agents/put1", body=dict(body, config={"gamma": 2})),
                           400, "invalid_argument", field="config.gamma")
        defaults = agent_body("put2", config={})
        self.assertEqual(self.c.put("/v1/agents/put2", body=defaults).status, 201)
        full = self.assertOK(self.c.get("/v1/agents/put2"))["config"]
        self.assertEqual(self.c.put("/v1/agents/put2", body=dict(defaults, config=full)).status,
                         200)
        self.assertEqual(self.c.put("/v1/agents/put2", body=dict(defaults, config=None)).status,
                         200)
        self.assertEqual(len([a for a in self.assertOK(self.c.get("/v1/agents"))["agents"]
                              if a["name"].startswith("put")]), 2)


if __name__ == "__main__":
    unittest.main()
