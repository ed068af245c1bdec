"""A long run, shortened (issue 10, item 4): 20 x buffer_size transitions through a small
sync-mode agent with restarts in between. What the database and a restart cost must be
bounded by buffer_size and the retention settings, not by the history: the transitions
kept, the pages of the file and the transitions a restart replays (the daemon logs them)
are measured at every restart, not seconds. The agent must end bit for bit where an
agent given the same posts without any restart ends, and every acknowledged transition
that is still in its replay buffer must be in the file as it was posted.

The reference agent runs first, in the same daemon, so that both see the same build and
machine; the restarts come after it has finished (they do not touch a finished agent's
learner: it is reloaded and compared like the other).
"""
import os
import random
import re
import sqlite3
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, small_config, tensor_bytes  # noqa: E402

CAP = 500                       # buffer_size
EVERY = max(256, CAP // 8)      # a replay head every this many transitions (rqd_limits.h)
POST = 50                       # transitions per post
NSTEP = 3                       # estimation_step
TOTAL = 20 * CAP
RESTART_EVERY = 2000
# The transitions a pruned agent keeps, and a restart replays: those after its base head,
# which is at most a head interval and a post older than buffer_size rows (plus the
# n-step queues' lag between transitions and rows).
RING_BOUND = CAP + EVERY + POST + NSTEP - 1

CONFIG = small_config(training="sync", seed=3, buffer_size=CAP, estimation_step=NSTEP,
                      update_per_step=0.5, batch_size=16, hidden_sizes=[16, 16],
                      ensemble_size=2, actor_delay=2, history_keep_rows=100, history_thin=0,
                      max_pending_updates=1000)


def rows(rng, n, first):
    out = []
    for i in range(n):
        k = first + i
        out.append({"obs": [rng.uniform(-1, 1) for _ in range(3)],
                    "action": [rng.uniform(-2, 2)], "reward": rng.uniform(-1, 1),
                    "next_obs": [rng.uniform(-1, 1) for _ in range(3)],
                    "terminated": k % 97 == 0, "truncated": k % 89 == 0,
                    "env_id": "ab"[k % 2]})
    return out


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def masked_checkpoint(blob):
    """A checkpoint file with its policy_version and checksum zeroed (the two agents' versions
    differ: a restart continues above the stored lease), for a byte comparison of the rest:
    networks, optimisers, counters, generators and the replay buffer."""
    b = bytearray(blob)
    (clen,) = struct.unpack_from("<I", b, 16)
    off = 20 + clen
    _, act_dim = struct.unpack_from("<qq", b, off)
    off += 16 + 8 * act_dim + 3 * 8         # S, A, bounds, env_steps, updates, actor_updates
    b[off:off + 8] = bytes(8)               # policy_version
    b[-4:] = bytes(4)                       # CRC-32
    return bytes(b)


class LongRunTest(DaemonTestCase):

    def db(self, sql, *args):
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.daemon.data_dir, "redqd.db"),
                              uri=True)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def kept(self, name):
        return self.db("SELECT count(*) FROM transitions WHERE agent ="
                       " (SELECT id FROM agents WHERE name = ?)", name)[0][0]

    def replayed(self, name):
        """The transitions the last start replayed for the agent (its log line)."""
        with open(self.daemon.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        found = re.findall(r"agent %s: reloaded \(.*replayed (\d+) transitions" % re.escape(name),
                           text)
        self.assertTrue(found, "no reload line for %s" % name)
        return int(found[-1])

    def run_agent(self, name, restarts):
        self.create(name, config=dict(CONFIG))
        rng = random.Random(42)
        sent = []
        for first in range(1, TOTAL + 1, POST):
            batch = rows(rng, POST, first)
            r = self.post_transitions(name, batch)
            self.assertEqual(r["env_steps"], first + POST - 1)
            sent += batch
            if restarts is not None and (first + POST - 1) % RESTART_EVERY == 0 and \
                    first + POST - 1 < TOTAL:
                restarts.append(self.restart_measured(name))
        return sent

    def restart_measured(self, name):
        """Waits for the pruning to settle, restarts, and returns what the file and the
        restart cost: transitions kept, pages in use, pages in the file, transitions
        replayed."""
        self.wait_until(lambda: self.kept(name) <= RING_BOUND, 30, "the pruning of %s" % name)
        self.daemon.restart()
        pages, free = self.db("PRAGMA page_count")[0][0], self.db("PRAGMA freelist_count")[0][0]
        m = {"kept": self.kept(name), "used": pages - free, "pages": pages,
             "replayed": self.replayed(name),
             "stats": self.db("SELECT count(*) FROM stats")[0][0]}
        sys.stderr.write("\n  %s at env_steps %d: %r" % (name, self.state(name)["env_steps"], m))
        return m

    def test_twenty_buffers_with_restarts(self):
        ref = self.run_agent("lr-ref", None)
        restarts = []
        sent = self.run_agent("lr", restarts)
        self.assertEqual(ref, sent)
        self.assertEqual(len(restarts), TOTAL // RESTART_EVERY - 1)

        # Bounded by buffer_size: what is kept and what a restart replays are about
        # buffer_size transitions whatever the history, and the file stops growing once
        # the ring is full (its size at the last restart is that of the first, give or take
        # the pages of a pruning batch), while the history grew fourfold in between.
        for m in restarts:
            self.assertLessEqual(m["kept"], RING_BOUND, m)
            self.assertLessEqual(m["replayed"], RING_BOUND, m)
        # (The pages in use at a given moment swing with where the pruner stands and with
        # the stats rows of the moment: the file's size is what must not grow.)
        first, last = restarts[0], restarts[-1]
        self.assertLessEqual(last["pages"], first["pages"] * 1.1 + 16, restarts)
        for m in restarts:
            self.assertLessEqual(m["used"], m["pages"], m)

        # Bit for bit where the agent that never stopped is: the learner and its buffer.
        for name in ("lr", "lr-ref"):
            self.wait_until(lambda: self.kept(name) <= RING_BOUND, 30, "the pruning of " + name)
        # What was deleted is counted for operators (since the last restart).
        pruned = [ln for ln in self.c.get("/metrics").body.decode().splitlines()
                  if ln.startswith("redqd_db_pruned_rows_total ")]
        self.assertEqual(len(pruned), 1)
        self.assertGreater(int(pruned[0].split()[1]), 0)
        self.daemon.restart()
        self.assertLessEqual(self.replayed("lr"), RING_BOUND)
        s_ref, s = self.state("lr-ref"), self.state("lr")
        for k in ("env_steps", "updates", "actor_updates", "buffer_len", "pending_updates",
                  "episodes"):
            self.assertEqual(s[k], s_ref[k], k)
        self.assertEqual(s["buffer_len"], CAP)
        self.assertEqual(tensor_bytes(self.c.get("/v1/agents/lr/policy").body),
                         tensor_bytes(self.c.get("/v1/agents/lr-ref/policy").body))
        blobs = []
        for name in ("lr", "lr-ref"):
            ck = self.assertOK(self.c.post("/v1/agents/%s/checkpoints" % name, data=b""), 201)
            blobs.append(masked_checkpoint(self.c.get(
                "/v1/agents/%s/checkpoints/%d?with_buffer=true" % (name, ck["id"])).body))
        self.assertEqual(blobs[0], blobs[1], "the restarted agent's state differs")

        # Every acknowledged transition still in the buffer (the last buffer_size and the
        # n-step queues' few) is in the file, as posted.
        got = self.db("SELECT seq, data, terminated, truncated, env_id FROM transitions WHERE"
                      " agent = (SELECT id FROM agents WHERE name = 'lr') AND seq > ?"
                      " ORDER BY seq", TOTAL - CAP - NSTEP)
        self.assertEqual([g[0] for g in got], list(range(TOTAL - CAP - NSTEP + 1, TOTAL + 1)))
        for seq, data, term, trunc, env_id in got:
            t = sent[seq - 1]
            want = [f32(x) for x in t["obs"] + t["action"] + [t["reward"]] + t["next_obs"]]
            self.assertEqual(list(struct.unpack("<%df" % len(want), data)), want, seq)
            self.assertEqual((term, trunc, env_id), (int(t["terminated"]), int(t["truncated"]),
                                                     t["env_id"]), seq)


if __name__ == "__main__":
    unittest.main()
