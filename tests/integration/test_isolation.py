"""Issue 9: no agent's bad state, no race and no request takes more than its own agent
down, and the contract points about waits, stats and checkpoints.

- An agent whose stored state cannot be loaded (a corrupt checkpoint, a config that is
  not one, a damaged transition row) is kept, unavailable, with the reason; the daemon
  starts and serves the others; GET and DELETE work on it; a restore brings it back.
- --max-agents holds under concurrent creates and imports.
- Requests waiting for training are capped (--max-waiting-requests: 429 busy, nothing
  stored); DELETE and acts still get through.
- Shutdown with requests in every state: each gets an answer, the daemon exits 0, and
  every acknowledged transition is there after the restart.
- Stats are read-your-writes (a train answer names its row); a sync post reports what is
  owed after its updates; checkpoint_every N checkpoints at N, 2N, 3N.
"""

import os
import signal
import sqlite3
import threading
import time
import unittest

from tests.integration.harness import (Client, Daemon, DaemonTestCase, agent_body, rand_rows,
                                       small_config)


def db_path(d):
    return os.path.join(d.data_dir, "redqd.db")


def agent_id(con, name):
    return con.execute("SELECT id FROM agents WHERE name = ?", (name,)).fetchone()[0]


def corrupt_checkpoint(db, name, ckpt):
    """Zeroes every byte of checkpoint ckpt's state, wherever the schema keeps it (a blob
    column of the checkpoints table, or of a table of its pieces)."""
    con = sqlite3.connect(db)
    aid = agent_id(con, name)
    hit = 0
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'checkpoint%'")]
    for t in tables:
        cols = [r[1] for r in con.execute("PRAGMA table_info(%s)" % t)]
        id_col = next((c for c in ("ckpt", "checkpoint", "ckpt_id", "checkpoint_id", "id")
                       if c in cols), None)
        if "agent" not in cols or id_col is None:
            continue
        for c in cols:
            n = con.execute("SELECT count(*) FROM %s WHERE agent = ? AND %s = ? AND "
                            "typeof(%s) = 'blob' AND length(%s) > 16" % (t, id_col, c, c),
                            (aid, ckpt)).fetchone()[0]
            if n:
                con.execute("UPDATE %s SET %s = zeroblob(length(%s)) WHERE agent = ? AND %s = ?"
                            % (t, c, c, id_col), (aid, ckpt))
                hit += n
    con.commit()
    con.close()
    assert hit > 0, "found no stored state of checkpoint %d of %s" % (ckpt, name)


class UnavailableAgentTest(unittest.TestCase):
    """Three agents of four are damaged on disk; the daemon starts and serves the fourth."""

    def setUp(self):
        self.d = Daemon()
        self.d.start()
        self.c = self.d.client

    def tearDown(self):
        self.d.cleanup()

    def ok(self, r, status=200):
        self.assertEqual(r.status, status, repr(r))
        return r.json() if r.body else None

    def make(self, name, rows=40):
        self.ok(self.c.post("/v1/agents", agent_body(name)), 201)
        self.ok(self.c.post("/v1/agents/%s/transitions" % name,
                            {"transitions": rand_rows(rows, 3, 1)}))
        self.ok(self.c.post("/v1/agents/%s/train" % name, {"updates": 4}))
        return self.ok(self.c.post("/v1/agents/%s/checkpoints" % name), 201)["id"]

    def unavailable(self, r, name):
        self.assertEqual(r.status, 503, repr(r))
        p = r.json()
        self.assertEqual(p["code"], "unavailable")
        self.assertIn(name, p["detail"])
        return p

    def test_one_bad_agent_takes_only_itself_down(self):
        for name in ("good", "badcfg", "badckpt", "badrow"):
            self.make(name)
        # A second checkpoint of badckpt: the older one stays good.
        older = self.ok(self.c.get("/v1/agents/badckpt/checkpoints"))["checkpoints"][-1]["id"]
        self.ok(self.c.post("/v1/agents/badckpt/transitions",
                            {"transitions": rand_rows(40, 3, 1)}))
        first = self.ok(self.c.post("/v1/agents/badckpt/checkpoints"), 201)["id"]
        self.ok(self.c.post("/v1/agents/good/train", {"updates": 2}))
        good_before = self.ok(self.c.get("/v1/agents/good"))["state"]
        self.d.stop_ok()

        con = sqlite3.connect(db_path(self.d))
        con.execute("UPDATE agents SET config = '{\"hidden_sizes\": ' WHERE name = 'badcfg'")
        con.execute("UPDATE transitions SET data = x'0102' WHERE agent = ? AND seq = 7",
                    (agent_id(con, "badrow"),))
        con.commit()
        con.close()
        # Every checkpoint since 'older', the one taken at shutdown included.
        con = sqlite3.connect(db_path(self.d))
        newer = [r[0] for r in con.execute("SELECT id FROM checkpoints WHERE agent = ? AND "
                                           "id > ?", (agent_id(con, "badckpt"), older))]
        con.close()
        self.assertIn(first, newer)
        for ck in newer:
            corrupt_checkpoint(db_path(self.d), "badckpt", ck)

        self.d.start()
        listed = {a["name"]: a for a in self.ok(self.c.get("/v1/agents"))["agents"]}
        self.assertEqual(sorted(listed), ["badcfg", "badckpt", "badrow", "good"])
        self.assertEqual(listed["good"]["status"], "ok")
        for bad in ("badcfg", "badckpt", "badrow"):
            self.assertEqual(listed[bad]["status"], "unavailable", listed[bad])
            st = self.ok(self.c.get("/v1/agents/" + bad))["state"]
            self.assertEqual(st["status"], "unavailable")
            self.assertIsInstance(st["error"], str)
            self.assertTrue(st["error"])
            # Everything that needs its learner answers 503 with the reason.
            p = self.unavailable(self.c.post("/v1/agents/%s/act" % bad, {"obs": [0, 0, 0]}), bad)
            self.assertIn(st["error"], p["detail"])
            self.unavailable(self.c.post("/v1/agents/%s/transitions" % bad,
                                         {"transitions": rand_rows(1, 3, 1)}), bad)
            self.unavailable(self.c.patch("/v1/agents/" + bad, {"training": "paused"}), bad)
            self.unavailable(self.c.post("/v1/agents/%s/train" % bad, {"updates": 1}), bad)
            self.unavailable(self.c.get("/v1/agents/%s/policy" % bad), bad)
            self.unavailable(self.c.post("/v1/agents/%s/episodes" % bad, {"obs": [0, 0, 0]}), bad)
            # Reads of what is stored work.
            self.ok(self.c.get("/v1/agents/%s/stats" % bad))
            self.ok(self.c.get("/v1/agents/%s/checkpoints" % bad))
            self.ok(self.c.get("/v1/agents/%s/episodes" % bad))
        self.assertIn("checkpoint", self.ok(self.c.get("/v1/agents/badckpt"))["state"]["error"])
        self.assertIn("config", self.ok(self.c.get("/v1/agents/badcfg"))["state"]["error"])
        m = self.c.get("/metrics")
        self.assertEqual(m.status, 200)
        self.assertIn(b'redqd_agent_available{agent="badrow"} 0', m.body)
        self.assertIn(b'redqd_agent_available{agent="good"} 1', m.body)

        # The good one serves exactly as it was.
        good = self.ok(self.c.get("/v1/agents/good"))["state"]
        for k in ("env_steps", "updates"):  # (policy_version continues above its lease)
            self.assertEqual(good[k], good_before[k], k)
        self.ok(self.c.post("/v1/agents/good/act", {"obs": [0.1, 0.2, 0.3]}))
        self.ok(self.c.post("/v1/agents/good/transitions", {"transitions": rand_rows(3, 3, 1)}))
        self.ok(self.c.post("/v1/agents/good/train", {"updates": 2}))

        # A restore from a loadable checkpoint brings one back; a corrupt one is refused.
        r = self.c.post("/v1/agents/badckpt/restore", {"checkpoint": first})
        self.assertEqual(r.status, 400, repr(r))
        restored = self.ok(self.c.post("/v1/agents/badckpt/restore", {"checkpoint": older}))
        self.assertEqual(restored["state"]["status"], "ok")
        self.assertIsNone(restored["state"]["error"])
        self.assertEqual(restored["state"]["env_steps"], 80)
        self.assertEqual(restored["state"]["buffer_len"], 80)
        self.ok(self.c.post("/v1/agents/badckpt/act", {"obs": [0, 0, 0]}))
        self.ok(self.c.post("/v1/agents/badckpt/transitions", {"transitions": rand_rows(2, 3, 1)}))
        cks = self.ok(self.c.get("/v1/agents/badcfg/checkpoints"))["checkpoints"]
        back = self.ok(self.c.post("/v1/agents/badcfg/restore", {"checkpoint": cks[-1]["id"]}))
        self.assertEqual(back["state"]["status"], "ok")
        self.assertEqual(back["config"]["hidden_sizes"], [32, 32])

        # DELETE works on an unavailable agent, and frees its name.
        self.assertEqual(self.c.delete("/v1/agents/badrow").status, 204)
        self.assertEqual(self.c.get("/v1/agents/badrow").status, 404)
        self.ok(self.c.post("/v1/agents", agent_body("badrow")), 201)

        # A restart keeps all of it: the restores were recorded as checkpoints.
        self.d.restart()
        listed = {a["name"]: a["status"] for a in self.ok(self.c.get("/v1/agents"))["agents"]}
        self.assertEqual(listed, {"good": "ok", "badckpt": "ok", "badcfg": "ok", "badrow": "ok"})
        self.assertEqual(self.ok(self.c.get("/v1/agents/badckpt"))["state"]["env_steps"], 82)
        self.assertEqual(self.d.stop(), 0)


class MaxAgentsRaceTest(unittest.TestCase):
    """--max-agents under concurrent creates, and under concurrent imports."""

    def race(self, d, send, n_threads=12):
        results = []
        lock = threading.Lock()

        def one(i):


            cl = Client(d)
            r = send(cl, i)
            cl.close()
            with lock:
                results.append(r)

        ts = [threading.Thread(target=one, args=(i,)) for i in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        return results

    def test_creates_and_imports_stop_at_the_limit(self):
        d = Daemon(extra_args=["--max-agents", "3"])
        d.start()
        try:
            res = self.race(d, lambda cl, i: cl.post("/v1/agents", agent_body("c%d" % i)))
            made = [r for r in res if r.status == 201]
            self.assertEqual(len(made), 3, [r.status for r in res])
            for r in res:
                if r.status != 201:
                    self.assertEqual(r.status, 400, repr(r))
                    self.assertIn("--max-agents", r.json()["detail"])
            self.assertEqual(len(d.client.get("/v1/agents").json()["agents"]), 3)

            # Two go, one stays to be downloaded: then 12 imports race for two places.
            names = [a["name"] for a in d.client.get("/v1/agents").json()["agents"]]
            blob = d.client.get("/v1/agents/%s/checkpoints" % names[0])
            ck = d.client.post("/v1/agents/%s/checkpoints" % names[0]).json()["id"]
            blob = d.client.get("/v1/agents/%s/checkpoints/%d" % (names[0], ck)).body
            for n in names[1:]:
                self.assertEqual(d.client.delete("/v1/agents/" + n).status, 204)
            res = self.race(d, lambda cl, i: cl.put(
                "/v1/agents/i%d/checkpoint" % i, data=blob,
                headers={"Content-Type": "application/octet-stream"}))
            self.assertEqual(len([r for r in res if r.status == 201]), 2,
                             [r.status for r in res])
            d.restart()
            self.assertEqual(len(d.client.get("/v1/agents").json()["agents"]), 3)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


class WaitingRequestsTest(DaemonTestCase):
    """At most --max-waiting-requests wait for training at once."""

    daemon_args = ("--max-waiting-requests", "2", "--trainer-threads", "1")

    def waiting(self):
        for line in self.c.get("/metrics").body.decode().splitlines():
            if line.startswith("redqd_http_waiting_requests "):
                return int(line.split()[1])
        self.fail("no redqd_http_waiting_requests in /metrics")

    def test_waits_past_the_cap_are_busy_and_store_nothing(self):
        # Updates of a network this size take milliseconds: 100000 of them keep the two
        # train calls waiting until the agent is deleted.
        self.create("slow", config=small_config(hidden_sizes=[256, 256], ensemble_size=10,
                                                batch_size=256))
        self.post_transitions("slow", rand_rows(300, 3, 1))
        self.create("syncer", config=small_config(training="sync"))
        self.post_transitions("syncer", rand_rows(16, 3, 1))
        answers = []

        def train():

            cl = Client(self.daemon, timeout=300)
            answers.append(cl.post("/v1/agents/slow/train", {"updates": 100000}))
            cl.close()

        ts = [threading.Thread(target=train) for _ in range(2)]
        for t in ts:
            t.start()
        self.wait_until(lambda: self.waiting() == 2, what="two train calls waiting")

        r = self.c.post("/v1/agents/slow/train", {"updates": 1})
        p = self.assertProblem(r, 429, "busy", contains="--max-waiting-requests")
        self.assertEqual(r.header("Retry-After"), "1")
        before = self.state("syncer")["env_steps"]
        r = self.c.post("/v1/agents/syncer/transitions", {"transitions": rand_rows(1, 3, 1)})
        self.assertProblem(r, 429, "busy")
        self.assertEqual(self.state("syncer")["env_steps"], before, "a refused post stored rows")
        # What does not wait for training still goes through.
        self.act("syncer", [0.0, 0.0, 0.0])
        self.assertOK(self.c.patch("/v1/agents/syncer", {"training": "async"}))
        self.assertEqual(self.c.delete("/v1/agents/slow").status, 204)
        for t in ts:
            t.join(120)
        self.assertEqual(sorted(r.status for r in answers), [409, 409], answers)
        self.wait_until(lambda: self.waiting() == 0, what="no request waiting")
        self.post_transitions("syncer", rand_rows(1, 3, 1))
        del p


class ShutdownEveryStateTest(unittest.TestCase):
    """SIGTERM while requests wait in every state: offloaded steps running and queued,
    sync posts and train calls waiting for training. Each gets its answer, the daemon
    exits 0, and every acknowledged transition is there after the restart."""

    def test_every_waiting_request_is_answered(self):
        d = Daemon(extra_args=["--trainer-threads", "1"])
        d.start()
        try:
            c = d.client
            self.assertEqual(c.post("/v1/agents", agent_body("trainee", config=small_config(
                hidden_sizes=[256, 256], ensemble_size=10, batch_size=256))).status, 201)
            self.assertEqual(c.post("/v1/agents/trainee/transitions",
                                    {"transitions": rand_rows(300, 3, 1)}).status, 200)
            self.assertEqual(c.post("/v1/agents", agent_body("syncer", config=small_config(
                training="sync", update_per_step=20, hidden_sizes=[128, 128],
                ensemble_size=10, batch_size=128))).status, 201)
            self.assertEqual(c.post("/v1/agents/syncer/transitions",
                                    {"transitions": rand_rows(128, 3, 1)}).status, 200)
            self.assertEqual(c.post("/v1/agents", agent_body("poster")).status, 201)
            acked = {"syncer": 128, "poster": 0}
            results = []
            lock = threading.Lock()
            stop = threading.Event()

            def loop(name, path, body_fn):

                cl = Client(d, timeout=300)
                while not stop.is_set():
                    try:
                        r = cl.post(path, body_fn())
                    except OSError as e:
                        with lock:
                            results.append((name, "error", repr(e)))
                        break
                    with lock:
                        results.append((name, r.status, r.body[:200]))
                        if r.status == 200 and name in acked:
                            acked[name] += r.json()["accepted"]
                    if r.status == 503:
                        break
                cl.close()

            threads = [threading.Thread(target=loop, args=(
                          "trainer", "/v1/agents/trainee/train", lambda: {"updates": 100000}))]
            for _ in range(2):
                threads.append(threading.Thread(target=loop, args=(
                    "syncer", "/v1/agents/syncer/transitions",
                    lambda: {"transitions": rand_rows(4, 3, 1)})))
            for _ in range(3):
                threads.append(threading.Thread(target=loop, args=(
                    "poster", "/v1/agents/poster/transitions",
                    lambda: {"transitions": rand_rows(50, 3, 1)})))
            for t in threads:
                t.start()
            time.sleep(1.5)  # let every kind of request be in flight
            d.proc.send_signal(signal.SIGTERM)
            p = d.proc
            rc = p.wait(120)
            d.proc = None
            stop.set()
            for t in threads:
                t.join(60)
                self.assertFalse(t.is_alive(), "a request was never answered")
            self.assertEqual(rc, 0, d.log_tail())
            errors = [x for x in results if x[1] == "error"]
            self.assertEqual(errors, [], "connections cut without an answer")
            self.assertIn(("trainer", 503), [(x[0], x[1]) for x in results],
                          "the waiting train call was not answered 503")
            for x in results:
                self.assertIn(x[1], (200, 429, 503), x)
            self.assertIn("syncer", [x[0] for x in results if x[1] == 200])
            d.start()
            for name, n in acked.items():
                st = d.client.get("/v1/agents/" + name).json()["state"]
                self.assertGreaterEqual(st["env_steps"], n, name)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


class PoisonTest(DaemonTestCase):
    """Rewards of 3e38 (let through here by a raised --max-abs-value): every update is
    skipped as non-finite and changes nothing, acts stay finite, and after 100 in a row
    the agent stops itself, unavailable with the reason; a restore brings it back."""

    daemon_args = ("--max-abs-value", "3.4e38")

    def test_poisoned_agent_skips_then_stops_itself(self):
        self.create("poison", config=small_config(actor_delay=2))
        self.post_transitions("poison", rand_rows(40, 3, 1))
        self.train("poison", 4)
        ck = self.assertOK(self.c.post("/v1/agents/poison/checkpoints"), 201)["id"]
        before = self.state("poison")
        bad = rand_rows(40, 3, 1)
        for r in bad:
            r["reward"] = 3e38
        # A buffer of only poisoned rows (and a checkpoint from before them): every batch
        # holds one.
        self.create("poison2", config=small_config(actor_delay=2))
        ck2 = self.assertOK(self.c.post("/v1/agents/poison2/checkpoints"), 201)["id"]
        self.post_transitions("poison2", bad)
        r = self.c.post("/v1/agents/poison2/train", {"updates": 150})
        p = self.assertProblem(r, 503, "unavailable", contains="paused itself")
        st = self.state("poison2")
        self.assertEqual(st["status"], "unavailable")
        self.assertIn("not finite", st["error"])
        self.assertGreaterEqual(st["skipped_updates"], 100)
        self.assertEqual(st["updates"], 0)          # nothing was applied
        self.assertProblem(self.c.post("/v1/agents/poison2/act", {"obs": [0, 0, 0]}), 503,
                           "unavailable", contains="paused itself")
        m = self.c.get("/metrics").body.decode()
        self.assertIn('redqd_agent_skipped_updates_total{agent="poison2"} ', m)
        self.assertIn('redqd_agent_available{agent="poison2"} 0', m)
        back = self.assertOK(self.c.post("/v1/agents/poison2/restore", {"checkpoint": ck2}))
        self.assertEqual((back["state"]["status"], back["state"]["env_steps"]), ("ok", 40))
        self.act("poison2", [0.0, 0.0, 0.0])

        # A mixed buffer: updates whose batch holds a poisoned row are skipped, the others
        # train; acts never answer a non-finite action.
        self.post_transitions("poison", bad[:2])
        self.train("poison", 30)
        st = self.state("poison")
        self.assertEqual(st["status"], "ok", st)
        for _ in range(20):
            a = self.act("poison", [0.1, 0.2, 0.3])["action"][0]
            self.assertTrue(a is not None and -2.0 <= a <= 2.0, a)
        back = self.assertOK(self.c.post("/v1/agents/poison/restore", {"checkpoint": ck}))
        self.assertEqual(back["state"]["updates"], before["updates"])
        del p


class ContractPointsTest(DaemonTestCase):

    def test_train_answer_names_its_row_and_stats_read_their_writes(self):
        self.create("ryw", config=small_config(actor_delay=2))
        self.post_transitions("ryw", rand_rows(32, 3, 1))
        for k in (3, 1, 2, 5):
            t = self.train("ryw", k)
            row = t["stats"]["row"]
            self.assertIsInstance(row, int)
            rows = self.assertOK(self.c.get("/v1/agents/ryw/stats?since=%d" % (row - 1)))["rows"]
            self.assertTrue(rows, "the train call's row is not in GET .../stats yet")
            self.assertEqual(rows[0]["row"], row)
            self.assertEqual(rows[0]["update"], t["updates"])
            self.assertEqual(rows[0]["critic_loss"], t["stats"]["critic_loss"])

    def test_sync_rows_are_visible_at_once(self):
        self.create("rsync", config=small_config(training="sync", actor_delay=2,
                                                 update_per_step=2))
        self.post_transitions("rsync", rand_rows(16, 3, 1))
        a = self.post_transitions("rsync", rand_rows(1, 3, 1))
        st = self.state("rsync")
        rows = self.assertOK(self.c.get("/v1/agents/rsync/stats"))["rows"]
        self.assertTrue(rows)
        self.assertEqual(rows[-1]["update"], st["updates"])
        self.assertEqual(a["pending_updates"], 0)

    def test_sync_answer_reports_what_is_owed_after_its_updates(self):
        self.create("owed", config=small_config(training="sync", update_per_step=3))
        a = self.post_transitions("owed", rand_rows(16, 3, 1))  # the 16th owes 3
        self.assertEqual(a["pending_updates"], 0, a)
        self.assertEqual(self.state("owed")["updates"], 3)
        a = self.post_transitions("owed", rand_rows(5, 3, 1))
        self.assertEqual(a["pending_updates"], 0, a)
        self.assertEqual(self.state("owed")["updates"], 18)
        self.create("half", config=small_config(training="sync", update_per_step=0.5))
        self.post_transitions("half", rand_rows(15, 3, 1))  # nothing owed yet
        a = self.post_transitions("half", rand_rows(1, 3, 1))
        self.assertEqual(a["pending_updates"], 0.5, a)
        a = self.post_transitions("half", rand_rows(1, 3, 1))
        self.assertEqual(a["pending_updates"], 0, a)
        self.assertEqual(self.state("half")["updates"], 1)

    def test_checkpoint_every_n_is_at_multiples_of_n(self):
        self.create("every", config=small_config(checkpoint_every=5, keep_checkpoints=10,
                                                 actor_delay=3))
        self.post_transitions("every", rand_rows(20, 3, 1))
        self.train("every", 17)
        self.wait_until(lambda: len(self.assertOK(self.c.get(
            "/v1/agents/every/checkpoints"))["checkpoints"]) >= 3, what="three checkpoints")
        cks = self.assertOK(self.c.get("/v1/agents/every/checkpoints"))["checkpoints"]
        self.assertEqual([c["updates"] for c in cks if c["automatic"]], [5, 10, 15])
        self.train("every", 3)
        self.wait_until(lambda: len(self.assertOK(self.c.get(
            "/v1/agents/every/checkpoints"))["checkpoints"]) >= 4, what="the fourth")
        cks = self.assertOK(self.c.get("/v1/agents/every/checkpoints"))["checkpoints"]
        self.assertEqual([c["updates"] for c in cks if c["automatic"]], [5, 10, 15, 20])


if __name__ == "__main__":
    unittest.main()
