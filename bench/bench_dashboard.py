#!/usr/bin/python3
"""bench/bench_dashboard.py: the dashboard's load and redraw times with 3 agents x 10^5
stats rows (issue 11), in headless Chromium driven over the DevTools protocol
(tests/integration/cdp.py), against a real daemon on this machine.

    make bench-dashboard        (or: bench/bench_dashboard.py --redqd build/redqd)

Makes 3 agents (tiny networks, manual training, actor_delay 1, so one stats row per
update): 50 rounds of 200 transitions over two env_ids (an episode ends every 50 steps of
each), 2000 updates and an evaluation of 5 returns: 10^5 stats rows, 50 evaluations and
200 explore episodes each. Then, REPEATS times in a fresh tab of one browser:

- load: from navigation to every curve of the three agents loaded and drawn (the page's
  data-loaded-ms: performance.now() when it set data-loaded);
- redraw: the x axis toggled to env steps, wall time and updates and back (the first
  time each smooths all 3 x 4 x 10^5 points again; later times hit the page's cache),
  the smoothing changed, and a drag-zoom of the critic loss (decimation and dygraphs
  only); each from the event to two animation frames later (so painted);
- live: 1000 more updates of each agent, picked up by the page's poll (since=);
- the daemon alone: the three agents' stats as CSV fetched in parallel (no browser), the
  floor under the load time.

Medians and ranges go to stdout and to --out (bench/results/dashboard-latest.md).
Timings are measurements, never pass/fail.
"""
import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import cdp  # noqa: E402
from test_dashboard import Daemon  # noqa: E402

ROUNDS, STEPS, UPDATES = 50, 200, 2000


def make_agent(d, name, seed):
    d.call("POST", "/v1/agents", {
        "name": name, "obs_dim": 3, "action_low": [-2], "action_high": [2],
        "config": {"hidden_sizes": [8], "ensemble_size": 2, "batch_size": 4,
                   "start_timesteps": 0, "actor_delay": 1, "training": "manual",
                   "alpha": "auto", "seed": seed}})
    rnd = random.Random(seed)

    def obs():
        return [rnd.uniform(-1, 1) for _ in range(3)]

    for k in range(ROUNDS):
        rows = [{"obs": obs(), "action": [rnd.uniform(-2, 2)],
                 "reward": rnd.uniform(-1, 0) + 0.02 * seed * k, "next_obs": obs(),
                 "terminated": (i // 2) % 50 == 49, "truncated": False,
                 "env_id": "env%d" % (i % 2)} for i in range(STEPS)]
        d.call("POST", "/v1/agents/%s/transitions" % name, {"transitions": rows})
        d.call("POST", "/v1/agents/%s/train" % name, {"updates": UPDATES})
        d.call("POST", "/v1/agents/%s/evaluations" % name,
               {"returns": [rnd.uniform(-60, -20) + seed * k for _ in range(5)]})


def server_floor(d, names):
    """seconds to fetch every agent's stats as CSV, the agents in parallel"""
    def get(name):
        since = 0
        while True:
            with urllib.request.urlopen("%s/v1/agents/%s/stats?format=csv&limit=50000&since=%d"
                                        % (d.base, name, since), timeout=120) as r:
                lines = r.read().decode().strip().split("\n")[1:]
            if len(lines) < 50000:
                return
            since = int(lines[-1].split(",", 1)[0])
    t = time.perf_counter()
    ths = [threading.Thread(target=get, args=(n,)) for n in names]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return time.perf_counter() - t


REDRAW = """(function (id, prop, value, ev) {
    var e = document.getElementById(id), t0 = performance.now();
    e[prop] = value;
    e.dispatchEvent(new Event(ev));
    return new Promise(function (r) {
        requestAnimationFrame(function () { requestAnimationFrame(function () { r(performance.now() - t0); }); });
    });
})(%s, %s, %s, %s)"""


def redraw(b, ident, prop, value, ev="change"):
    return b.eval(REDRAW % (json.dumps(ident), json.dumps(prop), json.dumps(value), json.dumps(ev)))


def summary(xs):
    return "%.0f ms (%.0f-%.0f, n=%d)" % (statistics.median(xs), min(xs), max(xs), len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--redqd", default=os.path.join(REPO, "build", "redqd"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dashboard-latest.md"))
    a = ap.parse_args()
    os.environ["REDQD_BIN"] = a.redqd
    import test_dashboard
    test_dashboard.BIN = a.redqd
    tmp = tempfile.mkdtemp(prefix="bench-dash-")
    d = Daemon(tmp)
    names = ["run-1", "run-2", "run-3"]
    res = {"load": [], "load_cold": None, "floor": [], "x_cold": [], "x_warm": [],
           "smoothing": [], "zoom": [], "live": []}
    load_before = os.getloadavg()
    t_make = time.time()
    try:
        for i, n in enumerate(names):
            make_agent(d, n, i + 1)
        t_make = time.time() - t_make
        rows = [len(d.call("GET", "/v1/agents/%s/stats?since=0&limit=100000&format=json" % n)["rows"])
                for n in names]
        for _ in range(a.repeats):
            res["floor"].append(1000 * server_floor(d, names))
        with cdp.Browser((1280, 900), tmp=tmp) as b:
            for rep in range(a.repeats):
                b.navigate("about:blank")
                b.navigate(d.base + "/#agents=" + ",".join(names))
                b.wait("document.documentElement.getAttribute('data-loaded') === '1'", 300, "the load")
                ms = float(b.eval("document.documentElement.getAttribute('data-loaded-ms')"))
                if rep == 0:
                    res["load_cold"] = ms       # the library not yet in the browser's cache
                res["load"].append(ms)
                pts = b.eval("document.getElementById('chart-critic_loss').dataset.points")
                drawn = b.eval("document.getElementById('chart-critic_loss').dataset.drawn")
                for x in ("env_steps", "time", "updates", "auto"):
                    res["x_cold"].append(redraw(b, "x-axis", "value", x))
                for x in ("env_steps", "time", "updates", "auto"):
                    res["x_warm"].append(redraw(b, "x-axis", "value", x))
                for v in ("0.8", "0.6"):
                    res["smoothing"].append(redraw(b, "smoothing", "value", v, "input"))
                r = b.rect("#plot-critic_loss")
                t0 = b.eval("performance.now()")
                b.drag(r[0] + r[2] * 0.3, r[1] + r[3] / 2, r[0] + r[2] * 0.6, r[1] + r[3] / 2)
                b.wait("document.getElementById('chart-critic_loss').dataset.window !== 'full'", 10)
                res["zoom"].append(float(b.eval("document.documentElement.getAttribute('data-render-ms')")))
                b.eval("document.getElementById('reset-zoom').click()")
                # a poll that brings 1000 new rows of each agent (only those are smoothed)
                before = int(b.eval("document.getElementById('chart-critic_loss').dataset.points"))
                for n in names:
                    d.call("POST", "/v1/agents/%s/train" % n, {"updates": 1000})
                b.wait("+document.getElementById('chart-critic_loss').dataset.points >= %d"
                       % (before + 3000), 30, "the new rows")
                res["live"].append(float(b.eval("document.documentElement.getAttribute('data-render-ms')")))
                if b.errors:
                    raise AssertionError("the page threw: %s" % b.errors)
            version = b.eval("navigator.userAgent")
    finally:
        d.stop()
    load_after = os.getloadavg()
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    lines = [
        "# Dashboard: load and redraw with 3 agents x 10^5 stats rows",
        "",
        "%s UTC, revision %s%s, `bench/bench_dashboard.py --repeats %d`; %s; %s."
        % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), rev, " (uncommitted changes)" if dirty else "",
           a.repeats, platform.processor() or platform.machine(), version.split(" ")[-2]),
        "Load average %.1f before, %.1f after (2 cores shared with other work: figures are"
        " upper bounds)." % (load_before[0], load_after[0]),
        "",
        "Data: %s stats rows at first, %d evaluations and %d explore episodes per agent; made in %.0f s."
        % ("/".join(str(r) for r in rows), ROUNDS, ROUNDS * STEPS // 50, t_make),
        "At the last repeat (each adds 1000 rows per agent) the critic loss chart held %s points"
        " and drew %s (M4 decimation per pixel column)." % (pts, drawn),
        "",
        "| what | median (min-max, n) |",
        "|---|---|",
        "| page load, first (library not cached) | %.0f ms |" % res["load_cold"],
        "| page load: navigation to all curves drawn | %s |" % summary(res["load"]),
        "| the daemon alone: 3 x 10^5 stats rows as CSV, agents in parallel | %s |" % summary(res["floor"]),
        "| redraw, x axis toggled, first time (smooth 4 x 3 x 10^5 points again) | %s |" % summary(res["x_cold"]),
        "| redraw, x axis toggled again (cached series) | %s |" % summary(res["x_warm"]),
        "| redraw, smoothing changed | %s |" % summary(res["smoothing"]),
        "| redraw, drag-zoom on the updates axis (4 charts re-decimated; render only) | %s |" % summary(res["zoom"]),
        "| redraw after a poll brought 1000 new rows of each agent (render only) | %s |" % summary(res["live"]),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
