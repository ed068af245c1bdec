"""Large agents (issue 9, item 4): a learner state over SQLite's limit on one value is
checkpointed (in parts), survives a restart, downloads and imports; and the default
limits refuse, at creation, an agent whose state --max-import could not take back.

Two scales of the same test:

- make test (the default): SQLite's limit lowered to 64 MiB with --sqlite-max-length,
  and hidden_sizes [768, 768, 768] with 10 critics, a learner state of 195 MiB. A state
  written as one value would be refused exactly as a 1.4 GB one is at the default limit
  of 1e9 bytes; about 30 s.
- REDQD_TEST_LARGE=full (make test-large): SQLite's default limit and hidden_sizes
  [2048, 2048, 2048], a state of 1379 MiB and an agent of about 1.8 GB, so the daemon
  peaks at 4.3 GB while it holds two of them and an import body; 3.5-8 min on the shared
  2-core VM (8 min and 5.1 GB with the ASan+UBSan build). Set REDQD_SKIP_LARGE=1 to skip
  it on a machine without 6 GB to spare.

Each phase's time and the daemon's peak RSS (VmHWM, reset between phases through
/proc/PID/clear_refs) are printed; the memory assertions bound the peaks by what must be
in memory plus half a state (at most 512 MiB), so that a second full copy of a state
shows. They hold for the plain build only: under ASan (harness.SANITIZED) realloc copies
and the quarantine keeps freed blocks, so RSS does not count the daemon's copies there.
"""
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SANITIZED, DaemonTestCase, rand_rows  # noqa: E402

OCTETS = "application/octet-stream"
MIB = 1 << 20
SQLITE_MAX_LENGTH = 1000000000  # SQLite's default limit on one blob
FULL = os.environ.get("REDQD_TEST_LARGE") == "full"

# A state over SQLite's limit; manual training with a tiny batch keeps updates cheap.
BIG = {"hidden_sizes": [2048, 2048, 2048], "ensemble_size": 10, "subset_size": 2,
       "batch_size": 8, "start_timesteps": 0, "update_per_step": 1, "actor_delay": 1,
       "buffer_size": 1000, "training": "manual", "checkpoint_every": 0}
BIG_STATE_MIB = 1379  # redq_state_bytes for obs_dim 3, act_dim 1, rounded up
# make test's scale: the same shape narrower, and SQLite's limit lowered under it.
SMALL = dict(BIG, hidden_sizes=[768, 768, 768])
SMALL_STATE_MIB = 195
SMALL_LIMIT = 64 * (1 << 20)
OBS = [[0.25, -0.5, 0.75], [-0.1, 0.2, 0.3]]


def body(name, config):
    return {"name": name, "obs_dim": 3, "action_low": [-2.0], "action_high": [2.0],
            "config": config}


class DefaultLimitRefusesTest(DaemonTestCase):
    """The default --max-import (1 GiB) refuses the config at creation, before anything
    is allocated, naming the field and the flag; nothing is stored."""

    def test_state_over_max_import_is_refused_at_creation(self):
        r = self.c.post("/v1/agents", body("big", BIG))
        p = self.assertProblem(r, 400, "invalid_argument", "config.hidden_sizes")
        self.assertIn("the learner's state would be %d MiB, over the 1024 MiB a checkpoint "
                      "may have to be imported again (--max-import)" % BIG_STATE_MIB,
                      p["detail"])
        self.assertProblem(self.c.get("/v1/agents/big"), 404, "not_found")
        self.assertEqual(self.assertOK(self.c.get("/v1/agents"))["agents"], [])
        # One layer narrower fits under 1 GiB and is created.
        small = dict(BIG, hidden_sizes=[2048, 2048])
        self.assertOK(self.c.post("/v1/agents", body("fits", small)), 201)
        self.assertStatus(self.c.delete("/v1/agents/fits"), 204)


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (key, pid))


@unittest.skipIf(FULL and os.environ.get("REDQD_SKIP_LARGE"), "REDQD_SKIP_LARGE is set")
@unittest.skipIf(SANITIZED, "a learner state of hundreds of MB checkpointed, reloaded, "
                 "downloaded and imported is slow under ASan; the plain pass runs this test")
class LargeAgentTest(DaemonTestCase):
    if FULL:
        daemon_args = ("--max-import", "2G")
        config, state_mib, limit = BIG, BIG_STATE_MIB, SQLITE_MAX_LENGTH
    else:
        daemon_args = ("--sqlite-max-length", str(SMALL_LIMIT))
        config, state_mib, limit = SMALL, SMALL_STATE_MIB, SMALL_LIMIT
    # Loading or writing 1.4 GB (and checkpointing it at shutdown) takes seconds.
    SLOW = 600.0

    @classmethod
    def setUpClass(cls):
        harness.START_TIMEOUT = cls.SLOW  # startup loads the 1.4 GB checkpoint
        super().setUpClass()
        cls.c.timeout = cls.SLOW
        cls.phases = []

    def phase_start(self):
        with open("/proc/%d/clear_refs" % self.daemon.proc.pid, "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return time.monotonic(), status_kb(self.daemon.proc.pid, "VmRSS") * 1024

    def report(self, name, took, before, peak):
        self.phases.append((name, took, before, peak))
        sys.stderr.write("\n  %-28s %6.1f s   RSS before %6d MiB   peak %6d MiB"
                         % (name, took, before // MIB, peak // MIB))
        sys.stderr.flush()

    def phase_end(self, name, start):
        """Bytes the phase added to the daemon's RSS at its peak."""
        t0, before = start
        peak = status_kb(self.daemon.proc.pid, "VmHWM") * 1024
        self.report(name, time.monotonic() - t0, before, peak)
        return peak - before

    def assertPeakBelow(self, peak, bound, what):
        """ASan's realloc copies and its quarantine keeps freed blocks: under it RSS does
        not count the daemon's own copies, so the bounds hold for the plain build only."""
        if not SANITIZED:
            self.assertLess(peak, bound, what)

    def restart(self):
        rc = self.daemon.stop(timeout=self.SLOW)
        self.assertEqual(rc, 0, self.daemon.log_tail())
        self.daemon.start()
        self.c.timeout = self.SLOW
        self.wait_until(lambda: self.state("big").get("status", "ok") == "ok",
                        timeout=self.SLOW, what="big loaded")

    def act(self, name):
        return self.assertOK(self.c.post("/v1/agents/%s/act" % name,
                                         {"obs": OBS, "mode": "eval"}))["action"]

    def test_checkpoint_restart_download_import(self):
        t_all = time.monotonic()
        pm = self.phase_start()
        self.assertOK(self.c.post("/v1/agents", body("big", self.config)), 201)
        self.phase_end("create", pm)
        memory = self.state("big")["memory_bytes"]
        self.post_transitions("big", rand_rows(16, 3, 1, random.Random(9)))
        pm = self.phase_start()
        self.train("big", 2)
        self.phase_end("2 updates", pm)

        pm = self.phase_start()
        c1 = self.assertOK(self.c.post("/v1/agents/big/checkpoints", data=b""), 201)
        grew = self.phase_end("checkpoint", pm)
        state = c1["bytes"]
        self.assertGreater(state, self.limit, "the state must pass SQLite's limit")
        if not FULL:
            with open(self.daemon.log_path, encoding="utf-8", errors="replace") as f:
                self.assertIn("SQLite's limit on one value lowered to %d bytes" % self.limit,
                              f.read(), "the daemon took --sqlite-max-length")
        self.assertEqual((state + MIB - 1) // MIB, self.state_mib)
        self.assertEqual(c1["updates"], 2)
        # What a second full copy of the state would pass: half a state, and at most the
        # 512 MiB the full scale has always allowed.
        margin = min(state // 2, 512 * MIB)
        # The save buffer, and SQLite's one part at a time: no second copy of the state.
        self.assertPeakBelow(grew, state + margin, "checkpoint peak")
        before = self.act("big")

        # One more update, then SIGTERM: the shutdown checkpoint is large too.
        self.train("big", 1)
        t0 = time.monotonic()
        self.restart()
        # Startup held the read state and the agent built from it, and no more.
        peak = status_kb(self.daemon.proc.pid, "VmHWM") * 1024
        self.report("stop (checkpoint), start", time.monotonic() - t0, 0, peak)
        self.assertPeakBelow(peak, memory + state + margin, "startup peak")
        st = self.state("big")
        self.assertEqual(st["updates"], 3, "reloaded from the shutdown checkpoint")
        self.assertEqual(st["env_steps"], 16)
        lst = self.assertOK(self.c.get("/v1/agents/big/checkpoints"))["checkpoints"]
        self.assertEqual([(x["updates"], x["bytes"]) for x in lst], [(2, state), (3, state)])
        after = self.act("big")
        self.assertNotEqual(after, before, "update 3 changed the policy")

        # The manual checkpoint, restored: the actions of before the restart again.
        self.assertOK(self.c.post("/v1/agents/big/restore", {"checkpoint": c1["id"]}))
        self.assertEqual(self.act("big"), before)

        pm = self.phase_start()
        r = self.c.get("/v1/agents/big/checkpoints/%d" % c1["id"])
        self.phase_end("download", pm)
        self.assertStatus(r, 200)
        self.assertEqual(r.ctype, OCTETS)
        blob = r.body
        r = None
        self.assertEqual(len(blob), state)

        pm = self.phase_start()
        r = self.c.put("/v1/agents/big2/checkpoint", data=blob, content_type=OCTETS)
        grew = self.phase_end("import", pm)
        self.assertOK(r, 201)
        del blob, r
        # The body and the agent built from it; the stored copy goes in parts.
        self.assertPeakBelow(grew, memory + state + margin, "import peak")
        st = self.state("big2")
        self.assertEqual((st["updates"], st["env_steps"]), (2, 16))
        self.assertEqual(self.act("big2"), before)
        self.assertEqual(self.assertOK(self.c.get("/v1/agents/big2/checkpoints"))
                         ["checkpoints"][0]["bytes"], state)

        pm = self.phase_start()
        self.assertStatus(self.c.delete("/v1/agents/big2"), 204)
        self.phase_end("delete the import", pm)
        rc = self.daemon.stop(timeout=self.SLOW)
        self.assertEqual(rc, 0, self.daemon.log_tail())
        sys.stderr.write("\n  total %.0f s; the daemon's highest peak RSS %d MiB\n"
                         % (time.monotonic() - t_all, max(p[3] for p in self.phases) // MIB))


if __name__ == "__main__":
    unittest.main()
