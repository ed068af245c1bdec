"""Moving an agent to another node (docs/api.md "Moving an agent"): the moving mark and
what it refuses, the move file, its import on a second daemon with everything the agent
had, and hostile move files. HAProxy is not needed here (test_cluster.py has it)."""
import json
import os
import random
import sqlite3
import struct
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Daemon, DaemonTestCase, rand_rows  # noqa: E402

OCTETS = "application/octet-stream"


def rows_with_ends(n, seed, env_id="e1", every=7):
    rows = rand_rows(n, 3, 1, random.Random(seed), env_id=env_id)
    for i, r in enumerate(rows):
        r["terminated"] = i % every == every - 1
    return rows


def resign(blob):
    """A move file with its CRC-32 made valid again after an edit."""
    body = blob[:-4]
    return body + struct.pack("<I", zlib.crc32(body) & 0xffffffff)


def sections(blob):
    """{tag: (offset of the payload, length)} of a move file."""
    out, p = {}, 12
    while p < len(blob) - 4:
        tag = blob[p:p + 4].decode()
        (n,) = struct.unpack("<Q", blob[p + 4:p + 12])
        out[tag] = (p + 12, n)
        p += 12 + n
    return out


class MoveTest(DaemonTestCase):
    daemon_args = ("--node", "src")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.target = Daemon(extra_args=("--node", "dst")).start()
        cls.t = cls.target.client

    @classmethod
    def tearDownClass(cls):
        try:
            cls.target.stop_ok()
        finally:
            cls.target.cleanup()
            super().tearDownClass()

    def begin(self, name, to="dst", expect=200):
        r = self.c.post("/v1/agents/%s/move" % name, {"to": to})
        if expect == 200:
            return self.assertOK(r)
        return r

    def move_file(self, name):
        r = self.c.get("/v1/agents/%s/move" % name)
        self.assertStatus(r, 200)
        self.assertEqual(r.ctype, OCTETS)
        self.assertEqual(r.body[:8], b"REDQMOVE")
        return r.body

    def import_file(self, daemon_client, name, data):
        return daemon_client.put("/v1/agents/%s/checkpoint" % name, data=data,
                                 headers={"Content-Type": OCTETS})

    def assertRetry(self, r, contains="moving"):
        p = self.assertProblem(r, 503, "unavailable", contains=contains)
        self.assertEqual(r.header("Retry-After"), "2", repr(r))
        return p

    # ---------------------------------------------------------------- the mark

    def test_moving_refuses_every_write_and_keeps_reads(self):
        self.create("mv1", training="manual")
        first = self.post_transitions("mv1", rand_rows(40, 3, 1), batch_id="mv1-a")
        self.train("mv1", 4)
        ep = self.assertOK(self.c.post("/v1/agents/mv1/episodes", {"obs": [0, 0, 0]}), 201)
        cp = self.assertOK(self.c.post("/v1/agents/mv1/checkpoints", {}), 201)
        before = self.state("mv1")
        a = self.begin("mv1")
        self.assertEqual(a["state"]["moving"]["to"], "dst")
        self.assertIn("since", a["state"]["moving"])
        listed = self.assertOK(self.c.get("/v1/agents"))["agents"]
        self.assertEqual([x["moving_to"] for x in listed if x["name"] == "mv1"], ["dst"])
        self.assertEqual([x["node"] for x in listed if x["name"] == "mv1"], ["src"])
        # every write: 503, Retry-After, the node named, nothing done
        row = rand_rows(1, 3, 1)
        p = self.assertRetry(self.c.post("/v1/agents/mv1/transitions",
                                         {"transitions": row, "batch_id": "mv1-b"}))
        self.assertIn("dst", p["detail"])
        self.assertRetry(self.c.post("/v1/agents/mv1/episodes", {"obs": [0, 0, 0]}))
        self.assertRetry(self.c.post("/v1/agents/mv1/episodes/%s/step" % ep["episode_id"],
                                     {"reward": 1, "obs": [0, 0, 0], "terminated": False,
                                      "truncated": False}))
        self.assertRetry(self.c.delete("/v1/agents/mv1/episodes/%s" % ep["episode_id"]))
        self.assertRetry(self.c.post("/v1/agents/mv1/train", {"updates": 2}))
        self.assertRetry(self.c.patch("/v1/agents/mv1", {"training": "async"}))
        self.assertRetry(self.c.post("/v1/agents/mv1/checkpoints", {}))
        self.assertRetry(self.c.delete("/v1/agents/mv1/checkpoints/%d" % cp["id"]))
        self.assertRetry(self.c.post("/v1/agents/mv1/restore", {"checkpoint": cp["id"]}))
        self.assertRetry(self.c.post("/v1/agents/mv1/evaluations", {"returns": [1.0]}))
        # a batch id it took before is answered as it was: nothing is stored either way
        again = self.post_transitions("mv1", rand_rows(5, 3, 1), batch_id="mv1-a")
        self.assertEqual(again, first)
        # reads and acts go on
        self.act("mv1", [0.1, 0.2, 0.3])
        self.assertOK(self.c.get("/v1/agents/mv1/stats"))
        self.assertOK(self.c.get("/v1/agents/mv1/episodes"))
        after = self.state("mv1")
        for k in ("env_steps", "updates", "buffer_len", "open_episodes", "episodes"):
            self.assertEqual(after[k], before[k], k)
        self.assertEqual(len(self.assertOK(self.c.get("/v1/agents/mv1/checkpoints"))
                             ["checkpoints"]), 1)
        # again to the same node is the same move; to another is a conflict
        self.begin("mv1")
        self.assertProblem(self.begin("mv1", to="other", expect=409), 409, "conflict",
                           contains="dst")
        # cancelled: it takes writes again
        a = self.assertOK(self.c.delete("/v1/agents/mv1/move"))
        self.assertIsNone(a["state"]["moving"])
        self.post_transitions("mv1", row, batch_id="mv1-b")
        self.assertEqual(self.state("mv1")["env_steps"], before["env_steps"] + 1)
        self.assertOK(self.c.delete("/v1/agents/mv1/move"))     # not moving: no error

    def test_training_stops_while_moving_and_resumes_after(self):
        self.create("mv2", training="async", update_per_step=20, max_pending_updates=100000)
        self.post_transitions("mv2", rand_rows(200, 3, 1))
        self.begin("mv2")
        s1 = self.state("mv2")
        self.assertGreater(s1["pending_updates"], 0)       # far more than a chunk owed
        time.sleep(0.5)
        s2 = self.state("mv2")
        self.assertEqual((s2["updates"], s2["pending_updates"]),
                         (s1["updates"], s1["pending_updates"]))
        self.assertOK(self.c.delete("/v1/agents/mv2/move"))
        self.wait_until(lambda: self.state("mv2")["updates"] > s1["updates"],
                        what="training after the move was cancelled")

    def test_sync_post_waiting_is_answered_when_the_move_begins(self):
        import threading
        self.create("mv3", training="sync", update_per_step=20, max_pending_updates=100000)
        self.post_transitions("mv3", rand_rows(16, 3, 1))
        out = {}

        def post():
            cl = Client(self.daemon)         # a connection of its own
            out["r"] = cl.post("/v1/agents/mv3/transitions",
                               {"transitions": rand_rows(300, 3, 1), "batch_id": "mv3-big"})
            cl.close()

        th = threading.Thread(target=post)
        th.start()
        self.wait_until(lambda: self.state("mv3")["env_steps"] == 316, what="the sync post")
        self.begin("mv3")
        th.join(60)
        self.assertFalse(th.is_alive())
        r = out["r"]
        self.assertStatus(r, 200)              # its transitions are stored: acknowledged
        self.assertEqual(r.json()["env_steps"], 316)
        st = self.state("mv3")
        self.assertEqual(st["env_steps"], 316)
        # answered before its updates were done: they are owed still, and go with the move
        self.assertGreater(st["pending_updates"], 0)
        self.assertEqual(r.json()["pending_updates"], st["pending_updates"])

    def test_bad_requests(self):
        self.create("mv4")
        for body, field in (({}, "to"), ({"to": 3}, "to"), ({"to": "bad name"}, "to"),
                            ({"to": "dst", "x": 1}, "x"), ({"to": "src"}, "this node")):
            self.assertProblem(self.c.post("/v1/agents/mv4/move", body), 400,
                               "invalid_argument", contains=field)
        self.assertProblem(self.c.get("/v1/agents/mv4/move"), 409, "conflict",
                           contains="not moving")
        self.assertProblem(self.c.post("/v1/agents/nobody/move", {"to": "dst"}), 404,
                           "not_found")
        self.assertIsNone(self.state("mv4")["moving"])

    def test_mark_survives_a_restart_and_goes_with_the_agent(self):
        self.create("mv5")
        self.post_transitions("mv5", rand_rows(10, 3, 1))
        self.begin("mv5")
        self.daemon.restart()
        st = self.state("mv5")
        self.assertIsNotNone(st["moving"])
        self.assertIsNone(st["moving"]["to"])                 # the node is not kept
        self.assertRetry(self.c.post("/v1/agents/mv5/transitions",
                                     {"transitions": rand_rows(1, 3, 1)}),
                         contains="another node")
        self.begin("mv5")                                      # picks the move up again
        self.assertEqual(self.state("mv5")["moving"]["to"], "dst")
        self.assertStatus(self.c.delete("/v1/agents/mv5"), 204)
        self.daemon.stop_ok()
        db = sqlite3.connect(os.path.join(self.daemon.data_dir, "redqd.db"))
        try:
            left = db.execute("SELECT count(*) FROM meta WHERE key LIKE 'moving:%'").fetchone()
        finally:
            db.close()
        self.daemon.start()
        self.assertEqual(left[0], 0)

    # ---------------------------------------------------------------- the file

    def test_move_carries_everything(self):
        name = "mv6"
        self.create(name, training="async", update_per_step=1, actor_delay=2)
        answers = {}
        for k in range(6):
            bid = "%s-%d" % (name, k)
            answers[bid] = self.post_transitions(name, rows_with_ends(30, k), batch_id=bid)
        open_ep = self.assertOK(self.c.post("/v1/agents/%s/episodes" % name,
                                            {"obs": [0.5, 0.5, 0.5]}), 201)
        self.assertOK(self.c.post("/v1/agents/%s/evaluations" % name,
                                  {"returns": [1.5, 2.5], "lengths": [10, 12]}), 201)
        self.assertOK(self.c.post("/v1/agents/%s/evaluations" % name, {"returns": [-3.0]}), 201)
        self.wait_until(lambda: self.state(name)["pending_updates"] < 100, what="training")
        self.begin(name)
        src = self.agent(name)
        stats = self.assertOK(self.c.get("/v1/agents/%s/stats?limit=100000" % name))["rows"]
        evals = self.assertOK(self.c.get("/v1/agents/%s/evaluations" % name))["rows"]
        episodes = self.assertOK(self.c.get("/v1/agents/%s/episodes?limit=10000" % name))
        data = self.move_file(name)
        self.assertEqual(self.move_file(name), data)           # frozen: the same file again
        r = self.import_file(self.t, name, data)
        self.assertStatus(r, 201)
        dst = self.t.get("/v1/agents/" + name).json()
        self.assertIsNone(dst["state"]["moving"])
        self.assertEqual(dst["config"], src["config"])
        for k in ("env_steps", "updates", "actor_updates", "buffer_len", "pending_updates",
                  "episodes", "open_episodes", "last_return", "alpha"):
            self.assertEqual(dst["state"][k], src["state"][k], k)
        self.assertEqual(dst["state"]["policy_version"], src["state"]["policy_version"] + 1)
        # history: stats (renumbered), evaluations and episodes as they were
        dstats = self.t.get("/v1/agents/%s/stats?limit=100000" % name).json()["rows"]
        strip = lambda rows: [{k: v for k, v in x.items() if k != "row"} for x in rows]
        self.assertEqual(strip(dstats), strip(stats))
        self.assertEqual(strip(self.t.get("/v1/agents/%s/evaluations" % name).json()["rows"]),
                         strip(evals))
        self.assertEqual(self.t.get("/v1/agents/%s/episodes?limit=10000" % name).json(),
                         episodes)
        # every batch id is answered on the target as it was here, storing nothing
        for bid, ans in answers.items():
            again = self.t.post("/v1/agents/%s/transitions" % name,
                                {"transitions": rand_rows(3, 3, 1), "batch_id": bid}).json()
            self.assertEqual(again, ans, bid)
        self.assertEqual(self.t.get("/v1/agents/" + name).json()["state"]["env_steps"],
                         src["state"]["env_steps"])
        # the open episode goes on there; the streams go on adding up
        step = self.t.post("/v1/agents/%s/episodes/%s/step" % (name, open_ep["episode_id"]),
                           {"reward": 1.0, "obs": [0, 0, 0], "terminated": True,
                            "truncated": False})
        self.assertEqual(step.json(), {"done": True, "return": 1.0, "length": 1})
        # ... and everything survives a restart of the target
        self.target.restart()               # (the step was one more transition)
        again = self.t.get("/v1/agents/" + name).json()["state"]
        self.assertEqual(again["env_steps"], src["state"]["env_steps"] + 1)
        self.assertEqual(again["buffer_len"], src["state"]["buffer_len"] + 1)
        self.assertEqual(again["episodes"], src["state"]["episodes"] + 1)
        # the end of a move: the source's copy goes
        self.assertStatus(self.c.delete("/v1/agents/" + name), 204)

    def test_name_taken_and_hostile_files(self):
        self.create("mv7")
        self.post_transitions("mv7", rows_with_ends(20, 7), batch_id="mv7-a")
        self.assertOK(self.c.post("/v1/agents/mv7/evaluations", {"returns": [1.0]}), 201)
        self.begin("mv7")
        good = self.move_file("mv7")
        self.assertOK(self.c.delete("/v1/agents/mv7/move"))
        self.assertProblem(self.import_file(self.c, "mv7", good), 409, "already_exists")
        secs = sections(good)
        self.assertEqual(list(secs), ["HEAD", "CKPT", "BTCH", "EPIS", "STRM", "STAT", "EVAL"])
        bad = {
            "truncated": good[:len(good) // 2],
            "flipped": good[:200] + bytes([good[200] ^ 1]) + good[201:],
            "version": resign(good[:8] + struct.pack("<I", 99) + good[12:]),
            "count": resign(good[:secs["BTCH"][0]] + struct.pack("<Q", 1 << 40)
                            + good[secs["BTCH"][0] + 8:]),
            "order": resign(good[:secs["BTCH"][0] - 12] + b"EVAL" + good[secs["BTCH"][0] - 8:]),
            "batch id": resign(good.replace(b"mv7-a", b"mv7 a")),
            "trailing": resign(good[:-4] + b"x" + good[-4:]),
        }
        for what, blob in bad.items():
            p = self.assertProblem(self.import_file(self.t, "mv7-" + what.replace(" ", ""),
                                                    blob), 400, "invalid_argument")
            self.assertTrue(p["detail"], what)
            self.assertEqual(self.t.get("/v1/agents/mv7-" + what.replace(" ", "")).status, 404,
                             what)
        self.assertIn("CRC", self.import_file(self.t, "x1", bad["flipped"]).json()["detail"])
        self.assertIn("BTCH", self.import_file(self.t, "x2", bad["count"]).json()["detail"])
        self.assertIn("version", self.import_file(self.t, "x3", bad["version"]).json()["detail"])
        # the good one still imports, under any name
        self.assertStatus(self.import_file(self.t, "mv7-copy", good), 201)


if __name__ == "__main__":
    unittest.main()
