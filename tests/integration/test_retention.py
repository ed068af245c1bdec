"""History retention (issue 10, item 3): the history_keep_rows, history_keep_days and
history_thin settings. Everything is kept by default; past the window stats and
evaluation rows are thinned to every history_thin-th (of the agent's own rows, the first
of each group) and ended episodes are deleted, while state.episodes and
state.last_return still count them, across a restart too. The retention is looked at
once after a PATCH, so each test sets it when its rows are in place and waits for the
result."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, rand_rows, small_config  # noqa: E402


def thinned(rows, keep, thin):
    """What retention leaves of rows (ascending): the newest keep whole; of the others,
    taken in whole groups of thin, the first of each group (the rest of an incomplete
    group waits for more rows)."""
    past = max(0, len(rows) - keep)
    done = past - past % thin if thin > 1 else past
    kept = rows[0:done:thin] if thin >= 1 else []
    return kept + rows[done:]


class RetentionTest(DaemonTestCase):

    def stats(self, name):
        return self.assertOK(self.c.get("/v1/agents/%s/stats?limit=100000" % name))["rows"]

    def evaluations(self, name):
        return self.assertOK(self.c.get("/v1/agents/%s/evaluations?limit=100000" % name))["rows"]

    def episodes(self, name):
        return self.assertOK(self.c.get("/v1/agents/%s/episodes?limit=10000" % name))["episodes"]

    def test_settings_default_patch_and_restart(self):
        cfg = self.create("rt-cfg")["config"]
        self.assertEqual((cfg["history_keep_rows"], cfg["history_keep_days"], cfg["history_thin"]),
                         (None, None, 10))
        a = self.assertOK(self.c.patch("/v1/agents/rt-cfg", {"history_keep_rows": 1000,
                                                             "history_keep_days": 7.5,
                                                             "history_thin": 5}))
        self.assertEqual((a["config"]["history_keep_rows"], a["config"]["history_keep_days"],
                          a["config"]["history_thin"]), (1000, 7.5, 5))
        for body, field in (({"history_keep_rows": 0}, "history_keep_rows"),
                            ({"history_keep_rows": 1.5}, "history_keep_rows"),
                            ({"history_keep_days": -1}, "history_keep_days"),
                            ({"history_keep_days": "7"}, "history_keep_days"),
                            ({"history_thin": -1}, "history_thin"),
                            ({"history_thin": None}, "history_thin")):
            self.assertProblem(self.c.patch("/v1/agents/rt-cfg", body), 400, "invalid_argument",
                               field)
        self.assertEqual(self.agent("rt-cfg")["config"]["history_thin"], 5)
        self.create("rt-cfg2", config=small_config(history_keep_days=0.5, history_thin=0))
        self.daemon.restart()
        self.assertEqual(self.agent("rt-cfg")["config"]["history_keep_days"], 7.5)
        c2 = self.agent("rt-cfg2")["config"]
        self.assertEqual((c2["history_keep_rows"], c2["history_keep_days"], c2["history_thin"]),
                         (None, 0.5, 0))
        a = self.assertOK(self.c.patch("/v1/agents/rt-cfg", {"history_keep_rows": None,
                                                             "history_keep_days": None}))
        self.assertEqual((a["config"]["history_keep_rows"], a["config"]["history_keep_days"]),
                         (None, None))

    def test_rows_window_thins_stats_and_evaluations_drops_episodes(self):
        name = "rt-rows"
        self.create(name, config=small_config(actor_delay=1))
        rows = rand_rows(1000, 3, 1)
        for i, r in enumerate(rows):
            r["terminated"] = i % 10 == 9     # 100 episodes from transitions
        for k in range(0, 1000, 250):
            self.post_transitions(name, rows[k:k + 250])
        for _ in range(3):
            self.train(name, 100)
        for i in range(80):
            self.assertOK(self.c.post("/v1/agents/%s/evaluations" % name,
                                      {"returns": [float(i)]}), 201)
        st0 = self.state(name)
        stats0, evals0, eps0 = self.stats(name), self.evaluations(name), self.episodes(name)
        self.assertEqual(st0["episodes"], 100)
        self.assertEqual(len(eps0), 100)
        self.assertGreaterEqual(len(stats0), 300)
        # Nothing goes by default.
        time.sleep(1.5)
        self.assertEqual(self.stats(name), stats0)

        self.assertOK(self.c.patch("/v1/agents/" + name, {"history_keep_rows": 50,
                                                          "history_thin": 10}))
        want_stats, want_evals = thinned(stats0, 50, 10), thinned(evals0, 50, 10)
        self.wait_until(lambda: self.stats(name) == want_stats, 30, "the stats to be thinned")
        self.wait_until(lambda: self.evaluations(name) == want_evals, 30,
                        "the evaluations to be thinned")
        self.wait_until(lambda: len(self.episodes(name)) == 50, 30, "the episodes to go")
        self.assertEqual(self.episodes(name), eps0[:50])      # the newest 50 stay
        st = self.state(name)
        self.assertEqual((st["episodes"], st["last_return"]), (100, st0["last_return"]))

        # Thinned rows stay as they are (never thinned twice); rows made later are
        # thinned in their turn, the groups counted on from where the first pass stopped;
        # the state is the same after a restart, which looks at the history at once.
        self.train(name, 40)
        stats1 = self.stats(name)
        self.assertEqual(stats1[:len(want_stats)], want_stats)
        self.daemon.restart()
        st = self.state(name)
        self.assertEqual((st["episodes"], st["last_return"]), (100, st0["last_return"]))
        past = len(stats0) - 50
        prefix = stats0[0:past - past % 10:10]
        want2 = prefix + thinned(stats1[len(prefix):], 50, 10)
        self.assertLess(len(want2), len(stats1))
        self.wait_until(lambda: self.stats(name) == want2, 30, "the new rows' turn")
        # An episode that ends now counts on top.
        self.post_transitions(name, [dict(rows[0], terminated=True, reward=5.0)])
        st = self.state(name)
        self.assertEqual((st["episodes"], st["last_return"]), (101, 5.0))

    def test_days_window(self):
        name = "rt-days"
        self.create(name, config=small_config(actor_delay=1))
        self.post_transitions(name, rand_rows(100, 3, 1))
        self.train(name, 30)
        old = self.stats(name)
        time.sleep(3.0)
        self.train(name, 10)
        new = self.stats(name)[len(old):]
        # Rows older than 1.5 s go but every second one, new ones stay whole; no count
        # limit. (The look comes right after the PATCH, well within 1.5 s of the new rows.)
        self.assertOK(self.c.patch("/v1/agents/" + name, {"history_keep_days": 1.5 / 86400,
                                                          "history_thin": 2}))
        want = thinned(old, 0, 2) + new
        self.wait_until(lambda: self.stats(name) == want, 30, "the old rows to be thinned")

if __name__ == "__main__":
    unittest.main()
