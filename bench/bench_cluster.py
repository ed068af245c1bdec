#!/usr/bin/python3
"""bench/bench_cluster.py: what the router costs. Three redqd nodes and HAProxy with the
shipped deploy/haproxy/redqd.cfg on loopback (tests/integration/cluster_harness.py, the
setup test_cluster.py checks), and the same loads through the router and straight to the
node that holds the agent:

  act      wrk -t2 -c4 -d S --latency, POST /v1/agents/NAME/act {"obs":[...],"mode":"eval"}
           on an idle agent (obs 3, act 1, hidden [256, 256], 10 critics, no training)
  ingest   bench/bench_ingest.py's cases b1 (1 row, 1 client), b32 and b1x4a (1 row,
           4 clients on 4 agents), durable posts in manual mode

plus what the cluster's own operations take (median of several, milliseconds):

  list     GET /v1/agents (scope=cluster: the node asks the two others) with A agents
           per node, against scope=node
  move     `move_agent` of an agent holding T transitions (its file's size, seconds)

Writes bench/results/cluster-latest.md (or --markdown) and prints it. Needs haproxy and
wrk (`make bench-cluster` installs both). On one machine the router, the nodes and the
load generator share the cores: the overhead reported is an upper bound of what a router
on its own host adds, since here it also takes CPU from the node.

    bench/bench_cluster.py [--seconds S] [--agents-per-node A] [--transitions T]
"""
import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import bench_ingest  # noqa: E402
from cluster_harness import HAPROXY, Cluster  # noqa: E402
from redqd_client import Client  # noqa: E402
from redqd_client.cluster import move_agent  # noqa: E402

BIG = {"hidden_sizes": [256, 256], "ensemble_size": 10, "training": "manual",
       "checkpoint_every": 0}


def wrk(url, seconds, tmp):
    script = os.path.join(tmp, "act.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.body = \'{"obs":[0.1,0.2,0.3],"mode":"eval"}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t2", "-c4", "-d%ds" % seconds, "--latency", "-s", script,
                          url], capture_output=True, text=True, check=True).stdout

    def ms(v):
        m = re.match(r"([\d.]+)(us|ms|s)$", v)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99_ms": ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            "errors": int(bad.group(1)) if bad else 0}


def timed(fn, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="per act and ingest case")
    ap.add_argument("--agents-per-node", type=int, default=100)
    ap.add_argument("--transitions", type=int, default=100000, help="of the moved agent")
    ap.add_argument("--markdown", default=os.path.join(HERE, "results", "cluster-latest.md"))
    args = ap.parse_args()
    if not HAPROXY or not shutil.which("wrk"):
        raise SystemExit("bench_cluster: needs haproxy and wrk (make bench-cluster installs them)")
    cl = Cluster(node_args=("--log-level", "warning"), token=None)
    tmp = tempfile.mkdtemp(prefix="redqd-bench-cluster-")
    res = {}
    try:
        cl.start()
        router = cl.client()
        router.put_agent("actor", 3, [-2.0], [2.0], BIG)
        node = {a["name"]: a["node"] for a in router.list_agents()["agents"]}["actor"]
        direct = "http://127.0.0.1:%d" % cl.ports[node]
        # ---- act
        for where, base in (("router", cl.url), ("direct", direct)):
            sys.stderr.write("bench_cluster: act %s\n" % where)
            res["act_" + where] = wrk(base + "/v1/agents/actor/act", args.seconds, tmp)
        # ---- ingest (bench_ingest's cases; the agents it makes land where the URL puts them)
        cases = {c[0]: c for c in bench_ingest.CASES}
        for label in ("b1", "b32", "b1x4a"):
            _, batch, clients, agents = cases[label]
            for where, base in (("router", cl.url), ("direct", direct)):
                sys.stderr.write("bench_cluster: ingest %s %s\n" % (label, where))
                r = bench_ingest.run_case(base, label, batch, clients, agents, args.seconds,
                                          where)
                if r["errors"] or r["stored"] < r["rows"]:
                    raise SystemExit("bench_cluster: ingest %s %s: %s" % (label, where, r))
                res["ingest_%s_%s" % (label, where)] = r
        # ---- the cluster-wide list
        small = {"hidden_sizes": [16], "ensemble_size": 2, "training": "manual",
                 "checkpoint_every": 0}
        for n, port in cl.ports.items():
            c = Client("http://127.0.0.1:%d" % port)
            for i in range(args.agents_per_node):
                c.put_agent("l-%s-%04d" % (n, i), 3, [-1.0], [1.0], small)
            c.close()
        listed = len(router.list_agents()["agents"])
        res["list"] = {"agents": listed,
                       "cluster_ms": timed(lambda: router.list_agents(), 21),
                       "node_ms": timed(lambda: router.list_agents(scope="node"), 21)}
        # ---- a move
        router.put_agent("mover", 3, [-2.0], [2.0], dict(BIG, buffer_size=1000000))
        rng = random.Random(0)
        for k in range(0, args.transitions, 4096):
            router.post_transitions("mover", bench_ingest.rows(min(4096, args.transitions - k),
                                                               rng))
        where = {a["name"]: a["node"] for a in router.list_agents()["agents"]}["mover"]
        to = next(n for n in cl.ports if n != where)
        t0 = time.perf_counter()
        summary = move_agent(router, "mover", to, cl.router)
        res["move"] = {"transitions": args.transitions, "bytes": summary["bytes"],
                       "seconds": time.perf_counter() - t0}
        router.close()
    finally:
        for d in cl.nodes.values():
            d.stop()
        cl.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def pct(a, b):
        return 100.0 * (a - b) / b
    ar, ad = res["act_router"], res["act_direct"]
    lines = [
        "# Through HAProxy against straight to the node (bench/bench_cluster.py)",
        "",
        "%s, %d cores, %s, HAProxy %s; %d s per case; three nodes, the router and the "
        "load generator on one machine." % (time.strftime("%Y-%m-%d"), os.cpu_count(),
                                             platform.machine(),
                                             subprocess.run([HAPROXY, "-v"], capture_output=True,
                                                            text=True).stdout.split()[2],
                                             args.seconds),
        "",
        "| load | through the router | direct | router's cost |",
        "| --- | ---: | ---: | ---: |",
        "| act, requests/s (wrk -t2 -c4) | %.0f | %.0f | %+.1f%% |" % (ar["rps"], ad["rps"],
                                                                     pct(ar["rps"], ad["rps"])),
        "| act p50 / p99, ms | %.2f / %.2f | %.2f / %.2f | %+.2f / %+.2f ms |" % (
            ar["p50_ms"], ar["p99_ms"], ad["p50_ms"], ad["p99_ms"],
            ar["p50_ms"] - ad["p50_ms"], ar["p99_ms"] - ad["p99_ms"]),
    ]
    for label, what in (("b1", "ingest, 1 row per post, 1 client"),
                        ("b32", "ingest, 32 rows per post, 1 client"),
                        ("b1x4a", "ingest, 1 row per post, 4 clients on 4 agents")):
        r, d = res["ingest_%s_router" % label], res["ingest_%s_direct" % label]
        lines.append("| %s, rows/s (p50 ms) | %.0f (%.2f) | %.0f (%.2f) | %+.1f%% |" % (
            what, r["rows_per_s"], r["p50_ms"], d["rows_per_s"], d["p50_ms"],
            pct(r["rows_per_s"], d["rows_per_s"])))
    li, mv = res["list"], res["move"]
    lines += [
        "",
        "| cluster operation | measured |",
        "| --- | ---: |",
        "| GET /v1/agents, %d agents on 3 nodes (scope=cluster), median | %.1f ms |" % (
            li["agents"], li["cluster_ms"]),
        "| the same node's own (scope=node), median | %.1f ms |" % li["node_ms"],
        "| move of an agent with %d transitions (hidden [256, 256], 10 critics): file, time "
        "| %.1f MB, %.2f s |" % (mv["transitions"], mv["bytes"] / 1e6, mv["seconds"]),
        "",
        "Errors: act %d (router) and %d (direct) non-2xx; every ingest case stored every row "
        "it acknowledged." % (ar["errors"], ad["errors"]),
    ]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.markdown), exist_ok=True)
    with open(args.markdown, "w") as f:
        f.write(text)
    with open(os.path.splitext(args.markdown)[0] + ".json", "w") as f:
        json.dump(res, f, indent=1, default=float)
    print(text)


if __name__ == "__main__":
    main()
