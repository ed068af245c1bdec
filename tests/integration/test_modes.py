"""Training modes (async, sync, manual, paused), POST .../train and the stats rows.

No test bounds how long an update takes. A sync post must be answered by its updates, not
by --sync-timeout (which answers 200 too): its time is checked against that timeout, set
from the build and the load (harness.scaled). Times the daemon reports are checked by
their order against the test's own clock (a train answer's row time lies between the
request and the answer; its train_time is at most the call's duration)."""
import csv
import io
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, rand_rows, scaled  # noqa: E402

ROW_KEYS = ["row", "update", "env_steps", "time", "actor_loss", "critic_loss", "alpha",
            "alpha_loss", "q_mean", "q_std", "train_time"]


def owed(env_before, n, upd, start, batch):
    """Updates owed by n transitions posted after env_before (API.md)."""
    th = max(start, batch)
    return sum(upd for k in range(env_before + 1, env_before + n + 1) if k >= th)


# a sync post that is never released answers late (200 or 503): keep that short, but far
# above what any post here needs on this build and machine
SYNC_TIMEOUT = int(scaled(15))


class ModesTest(DaemonTestCase):
    daemon_args = ("--sync-timeout", str(SYNC_TIMEOUT))

    def timed_post(self, name, n):
        """A sync post, answered by its own updates: before --sync-timeout could have
        released it (it would answer 200 as well)."""
        t = time.monotonic()
        r = self.post_transitions(name, rand_rows(n, 3, 1))
        dt = time.monotonic() - t
        self.assertLess(dt, SYNC_TIMEOUT, "a sync post took %.1f s: released by "
                        "--sync-timeout %d, not by its updates" % (dt, SYNC_TIMEOUT))
        return r

    def stats(self, name, **q):
        qs = "&".join("%s=%s" % kv for kv in q.items())
        return self.assertOK(self.c.get("/v1/agents/%s/stats%s" % (name, "?" + qs if qs else "")))

    def test_async(self):
        self.create("async1", training="async", batch_size=16, update_per_step=2,
                    start_timesteps=10)
        r = self.post_transitions("async1", rand_rows(40, 3, 1))
        expect = owed(0, 40, 2, 10, 16)
        self.assertEqual(expect, 50)
        self.assertEqual(r["accepted"], 40)
        self.assertLessEqual(r["pending_updates"], expect)
        self.post_transitions("async1", rand_rows(5, 3, 1))
        expect += 10

        def done():
            st = self.state("async1")
            return st if st["pending_updates"] == 0 and st["updates"] == expect else None
        st = self.wait_until(done, 30, "async updates to be worked off")
        self.assertEqual(st["actor_updates"], expect // 2)
        self.assertGreater(st["policy_version"], 0)
        # nothing more happens
        time.sleep(0.3)
        self.assertEqual(self.state("async1")["updates"], expect)

    def test_sync(self):
        self.create("sync1", training="sync", batch_size=16, update_per_step=3,
                    start_timesteps=0)
        r = self.post_transitions("sync1", rand_rows(20, 3, 1))
        st = self.state("sync1")
        self.assertEqual(st["updates"], owed(0, 20, 3, 0, 16))  # 15
        self.assertEqual(st["pending_updates"], 0)
        self.assertEqual(r["env_steps"], 20)
        total = st["updates"]
        for i in range(5):
            self.post_transitions("sync1", rand_rows(1, 3, 1))
            total += 3
            self.assertEqual(self.state("sync1")["updates"], total)
        # fractional: 0.5 per step; the post waits for the whole updates it completes
        self.assertOK(self.c.patch("/v1/agents/sync1", {"update_per_step": 0.5}))
        self.timed_post("sync1", 3)
        st = self.state("sync1")
        self.assertEqual(st["updates"], total + 1)
        self.assertEqual(st["pending_updates"], 0.5)
        self.timed_post("sync1", 1)
        st = self.state("sync1")
        self.assertEqual((st["updates"], st["pending_updates"]), (total + 2, 0))

    def test_manual_and_train(self):
        self.create("man1", training="manual", batch_size=16, update_per_step=5,
                    actor_delay=2)
        self.post_transitions("man1", rand_rows(10, 3, 1))
        # fewer than batch_size rows
        r = self.c.post("/v1/agents/man1/train", {"updates": 5})
        self.assertProblem(r, 409, "conflict")
        r = self.post_transitions("man1", rand_rows(10, 3, 1))
        self.assertEqual(r["pending_updates"], 0)
        time.sleep(0.2)
        st = self.state("man1")
        self.assertEqual((st["updates"], st["pending_updates"]), (0, 0))
        t_wall, t_mono = time.time(), time.monotonic()
        t = self.train("man1", 5)
        t_wall1, call = time.time(), time.monotonic() - t_mono
        self.assertEqual(t["updates"], 5)
        s = t["stats"]
        for k in ROW_KEYS:
            self.assertIn(k, s, "train stats lack %s: %r" % (k, s))
        self.assertEqual(s["update"], 5)
        self.assertEqual(s["env_steps"], 20)
        self.assertTrue(s["row"] is None or isinstance(s["row"], int), s)
        # the row was made during the call (1 s for the clock's rounding)
        self.assertTrue(t_wall - 1 <= s["time"] <= t_wall1 + 1, (t_wall, s["time"], t_wall1))
        for k in ("critic_loss", "alpha", "q_mean", "q_std", "actor_loss"):
            self.assertIsInstance(s[k], float, k)
        self.assertAlmostEqual(s["alpha"], 0.2, places=6)
        self.assertGreater(s["train_time"], 0)
        # the seconds in the call's updates (CLOCK_MONOTONIC, one after another) were
        # spent during the call
        self.assertLessEqual(s["train_time"], call + 1e-3)
        self.assertEqual(self.train("man1", 3)["updates"], 8)
        st = self.state("man1")
        self.assertEqual((st["updates"], st["actor_updates"]), (8, 4))
        for bad in (0, 100001, -1, 2.5, "3", None):
            r = self.c.post("/v1/agents/man1/train", {"updates": bad})
            self.assertProblem(r, 400, "invalid_argument", "updates")
        self.assertProblem(self.c.post("/v1/agents/man1/train", {}), 400, "invalid_argument",
                           "updates")
        self.assertProblem(self.c.post("/v1/agents/man1/train", {"updates": 1, "x": 1}), 400,
                           "invalid_argument", "x")
        self.assertProblem(self.c.post("/v1/agents/nobody/train", {"updates": 1}), 404,
                           "not_found")
        self.assertEqual(self.state("man1")["updates"], 8)

    def test_paused(self):
        self.create("pause1", training="paused", batch_size=16, update_per_step=2)
        self.post_transitions("pause1", rand_rows(20, 3, 1))
        self.post_transitions("pause1", rand_rows(5, 3, 1))
        expect = owed(0, 25, 2, 0, 16)
        time.sleep(0.5)
        st = self.state("pause1")
        self.assertEqual((st["updates"], st["pending_updates"]), (0, expect))
        # train still works; what is owed stays owed
        self.assertEqual(self.train("pause1", 3)["updates"], 3)
        st = self.state("pause1")
        self.assertEqual((st["updates"], st["pending_updates"]), (3, expect))
        # async works the pending off
        self.assertOK(self.c.patch("/v1/agents/pause1", {"training": "async"}))

        def done():
            st = self.state("pause1")
            return st if st["pending_updates"] == 0 and st["updates"] == 3 + expect else None
        self.wait_until(done, 30, "pending updates worked off after resuming")
        # pausing a busy agent stops it
        self.assertOK(self.c.patch("/v1/agents/pause1", {"training": "paused",
                                                          "update_per_step": 20}))
        self.post_transitions("pause1", rand_rows(50, 3, 1))
        time.sleep(0.3)
        u = self.state("pause1")["updates"]
        time.sleep(0.3)
        st = self.state("pause1")
        self.assertEqual(st["updates"], u)
        self.assertEqual(st["pending_updates"], 1000)

    def test_sync_switch_from_paused(self):
        # sync posts wait for their own updates, also when others are owed before them
        self.create("sync2", training="paused", batch_size=16, update_per_step=2)
        self.post_transitions("sync2", rand_rows(20, 3, 1))
        self.assertOK(self.c.patch("/v1/agents/sync2", {"training": "sync"}))
        self.post_transitions("sync2", rand_rows(1, 3, 1))
        st = self.state("sync2")
        self.assertEqual((st["updates"], st["pending_updates"]), (12, 0))

    def test_sync_after_manual_clear(self):
        # what switching to manual cleared is not waited for by later sync posts
        self.create("sync3", training="paused", batch_size=16, update_per_step=2)
        self.post_transitions("sync3", rand_rows(20, 3, 1))      # owes 10
        self.assertOK(self.c.patch("/v1/agents/sync3", {"training": "manual"}))
        self.assertOK(self.c.patch("/v1/agents/sync3", {"training": "sync"}))
        self.timed_post("sync3", 1)
        st = self.state("sync3")
        self.assertEqual((st["updates"], st["pending_updates"]), (2, 0))
        # and after a train call and a switch through async
        self.train("sync3", 3)
        self.assertOK(self.c.patch("/v1/agents/sync3", {"training": "async"}))
        self.assertOK(self.c.patch("/v1/agents/sync3", {"training": "sync"}))
        self.timed_post("sync3", 2)
        st = self.state("sync3")
        self.assertEqual((st["updates"], st["pending_updates"]), (9, 0))

    def _heavy(self, name, training):
        self.create(name, obs_dim=8, act_dim=2, training=training, hidden_sizes=[256, 256],
                    ensemble_size=10, batch_size=128, update_per_step=20,
                    max_pending_updates=100000)

    def _in_thread(self, method, path, body):
        import threading
        from harness import Client
        out = {}

        def run():
            c = Client(self.daemon)
            try:
                out["r"] = c.request(method, path, body=body)
            finally:
                c.close()
        t = threading.Thread(target=run)
        t.start()
        return t, out

    def test_delete_while_waiting(self):
        # a sync or train request whose agent is deleted while it waits gets 409 conflict
        self._heavy("delw1", "manual")
        self.post_transitions("delw1", rand_rows(200, 8, 2))
        t, out = self._in_thread("POST", "/v1/agents/delw1/train", {"updates": 100000})
        self.wait_until(lambda: self.state("delw1")["updates"] > 0, 20, "the train call")
        self.assertStatus(self.c.delete("/v1/agents/delw1"), 204)
        t.join(scaled(15))
        self.assertFalse(t.is_alive(), "the train call still waits after the deletion")
        self.assertProblem(out["r"], 409, "conflict")
        self._heavy("delw2", "paused")
        self.post_transitions("delw2", rand_rows(200, 8, 2))
        self.assertOK(self.c.patch("/v1/agents/delw2", {"training": "sync"}))
        t, out = self._in_thread("POST", "/v1/agents/delw2/transitions",
                                 {"transitions": rand_rows(1, 8, 2)})
        self.wait_until(lambda: self.state("delw2")["env_steps"] == 201, 20, "the sync post")
        time.sleep(0.2)
        self.assertTrue(t.is_alive(), "the sync post did not wait for ~3700 updates")
        self.assertStatus(self.c.delete("/v1/agents/delw2"), 204)
        t.join(scaled(15))
        self.assertFalse(t.is_alive(), "the sync post still waits after the deletion")
        self.assertProblem(out["r"], 409, "conflict")
        self.assertProblem(self.c.get("/v1/agents/delw2"), 404, "not_found")

    def test_restore_while_training(self):
        # a restore waits for the update in progress and swaps atomically; a train call
        # it cuts short is answered (not left waiting)
        self._heavy("rsw", "manual")
        self.post_transitions("rsw", rand_rows(200, 8, 2))
        self.train("rsw", 3)
        ck = self.assertOK(self.c.post("/v1/agents/rsw/checkpoints", data=b""), 201)
        t, out = self._in_thread("POST", "/v1/agents/rsw/train", {"updates": 100000})
        self.wait_until(lambda: self.state("rsw")["updates"] > 3, 20, "the train call")
        a = self.assertOK(self.c.post("/v1/agents/rsw/restore", {"checkpoint": ck["id"]}))
        self.assertEqual(a["state"]["updates"], 3)
        t.join(scaled(15))
        self.assertFalse(t.is_alive(), "the train call still waits after the restore")
        self.assertIn(out["r"].status, (200, 409), out["r"])
        time.sleep(0.2)
        self.assertEqual(self.state("rsw")["updates"], 3, "training went on after the restore")

    def test_stats_rows(self):
        self.create("stats1", training="manual", batch_size=16, actor_delay=2)
        self.post_transitions("stats1", rand_rows(30, 3, 1))
        t0 = time.time()
        tt = self.train("stats1", 5)["stats"]["train_time"]     # rows at 2, 4, 5
        self.train("stats1", 4)          # rows at 6, 8, 9
        self.train("stats1", 1)          # 10: both the actor_delay row and the train row
        expect = [2, 4, 5, 6, 8, 9, 10]

        def rows():
            rs = self.stats("stats1")["rows"]
            return rs if len(rs) >= len(expect) else None
        rs = self.wait_until(rows, 5, "stats rows to be durable")
        self.assertEqual([r["update"] for r in rs], expect)
        # train_time: the seconds in the updates since the previous row
        self.assertAlmostEqual(sum(r["train_time"] for r in rs[:3]), tt, delta=1e-4)
        prev = 0
        for r in rs:
            self.assertEqual(sorted(r.keys()), sorted(ROW_KEYS))
            self.assertIsInstance(r["row"], int)
            self.assertGreater(r["row"], prev)
            prev = r["row"]
            self.assertEqual(r["env_steps"], 30)
            self.assertTrue(t0 - 5 <= r["time"] <= time.time() + 5, r)
            self.assertGreaterEqual(r["train_time"], 0)
            self.assertIsInstance(r["critic_loss"], float)
            self.assertIsInstance(r["alpha"], float)
        # paging
        p = self.stats("stats1", since=rs[1]["row"], limit=2)["rows"]
        self.assertEqual(p, rs[2:4])
        p = self.stats("stats1", since=rs[-1]["row"])["rows"]
        self.assertEqual(p, [])
        p = self.stats("stats1", since=0, limit=1)["rows"]
        self.assertEqual(p, rs[:1])
        self.assertEqual(self.stats("stats1", format="json")["rows"], rs)
        # CSV
        r = self.c.get("/v1/agents/stats1/stats?format=csv")
        self.assertStatus(r, 200)
        self.assertEqual(r.ctype, "text/csv")
        lines = r.body.decode().splitlines()
        self.assertEqual(lines[0].split(","), ROW_KEYS)
        parsed = list(csv.DictReader(io.StringIO(r.body.decode())))
        self.assertEqual(len(parsed), len(rs))
        for c, j in zip(parsed, rs):
            for k in ROW_KEYS:     # null is empty in CSV (alpha_loss: alpha is fixed)
                self.assertEqual(c[k] == "", j[k] is None, (k, c, j))
            self.assertEqual(int(c["row"]), j["row"])
            self.assertEqual(int(c["update"]), j["update"])
            self.assertAlmostEqual(float(c["critic_loss"]), j["critic_loss"],
                                   delta=1e-6 * max(1, abs(j["critic_loss"])))
        r = self.c.get("/v1/agents/stats1/stats?format=csv&since=%d&limit=3" % rs[0]["row"])
        self.assertEqual(len(r.body.decode().splitlines()), 4)
        for q, field in (("limit=0", "limit"), ("limit=100001", "limit"), ("limit=x", "limit"),
                         ("since=-1", "since"), ("since=abc", "since"),
                         ("format=xml", "format")):
            r = self.c.get("/v1/agents/stats1/stats?" + q)
            self.assertProblem(r, 400, "invalid_argument", field)
        self.assertProblem(self.c.get("/v1/agents/nobody/stats"), 404, "not_found")

    def test_stats_default_limit(self):
        self.create("stats3", training="manual", batch_size=16, actor_delay=1)
        self.post_transitions("stats3", rand_rows(20, 3, 1))
        self.train("stats3", 1100)
        rows = self.wait_until(lambda: (lambda r: r if r and r[-1]["update"] == 1100 else None)(
            self.stats("stats3", since=0, limit=100000)["rows"]), 5, "1100 rows")
        self.assertEqual(len(rows), 1100)
        first = self.stats("stats3")["rows"]
        self.assertEqual(first, rows[:1000])                    # limit defaults to 1000
        rest = self.stats("stats3", since=first[-1]["row"])["rows"]
        self.assertEqual(rest, rows[1000:])
        self.assertEqual([r["update"] for r in rows], list(range(1, 1101)))

    def test_sync_without_updates(self):
        self.create("sync0", training="sync", batch_size=16, update_per_step=0)
        self.timed_post("sync0", 30)   # owes nothing: at once, not at the timeout
        st = self.state("sync0")
        self.assertEqual((st["updates"], st["pending_updates"]), (0, 0))

    def test_stats_rows_async(self):
        # one row every actor_delay updates in the background too
        self.create("stats2", training="async", batch_size=16, actor_delay=3,
                    update_per_step=1)
        self.post_transitions("stats2", rand_rows(30, 3, 1))     # owes 15

        def rows():
            rs = self.stats("stats2")["rows"]
            return rs if len(rs) >= 5 else None
        rs = self.wait_until(rows, 10, "async stats rows")
        time.sleep(1.5)
        rs = self.stats("stats2")["rows"]
        self.assertEqual([r["update"] for r in rs], [3, 6, 9, 12, 15])
        # values not yet known are null; an alpha is always known
        for r in rs:
            self.assertIsNotNone(r["alpha"])


if __name__ == "__main__":
    unittest.main()
