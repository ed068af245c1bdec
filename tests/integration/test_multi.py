"""Several agents at once: three agents of different sizes post and train in async mode
from three threads while a fourth thread acts; everyone progresses and nobody waits on
anybody's training.

Latencies are bounded one-sidedly and generously, scaled for the build and the machine's
load (harness.scaled): what they catch is a request that waits for training (a whole
backlog: many seconds), not a slow machine. Where an order says it (the light agent
caught up while the heavy one still owes updates), the order is what is checked."""
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, DaemonTestCase, rand_rows, scaled, small_config  # noqa: E402

AGENTS = {
    # name: (obs_dim, act_dim, config overrides)
    "multi-a": (3, 1, {}),
    "multi-b": (5, 2, {"hidden_sizes": [64, 64]}),
    "multi-c": (8, 3, {"hidden_sizes": [128, 128], "ensemble_size": 5, "batch_size": 64}),
}
POSTS, ROWS, UTD = 25, 8, 4


class MultiTest(DaemonTestCase):

    def test_three_agents_at_once(self):
        for name, (S, A, over) in AGENTS.items():
            cfg = small_config(training="async", update_per_step=UTD, **over)
            self.create(name, obs_dim=S, act_dim=A, config=cfg)
        errors, post_lat, act_lat = [], {}, []
        done = threading.Event()
        progress_seen = {}

        def poster(name, S, A):
            try:
                c = Client(self.daemon)
                rng = random.Random(name)
                worst = 0.0
                for i in range(POSTS):
                    t = time.monotonic()
                    r = c.post("/v1/agents/%s/transitions" % name,
                               {"transitions": rand_rows(ROWS, S, A, rng)})
                    worst = max(worst, time.monotonic() - t)
                    if r.status != 200:
                        raise AssertionError("%s: post %d: %r" % (name, i, r))
                    r = c.post("/v1/agents/%s/act" % name, {"obs": [0.1] * S})
                    if r.status != 200 or len(r.json()["action"]) != A:
                        raise AssertionError("%s: act: %r" % (name, r))
                    if i == POSTS // 2:
                        progress_seen[name] = c.get("/v1/agents/" + name).json()["state"]
                post_lat[name] = worst
                c.close()
            except Exception as e:  # reported by the main thread
                errors.append(e)

        def actor():
            try:
                c = Client(self.daemon)
                while not done.is_set():
                    for name, (S, A, _) in AGENTS.items():
                        t = time.monotonic()
                        r = c.post("/v1/agents/%s/act" % name,
                                   {"obs": [[0.2] * S] * 16, "mode": "eval"})
                        act_lat.append(time.monotonic() - t)
                        if r.status != 200 or len(r.json()["action"]) != 16:
                            raise AssertionError("act %s: %r" % (name, r))
                c.close()
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=poster, args=(n, S, A))
                   for n, (S, A, _) in AGENTS.items()]
        act_thread = threading.Thread(target=actor)
        act_thread.start()
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(60))
        # acts keep answering while the agents train
        time.sleep(0.5)
        states = {n: self.state(n) for n in AGENTS}
        done.set()
        act_thread.join(30)
        self.assertFalse(errors, errors)
        self.assertFalse(any(t.is_alive() for t in threads + [act_thread]), "a thread hung")
        self.assertGreater(len(act_lat), 10)
        # an act reads the published policy and never waits for an update: well under
        # a second; a post waits for its commit, not for training
        act_bound, post_bound = scaled(1.0), scaled(2.0)
        self.assertLess(max(act_lat), act_bound, "an act took %.2f s (bound %.1f s)"
                        % (max(act_lat), act_bound))
        for n, worst in post_lat.items():
            self.assertLess(worst, post_bound, "a post to %s took %.2f s (bound %.1f s)"
                            % (n, worst, post_bound))
        # everyone has made progress, not one after the other
        for n, st in states.items():
            self.assertGreater(st["updates"], 0, (n, st))
        owed = UTD * (POSTS * ROWS - 16 + 1)
        owed_c = UTD * (POSTS * ROWS - 64 + 1)

        def all_done():
            sts = {n: self.state(n) for n in AGENTS}
            ok = all(s["pending_updates"] == 0 for s in sts.values())
            return sts if ok else None
        sts = self.wait_until(all_done, 120, "every agent to work off its updates",
                              interval=0.2)
        self.assertEqual(sts["multi-a"]["updates"], owed)
        self.assertEqual(sts["multi-b"]["updates"], owed)
        self.assertEqual(sts["multi-c"]["updates"], owed_c)
        for n in AGENTS:
            self.assertEqual(sts[n]["env_steps"], POSTS * ROWS)
        sys.stderr.write("\n  multi: %.1f s, max act %.3f s, max post %s\n" % (
            time.monotonic() - t0, max(act_lat),
            {n: round(v, 3) for n, v in post_lat.items()}))

    def test_busy_agent_does_not_starve_others(self):
        # a heavy agent with a large backlog; a small one posted later still trains soon
        self.create("heavy", obs_dim=8, act_dim=2, config=small_config(
            training="async", hidden_sizes=[256, 256], ensemble_size=10, batch_size=128,
            update_per_step=20, max_pending_updates=100000))
        self.post_transitions("heavy", rand_rows(400, 8, 2))
        self.create("light", obs_dim=3, act_dim=1, config=small_config(
            training="async", update_per_step=2))
        self.post_transitions("light", rand_rows(30, 3, 1))
        self.wait_until(lambda: self.state("light")["pending_updates"] == 0, 20,
                        "the light agent to be trained beside the heavy one")
        # the order is the point, not the seconds: the light agent, posted after the
        # heavy one's backlog, caught up while the heavy one still owes thousands
        self.assertGreater(self.state("heavy")["pending_updates"], 0,
                           "the heavy agent finished first: the light one waited for it")
        # while it trains (two trainers on one agent), requests on the heavy agent are
        # not starved: each waits for one chunk of updates at most
        worst = {}
        bound = scaled(2.0)   # one chunk of at most 8 updates, with a wide margin
        for i in range(15):
            for what, fn in (
                    ("act", lambda: self.act("heavy", [0.0] * 8)),
                    ("get", lambda: self.agent("heavy")),
                    ("list", lambda: self.assertOK(self.c.get("/v1/agents"))),
                    ("post", lambda: self.post_transitions("heavy", rand_rows(1, 8, 2))),
                    ("patch", lambda: self.assertOK(self.c.patch("/v1/agents/heavy",
                                                                 {"training": "async"})))):
                t = time.monotonic()
                fn()
                dt = time.monotonic() - t
                self.assertLess(dt, bound, "%s on a training agent took %.2f s (bound %.1f s)"
                                % (what, dt, bound))
                worst[what] = max(worst.get(what, 0.0), dt)
        self.assertGreater(self.state("heavy")["pending_updates"], 0)
        self.assertOK(self.c.patch("/v1/agents/heavy", {"training": "manual"}))

    def _threads(self, fns):
        errors = []

        def wrap(fn):
            def run():
                try:
                    fn()
                except Exception as e:
                    errors.append(e)
            return run
        ts = [threading.Thread(target=wrap(f)) for f in fns]
        for t in ts:
            t.start()
        for t in ts:
            t.join(scaled(60))
        self.assertFalse(any(t.is_alive() for t in ts), "a thread hung")
        self.assertFalse(errors, errors)

    def test_same_batch_id_concurrently(self):
        self.create("same-bid", obs_dim=3, act_dim=1)
        answers = []

        def post():
            c = Client(self.daemon)
            r = c.post("/v1/agents/same-bid/transitions",
                       {"transitions": rand_rows(5, 3, 1), "batch_id": "one"})
            answers.append((r.status, r.body))
            c.close()
        self._threads([post] * 8)
        self.assertEqual(len(set(answers)), 1, answers)
        self.assertEqual(answers[0][0], 200)
        self.assertEqual(self.state("same-bid")["env_steps"], 5)

    def test_one_agent_many_clients(self):
        # posters (some sync), acts, PATCHes, checkpoints and episode steps on one agent
        # at once: every acknowledged transition counts once, nothing answers 5xx, and the
        # books balance after a crash
        self.create("crowd", obs_dim=4, act_dim=2, config=small_config(
            training="async", update_per_step=1, max_pending_updates=100000))
        bad = []

        def check(r, what, ok=(200, 201, 204)):
            if r.status not in ok:
                bad.append((what, r))

        def poster(k):
            def run():
                c = Client(self.daemon)
                rng = random.Random(k)
                for i in range(25):
                    r = c.post("/v1/agents/crowd/transitions",
                               {"transitions": rand_rows(4, 4, 2, rng),
                                "batch_id": "p%d-%d" % (k, i)})
                    check(r, "post")
                c.close()
            return run

        def patcher():
            c = Client(self.daemon)
            for i in range(20):
                mode = ("sync", "async", "paused", "async")[i % 4]
                check(c.patch("/v1/agents/crowd", {"training": mode}), "patch")
                time.sleep(0.01)
            check(c.patch("/v1/agents/crowd", {"training": "async"}), "patch")
            c.close()

        def misc():
            c = Client(self.daemon)
            for i in range(10):
                check(c.post("/v1/agents/crowd/act", {"obs": [[0.1] * 4] * 8}), "act")
                check(c.post("/v1/agents/crowd/checkpoints", data=b""), "ckpt")
                check(c.get("/v1/agents/crowd/policy"), "policy")
                check(c.get("/v1/agents/crowd/stats"), "stats")
            c.close()

        def episodes():
            c = Client(self.daemon)
            for i in range(3):
                r = c.post("/v1/agents/crowd/episodes", {"obs": [0.0] * 4})
                check(r, "episode start")
                eid = r.json()["episode_id"]
                for t in range(10):
                    check(c.post("/v1/agents/crowd/episodes/%s/step" % eid,
                                 {"reward": 1.0, "obs": [0.1 * t] * 4, "terminated": False,
                                  "truncated": t == 9}), "step")
            c.close()

        self._threads([poster(k) for k in range(4)] + [patcher, misc, episodes])
        self.assertFalse(bad, bad[:5])
        total = 4 * 25 * 4 + 3 * 10
        st = self.wait_until(lambda: (lambda s: s if s["pending_updates"] == 0 else None)(
            self.state("crowd")), 60, "the crowd agent to catch up")
        self.assertEqual((st["env_steps"], st["buffer_len"], st["episodes"]),
                         (total, total, 3))
        # retries of every batch are answered from memory
        c = Client(self.daemon)
        r = c.post("/v1/agents/crowd/transitions",
                   {"transitions": rand_rows(4, 4, 2), "batch_id": "p3-24"})
        self.assertOK(r)
        c.close()
        self.assertEqual(self.state("crowd")["env_steps"], total)
        self.daemon.kill()
        self.daemon.start()
        st = self.state("crowd")
        self.assertEqual((st["env_steps"], st["buffer_len"], st["episodes"]),
                         (total, total, 3))


if __name__ == "__main__":
    unittest.main()
