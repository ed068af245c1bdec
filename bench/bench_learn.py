#!/usr/bin/python3
"""bench/bench_learn.py: `make bench-learn`, REDQ against SAC on the MuJoCo tasks, both
trained by one redqd through the C client build/redq-mujoco (clients/mujoco/).

    REDQ  the daemon's defaults, which are Tianshou's REDQPolicy's: hidden [256, 256],
          ensemble_size 10, subset_size 2, update_per_step 20, actor_delay 20
    SAC   the same daemon with ensemble_size 2, subset_size 2, update_per_step 1 and
          actor_delay 1 (one actor update per environment step, as REDQ's 20/20 has and
          as the paper's SAC baseline had)

Both: training "sync" (every post answers after its updates: the exact REDQ loop),
alpha "auto" with the paper's target entropies (-1 Hopper, -3 HalfCheetah), batch 256,
learning rates 3e-4, 5000 uniform-random steps first, 1M replay. One run at a time, so
that the daemon's two trainer threads split each update's ensemble over both cores.

Every run (task, method, seed) is its own agent and its own files under --out:
runs/NAME.csv (the client's curve), runs/NAME.log (its stderr), runs/NAME.json (the
config, the command, the wall time of every segment, the trainers' time). The daemon's
data directory is --out/data, so an interrupted bench resumes: run it again and every
unfinished run continues its agent where it stopped (the client counts the agent's own
env_steps); finished runs are skipped; a larger --steps extends them. The report (a
Markdown page, a PNG plot and one CSV of every evaluation) is written at the end, or on
its own with --report-only.

    make bench-learn                                    # LEARN_STEPS, LEARN_SEEDS, ...
    /usr/bin/python3 bench/bench_learn.py --steps 100000 --seeds 0,1,2
    /usr/bin/python3 bench/bench_learn.py --quick       # the pipeline check, minutes
    /usr/bin/python3 bench/bench_learn.py --report-only

Python 3 standard library; matplotlib (Debian's python3-matplotlib) for the plot.
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

COMMON = {"training": "sync", "alpha": "auto", "checkpoint_every": 10000}
METHODS = {
    "redq": {},
    "sac": {"ensemble_size": 2, "subset_size": 2, "update_per_step": 1, "actor_delay": 1},
}
LABELS = {"redq": "REDQ (N=10, M=2, UTD 20)", "sac": "SAC (N=2, M=2, UTD 1)"}
TARGET_ENTROPY = {"hopper": -1, "halfcheetah": -3}  # the REDQ paper's (MBPO's) choice
THRESHOLDS = {"hopper": [1000, 2000, 3000], "halfcheetah": [1000, 3000, 5000]}
START_TIMESTEPS = 5000  # the daemon's default; the quick check lowers it

# The pipeline check: a few thousand steps of one seed, updates from step 1000 on.
QUICK = {"steps": 1250, "seeds": "0", "eval_every": 250, "eval_episodes": 3,
         "start_timesteps": 1000}

# The REDQ paper's own Hopper figures (Chen et al., ICLR 2021, arXiv:2101.05982: Hopper-v2,
# 125k environment steps, REDQ N=10 M=2 UTD 20 against SAC UTD 1; mean evaluation
# return over its seeds), keyed by environment steps: {steps: (redq, sac)}. Not
# transcribed: the machine that wrote this bench had no access to the paper's results
# (docs/BENCHMARKS.md). Filled in from the paper, they are printed beside ours at the
# same steps and marked on the plot.
PAPER_HOPPER = {}


def say(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- the daemon ---------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Daemon:
    """build/redqd on a free port over --out/data, trainers on both cores."""

    def __init__(self, binary, out):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDQD_")}
        env["OPENBLAS_NUM_THREADS"] = "1"  # STYLE.md: trainers call OpenBLAS single-threaded
        self.args = [binary, "--port", str(self.port), "--data-dir", os.path.join(out, "data"),
                     "--trainer-threads", "2", "--log-level", "notice"]
        log = open(os.path.join(out, "redqd.log"), "ab")
        # Its own session: a Ctrl-C must not stop it under a client still posting; stop()
        # sends SIGTERM once the client has finished.
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 600  # reloading big replay buffers takes a while
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("redqd exited with %s; see %s/redqd.log"
                                 % (self.proc.returncode, out))
            try:
                get_json(self.url + "/v1/health", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("redqd did not become ready; see %s/redqd.log" % out)
                time.sleep(0.2)

    def stop(self):
        """SIGTERM: every agent is checkpointed before it exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def trainer_seconds(url, name):
    """The trainers' own time for this agent: the sum of train_time over its stats rows."""
    total, since = 0.0, None
    while True:
        q = "?limit=100000" + ("&since=%d" % since if since is not None else "")
        rows = get_json("%s/v1/agents/%s/stats%s" % (url, name, q), timeout=120)["rows"]
        total += sum(r.get("train_time") or 0.0 for r in rows)
        if len(rows) < 100000:
            return total
        since = rows[-1]["row"]


# ---- runs ---------------------------------------------------------------------------------

def run_name(task, method, seed):
    return "%s-%s-s%d" % (task, method, seed)


def config_for(task, method, seed, quick):
    cfg = dict(COMMON, **METHODS[method])
    cfg["target_entropy"] = TARGET_ENTROPY[task]
    cfg["seed"] = seed
    if quick:
        cfg["start_timesteps"] = QUICK["start_timesteps"]
    return cfg


def read_curve(path):
    """The evaluation rows of one run's CSV (a resumed run's file holds one header)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("env_steps") not in (None, "env_steps")]
    out = []
    for r in rows:
        out.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
    return out


def read_meta(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run_one(daemon, args, task, method, seed):
    name = run_name(task, method, seed)
    base = os.path.join(args.out, "runs", name)
    curve = read_curve(base + ".csv")
    if curve and curve[-1]["env_steps"] >= args.steps:
        say("== %s: done (%d env steps)" % (name, curve[-1]["env_steps"]))
        return
    cfg = config_for(task, method, seed, args.quick)
    cfg_path = os.path.join(args.out, "configs", name + ".json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    cmd = [args.client, "--url", daemon.url, "--env", task, "--agent", name,
           "--steps", str(args.steps), "--seed", str(seed), "--config", cfg_path,
           "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
           "--log-every", str(args.log_every)]
    say("== %s: %s" % (name, " ".join(cmd)))
    meta = read_meta(base + ".json")
    seg = {"started": time.time(), "from_env_steps": curve[-1]["env_steps"] if curve else 0,
           "command": cmd}
    with open(base + ".csv", "a", encoding="utf-8") as out, \
            open(base + ".log", "a", encoding="utf-8") as log:
        header = out.tell() == 0
        # Its own session: a Ctrl-C reaches the bench, which passes it on below, so that
        # the client stops after its current post rather than in the middle of it.
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                             start_new_session=True)
        try:
            for line in p.stdout:
                if line.startswith("env_steps,"):
                    if not header:
                        continue
                    header = False
                out.write(line)
                out.flush()
                if not line.startswith("env_steps,"):
                    say("   %s: %s" % (name, line.strip()))
        except KeyboardInterrupt:
            p.send_signal(signal.SIGINT)
            raise
        finally:
            rc = p.wait()
            # The machine's load while it ran: the bench shares the cores it measures.
            seg.update(ended=time.time(), exit=rc, load_5min_at_end=os.getloadavg()[1])
            meta.setdefault("segments", []).append(seg)
            meta["config"] = cfg
            try:
                meta["trainer_s"] = trainer_seconds(daemon.url, name)
            except OSError as exc:
                say("   %s: trainer time not read: %s" % (name, exc))
            with open(base + ".json", "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=1)
    if rc != 0:
        raise SystemExit("%s: redq-mujoco exited with %d; see %s.log" % (name, rc, base))


def run_all(args):
    for d in ("runs", "configs", "data"):
        os.makedirs(os.path.join(args.out, d), exist_ok=True)
    daemon = Daemon(args.redqd, args.out)
    say("redqd %s (%s)" % (daemon.url, " ".join(daemon.args)))
    try:
        for seed in args.seeds:          # seed-major: every method and task gets a first
            for task in args.tasks:      # seed before any gets a second
                for method in args.methods:
                    run_one(daemon, args, task, method, seed)
    except KeyboardInterrupt:
        say("interrupted: run the same command again to continue")
        raise SystemExit(130)
    finally:
        daemon.stop()


# ---- the report ---------------------------------------------------------------------------

def cumulative_wall(curve, meta):
    """The client's wall_s counts from the start of its own segment (one client process);
    this makes it count from the start of the run: the rows past a segment's starting
    env_steps belong to it and get the durations of the segments before it added."""
    segs = [s for s in meta.get("segments", []) if "ended" in s]
    for row in curve:
        k = max([i for i, s in enumerate(segs) if s["from_env_steps"] < row["env_steps"]],
                default=0)
        row["wall_s"] += sum(s["ended"] - s["started"] for s in segs[:k])


def load(args):
    """Every run under --out/runs, whatever this invocation's --tasks and --seeds: a
    report after extending one task's seed 0 still shows all the others."""
    runs = []
    for task in TARGET_ENTROPY:
        for method in METHODS:
            for seed in range(1000):
                base = os.path.join(args.out, "runs", run_name(task, method, seed))
                curve, meta = read_curve(base + ".csv"), read_meta(base + ".json")
                if curve:
                    cumulative_wall(curve, meta)
                    runs.append({"task": task, "method": method, "seed": seed, "curve": curve,
                                 "meta": meta})
    return runs


def wall_seconds(run):
    return sum(s["ended"] - s["started"] for s in run["meta"].get("segments", [])
               if "ended" in s)


def mean_std(xs):
    if not xs:
        return None
    return statistics.fmean(xs), (statistics.pstdev(xs) if len(xs) > 1 else 0.0)


def fmt_ms(ms, n=None):
    if ms is None:
        return "n/a"
    s = "%.0f ± %.0f" % ms
    return s + (" (%d)" % n if n is not None else "")


def by_method(runs, task):
    out = {}
    for r in runs:
        if r["task"] == task:
            out.setdefault(r["method"], []).append(r)
    return out


def at_steps(run, steps):
    """The evaluation at exactly these env steps, or None."""
    for row in run["curve"]:
        if row["env_steps"] == steps:
            return row["eval_mean"]
    return None


def first_reaching(run, threshold):
    for row in run["curve"]:
        if row["eval_mean"] is not None and row["eval_mean"] >= threshold:
            return int(row["env_steps"])
    return None


def rates(run):
    """(updates/s over the wall time after warm-up, updates/s of the trainers alone,
    seconds per env step after warm-up, seconds per env step during warm-up)."""
    c = run["curve"]
    trained = [r for r in c if r["updates"] and r["updates"] > 0]
    wall = after = warm = None
    if len(trained) >= 2 and trained[-1]["wall_s"] > trained[0]["wall_s"]:
        a, b = trained[0], trained[-1]
        wall = (b["updates"] - a["updates"]) / (b["wall_s"] - a["wall_s"])
        after = (b["wall_s"] - a["wall_s"]) / (b["env_steps"] - a["env_steps"])
        if a["env_steps"] > 0:
            warm = a["wall_s"] / a["env_steps"]
    ts = run["meta"].get("trainer_s")
    train = c[-1]["updates"] / ts if ts else None
    return wall, train, after, warm


def plot(runs, tasks, args, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"redq": "tab:red", "sac": "tab:blue"}
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method, rs in sorted(by_method(runs, task).items()):
            for r in rs:
                ax.plot([p["env_steps"] for p in r["curve"]], [p["eval_mean"] for p in r["curve"]],
                        color=colors.get(method), alpha=0.25, linewidth=0.8)
            steps = sorted(set.intersection(*[{p["env_steps"] for p in r["curve"]} for r in rs]))
            means = [statistics.fmean(at_steps(r, s) for r in rs) for s in steps]
            ax.plot(steps, means, color=colors.get(method), linewidth=2,
                    label="%s, %d seed%s" % (LABELS[method], len(rs), "s" * (len(rs) > 1)))
        if task == "hopper" and PAPER_HOPPER:
            ks = sorted(PAPER_HOPPER)
            for i, (method, mark) in enumerate((("redq", "^"), ("sac", "v"))):
                ax.plot(ks, [PAPER_HOPPER[k][i] for k in ks], mark, color=colors[method],
                        label="paper %s (arXiv:2101.05982)" % method.upper())
        low, high = ax.get_ylim()  # threshold lines must not squash a short run's curve
        for thr in THRESHOLDS.get(task, []):
            ax.axhline(thr, color="grey", linestyle=":", linewidth=0.8)
        ax.set_ylim(low, high)
        ax.set_title(task + (" (pipeline check)" if args.quick else ""))
        ax.set_xlabel("environment steps")
        ax.set_ylabel("eval return (mean of %d episodes)" % args.eval_episodes)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()
    return "%d x %s, %s, load average %.1f %.1f %.1f at report time" % (
        os.cpu_count(), model, platform.platform(), *load)


def revision():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def estimate(runs, tasks, steps, seeds):
    """Hours for the plan (steps, seeds) at the seconds per env step measured here."""
    total, lines = 0.0, []
    for task in tasks:
        for method, rs in sorted(by_method(runs, task).items()):
            after = [rates(r)[2] for r in rs if rates(r)[2]]
            warm = [rates(r)[3] for r in rs if rates(r)[3]]
            if not after:
                continue
            spe, spw = statistics.fmean(after), statistics.fmean(warm) if warm else 0.0
            secs = ((steps - START_TIMESTEPS) * spe + START_TIMESTEPS * spw) * seeds
            total += secs
            lines.append("| %s | %s | %.3f s | %.1f h |" % (task, LABELS[method], spe,
                                                              secs / 3600))
    return total / 3600, lines


def report(args):
    runs = load(args)
    if not runs:
        raise SystemExit("no runs under %s/runs" % args.out)
    tasks = [t for t in TARGET_ENTROPY if any(r["task"] == t for r in runs)]
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    stem = args.report
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    cols = ["task", "method", "seed"] + list(runs[0]["curve"][0].keys())
    with open(stem + ".csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in runs:
            for row in r["curve"]:
                w.writerow([r["task"], r["method"], r["seed"]] +
                           ["" if row[k] is None else ("%g" % row[k]) for k in cols[3:]])
    plot(runs, tasks, args, stem + ".png")

    md = []
    add = md.append
    title = "REDQ against SAC on MuJoCo, through redqd and redq-mujoco"
    add("# " + title + (": PIPELINE CHECK" if args.quick else ""))
    add("")
    if args.quick:
        add("**A pipeline check, not the claim**: %d environment steps, %d seed, updates "
            "from step %d on (the full run waits %d steps as the paper does). It shows that "
            "the runs, the resumable per-run files, the plot and this report work, and it "
            "measures the cost of an environment step for the estimate below. The returns "
            "mean nothing yet." % (args.steps, len(args.seeds), QUICK["start_timesteps"],
                                   START_TIMESTEPS))
        add("")
    add("Written by `bench/bench_learn.py` on %s, revision %s; %s." % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        revision(), machine()))
    add("")
    add("This report: `%s`" % " ".join(["/usr/bin/python3", "bench/bench_learn.py"] + args.argv))
    add("")
    add("Files: `%s.png` (the plot), `%s.csv` (every evaluation of every run), the per-run "
        "files under `%s/runs/`." % tuple(os.path.relpath(p, ROOT) for p in (stem, stem, args.out)))
    add("")
    add("Settings (beyond the daemon's defaults, which are REDQPolicy's: hidden [256, 256], "
        "N 10, M 2, UTD 20, actor_delay 20, batch 256, lr 3e-4, tau 0.005, gamma 0.99, "
        "start_timesteps %d, buffer 1M):" % START_TIMESTEPS)
    add("")
    for method in methods:
        add("- %s: `%s`" % (LABELS[method], json.dumps(config_for("hopper", method, 0,
                                                                    args.quick))))
    add("  (target_entropy -1 for Hopper, -3 for HalfCheetah; seed = the run's seed)")
    add("")

    add("## Return against environment steps")
    add("")
    add("Mean ± std over seeds (number of seeds) of the evaluation return (mean of %d eval "
        "episodes, eval policy: the mean action)." % args.eval_episodes)
    for task in tasks:
        groups = by_method(runs, task)
        if not groups:
            continue
        steps = sorted({p["env_steps"] for rs in groups.values() for r in rs for p in r["curve"]})
        if len(steps) > 14:  # about a dozen rows, the last always
            stride = math.ceil(len(steps) / 12)
            steps = steps[::stride] + ([steps[-1]] if steps[-1] not in steps[::stride] else [])
        paper = task == "hopper"
        add("")
        add("### " + task)
        add("")
        hdr = "| env steps | " + " | ".join(LABELS[m] for m in sorted(groups))
        hdr += " | paper REDQ | paper SAC |" if paper else " |"
        add(hdr)
        add("|---:" * (1 + len(groups) + 2 * paper) + "|")
        for s in steps:
            cells = []
            for m in sorted(groups):
                vals = [v for v in (at_steps(r, s) for r in groups[m]) if v is not None]
                cells.append(fmt_ms(mean_std(vals), len(vals)))
            if paper:
                p = PAPER_HOPPER.get(int(s))
                cells += ["%.0f" % p[0] if p else "n/a", "%.0f" % p[1] if p else "n/a"]
            add("| %d | %s |" % (s, " | ".join(cells)))
    add("")
    if not PAPER_HOPPER:
        add("The paper columns are empty: see docs/BENCHMARKS.md on the REDQ paper's Hopper "
            "figures.")
        add("")

    add("## Environment steps to reach a return")
    add("")
    add("The first evaluation at or above the threshold, per seed (– : not reached within "
        "the run).")
    add("")
    add("| task | threshold | method | per seed | median of those that reached it |")
    add("|---|---:|---|---|---:|")
    for task in tasks:
        for thr in THRESHOLDS[task]:
            for m, rs in sorted(by_method(runs, task).items()):
                hits = [first_reaching(r, thr) for r in rs]
                got = [h for h in hits if h is not None]
                add("| %s | %d | %s | %s | %s |" % (
                    task, thr, LABELS[m], ", ".join("–" if h is None else str(h) for h in hits),
                    "%d (%d of %d)" % (statistics.median(got), len(got), len(hits)) if got
                    else "not reached"))
    add("")

    add("## Time and updates")
    add("")
    add("Wall time of the run (every segment, evaluations included; the `wall_s` of the "
        "combined CSV counts from the run's start); updates/s sustained = "
        "updates per second of wall time from the first evaluation after updates began to "
        "the last (sync mode: the trainers wait while the client steps MuJoCo and "
        "evaluates); trainers alone = updates per second of the trainers' own time "
        "(`train_time` of /stats), the daemon's compute rate with the ensemble split over "
        "both cores.")
    add("")
    add("| run | env steps | updates | wall time | updates/s sustained | updates/s, trainers "
        "alone | s per env step after warm-up | load (5 min) at the end |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        wall, train, after, _ = rates(r)
        last = r["curve"][-1]
        loads = [s.get("load_5min_at_end") for s in r["meta"].get("segments", [])]
        add("| %s | %d | %d | %.0f s | %s | %s | %s | %s |" % (
            run_name(r["task"], r["method"], r["seed"]), last["env_steps"], last["updates"],
            wall_seconds(r), "%.1f" % wall if wall else "n/a", "%.1f" % train if train else "n/a",
            "%.4f" % after if after else "n/a",
            " / ".join("%.1f" % x for x in loads if x is not None) or "n/a"))
    add("")

    add("## Estimated duration of the full run")
    add("")
    for steps, seeds in ((args.plan_steps, args.plan_seeds),):
        hours, lines = estimate(runs, tasks, steps, seeds)
        add("`make bench-learn LEARN_STEPS=%d LEARN_SEEDS=%s` (%d seeds x %d tasks x %d "
            "methods, %d environment steps each), at the seconds per environment step "
            "measured here (on a machine as loaded as in the table above): about **%.1f h**."
            % (steps, ",".join(str(i) for i in range(seeds)), seeds, len(tasks),
               len(methods), steps, hours))
        add("")
        add("| task | method | s per env step | hours for all seeds |")
        add("|---|---|---:|---:|")
        md.extend(lines)
    add("")
    add("Evaluations add little (each is %d episodes of at most 1000 steps with batched "
        "eval acts). A machine shared with other work is slower." % args.eval_episodes)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    say("report: %s.md, %s.png, %s.csv" % (stem, stem, stem))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, help="environment steps per run (default 50000)")
    ap.add_argument("--seeds", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--tasks", default="hopper,halfcheetah")
    ap.add_argument("--methods", default="redq,sac")
    ap.add_argument("--eval-every", type=int, help="default 2500")
    ap.add_argument("--eval-episodes", type=int, help="default 5")
    ap.add_argument("--log-every", type=int, default=5000)
    ap.add_argument("--quick", action="store_true",
                    help="the pipeline check: %s" % json.dumps(QUICK))
    ap.add_argument("--out", help="run directory (default build/bench-learn, or "
                    "build/bench-learn-quick with --quick)")
    ap.add_argument("--report", help="report path without extension (default "
                    "bench/results/learn-latest, or learn-quick with --quick)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--plan-steps", type=int,
                    help="steps per run of the run the duration estimate is for (default: "
                    "--steps, or 50000 with --quick)")
    ap.add_argument("--plan-seeds", type=int, help="its seeds (default: as many as --seeds, "
                    "or 3 with --quick)")
    ap.add_argument("--redqd", default=os.path.join(ROOT, "build", "redqd"))
    ap.add_argument("--client", default=os.path.join(ROOT, "build", "redq-mujoco"))
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    q = args.quick
    args.steps = args.steps or (QUICK["steps"] if q else 50000)
    args.seeds = [int(s) for s in (args.seeds or (QUICK["seeds"] if q else "0,1,2")).split(",")]
    args.plan_steps = args.plan_steps or (50000 if q else args.steps)
    args.plan_seeds = args.plan_seeds or (3 if q else len(args.seeds))
    args.tasks = args.tasks.split(",")
    args.methods = args.methods.split(",")
    args.eval_every = args.eval_every or (QUICK["eval_every"] if q else 2500)
    args.eval_episodes = args.eval_episodes or (QUICK["eval_episodes"] if q else 5)
    args.out = os.path.abspath(args.out or os.path.join(
        ROOT, "build", "bench-learn-quick" if q else "bench-learn"))
    args.report = os.path.abspath(args.report or os.path.join(
        ROOT, "bench", "results", "learn-quick" if q else "learn-latest"))
    for t in args.tasks:
        if t not in TARGET_ENTROPY:
            ap.error("unknown task %s" % t)
    for m in args.methods:
        if m not in METHODS:
            ap.error("unknown method %s" % m)
    if not args.report_only:
        run_all(args)
    report(args)


if __name__ == "__main__":
    main()
