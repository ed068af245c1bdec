"""Durability: a clean restart (SIGTERM) brings everything back; a crash (SIGKILL) keeps
every acknowledged transition; sync-mode runs are reproducible under a seed, also across
a restart in the middle.

What a crash may lose is checked against what the database file holds, not against a
wait of "about a second": stats rows are awaited in the file itself before the kill."""
import os
import signal
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DaemonTestCase, Pendulum, rand_rows, scaled, small_config,  # noqa: E402
                     tensor_bytes)


def stored_stats_updates(data_dir, name):
    """The update numbers of an agent's stats rows in the database file (what a crash
    keeps), read-only beside the running daemon."""
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "redqd.db"), uri=True,
                          timeout=30)
    try:
        return [r[0] for r in con.execute(
            "SELECT s.update_no FROM stats s JOIN agents a ON a.id = s.agent "
            "WHERE a.name = ? ORDER BY s.row", (name,))]
    finally:
        con.close()


class RestartTest(DaemonTestCase):

    def snapshot(self, name):
        a = self.agent(name)
        rows = self.assertOK(self.c.get("/v1/agents/%s/stats" % name))["rows"]
        ck = self.assertOK(self.c.get("/v1/agents/%s/checkpoints" % name))["checkpoints"]
        eps = self.assertOK(self.c.get("/v1/agents/%s/episodes" % name))["episodes"]
        pol = self.c.get("/v1/agents/%s/policy" % name).body
        return a, rows, ck, eps, pol

    def wait_rows(self, name, n):
        return self.wait_until(lambda: len(self.assertOK(self.c.get(
            "/v1/agents/%s/stats" % name))["rows"]) >= n, 5, "stats rows of %s" % name)

    def test_clean_restart(self):
        self.create("rs-man", obs_dim=3, act_dim=2, config=small_config(
            training="manual", actor_delay=2, alpha="auto", seed=42, estimation_step=2))
        self.post_transitions("rs-man", rand_rows(40, 3, 2))
        self.train("rs-man", 9)
        man_ck = self.assertOK(self.c.post("/v1/agents/rs-man/checkpoints", data=b""), 201)
        self.train("rs-man", 3)
        self.create("rs-pause", obs_dim=4, act_dim=1, config=small_config(
            training="paused", update_per_step=2, max_pending_updates=1000))
        self.post_transitions("rs-pause", rand_rows(30, 4, 1))
        self.create("rs-async", obs_dim=2, act_dim=1, config=small_config(
            training="async", update_per_step=1))
        self.post_transitions("rs-async", rand_rows(30, 2, 1))
        self.wait_until(lambda: self.state("rs-async")["pending_updates"] == 0, 20,
                        "async agent to finish")
        o = [0.1, 0.2, 0.3]
        ep = self.assertOK(self.c.post("/v1/agents/rs-man/episodes", {"obs": o}), 201)
        self.assertOK(self.c.post("/v1/agents/rs-man/episodes/%s/step" % ep["episode_id"],
                                  {"reward": 1.5, "obs": o, "terminated": False,
                                   "truncated": False}))
        self.wait_rows("rs-man", 6)
        self.wait_rows("rs-async", 7)
        names = ("rs-man", "rs-pause", "rs-async")
        before = {n: self.snapshot(n) for n in names}
        obs_eval = {"rs-man": o, "rs-pause": [0.1] * 4, "rs-async": [0.3, 0.4]}
        acts = {n: self.act(n, obs_eval[n], "eval")["action"] for n in names}
        listed = self.assertOK(self.c.get("/v1/agents"))["agents"]

        self.daemon.restart()

        self.assertEqual(self.assertOK(self.c.get("/v1/agents"))["agents"], listed)
        for n in names:
            a0, rows0, ck0, eps0, pol0 = before[n]
            a1, rows1, ck1, eps1, pol1 = self.snapshot(n)
            self.assertEqual(a1["config"], a0["config"], n)
            for k in ("obs_dim", "act_dim", "action_low", "action_high", "name"):
                self.assertEqual(a1[k], a0[k], (n, k))
            s0, s1 = a0["state"], a1["state"]
            for k in ("env_steps", "buffer_len", "updates", "actor_updates", "episodes",
                      "pending_updates"):
                self.assertEqual(s1[k], s0[k], (n, k))
            self.assertAlmostEqual(s1["alpha"], s0["alpha"], places=6)
            self.assertGreaterEqual(s1["policy_version"], s0["policy_version"])
            self.assertEqual(rows1[:len(rows0)], rows0, n)
            self.assertEqual(len(rows1), len(rows0), n)
            ids1 = {c["id"]: c for c in ck1}
            for c in ck0:
                self.assertIn(c["id"], ids1, n)
                self.assertEqual(ids1[c["id"]]["bytes"], c["bytes"])
            self.assertEqual(eps1, eps0, n)
            # the networks are the same
            self.assertEqual(tensor_bytes(pol1), tensor_bytes(pol0), n)
            self.assertEqual(self.act(n, obs_eval[n], "eval")["action"], acts[n], n)
        # the manual checkpoint still downloads and restores
        r = self.c.get("/v1/agents/rs-man/checkpoints/%d" % man_ck["id"])
        self.assertEqual(len(r.body), man_ck["bytes"])
        s = self.assertOK(self.c.post("/v1/agents/rs-man/restore",
                                      {"checkpoint": man_ck["id"]}))["state"]
        self.assertEqual(s["updates"], 9)
        # the open episode continues
        r = self.assertOK(self.c.post("/v1/agents/rs-man/episodes/%s/step" % ep["episode_id"],
                                      {"reward": 2.0, "obs": o, "terminated": True,
                                       "truncated": False}))
        self.assertEqual((r["done"], r["return"], r["length"]), (True, 3.5, 2))
        # training continues
        self.assertEqual(self.train("rs-man", 2)["updates"], 11)
        self.assertOK(self.c.patch("/v1/agents/rs-pause", {"training": "async"}))
        self.wait_until(lambda: self.state("rs-pause")["pending_updates"] == 0, 20,
                        "resumed agent to work off its pending updates")
        self.assertEqual(self.state("rs-pause")["updates"], 2 * (30 - 16 + 1))

    def test_crash_keeps_acknowledged(self):
        self.create("kc-man", obs_dim=3, act_dim=1, config=small_config(training="manual"))
        self.create("kc-pause", obs_dim=3, act_dim=1, config=small_config(
            training="paused", update_per_step=3, max_pending_updates=10000))
        self.create("kc-async", obs_dim=3, act_dim=1, config=small_config(
            training="async", update_per_step=1, actor_delay=1))
        self.create("kc-sync", obs_dim=3, act_dim=1, config=small_config(
            training="sync", update_per_step=2, actor_delay=1))
        self.post_transitions("kc-sync", rand_rows(30, 3, 1))
        answers = {}
        for i in range(30):
            bid = "b%d" % i if i % 3 == 0 else None
            r = self.post_transitions("kc-man", rand_rows(5, 3, 1), batch_id=bid)
            self.assertEqual(r["env_steps"], 5 * (i + 1))
            if bid:
                answers[bid] = r
        self.post_transitions("kc-pause", rand_rows(20, 3, 1))
        self.post_transitions("kc-async", rand_rows(40, 3, 1))
        self.wait_until(lambda: self.state("kc-async")["pending_updates"] == 0, 20,
                        "async agent to finish")
        pv_async = self.state("kc-async")["policy_version"]
        self.assertGreater(pv_async, 0)
        self.train("kc-man", 4)
        # stats rows are durable within about a second: wait for them in the file
        stored = self.wait_until(lambda: (lambda u: u if u and u[-1] == 4 else None)(
            stored_stats_updates(self.daemon.data_dir, "kc-man")), 5,
            "the stats rows of kc-man's 4 updates in the database")
        rows = self.assertOK(self.c.get("/v1/agents/kc-man/stats"))["rows"]
        self.assertEqual([r["update"] for r in rows], stored)
        pending = self.state("kc-pause")["pending_updates"]
        self.assertEqual(pending, 3 * 5)
        # one more acknowledged post right before the crash
        self.assertEqual(self.post_transitions("kc-man", rand_rows(1, 3, 1))["env_steps"], 151)

        self.daemon.kill()
        self.daemon.start()

        st = self.state("kc-man")
        self.assertEqual((st["env_steps"], st["buffer_len"]), (151, 151))
        self.assertEqual(st["pending_updates"], 0)
        # batch ids survive the crash
        for bid, ans in answers.items():
            r = self.post_transitions("kc-man", rand_rows(2, 3, 1), batch_id=bid)
            self.assertEqual(r, ans)
        self.assertEqual(self.state("kc-man")["env_steps"], 151)
        rows1 = self.assertOK(self.c.get("/v1/agents/kc-man/stats"))["rows"]
        self.assertEqual(rows1[:len(rows)], rows)
        # what is owed is owed again; paused stays paused
        st = self.state("kc-pause")
        self.assertEqual((st["env_steps"], st["pending_updates"], st["updates"]),
                         (20, pending, 0))
        # the async agent resumes from its initial state and redoes what is owed
        st = self.wait_until(lambda: (lambda s: s if s["pending_updates"] == 0 and
                                      s["updates"] == 40 - 16 + 1 else None)(
            self.state("kc-async")), 20, "async agent to redo its updates")
        self.assertGreaterEqual(st["policy_version"], pv_async)   # never goes backwards
        # in sync mode too, the trainers redo what is owed; a new post waits for all of it
        r = self.post_transitions("kc-sync", rand_rows(1, 3, 1))
        st = self.state("kc-sync")
        self.assertEqual((st["env_steps"], st["updates"], st["pending_updates"]),
                         (31, 2 * (31 - 16 + 1), 0))
        # the database works
        self.create("kc-new", obs_dim=3, act_dim=1)
        self.post_transitions("kc-new", rand_rows(20, 3, 1))
        self.assertEqual(self.train("kc-new", 3)["updates"], 3)
        self.assertEqual(self.train("kc-man", 2)["updates"], 2)
        # and a second crash right after recovery loses nothing either
        self.daemon.kill()
        self.daemon.start()
        self.assertEqual(self.state("kc-man")["env_steps"], 151)
        self.assertEqual(self.state("kc-new")["env_steps"], 20)

    def test_crash_durability_of_everything_acknowledged(self):
        # Creation, deletion, PATCH, restore, import and episode steps are durable on
        # their 2xx answer.
        self.create("kd-src", obs_dim=3, act_dim=1, config=small_config(training="manual"))
        self.post_transitions("kd-src", rand_rows(30, 3, 1))
        self.train("kd-src", 6)
        ck = self.assertOK(self.c.post("/v1/agents/kd-src/checkpoints", data=b""), 201)
        blob = self.c.get("/v1/agents/kd-src/checkpoints/%d" % ck["id"]).body
        pol_ck = tensor_bytes(self.c.get("/v1/agents/kd-src/policy").body)
        self.train("kd-src", 4)
        pv_before = self.state("kd-src")["policy_version"]
        s = self.assertOK(self.c.post("/v1/agents/kd-src/restore",
                                      {"checkpoint": ck["id"]}))["state"]
        self.assertEqual(s["updates"], 6)
        self.assertOK(self.c.patch("/v1/agents/kd-src", {"training": "paused",
                                                         "update_per_step": 3,
                                                         "keep_checkpoints": 7}))
        self.create("kd-gone")
        self.assertStatus(self.c.delete("/v1/agents/kd-gone"), 204)
        self.create("kd-new", obs_dim=2, act_dim=2)
        imp = self.assertOK(self.c.put("/v1/agents/kd-imp/checkpoint", data=blob,
                                       content_type="application/octet-stream"), 201)
        full = self.c.get("/v1/agents/kd-src/checkpoints/%d?with_buffer=true" % ck["id"]).body
        impb = self.assertOK(self.c.put("/v1/agents/kd-impb/checkpoint", data=full,
                                        content_type="application/octet-stream"), 201)
        self.assertEqual(impb["state"]["buffer_len"], 30)
        self.post_transitions("kd-impb", rand_rows(4, 3, 1))
        o = [0.0, 0.5, 1.0]
        ep = self.assertOK(self.c.post("/v1/agents/kd-src/episodes", {"obs": o}), 201)
        for rew in (1.0, 2.0, 4.0):
            self.assertOK(self.c.post("/v1/agents/kd-src/episodes/%s/step" % ep["episode_id"],
                                      {"reward": rew, "obs": o, "terminated": False,
                                       "truncated": False}))

        self.daemon.kill()
        self.daemon.start()

        a = self.agent("kd-src")
        self.assertEqual(a["config"]["training"], "paused")
        self.assertEqual(a["config"]["update_per_step"], 3)
        self.assertEqual(a["config"]["keep_checkpoints"], 7)
        st = a["state"]
        self.assertEqual(st["updates"], 6)                 # the restore survived
        self.assertEqual(st["env_steps"], 33)              # 30 posted + 3 episode steps
        self.assertEqual(st["buffer_len"], 33)
        self.assertGreater(st["policy_version"], pv_before)
        self.assertEqual(tensor_bytes(self.c.get("/v1/agents/kd-src/policy").body), pol_ck)
        self.assertProblem(self.c.get("/v1/agents/kd-gone"), 404, "not_found")
        self.assertEqual(self.agent("kd-new")["act_dim"], 2)
        s = self.state("kd-imp")
        self.assertEqual((s["updates"], s["env_steps"]), (6, 30))
        self.assertGreaterEqual(s["policy_version"], imp["state"]["policy_version"])
        self.assertEqual(tensor_bytes(self.c.get("/v1/agents/kd-imp/policy").body), pol_ck)
        s = self.state("kd-impb")
        self.assertEqual((s["updates"], s["env_steps"], s["buffer_len"]), (6, 34, 34))
        self.assertEqual(self.train("kd-impb", 1)["updates"], 7)
        eps = self.assertOK(self.c.get("/v1/agents/kd-src/episodes"))["episodes"]
        self.assertEqual((eps[0]["id"], eps[0]["length"], eps[0]["return"], eps[0]["ended_at"]),
                         (ep["episode_id"], 3, 7.0, None))
        r = self.assertOK(self.c.post("/v1/agents/kd-src/episodes/%s/step" % ep["episode_id"],
                                      {"reward": 1.0, "obs": o, "terminated": False,
                                       "truncated": True}))
        self.assertEqual((r["done"], r["return"], r["length"]), (True, 8.0, 4))
        self.assertEqual(self.state("kd-src")["episodes"], 1)

    def test_policy_version_never_goes_backwards(self):
        # Without any checkpoint, a crash restarts the learner from its initial state;
        # the versions it publishes again must not repeat the ones already seen.
        self.create("pv", obs_dim=3, act_dim=1, config=small_config(training="manual",
                                                                     actor_delay=1))
        self.post_transitions("pv", rand_rows(20, 3, 1))
        self.train("pv", 5)
        seen = self.state("pv")["policy_version"]
        pol5 = tensor_bytes(self.c.get("/v1/agents/pv/policy").body)
        self.assertEqual(seen, 5)
        self.daemon.kill()
        self.daemon.start()
        st = self.state("pv")
        self.assertEqual(st["updates"], 0)
        self.assertGreater(st["policy_version"], seen)   # version 0 would name another policy
        self.train("pv", 5)
        pv2 = self.state("pv")["policy_version"]
        self.assertGreater(pv2, seen)
        r = self.c.get("/v1/agents/pv/policy")
        self.assertEqual(r.header("ETag"), '"%d"' % pv2)

    def test_second_signal(self):
        # a second SIGTERM exits at once, safely: what was acknowledged is there
        self.create("sig2", obs_dim=3, act_dim=1, config=small_config(
            training="async", hidden_sizes=[256, 256], ensemble_size=10, batch_size=64,
            update_per_step=20))
        for i in range(5):
            self.post_transitions("sig2", rand_rows(20, 3, 1), batch_id="s%d" % i)
        p = self.daemon.proc
        p.send_signal(signal.SIGTERM)
        p.send_signal(signal.SIGTERM)
        p.wait(scaled(20))
        self.daemon.proc = None
        self.daemon.start()
        st = self.state("sig2")
        self.assertEqual((st["env_steps"], st["buffer_len"]), (100, 100))
        r = self.post_transitions("sig2", rand_rows(20, 3, 1), batch_id="s4")
        self.assertEqual(r["env_steps"], 100)
        self.assertOK(self.c.patch("/v1/agents/sig2", {"training": "manual"}))

    def test_shutdown_during_training(self):
        # SIGTERM while a big backlog trains and a train call waits: the daemon still
        # exits 0 within the limit; the waiting call gets an answer.
        import threading
        self.create("sd", obs_dim=8, act_dim=2, config=small_config(
            training="async", hidden_sizes=[256, 256], ensemble_size=10, batch_size=128,
            update_per_step=20, max_pending_updates=100000))
        self.post_transitions("sd", rand_rows(300, 8, 2))
        from harness import Client
        out = {}

        def trainer():
            c = Client(self.daemon)
            try:
                out["r"] = c.post("/v1/agents/sd/train", {"updates": 100000})
            except Exception as e:
                out["e"] = e
            c.close()
        t = threading.Thread(target=trainer)
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        self.daemon.stop_ok()
        t.join(scaled(10))
        self.assertFalse(t.is_alive())
        self.assertLess(time.monotonic() - t0, scaled(20))
        sys.stderr.write("\n  train call during shutdown: %r\n" % (out,))
        if "r" in out:
            self.assertIn(out["r"].status, (409, 503), out["r"])
            self.assertEqual(out["r"].ctype, "application/problem+json")
        self.daemon.start()
        st = self.state("sd")
        self.assertEqual(st["env_steps"], 300)
        self.assertOK(self.c.patch("/v1/agents/sd", {"training": "manual"}))

    # ---- sync-mode reproducibility

    DET_CFG = small_config(training="sync", seed=7, start_timesteps=100, batch_size=16,
                           update_per_step=1, actor_delay=2, alpha="auto", estimation_step=3,
                           exploration_noise={"type": "gaussian", "sigma": 0.1},
                           checkpoint_every=50)

    def det_run(self, name, steps, restart_at=None):
        self.create(name, obs_dim=3, act_dim=1, config=dict(self.DET_CFG))
        env = Pendulum(seed=11)
        obs = env.reset()
        trace = []
        for t in range(steps):
            if t == restart_at:
                self.daemon.restart()
            a = self.act(name, obs)["action"]
            nxt, rew, term, trunc = env.step(a[0])
            self.post_transitions(name, [{"obs": obs, "action": a, "reward": rew,
                                          "next_obs": nxt, "terminated": term,
                                          "truncated": trunc}])
            trace.append(a[0])
            obs = env.reset() if (term or trunc) else nxt
        st = self.state(name)
        self.assertEqual(st["updates"], steps - 100 + 1)
        self.assertEqual(st["pending_updates"], 0)
        return trace, self.c.get("/v1/agents/%s/policy" % name).body

    def test_sync_determinism(self):
        steps = 300
        t1, p1 = self.det_run("det-a", steps)
        t2, p2 = self.det_run("det-b", steps)
        self.assertEqual(t1, t2)
        self.assertEqual(tensor_bytes(p1), tensor_bytes(p2))
        # a different seed gives a different run (so the comparison means something)
        self.create("det-c", obs_dim=3, act_dim=1, config=dict(self.DET_CFG, seed=8))
        self.assertNotEqual(tensor_bytes(self.c.get("/v1/agents/det-c/policy").body),
                            tensor_bytes(self.c.get("/v1/agents/det-a/policy").body))

    def test_sync_determinism_across_restart(self):
        steps = 300
        t1, p1 = self.det_run("det-r1", steps)
        t2, p2 = self.det_run("det-r2", steps, restart_at=170)
        first = next((i for i, (x, y) in enumerate(zip(t1, t2)) if x != y), None)
        self.assertIsNone(first, "the actions differ from step %s on" % first)
        b1, b2 = tensor_bytes(p1), tensor_bytes(p2)
        self.assertEqual(sorted(b1), sorted(b2))
        for k in b1:
            self.assertEqual(b1[k], b2[k], "tensor %s differs after a restart" % k)


if __name__ == "__main__":
    unittest.main()
