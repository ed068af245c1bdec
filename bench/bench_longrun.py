#!/usr/bin/python3
"""bench/bench_longrun.py: a long run through one agent (issue 10, item 4): what the
database, a restart and ingestion cost after 10^6, 5 x 10^6 and 10^7 transitions with
buffer_size 10^5, now that the stored buffer is a ring.

    bench/bench_longrun.py [--redqd build/redqd] [--total N] [--buffer B] [--post P]
                           [--marks M,M,...] [--out FILE] [--keep DIR] [--baseline]

Starts its own daemon (--log-level info) on a free port with a fresh data directory,
creates one Pendulum-shaped agent (obs 3, act 1; training "manual", so that no update
competes with the writer; estimation_step 1) and posts pre-encoded bodies of P random
transitions from two client threads over keep-alive connections. At each mark it
records the segment's ingest rate, waits until the pruning has caught up (the
transitions stored back to about buffer_size), reads the file (bytes of redqd.db and
its -wal, pages in use, free pages, rows per table), then restarts the daemon (SIGTERM,
start) and times it: from the new process to GET /v1/health answering with no agent
still loading; the daemon's own log gives the transitions it replayed and its loading
time. How long the writer was held: each pruning job's time (the daemon's debug log,
"pruned N rows in T ms") and the commit-duration histogram of /metrics (whose commits
are mostly the posts' own).

The baseline it compares with is the daemon before issue 10: 58 bytes per stored
Pendulum transition, every one kept, and 0.35 us of reload per stored transition.
Python 3 standard library only. Writes a markdown report (--out) and prints it.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from bench_ingest import free_port  # noqa: E402

BASE_BYTES, BASE_RELOAD_US = 58.0, 0.35


class Daemon:
    def __init__(self, binary, data_dir, log_path):
        self.bin, self.data_dir, self.log_path = binary, data_dir, log_path
        self.proc = None
        self.port = None

    def start(self):
        """Starts the daemon; returns seconds until it serves with every agent loaded."""
        self.port = free_port()
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDQD_")}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.bin, "--port", str(self.port), "--data-dir", self.data_dir,
             "--log-level", "debug"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("bench_longrun: redqd exited during startup (%s)" % self.log_path)
            try:
                st, body = self.request("GET", "/v1/health", timeout=1)
                if st == 200 and json.loads(body).get("agents_loading", 0) == 0:
                    return time.monotonic() - t0
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() - t0 > 600:
                self.proc.kill()
                raise SystemExit("bench_longrun: redqd did not start")
            time.sleep(0.005)

    def stop(self):
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(600)
        if rc != 0:
            raise SystemExit("bench_longrun: redqd exited %s on SIGTERM" % rc)
        return time.monotonic() - t0

    def request(self, method, path, body=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


def bodies(post, n_bodies, seed):
    """n_bodies pre-encoded posts of post random Pendulum-shaped transitions."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_bodies):
        rows = []
        for i in range(post):
            rows.append({"obs": [round(rng.uniform(-1, 1), 6) for _ in range(3)],
                         "action": [round(rng.uniform(-2, 2), 6)],
                         "reward": round(rng.uniform(-16, 0), 6),
                         "next_obs": [round(rng.uniform(-1, 1), 6) for _ in range(3)],
                         "terminated": False, "truncated": False})
        out.append(json.dumps({"transitions": rows}).encode())
    return out


def post_segment(d, agent, bodies_, posts):
    """posts posts from two threads; returns the seconds it took."""
    lock = threading.Lock()
    left = [posts]
    errors = []

    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300)
        i = k
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            body = bodies_[i % len(bodies_)]
            i += 2
            while True:
                c.request("POST", "/v1/agents/%s/transitions" % agent, body=body,
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                if r.status == 200:
                    break
                if r.status in (429, 503):
                    time.sleep(0.01)
                    continue
                errors.append((r.status, data[:200]))
                return
        c.close()

    t0 = time.monotonic()
    th = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if errors:
        raise SystemExit("bench_longrun: a post failed: %r" % (errors[0],))
    return time.monotonic() - t0


def db_facts(data_dir):
    db = os.path.join(data_dir, "redqd.db")
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        def q(sql):
            try:
                return con.execute(sql).fetchone()[0]
            except sqlite3.OperationalError:  # a daemon from before replay heads (--baseline)
                return 0
        f = {"page_size": q("PRAGMA page_size"), "pages": q("PRAGMA page_count"),
             "free": q("PRAGMA freelist_count"), "auto_vacuum": q("PRAGMA auto_vacuum"),
             "transitions": q("SELECT count(*) FROM transitions"),
             "heads": q("SELECT count(*) FROM replay_heads"),
             "head_bytes": q("SELECT coalesce(sum(length(state)), 0) FROM replay_heads"),
             "stats": q("SELECT count(*) FROM stats"),
             "transitions_bytes": q("SELECT coalesce(sum(length(data)), 0) FROM transitions")}
    finally:
        con.close()
    wal = os.path.join(data_dir, "redqd.db-wal")
    f["db_bytes"] = os.path.getsize(db)
    f["wal_bytes"] = os.path.getsize(wal) if os.path.exists(wal) else 0
    return f


def commit_histogram(d):
    """{le: count} of redqd_db_commit_duration_seconds from /metrics."""
    st, body = d.request("GET", "/metrics")
    h = {}
    for m in re.finditer(r'redqd_db_commit_duration_seconds_bucket\{[^}]*le="([^"]+)"\} (\d+)',
                         body.decode()):
        h[m.group(1)] = int(m.group(2))
    return h


def log_since(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redqd", default=os.environ.get("REDQD_BIN") or
                    os.path.join(REPO, "build", "redqd"))
    ap.add_argument("--total", type=int, default=10_000_000)
    ap.add_argument("--buffer", type=int, default=100_000)
    ap.add_argument("--post", type=int, default=5000)
    ap.add_argument("--marks", default="1000000,5000000,10000000")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "longrun-latest.md"))
    ap.add_argument("--keep", default="", help="keep the data directory here")
    ap.add_argument("--baseline", action="store_true",
                    help="a daemon from before issue 10 (--redqd): nothing is pruned, so do "
                         "not wait for it")
    a = ap.parse_args()
    marks = [m for m in (int(x) for x in a.marks.split(",")) if m <= a.total]
    if a.total not in marks:
        marks.append(a.total)
    for m in marks:
        if m % a.post:
            raise SystemExit("bench_longrun: mark %d is not a multiple of --post %d" % (m, a.post))

    tmp = tempfile.mkdtemp(prefix="redqd-longrun-")
    data_dir = a.keep or os.path.join(tmp, "data")
    log_path = os.path.join(tmp, "redqd.log")
    d = Daemon(a.redqd, data_dir, log_path)
    every = max(256, a.buffer // 8)
    bound = a.buffer + every + a.post
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    try:
        d.start()
        cfg = {"hidden_sizes": [64, 64], "ensemble_size": 2, "buffer_size": a.buffer,
               "batch_size": 64, "training": "manual", "checkpoint_every": 0}
        st, body = d.request("POST", "/v1/agents", json.dumps(
            {"name": "long", "obs_dim": 3, "action_low": [-2.0], "action_high": [2.0],
             "config": cfg}).encode())
        if st != 201:
            raise SystemExit("bench_longrun: create: %d %s" % (st, body[:200]))
        bs = bodies(a.post, 16, 1)
        done = 0
        results = []
        for m in marks:
            h0 = commit_histogram(d)
            log0 = os.path.getsize(log_path)
            peak = [0]
            stop = threading.Event()

            def watch():  # the stored transitions while ingesting: how far pruning lags
                while not stop.wait(1.0):
                    try:
                        peak[0] = max(peak[0], db_facts(data_dir)["transitions"])
                    except sqlite3.Error:
                        pass

            w = threading.Thread(target=watch)
            w.start()
            seconds = post_segment(d, "long", bs, (m - done) // a.post)
            stop.set()
            w.join()
            rate = (m - done) / seconds
            h1 = commit_histogram(d)
            jobs = sorted(float(x) for x in re.findall(r"pruned \d+ rows in ([0-9.]+) ms",
                                                       log_since(log_path, log0)))
            done = m
            t0 = time.monotonic()
            while not a.baseline and db_facts(data_dir)["transitions"] > bound and \
                    time.monotonic() - t0 < 600:
                time.sleep(0.2)
            settle = time.monotonic() - t0
            live = db_facts(data_dir)
            stop_s = d.stop()
            closed = db_facts(data_dir)
            off = os.path.getsize(log_path)
            start_s = d.start()
            t1 = time.monotonic()   # the loader logs its line just after the last agent is in
            while True:
                text = log_since(log_path, off)
                loaded = re.findall(r"(\d+) agents loaded in ([0-9.]+) s", text)
                if loaded or time.monotonic() - t1 > 10:
                    break
                time.sleep(0.05)
            rep = re.findall(r"replayed (\d+) transitions", text)
            st, body = d.request("GET", "/v1/agents/long")
            state = json.loads(body)["state"]
            assert state["env_steps"] == m and state["buffer_len"] == min(m, a.buffer), state
            commits = h1.get("+Inf", 0) - h0.get("+Inf", 0)
            slow = commits - (h1.get("0.025", 0) - h0.get("0.025", 0))
            slower = commits - (h1.get("0.1", 0) - h0.get("0.1", 0))
            r = {"mark": m, "rate": rate, "seconds": seconds, "settle": settle,
                 "peak_kept": peak[0], "live": live, "closed": closed, "stop": stop_s,
                 "start": start_s, "replayed": int(rep[-1]) if rep else None,
                 "loaded": float(loaded[-1][1]) if loaded else None, "commits": commits,
                 "commits_over_25ms": slow, "commits_over_100ms": slower,
                 "prune_jobs": len(jobs),
                 "prune_ms_p50": jobs[len(jobs) // 2] if jobs else None,
                 "prune_ms_p99": jobs[min(len(jobs) - 1, len(jobs) * 99 // 100)] if jobs else None,
                 "prune_ms_max": jobs[-1] if jobs else None}
            results.append(r)
            print("%s" % json.dumps(r), flush=True)
        d.stop()
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    lines = ["# Long run (issue 10): %d transitions, buffer_size %d" % (a.total, a.buffer), "",
             "Run of %s, revision %s: `%s`" % (started, rev, " ".join([os.path.relpath(
                 sys.argv[0], REPO)] + sys.argv[1:])), "",
             "One agent, obs 3 / act 1 (Pendulum's shape), training manual, estimation_step 1;"
             " posts of %d transitions from 2 client threads; a replay head every %d "
             "transitions." % (a.post, every), "",
             "| transitions | ingest rate | stored transitions (peak while ingesting) | "
             "redqd.db (+ -wal) | pages used / free | baseline file (58 B each) | "
             "restart: serving, all loaded | replayed at start | baseline reload (0.35 us each)"
             " | SIGTERM to exit | pruning jobs: n, p50 / p99 / max |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["closed"]
        lines.append(
            "| %d | %.0f /s | %d (%d) | %.1f MiB (+ %.1f) | %d / %d | %.0f MiB | %.2f s (log: %s s) "
            "| %s | %.2f s | %.2f s | %d, %s / %s / %s ms |" % (
                r["mark"], r["rate"], r["live"]["transitions"], r["peak_kept"],
                c["db_bytes"] / 2 ** 20, r["live"]["wal_bytes"] / 2 ** 20,
                c["pages"] - c["free"], c["free"], r["mark"] * BASE_BYTES / 2 ** 20,
                r["start"], r["loaded"], r["replayed"], r["mark"] * BASE_RELOAD_US * 1e-6,
                r["stop"], r["prune_jobs"], r["prune_ms_p50"], r["prune_ms_p99"],
                r["prune_ms_max"]))
    lines += ["", "Raw:", "", "```"] + [json.dumps(r) for r in results] + ["```", ""]
    report = "\n".join(lines)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(report)
    print(report)


if __name__ == "__main__":
    main()
