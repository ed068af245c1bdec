"""tests/integration/test_faults.py: the daemon when the disk fills, when the database it
is given is not one it may use, and when it is told to stop (API.md "Errors", "Crashes
and shutdown"; issue "Faults").

Disk full. --max-db-size caps the database (PRAGMA max_page_count on the writer's
connection, so the cap counts database pages, not the -wal file). With a cap a few
hundred transitions above the size of a small agent, posts are accepted until one answers
503 problem+json `unavailable` whose detail says the database is full; that post stored
nothing (not even its batch_id), acts and GETs keep working, a checkpoint, a restore and a
refused delete change nothing, SIGTERM still exits 0 (its shutdown checkpoints may fail),
the file passes integrity_check, and once space returns (a restart without the cap) every
acknowledged row is there and writes succeed. When `mount -t tmpfs` is permitted (root,
outside a locked-down sandbox) a tiny tmpfs data dir gives a real ENOSPC: there the space
also returns under the running daemon (remount), and a DELETE refused for lack of space
must leave the agent in place. Without mount permission those tests skip.

Refused databases. Random bytes, another program's SQLite database, a redqd database
whose user_version is newer, and a real redqd.db with pages in the middle overwritten:
`redqd --port N --data-dir DIR` exits non-zero within a few seconds, its stderr names the
file and the reason, and the file's bytes (SHA-256) are unchanged.

Shutdown. SIGTERM (and SIGINT) while a train call is in flight and two clients post:
new requests get 503 `unavailable` or a refused connection, the train call is answered,
every post answered 200 is stored and every post answered 503 stored nothing (retried
with its batch_id after the restart, each is stored as new), every agent has an automatic
checkpoint at its final updates, and the exit code is 0 within 20 s (scaled for the build
and the load: harness.scaled). Once one request has been answered 503, every request
begun after that answer is refused too (an order, not a grace period). Two large agents
make the shutdown take seconds, so that the window is observable and a second SIGTERM
right after the first can be told apart from a finished shutdown: it must end the process
at once, and nothing acknowledged may be lost.
"""
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, Client, Daemon, DaemonTestCase, agent_body, free_port,  # noqa: E402
                     rand_rows, scaled)

# Time bounds are what the plain build needs on an idle machine; each use scales them
# (harness.scaled) for a sanitizer build and the machine's load.
STOP_BOUND = 20.0          # seconds a SIGTERM'd daemon may take (harness.STOP_TIMEOUT)
REFUSE_BOUND = 5.0         # seconds a refused start may take ("a few seconds")
AT_ONCE = 1.0              # seconds "at once" may take after a second signal
PAGE = 4096
GRACE = 0.5                # the probe starts this long after the signal (the order of the
                           # answers is what is checked, not this)
REFUSED = ("refused", "RemoteDisconnected", "ConnectionResetError", "BrokenPipeError")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def db_path(d):
    return os.path.join(d.data_dir, "redqd.db")


def db_pages(path):
    """(page_count, page_size) as SQLite counts them: the pages in the -wal included."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return (con.execute("PRAGMA page_count").fetchone()[0],
                con.execute("PRAGMA page_size").fetchone()[0])
    finally:
        con.close()


def db_query(path, sql, *args):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def integrity(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
    finally:
        con.close()


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("REDQD_") and k != "JOURNAL_STREAM"}


def metric(text, name):
    """The value of an unlabelled series in Prometheus text."""
    for ln in text.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    raise AssertionError("no %s in /metrics" % name)


class FaultCase(DaemonTestCase):
    """Each test makes its own daemons (new_daemon); their logs are printed when the test
    fails, and they are killed and removed after it."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = None
        cls.deaths = []

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        pass

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        self.daemons = []
        before = len(result.failures) + len(result.errors)
        try:
            return unittest.TestCase.run(self, result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            for d in self.daemons:
                if failed:
                    sys.stderr.write("\n" + d.log_tail(120) + "\n")
                d.cleanup()
            sys.stderr.flush()

    def new_daemon(self, args=(), data_dir=None):
        d = Daemon(extra_args=args, data_dir=data_dir)
        self.daemons.append(d)
        self.c = d.client
        return d

    def assertAlive(self, d, when):
        if not d.running():
            rc = d.proc.returncode if d.proc is not None else None
            self.fail("redqd died (exit code %r) %s" % (rc, when))

    def assertStopsCleanly(self, d, sig=signal.SIGTERM, what="SIGTERM"):
        d.client.close()
        p, d.proc = d.proc, None
        bound = scaled(STOP_BOUND)
        t0 = time.monotonic()
        p.send_signal(sig)
        try:
            rc = p.wait(bound + 5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("redqd did not exit within %.0f s of %s" % (bound + 5, what))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit code after %s" % what)
        self.assertLess(took, bound, "seconds to exit after %s" % what)
        return took

    def assertFull(self, r, what):
        p = self.assertProblem(r, 503, "unavailable")
        self.assertIn("full", p["detail"], "%s: detail does not say the database is full: %r"
                      % (what, p))
        return p

    def env_steps(self, name):
        return self.state(name)["env_steps"]

    def fill(self, name, rng, batch=10, limit=20000):
        """Posts batches until one is refused; returns (rows acknowledged, the refused
        response, the refused body)."""
        acked = 0
        while acked < limit:
            body = {"transitions": rand_rows(batch, 3, 1, rng),
                    "batch_id": "fill-%d" % (acked // batch)}
            r = self.c.post("/v1/agents/%s/transitions" % name, body)
            if r.status != 200:
                return acked, r, body
            self.assertEqual(r.json()["accepted"], batch)
            acked += batch
        self.fail("%d transitions were accepted; the database never filled" % acked)


# ------------------------------------------------------------------ disk full

class DiskFullTest(FaultCase):

    def test_capped_database_refuses_writes_keeps_serving_and_recovers(self):
        rng = random.Random(7)
        d = self.new_daemon()
        d.start()
        self.create("full")
        base = 40
        self.post_transitions("full", rand_rows(base, 3, 1, rng))
        d.stop_ok()
        # The size of one small agent with its shutdown checkpoint, as SQLite counts it.
        pages, page = db_pages(db_path(d))
        self.assertEqual(page, PAGE)
        cap = (pages + 6) * page           # six pages: about 450 transitions of this size
        d.start(extra_args=["--max-db-size", str(cap)])

        acked, refused, body = self.fill("full", rng)
        self.assertGreaterEqual(acked, 100, "the cap left room for a few hundred rows")
        self.assertFull(refused, "the post that did not fit")
        total = base + acked
        self.assertAlive(d, "when the database filled")

        # The refused post stored nothing; the agent is as the acknowledged posts left it.
        st = self.state("full")
        self.assertEqual(st["env_steps"], total)
        self.assertEqual(st["buffer_len"], total)
        self.assertFull(self.c.post("/v1/agents/full/transitions", body), "the same post again")
        self.assertEqual(self.env_steps("full"), total)

        # Acting and reading keep working.
        self.act("full", [0.1, 0.2, 0.3])
        self.act("full", [[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]], mode="eval")
        for path in ("/v1/health", "/v1/agents", "/v1/agents/full", "/v1/agents/full/stats",
                     "/v1/agents/full/episodes", "/v1/agents/full/policy", "/metrics"):
            r = self.c.get(path)
            self.assertEqual(r.status, 200, "%s while full: %r" % (path, r))
        before = self.assertOK(self.c.get("/v1/agents/full/checkpoints"))["checkpoints"]
        self.assertTrue(before, "the first run's shutdown checkpoint")

        # A checkpoint and a restore need room: refused whole, nothing changed.
        self.assertFull(self.c.post("/v1/agents/full/checkpoints"), "POST checkpoints")
        st0 = self.state("full")
        self.assertFull(self.c.post("/v1/agents/full/restore",
                                    {"checkpoint": before[-1]["id"]}), "POST restore")
        st1 = self.state("full")
        for k in ("env_steps", "updates", "policy_version", "buffer_len"):
            self.assertEqual(st1[k], st0[k], "%s changed by a refused restore" % k)
        after = self.assertOK(self.c.get("/v1/agents/full/checkpoints"))["checkpoints"]
        self.assertEqual(after, before)

        # The writer is not stuck: a write that fits in place still goes through.
        r = self.c.patch("/v1/agents/full", {"keep_checkpoints": 4})
        self.assertIn(r.status, (200, 503), repr(r))
        want = 4 if r.status == 200 else 5
        self.assertEqual(self.agent("full")["config"]["keep_checkpoints"], want)
        self.assertEqual(self.env_steps("full"), total)
        self.assertAlive(d, "while full")

        # SIGTERM while full: exit 0 even though the shutdown checkpoint cannot be written.
        self.assertStopsCleanly(d)
        self.assertEqual(integrity(db_path(d)), ["ok"])
        self.assertEqual(db_query(db_path(d), "SELECT count(*), max(seq) FROM transitions")[0],
                         (total, total))

        # Space returns: everything acknowledged is there and writes succeed.
        d.start(extra_args=[])
        st = self.state("full")
        self.assertEqual(st["env_steps"], total)
        self.assertEqual(st["buffer_len"], total)
        self.assertEqual(self.agent("full")["config"]["keep_checkpoints"], want)
        r = self.post_transitions("full", body["transitions"], batch_id=body["batch_id"])
        self.assertEqual((r["accepted"], r["env_steps"]), (10, total + 10),
                         "the refused batch_id must be new: the refused post stored nothing")
        self.post_transitions("full", rand_rows(500, 3, 1, rng))
        self.assertEqual(self.env_steps("full"), total + 510)
        self.assertOK(self.c.post("/v1/agents/full/checkpoints"), 201)
        self.assertOK(self.c.post("/v1/agents/full/restore", {"checkpoint": before[-1]["id"]}))
        self.assertStopsCleanly(d)
        self.assertEqual(integrity(db_path(d)), ["ok"])


class TmpfsFullTest(FaultCase):
    """A real ENOSPC: the data dir on a tmpfs of a few hundred KiB."""

    SIZE = "384k"

    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="redqd-tmpfs-")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % self.SIZE,
                            "tmpfs", self.mnt], capture_output=True)
        if p.returncode != 0:
            os.rmdir(self.mnt)
            self.skipTest("mount -t tmpfs is not permitted here: %s"
                          % p.stderr.decode(errors="replace").strip())
        self.addCleanup(self.unmount)

    def unmount(self):
        for d in self.daemons:  # nothing may hold the mount
            d.kill()
        subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        os.rmdir(self.mnt)

    def grow(self, size="16m"):
        subprocess.run(["mount", "-o", "remount,size=%s" % size, self.mnt], check=True)

    def start_full(self, agents=("a",)):
        d = self.new_daemon(data_dir=os.path.join(self.mnt, "data"))
        d.start()
        for n in agents:
            self.create(n)
        acked, refused, body = self.fill(agents[0], random.Random(11))
        self.assertGreater(acked, 0)
        self.assertFull(refused, "the post that found the disk full")
        self.assertEqual(self.env_steps(agents[0]), acked)
        self.act(agents[0], [0.0, 0.5, -0.5])
        self.assertEqual(self.c.get("/v1/agents").status, 200)
        self.assertFull(self.c.post("/v1/agents/%s/checkpoints" % agents[0]), "POST checkpoints")
        self.assertAlive(d, "with the disk full")
        return d, acked, body

    def test_space_returns_under_the_running_daemon(self):
        d, acked, body = self.start_full()
        self.grow()
        r = self.post_transitions("a", body["transitions"], batch_id=body["batch_id"])
        self.assertEqual((r["accepted"], r["env_steps"]), (10, acked + 10))
        self.assertOK(self.c.post("/v1/agents/a/checkpoints"), 201)
        self.assertStopsCleanly(d)
        d.start()
        self.assertEqual(self.env_steps("a"), acked + 10)

    def test_stats_rows_made_while_full_are_written_when_space_returns(self):
        """Training goes on with the disk full; its stats rows wait in memory and are
        all written, none missing and in order, once the disk has room again."""
        d, acked, _ = self.start_full()
        rows0 = self.assertOK(self.c.get("/v1/agents/a/stats?limit=100000"))["rows"]
        u0 = self.state("a")["updates"]
        r = self.assertOK(self.c.post("/v1/agents/a/train", {"updates": 40}))
        self.assertEqual(r["updates"], u0 + 40)
        # the flushes (one a second) are refused: wait for one, not for seconds
        self.wait_until(lambda: metric(self.c.get("/metrics").body.decode(),
                                       "redqd_db_write_failures_total") > 0, 10,
                        "a refused flush of the stats rows")
        m = self.c.get("/metrics").body.decode()
        self.assertEqual(metric(m, "redqd_stats_rows_dropped_total"), 0)
        self.grow()
        want = list(range(u0 + 2, u0 + 41, 2))  # actor_delay 2: a row every 2 updates

        def written():
            rows = self.c.get("/v1/agents/a/stats?limit=100000").json()["rows"]
            return [x["update"] for x in rows[len(rows0):]] == want
        self.wait_until(written, timeout=10, what="the stats rows made while full")
        rows = self.c.get("/v1/agents/a/stats?limit=100000").json()["rows"]
        self.assertEqual([x["row"] for x in rows], sorted(x["row"] for x in rows))
        self.assertStopsCleanly(d)

    def test_sigterm_while_the_disk_is_full(self):
        d, acked, body = self.start_full()
        self.assertStopsCleanly(d)
        self.grow()
        self.assertEqual(integrity(db_path(d)), ["ok"])
        d.start()
        self.assertEqual(self.env_steps("a"), acked)
        r = self.post_transitions("a", body["transitions"], batch_id=body["batch_id"])
        self.assertEqual((r["accepted"], r["env_steps"]), (10, acked + 10))

    def test_refused_delete_leaves_the_agent(self):
        """API.md: a request that fails changes no state. A DELETE the disk cannot
        record answers 503 and the agent stays, in memory as on disk."""
        d, acked, _ = self.start_full(agents=("a", "b"))
        r = self.c.delete("/v1/agents/b")
        if r.status == 503:
            self.assertProblem(r, 503, "unavailable")
            self.assertEqual(self.c.get("/v1/agents/b").status, 200,
                             "a refused DELETE removed the agent from the running daemon")
        else:
            self.assertStatus(r, 204)
        gone = r.status == 204
        self.assertStopsCleanly(d)
        self.grow()
        d.start()
        self.assertEqual(self.c.get("/v1/agents/b").status, 404 if gone else 200)
        self.assertEqual(self.env_steps("a"), acked)


# ------------------------------------------------------------------ refused databases

class RefusedDatabaseTest(FaultCase):
    """Each case copies one file into a fresh data dir and starts redqd on it."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A real redqd.db, made by a daemon run: an agent, 3000 transitions, a checkpoint.
        d = Daemon()
        try:
            d.start()
            c = d.client
            r = c.post("/v1/agents", agent_body("real"))
            assert r.status == 201, r
            for i in range(6):
                r = c.post("/v1/agents/real/transitions",
                           {"transitions": rand_rows(500, 3, 1, random.Random(i))})
                assert r.status == 200, r
            assert c.post("/v1/agents/real/checkpoints").status == 201
            assert d.stop() == 0, d.log_tail()
            src = db_path(d)
            con = sqlite3.connect(src)  # fold any -wal into the file: one self-contained copy
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
            fd, cls.real = tempfile.mkstemp(prefix="redqd-real-", suffix=".db")
            os.close(fd)
            shutil.copyfile(src, cls.real)
        finally:
            d.cleanup()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "real", None) and os.path.exists(cls.real):
            os.unlink(cls.real)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="redqd-refuse-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.db = os.path.join(self.dir, "redqd.db")

    def assertRefused(self, reasons):
        """redqd exits non-zero within REFUSE_BOUND seconds (scaled), naming the file and
        one of reasons on stderr, and the file is byte for byte what it was."""
        before = sha256(self.db)
        size = os.path.getsize(self.db)
        bound = scaled(REFUSE_BOUND)
        t0 = time.monotonic()
        p = subprocess.Popen([BIN, "--port", str(free_port()), "--data-dir", self.dir],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=clean_env())
        try:
            out, err = p.communicate(timeout=bound + 5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("redqd did not refuse the file; it was still running after %.0f s:\n%s"
                      % (bound + 5, err.decode(errors="replace")[-2000:]))
        took = time.monotonic() - t0
        err = err.decode(errors="replace")
        self.assertNotEqual(p.returncode, 0, "exit code; stderr:\n" + err)
        self.assertLess(took, bound, "seconds to refuse")
        self.assertIn(self.db, err, "stderr does not name the file:\n" + err)
        self.assertTrue(any(w in err for w in reasons),
                        "stderr gives none of the reasons %r:\n%s" % (reasons, err))
        self.assertEqual(os.path.getsize(self.db), size, "the file's size changed")
        self.assertEqual(sha256(self.db), before, "the file's bytes changed")
        return err

    def test_random_bytes(self):
        with open(self.db, "wb") as f:
            f.write(random.Random(1).randbytes(64 * 1024))
        self.assertRefused(["file is not a database"])

    def test_another_programs_database(self):
        con = sqlite3.connect(self.db)
        con.executescript("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL);"
                          "INSERT INTO invoices (amount) VALUES (12.5), (99.0);")
        con.close()
        self.assertRefused(["not a redqd database"])

    def test_newer_schema_version(self):
        shutil.copyfile(self.real, self.db)
        con = sqlite3.connect(self.db)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.execute("PRAGMA user_version = %d" % (version + 1))
        con.close()
        self.assertFalse(os.path.exists(self.db + "-wal") and os.path.getsize(self.db + "-wal"))
        err = self.assertRefused(["schema version %d is newer" % (version + 1)])
        self.assertIn("upgrade", err)

    def test_corrupted_pages_in_the_middle(self):
        shutil.copyfile(self.real, self.db)
        pages = os.path.getsize(self.db) // PAGE
        self.assertEqual(db_query(self.db, "PRAGMA freelist_count")[0][0], 0,
                         "every page is in use, so every overwritten one matters")
        # Pages of the middle of the file that hold b-tree nodes (dbstat when the sqlite3
        # module has it, else simply the middle pages).
        try:
            btree = [r[0] for r in db_query(self.db, "SELECT pageno FROM dbstat WHERE "
                                            "pagetype IN ('internal', 'leaf') ORDER BY pageno")]
        except sqlite3.OperationalError:
            btree = []
        mid = [p for p in btree if pages // 3 <= p <= 2 * pages // 3][:3] or \
            [pages // 2, pages // 2 + 1, pages // 2 + 3]
        with open(self.db, "r+b") as f:
            for pg in mid:  # 1-based page numbers
                f.seek((pg - 1) * PAGE)
                f.write(random.Random(pg).randbytes(PAGE))
        self.assertRefused(["damaged", "quick_check failed", "malformed"])


# ------------------------------------------------------------------ shutdown

BIG = {"hidden_sizes": [1024, 1024], "ensemble_size": 10, "batch_size": 64}


class Poster(threading.Thread):
    """Posts 4-row batches with batch ids to one agent until told to stop or the daemon
    is gone; sorts every post by its outcome."""

    def __init__(self, daemon, name, tag):
        super().__init__(daemon=True)
        self.d, self.name, self.tag = daemon, name, tag
        self.rng = random.Random(tag)
        self.halt = threading.Event()
        self.acked = []      # (body, answer) answered 200
        self.refused = []    # (body, response) answered 503
        self.unsure = []     # bodies whose answer was lost (they may or may not be stored)
        self.other = []      # anything else: a failure
        self.after_signal = []  # (begun, answered, status or exception name) of the posts
                                # begun after t_signal
        self.t_signal = None

    def run(self):
        c = Client(self.d, timeout=30)
        n = 0
        while not self.halt.is_set():
            n += 1
            body = {"batch_id": "%s-%d" % (self.tag, n),
                    "transitions": rand_rows(4, 3, 1, self.rng)}
            t = time.monotonic()
            late = self.t_signal is not None and t > self.t_signal
            try:
                r = c.post("/v1/agents/%s/transitions" % self.name, body)
            except ConnectionRefusedError:
                if late:
                    self.after_signal.append((t, time.monotonic(), "refused"))
                break  # the listener is closed: never sent
            except OSError as e:
                self.unsure.append(body)
                if late:
                    self.after_signal.append((t, time.monotonic(), type(e).__name__))
                c.close()
                if self.t_signal is not None:
                    time.sleep(0.02)
                continue
            if late:
                self.after_signal.append((t, time.monotonic(), r.status))
            if r.status == 200:
                self.acked.append((body, r.json()))
            elif r.status == 503:
                self.refused.append((body, r))
            else:
                self.other.append((body, r))
            time.sleep(0.005)
        c.close()


class ShutdownTest(FaultCase):

    def setup_agents(self):
        d = self.new_daemon()
        d.start()
        # actor_delay 1: a stats row after every update, so the rows tell the last one.
        self.create("trainee", config=dict(agent_body("x")["config"], hidden_sizes=[256, 256],
                                          ensemble_size=10, batch_size=64, actor_delay=1))
        self.post_transitions("trainee", rand_rows(300, 3, 1, random.Random(2)))
        self.create("poster")
        for i in range(2):  # large checkpoints: a shutdown of seconds
            self.create("heavy%d" % i, config=dict(agent_body("x")["config"], **BIG))
        return d

    def start_load(self, d, train=True):
        """A train call in flight and two posters running."""
        self.train_answer = {}

        def train():
            c = Client(d, timeout=60)
            try:
                self.train_answer["r"] = c.post("/v1/agents/trainee/train", {"updates": 100000})
            except Exception as e:  # noqa: BLE001 (reported by the test)
                self.train_answer["e"] = e
            c.close()

        self.trainer = threading.Thread(target=train, daemon=True)
        if train:
            self.trainer.start()
            self.wait_until(lambda: self.state("trainee")["updates"] > 0, 30,
                            "the train call to be running")
        self.posters = [Poster(d, "poster", "p%d-%d" % (i, d.starts)) for i in range(2)]
        for p in self.posters:
            p.start()
        self.wait_until(lambda: all(len(p.acked) >= 5 for p in self.posters), 30,
                        "the posters to be acknowledged")

    def probe(self, d, t_signal, until):
        """GETs on new connections after the signal, until one is refused or the daemon
        has exited: [(begun, answered, response or "refused" or an exception name)]."""
        seen = []
        time.sleep(GRACE)
        while time.monotonic() < until and d.proc.poll() is None:
            c = Client(d, timeout=scaled(10))
            t = time.monotonic()
            try:
                r = c.get("/v1/agents/poster")
                seen.append((t, time.monotonic(), r))
            except ConnectionRefusedError:
                seen.append((t, time.monotonic(), "refused"))
                break
            except OSError as e:
                seen.append((t, time.monotonic(), type(e).__name__))
            finally:
                c.close()
            time.sleep(0.02)
        return seen

    def assertRefusedAfterFirst503(self, seen):
        """seen: (begun, answered, status or response or name) of the requests begun after
        the signal. The daemon may take a while to notice the signal (a sanitizer build, a
        loaded machine), so no grace period is assumed; what must hold is the order: once
        a request has been answered 503 (the shutdown has begun), every request begun
        after that answer is answered 503 or refused, and at least one is answered 503."""
        outcomes = []
        for t0, t1, o in seen:
            if not isinstance(o, (int, str)):
                if o.status == 503:
                    self.assertProblem(o, 503, "unavailable")
                o = o.status
            outcomes.append((t0, t1, o))
        answered_503 = [t1 for _, t1, o in outcomes if o == 503]
        self.assertTrue(answered_503, "no request made during the shutdown was answered 503: "
                        "%r" % [o for _, _, o in outcomes])
        first = min(answered_503)
        late = [o for t0, _, o in outcomes if t0 > first]
        self.assertTrue(all(o == 503 or o in REFUSED for o in late),
                        "answers to requests begun after the first 503: %r" % late)
        # and nothing but 200, 503 or a refusal at all
        self.assertTrue(all(o in (200, 503) or o in REFUSED for _, _, o in outcomes),
                        "answers after the signal: %r" % [o for _, _, o in outcomes])

    def check_posts(self, d, exact=True):
        """After the restart: acknowledged rows present, refused posts stored nothing,
        unsure ones stored at most once."""
        for p in self.posters:
            self.assertEqual(p.other, [], "posts answered neither 200 nor 503")
            for _, r in p.refused:
                self.assertProblem(r, 503, "unavailable")
        acked = sum(len(b["transitions"]) for p in self.posters for b, _ in p.acked)
        unsure = [b for p in self.posters for b in p.unsure]
        refused = [b for p in self.posters for b, _ in p.refused]
        env = self.env_steps("poster")
        self.assertGreaterEqual(env, acked, "acknowledged transitions were lost")
        self.assertLessEqual(env, acked + 4 * len(unsure))
        for body in refused:  # each must be new: a 503 stored nothing
            r = self.post_transitions("poster", body["transitions"], batch_id=body["batch_id"])
            self.assertEqual(r["env_steps"], env + 4, "a post answered 503 had been stored")
            env += 4
        for body in unsure:
            self.post_transitions("poster", body["transitions"], batch_id=body["batch_id"])
        st = self.state("poster")
        self.assertEqual(st["env_steps"], acked + 4 * (len(unsure) + len(refused)))
        self.assertEqual(st["buffer_len"], st["env_steps"])

    def sigterm_during_train_and_posts(self, sig, what):
        d = self.setup_agents()
        self.start_load(d)
        updates_before = self.state("trainee")["updates"]
        pid_proc = d.proc
        t_signal = time.monotonic()
        for p in self.posters:
            p.t_signal = t_signal
        pid_proc.send_signal(sig)
        bound = scaled(STOP_BOUND)
        seen = self.probe(d, t_signal, t_signal + bound)
        try:
            rc = pid_proc.wait(bound + 5)
        except subprocess.TimeoutExpired:
            pid_proc.kill()
            self.fail("redqd did not exit within %.0f s of %s" % (bound + 5, what))
        took = time.monotonic() - t_signal
        d.proc = None
        for p in self.posters:
            p.halt.set()
            p.join(scaled(30))
        self.trainer.join(scaled(30))
        self.assertEqual(rc, 0, "exit code after %s" % what)
        self.assertLess(took, bound, "seconds to exit after %s" % what)

        # New requests were answered 503 (or refused once the listener closed).
        self.assertRefusedAfterFirst503([s for p in self.posters for s in p.after_signal] +
                                        seen)
        # The train call in flight was answered (503: the daemon is shutting down).
        self.assertNotIn("e", self.train_answer, "the train call got no answer")
        r = self.train_answer["r"]
        if r.status != 200:
            self.assertProblem(r, 503, "unavailable")

        d.start()
        self.check_posts(d)
        # Every agent has an automatic checkpoint at its final updates.
        for name in ("trainee", "poster", "heavy0", "heavy1"):
            st = self.state(name)
            ck = self.assertOK(self.c.get("/v1/agents/%s/checkpoints" % name))["checkpoints"]
            self.assertTrue(ck, "%s has no checkpoint after %s" % (name, what))
            self.assertTrue(ck[-1]["automatic"], "%s: %r" % (name, ck[-1]))
            self.assertEqual(ck[-1]["updates"], st["updates"], name)
            self.assertEqual(st["last_checkpoint"]["id"], ck[-1]["id"], name)
        # ... and the trainee's is at the last update it did: its stats rows (one per
        # update, flushed after the shutdown checkpoints) tell how far the trainers got
        # before they stopped.
        rows = self.assertOK(self.c.get("/v1/agents/trainee/stats?limit=100000"))["rows"]
        self.assertTrue(rows, "no stats rows for the train call")
        final = self.state("trainee")["updates"]
        self.assertEqual(final, rows[-1]["update"], "the shutdown checkpoint is not at the "
                         "trainee's final updates")
        self.assertGreaterEqual(final, updates_before)
        self.assertGreater(updates_before, 0)
        d.kill()  # checked; another shutdown of the large agents would only cost time

    def test_sigterm_during_train_and_posts(self):
        self.sigterm_during_train_and_posts(signal.SIGTERM, "SIGTERM")

    def test_sigint_during_train_and_posts(self):
        self.sigterm_during_train_and_posts(signal.SIGINT, "SIGINT")

    def test_second_sigterm_exits_at_once(self):
        d = self.setup_agents()
        self.start_load(d, train=False)
        p = d.proc
        t_first = time.monotonic()
        for q in self.posters:
            q.t_signal = t_first
        log_at = d.log_offset()
        p.send_signal(signal.SIGTERM)
        # The second signal must come once the daemon has taken the first (a second one
        # before that may merge with it): its log says so before the shutdown begins.
        self.wait_until(lambda: "shutting down: new requests get 503" in d.log_since(log_at)
                        or p.poll() is not None, 10, "the daemon to begin its shutdown")
        self.assertIsNone(p.poll(), "the first shutdown ended before a second signal could "
                          "be sent: too fast to test")
        t_second = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(scaled(STOP_BOUND) + 5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
        took = time.monotonic() - t_second
        d.proc = None
        for q in self.posters:
            q.halt.set()
            q.join(scaled(30))
        self.assertIsNotNone(rc, "redqd did not exit after two SIGTERMs")
        # A full shutdown checkpoints two agents of ~180 MB: seconds. "At once" is less
        # (scaled like the shutdown itself); the checkpoints below tell for certain that
        # the shutdown was cut short.
        self.assertLess(took, scaled(AT_ONCE), "seconds from the second SIGTERM to the exit "
                        "(code %r); the second signal did not end the shutdown" % rc)
        self.assertEqual(integrity(db_path(d)), ["ok"])
        d.start()
        self.check_posts(d)
        # Agents are checkpointed in name order, the large ones first (a second each):
        # had the shutdown gone on, "trainee", the last, would have its checkpoint.
        ck = self.assertOK(self.c.get("/v1/agents/trainee/checkpoints"))["checkpoints"]
        self.assertEqual(ck, [], "every agent was checkpointed: the shutdown ran to its end "
                         "after the second SIGTERM (exit code %r after %.1f s)" % (rc, took))
        d.kill()


if __name__ == "__main__":
    unittest.main()
