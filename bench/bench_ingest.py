#!/usr/bin/python3
"""bench/bench_ingest.py: how fast redqd stores transitions durably (a 200 means the rows
are committed, API.md), with training out of the way.

    bench/bench_ingest.py [URL] [--seconds S] [--json FILE] [--markdown FILE]

URL is a running daemon (http://127.0.0.1:8470); without it, the script starts its own
(build/redqd, or $REDQD_BIN) on a free port with a temporary data directory and stops it
at the end. Each case uses a fresh agent (obs 3, act 1, training "manual", so that no
update competes with the writer) and posts pre-encoded bodies for S seconds (default 5)
over keep-alive connections (http.client, one per client; each client is its own
process, so that they do not share a GIL):

    batch 1, 32, 1024 rows, 1 client
    batch 1, 4 clients on one agent     (group commit across the clients' posts)
    batch 1, 4 clients on 4 agents      (the same, without the per-agent ordering)

and reports rows/s, posts/s and the p50/p99 of a post. A 429 (it should not happen in
manual mode) is honoured (Retry-After) and counted. Python 3 standard library only; the
client costs a little CPU of its own, so on a small machine the numbers are a floor.
"""
import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
OBS, ACT = 3, 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class OwnDaemon:
    """build/redqd (or $REDQD_BIN) on a free port with a temporary data directory."""

    def __init__(self):
        self.bin = os.environ.get("REDQD_BIN") or os.path.join(REPO, "build", "redqd")
        self.tmp = tempfile.mkdtemp(prefix="redqd-ingest-")
        self.port = free_port()
        self.log = open(os.path.join(self.tmp, "redqd.log"), "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDQD_")}
        self.proc = subprocess.Popen(
            [self.bin, "--port", str(self.port), "--data-dir", os.path.join(self.tmp, "data"),
             "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("bench_ingest: redqd exited during startup (log: %s)"
                                 % self.log.name)
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/v1/health")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise SystemExit("bench_ingest: redqd did not start")
            time.sleep(0.05)
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc


class Conn:
    """One keep-alive connection; JSON in, (status, headers, parsed body) out."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.c = None

    def request(self, method, path, body=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.c.connect()
                self.c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.c.request(method, path, body=data, headers=hdrs)
                r = self.c.getresponse()
                payload = r.read()
                if r.will_close:
                    self.close()
                return r.status, r.headers, payload
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.c is not None:
            self.c.close()
        self.c = None


def rows(n, rng):
    return [{"obs": [round(rng.uniform(-1, 1), 6) for _ in range(OBS)],
             "action": [round(rng.uniform(-2, 2), 6) for _ in range(ACT)],
             "reward": round(rng.uniform(-1, 1), 6),
             "next_obs": [round(rng.uniform(-1, 1), 6) for _ in range(OBS)],
             "terminated": False, "truncated": rng.random() < 0.005} for _ in range(n)]


def bodies(batch, count, seed):
    rng = random.Random(seed)
    return [json.dumps({"transitions": rows(batch, rng)}).encode() for _ in range(count)]


def create_agent(url, name):
    c = Conn(url)
    st, _, body = c.request("DELETE", "/v1/agents/" + name)  # a leftover of an earlier run
    cfg = {"hidden_sizes": [32, 32], "ensemble_size": 2, "subset_size": 2,
           "batch_size": 32, "start_timesteps": 0, "training": "manual",
           "checkpoint_every": 0, "buffer_size": 10000000}
    # PUT (the name in the path): bench/bench_cluster.py runs this through a router too.
    st, _, body = c.request("PUT", "/v1/agents/" + name, {
        "obs_dim": OBS, "action_low": [-2.0] * ACT, "action_high": [2.0] * ACT,
        "config": cfg})
    c.close()
    if st != 201:
        raise SystemExit("bench_ingest: creating %s: %d %s" % (name, st, body[:300]))


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def client_main(url, path, pool, k, stop_at, start, out):
    """One client (its own process, so that several do not share a GIL): posts until
    stop_at, then sends (counts, latencies, error samples) on out."""
    conn = Conn(url)
    cnt = dict(posts=0, rows=0, busy=0, errors=0)
    lat, errors = [], []
    try:
        conn.request("GET", "/v1/health")  # connected before the clock starts
        start.wait()
        while time.monotonic() < stop_at.value:
            body = pool[k % len(pool)]
            k += 1
            t0 = time.perf_counter()
            st, hdr, payload = conn.request("POST", path, body)
            dt = time.perf_counter() - t0
            if st == 200:
                cnt["posts"] += 1
                cnt["rows"] += json.loads(payload)["accepted"]
                lat.append(dt)
            elif st == 429:
                cnt["busy"] += 1
                time.sleep(float(hdr.get("Retry-After") or 1))
            else:
                cnt["errors"] += 1
                errors.append("%d %s" % (st, payload[:200]))
                if len(errors) > 20:
                    break
    except Exception as e:  # noqa: BLE001 - reported by the caller
        cnt["errors"] += 1
        errors.append(repr(e))
    finally:
        conn.close()
        out.send((cnt, lat, errors[:5]))
        out.close()


def run_case(url, label, batch, clients, agents, seconds, tag):
    names = ["ingest-%s-%s-%d" % (tag, label, i) for i in range(agents)]
    for n in names:
        create_agent(url, n)
    pool = bodies(batch, 16 if batch >= 256 else 64, seed=batch * 7 + clients)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(clients + 1)
    stop_at = ctx.Value("d", time.monotonic() + 3600.0)
    procs, pipes = [], []
    for i in range(clients):
        rd, wr = ctx.Pipe(duplex=False)
        p = ctx.Process(target=client_main, daemon=True,
                        args=(url, "/v1/agents/%s/transitions" % names[i % agents], pool, i,
                              stop_at, start, wr))
        p.start()
        wr.close()
        procs.append(p)
        pipes.append(rd)
    start.wait(60)
    t0 = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
    stop_at.value = t0 + seconds
    results = []
    for rd in pipes:
        if rd.poll(seconds + 120):
            results.append(rd.recv())
        else:
            results.append((dict(posts=0, rows=0, busy=0, errors=1), [], ["client hung"]))
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join(10)
    all_lat = [x for _, ls, _ in results for x in ls]
    errors = [e for _, _, es in results for e in es]
    tot = {k: sum(c[k] for c, _, _ in results) for k in results[0][0]}
    # The rows really are there: env_steps of each agent, as GET answers it.
    c = Conn(url)
    stored = 0
    for n in names:
        st, _, body = c.request("GET", "/v1/agents/" + n)
        stored += json.loads(body)["state"]["env_steps"] if st == 200 else 0
        c.request("DELETE", "/v1/agents/" + n)
    c.close()
    return {"case": label, "batch": batch, "clients": clients, "agents": agents,
            "seconds": round(elapsed, 2), "posts": tot["posts"], "rows": tot["rows"],
            "stored": stored, "busy": tot["busy"], "errors": tot["errors"],
            "error_samples": errors[:3],
            "rows_per_s": tot["rows"] / elapsed, "posts_per_s": tot["posts"] / elapsed,
            "p50_ms": pct(all_lat, 50) * 1e3, "p99_ms": pct(all_lat, 99) * 1e3}


CASES = [  # label, batch, clients, agents
    ("b1", 1, 1, 1),
    ("b32", 32, 1, 1),
    ("b1024", 1024, 1, 1),
    ("b1x4", 1, 4, 1),
    ("b1x4a", 1, 4, 4),
]


def markdown(results):
    out = ["| batch | clients | agents | rows/s | posts/s | p50 ms | p99 ms | 429 | errors |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        out.append("| %d | %d | %d | %.0f | %.0f | %.2f | %.2f | %d | %d |" % (
            r["batch"], r["clients"], r["agents"], r["rows_per_s"], r["posts_per_s"],
            r["p50_ms"], r["p99_ms"], r["busy"], r["errors"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url", nargs="?", help="a running daemon (default: start one)")
    ap.add_argument("--seconds", type=float, default=5.0, help="per case (default 5)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--markdown", help="also write the markdown table to this file")
    ap.add_argument("--cases", default=",".join(c[0] for c in CASES),
                    help="comma-separated subset of " + ",".join(c[0] for c in CASES))
    args = ap.parse_args()

    own = None
    url = args.url
    if not url:
        own = OwnDaemon()
        url = own.url
    want = set(args.cases.split(","))
    tag = "%d" % (int(time.time()) % 100000)
    results = []
    failed = False
    try:
        for label, batch, clients, agents in CASES:
            if label not in want:
                continue
            r = run_case(url, label, batch, clients, agents, args.seconds, tag)
            results.append(r)
            sys.stderr.write("bench_ingest: %-6s batch %4d x%d (%d agents): %8.0f rows/s "
                             "%7.0f posts/s  p50 %.2f ms  p99 %.2f ms  stored %d/%d%s\n" % (
                                 label, batch, clients, agents, r["rows_per_s"],
                                 r["posts_per_s"], r["p50_ms"], r["p99_ms"], r["stored"],
                                 r["rows"], ("  ERRORS %s" % r["error_samples"])
                                 if r["errors"] else ""))
            if r["errors"] or r["stored"] < r["rows"]:
                failed = True
    finally:
        if own is not None:
            rc = own.stop()
            if rc != 0:
                sys.stderr.write("bench_ingest: redqd exited %r after SIGTERM\n" % rc)
                failed = True
    table = markdown(results)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
