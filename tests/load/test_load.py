"""tests/load/test_load.py: redqd under sustained concurrent load, bounded in time (about
a minute).

One daemon (build/redqd or $REDQD_BIN, tests/integration/harness.py) with three small
agents training asynchronously; 50 client threads, each on its own keep-alive connection,
loop for LOAD_SECONDS (default 30) over a random mix of

    act (one observation, or a batch of 8; explore or eval)
    POST transitions (1 to 32 rows, with a batch_id; a 429 is retried after Retry-After)
    GET stats (?since=&limit=), GET the agent, GET /metrics

and every answer is checked: no 5xx at all, no connection error, every body parses as its
kind should, 429 only for transitions posts (back-pressure, and one agent has a small
max_pending_updates so that it happens), every post accepted in the end. The agents
trained (updates > 0), the daemon is alive at the end and exits 0 on SIGTERM.

Memory: VmRSS of the daemon is sampled every second. After a 10 s warm-up, what RSS gains
over the rest of the run, minus what the replay buffers must gain for the rows accepted
meanwhile ((2*obs_dim + act_dim + 2) floats a row, allocated 1024 rows at a time), must be
small: under 15% of the warm RSS and under 64 MiB. A leak per request (tens of thousands of
them) would show.

The figures (requests/s and p50/p99 latency by kind, status counts, RSS) are printed.

    REDQD_BIN=build/redqd python3 -m unittest -v tests/load/test_load.py
    python3 tests/integration/run.py tests/load/test_load.py

Python 3 standard library only.
"""
import http.client
import json
import os
import random
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Client, DaemonTestCase, rand_rows, scaled  # noqa: E402

THREADS = 50
SECONDS = float(os.environ.get("LOAD_SECONDS", "30"))
WARMUP = 10.0
RSS_REL = 0.15
RSS_ABS = 64 << 20
CHUNK_ROWS = 1024  # redq/replay.h REDQ_REPLAY_CHUNK

# name, obs_dim, act_dim, extra config: agent "c" has a small max_pending_updates, so that
# its posts meet back-pressure (429) and the retries are exercised.
AGENTS = [("load-a", 3, 1, {}), ("load-b", 4, 2, {}),
          ("load-c", 3, 1, {"max_pending_updates": 64})]

KINDS = ["act", "act_batch", "transitions", "stats", "agent", "metrics"]
WEIGHTS = [30, 12, 28, 10, 12, 8]


def agent_config(extra):
    c = {"hidden_sizes": [32, 32], "ensemble_size": 3, "subset_size": 2, "batch_size": 32,
         "start_timesteps": 64, "update_per_step": 1, "training": "async"}
    c.update(extra)
    return c


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Tally:
    """Everything the workers saw, under one lock."""

    def __init__(self):
        self.mu = threading.Lock()
        self.status = {k: {} for k in KINDS}
        self.lat = {k: [] for k in KINDS}
        self.problems = []          # strings: 5xx, bad bodies, connection errors
        self.accepted = {name: 0 for name, _, _, _ in AGENTS}
        self.retries = 0
        self.unaccepted = 0         # posts still 429 when their retry budget ran out

    def answer(self, kind, status, dt):
        with self.mu:
            self.status[kind][status] = self.status[kind].get(status, 0) + 1
            self.lat[kind].append(dt)

    def problem(self, text):
        with self.mu:
            if len(self.problems) < 200:
                self.problems.append(text)

    def rows(self, name, n):
        with self.mu:
            self.accepted[name] += n

    def accepted_now(self):
        with self.mu:
            return dict(self.accepted)


class _DaemonRef:
    """What harness.Client needs: the daemon's port."""

    def __init__(self, port):
        self.port = port


class LoadTest(DaemonTestCase):
    daemon_args = ("--log-level", "info")  # one line per request (debug) would be the load

    def test_sustained_mixed_load(self):
        for name, S, A, extra in AGENTS:
            self.create(name, obs_dim=S, act_dim=A, config=agent_config(extra))
        pid = self.daemon.proc.pid
        tally = Tally()
        loadavg0 = loadavg()

        # Something to train on from the start, so that every agent has updates owed.
        for name, S, A, _ in AGENTS:
            self.post_transitions(name, rand_rows(64, S, A, random.Random(name)),
                                  batch_id="seed-" + name)
            tally.rows(name, 64)

        t_start = time.monotonic()
        deadline = t_start + SECONDS
        samples = []  # (t, rss, accepted rows by agent)
        sampler_stop = threading.Event()

        def sampler():
            while not sampler_stop.is_set():
                try:
                    samples.append((time.monotonic() - t_start, rss_bytes(pid),
                                    tally.accepted_now()))
                except (OSError, AssertionError):
                    return
                sampler_stop.wait(1.0)

        def worker(i):
            rng = random.Random(1000 + i)
            client = Client(_DaemonRef(self.daemon.port), timeout=scaled(60.0))
            seq = 0
            try:
                while time.monotonic() < deadline:
                    kind = rng.choices(KINDS, WEIGHTS)[0]
                    name, S, A, _ = AGENTS[rng.randrange(len(AGENTS))]
                    try:
                        if kind == "transitions":
                            seq += 1
                            self._post(client, tally, rng, name, S, A, "w%d-%d" % (i, seq))
                        else:
                            self._one(client, tally, rng, kind, name, S, A)
                    except (OSError, http.client.HTTPException) as e:
                        tally.problem("%s %s: connection error %r" % (kind, name, e))
                        client.close()
            finally:
                client.close()

        st = threading.Thread(target=sampler, daemon=True)
        st.start()
        workers = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(SECONDS + scaled(90))
        elapsed = time.monotonic() - t_start
        sampler_stop.set()
        st.join(5)
        hung = sum(w.is_alive() for w in workers)
        loadavg1 = loadavg()

        alive = self.daemon.running()
        states = {}
        if alive:
            for name, _, _, _ in AGENTS:
                states[name] = self.state(name)

        rss = self._report(tally, samples, elapsed, states, loadavg0, loadavg1)

        self.assertTrue(alive, "redqd died under load")
        self.assertEqual(hung, 0, "%d client threads did not finish" % hung)
        self.assertEqual(tally.problems, [], "problems under load (first ones shown)")
        self.assertEqual(tally.unaccepted, 0, "posts still refused (429) after retrying")
        for kind in KINDS:
            for status in tally.status[kind]:
                self.assertLess(status, 500, "%s answered %d" % (kind, status))
                if kind != "transitions":
                    self.assertEqual(status, 200, "%s answered %d" % (kind, status))
                else:
                    self.assertIn(status, (200, 429), "transitions answered %d" % status)
            self.assertGreater(sum(tally.status[kind].values()), 0, "no %s requests" % kind)
        for name, _, _, _ in AGENTS:
            self.assertGreater(states[name]["updates"], 0, "%s made no updates" % name)
            self.assertEqual(states[name]["env_steps"], tally.accepted[name],
                             "%s: env_steps against the rows accepted" % name)
        if rss is not None:
            warm, end, expected, residual = rss
            self.assertLess(residual, RSS_REL * warm,
                            "RSS grew by %.1f MiB beyond the replay buffers' %.1f MiB "
                            "(warm %.1f MiB)" % (residual / 2**20, expected / 2**20,
                                                 warm / 2**20))
            self.assertLess(residual, RSS_ABS)

        # Still answering, and a clean exit (tearDownClass asserts it too).
        self.assertOK(self.c.get("/v1/health"))
        self.daemon.stop_ok()

    # ---------------------------------------------------------------- one request

    def _check(self, tally, kind, name, r, dt):
        tally.answer(kind, r.status, dt)
        if r.status >= 500:
            tally.problem("%s %s: %r" % (kind, name, r))
            return None
        try:
            if kind == "metrics":
                text = r.body.decode("utf-8")
                if r.status == 200 and "# TYPE" not in text:
                    tally.problem("metrics: no # TYPE line: %r" % text[:200])
                return text
            doc = r.json()
            if r.status >= 400 and (doc.get("status") != r.status or "code" not in doc):
                tally.problem("%s %s: not a problem document: %r" % (kind, name, r))
            return doc
        except (ValueError, UnicodeDecodeError) as e:
            tally.problem("%s %s: unparsable answer %r (%s)" % (kind, name, r, e))
            return None

    def _one(self, client, tally, rng, kind, name, S, A):
        path = "/v1/agents/" + name
        t0 = time.perf_counter()
        if kind in ("act", "act_batch"):
            n = 8 if kind == "act_batch" else 1
            obs = [[rng.uniform(-1, 1) for _ in range(S)] for _ in range(n)]
            body = {"obs": obs if n > 1 else obs[0],
                    "mode": rng.choice(("explore", "eval"))}
            r = client.post(path + "/act", body)
        elif kind == "stats":
            r = client.get(path + "/stats?since=%d&limit=%d"
                           % (rng.choice((0, rng.randrange(0, 2000))), rng.randint(1, 100)))
        elif kind == "agent":
            r = client.get(path)
        else:
            r = client.get("/metrics")
        doc = self._check(tally, kind, name, r, time.perf_counter() - t0)
        if doc is None or r.status != 200:
            return
        if kind in ("act", "act_batch"):
            act = doc.get("action")
            shape_ok = (isinstance(act, list) and len(act) == (n if n > 1 else A) and
                        all((isinstance(x, list) and len(x) == A) if n > 1 else
                            isinstance(x, (int, float)) for x in act))
            if not shape_ok or not isinstance(doc.get("policy_version"), int):
                tally.problem("%s %s: bad act answer %r" % (kind, name, doc))
        elif kind == "stats":
            if not isinstance(doc.get("rows"), list):
                tally.problem("stats %s: no rows: %r" % (name, r))
        elif kind == "agent":
            if doc.get("name") != name or "updates" not in doc.get("state", {}):
                tally.problem("agent %s: bad answer %r" % (name, r))

    def _post(self, client, tally, rng, name, S, A, batch_id):
        n = rng.randint(1, 32)
        body = {"batch_id": batch_id, "transitions": rand_rows(n, S, A, rng)}
        give_up = time.monotonic() + scaled(20.0)  # back-pressure lasts while trainers catch up
        while True:
            t0 = time.perf_counter()
            r = client.post("/v1/agents/%s/transitions" % name, body)
            doc = self._check(tally, "transitions", name, r, time.perf_counter() - t0)
            if r.status == 429:
                if doc is not None and doc.get("code") != "busy":
                    tally.problem("transitions %s: 429 without code busy: %r" % (name, r))
                if time.monotonic() > give_up:
                    with tally.mu:
                        tally.unaccepted += 1
                    return
                with tally.mu:
                    tally.retries += 1
                ra = r.header("Retry-After")
                time.sleep(min(float(ra), 1.0) if ra else 0.5)
                continue
            if r.status != 200:
                if r.status < 500:
                    tally.problem("transitions %s: %r" % (name, r))
                return
            if doc is None or doc.get("accepted") != n:
                tally.problem("transitions %s: accepted %r of %d" % (name, doc, n))
                return
            tally.rows(name, n)
            return

    # ---------------------------------------------------------------- the figures

    def _report(self, tally, samples, elapsed, states, loadavg0, loadavg1):
        out = ["", "== load: %d threads, %.1f s, 3 agents; loadavg %s -> %s (nproc %d)"
               % (THREADS, elapsed, "/".join(loadavg0), "/".join(loadavg1), os.cpu_count())]
        out.append("%-12s %8s %9s %9s %9s  %s" % ("kind", "count", "req/s", "p50 ms",
                                                "p99 ms", "statuses"))
        total = 0
        for kind in KINDS:
            n = sum(tally.status[kind].values())
            total += n
            out.append("%-12s %8d %9.1f %9.2f %9.2f  %s" % (
                kind, n, n / elapsed, pct(tally.lat[kind], 50) * 1e3,
                pct(tally.lat[kind], 99) * 1e3,
                " ".join("%d:%d" % kv for kv in sorted(tally.status[kind].items()))))
        out.append("%-12s %8d %9.1f" % ("all", total, total / elapsed))
        out.append("transitions accepted: %s; 429 retries %d; given up %d; problems %d"
                   % (tally.accepted, tally.retries, tally.unaccepted, len(tally.problems)))
        for name, s in sorted(states.items()):
            out.append("%s: env_steps %d, updates %d, pending %s, buffer_len %s, "
                       "policy_version %s" % (name, s["env_steps"], s["updates"],
                                              s["pending_updates"], s.get("buffer_len"),
                                              s.get("policy_version")))
        rss = None
        warm = [s for s in samples if s[0] >= WARMUP]
        if samples:
            out.append("RSS first sample %.1f MiB at %.1f s; samples: %s" % (
                samples[0][1] / 2**20, samples[0][0],
                " ".join("%.1f" % (s[1] / 2**20) for s in samples)))
        if len(warm) >= 2:
            (t0, r0, acc0), (t1, r1, acc1) = warm[0], warm[-1]
            dims = {name: (S, A) for name, S, A, _ in AGENTS}
            expected = 0
            slack = 0
            for name, (S, A) in dims.items():
                row = (2 * S + A + 2) * 4
                expected += (acc1[name] - acc0[name]) * row
                slack += CHUNK_ROWS * row  # a chunk is allocated whole
            residual = (r1 - r0) - expected - slack
            out.append("RSS after warm-up %.1f MiB (%.0f s) -> %.1f MiB (%.0f s): +%.2f MiB; "
                       "replay buffers %.2f MiB (+%.2f MiB chunk slack); unexplained "
                       "%+.2f MiB (limit %.1f MiB)" % (
                           r0 / 2**20, t0, r1 / 2**20, t1, (r1 - r0) / 2**20,
                           expected / 2**20, slack / 2**20, residual / 2**20,
                           min(RSS_REL * r0, RSS_ABS) / 2**20))
            rss = (r0, r1, expected, residual)
        if tally.problems:
            out.append("first problems:")
            out.extend("  " + p for p in tally.problems[:10])
        sys.stderr.write("\n".join(out) + "\n")
        sys.stderr.flush()
        return rss


if __name__ == "__main__":
    unittest.main()
