#!/usr/bin/python3
"""bench/report.py: the markdown report of one `make bench` run (bench/run_bench.sh).

Reads the three outputs of one run on one machine:
  sgemm.txt    bench/sgemm_peak -j   (GEMM rates: the bounds)
  torch.jsonl  bench/torch_redq_ref.py --variant lean --threads 1 2
  redqd.jsonl  build/bench_update (modes single, split2, agents2)
and prints, per configuration, redqd's critic updates/s against PyTorch and against
the two sgemm bounds of bench/redq_flops.py for the lean model at 1 thread,
the split2 speed-up, the agents2 per-agent rate, act latency, the machine, the commands,
and the bars of the performance issue with met / not met.

The bounds are redq_flops.py's, computed the way its own report does:
  peak bound   sgemm 1024^3 GFLOP/s (best) / GEMM FLOPs of one amortised update
  shape bound  every GEMM of the update at its own measured time (best), one call per
               ensemble member and layer, as both PyTorch and redqd issue them
Medians of both benches are taken over "quiet" samples (other processes under 5% of the
CPUs, redq_flops.quiet), bests over all samples, so the two are treated alike.

Usage: report.py --shared DIR --sgemm F --torch F --redqd F [--commands F] [--out F] [--quick]
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys

BAR_CONFIGS = ("pendulum", "halfcheetah", "humanoid")  # hidden 256x256, N = 10
BAR_VS_TORCH = 1.5      # redqd / PyTorch lean, 1 thread, for BAR_CONFIGS
BAR_OF_BOUND = 0.70     # redqd / sgemm bound, 1 thread, for BAR_CONFIGS
BAR_SMALL = 4.0         # redqd / PyTorch lean, 1 thread, config "small"
BAR_SPLIT2 = 1.6        # split2 / single, every config
BAR_AGENTS2 = 0.90      # every agent of agents2 / single, every config

SINGLE_SETTING = "1 thread"      # redq_flops' name of the 1-thread sgemm setting
CALLERS_SETTING = "2 callers x 1 thread"


def load_flops_module(shared):
    sys.path.insert(0, os.path.join(shared, "bench"))
    import redq_flops  # noqa: E402  (stdlib only; imports torch_redq_ref without torch)

    return redq_flops


# --------------------------------------------------------------------------- inputs


def load_redqd(rf, path):
    """{(config, mode): {"ups_median", "ups_best", "agents": [per-agent dicts], "line"}}.

    Several lines for one (config, mode) (repeated runs appended to one file) are pooled,
    as redq_flops.load_torch pools PyTorch's."""
    acc = {}
    for d in rf.json_lines([path]):
        if d.get("bench") == "redqd_update":
            acc.setdefault((d["config"], d["mode"]), []).append(d)
    out = {}
    for key, lines in acc.items():
        agents = {}
        for d in lines:
            for i, a in enumerate(d.get("per_agent") or [d]):
                agents.setdefault(i, []).append(a)
        per_agent = [agent_summary(rf, runs) for _, runs in sorted(agents.items())]
        act = [d["act_us"] for d in lines if d.get("act_us") is not None]
        act_mean = [d["act_us_mean"] for d in lines if d.get("act_us_mean") is not None]
        out[key] = dict(
            ups_median=statistics.mean(a["ups_median"] for a in per_agent),
            ups_best=statistics.mean(a["ups_best"] for a in per_agent),
            min_agent=min(a["ups_median"] for a in per_agent),
            agents=per_agent,
            act_us=statistics.median(act) if act else None,
            act_us_mean=statistics.median(act_mean) if act_mean else None,
            finite=all(a["finite"] for a in per_agent),
            line=lines[-1],
        )
    return out


def agent_summary(rf, runs):
    upd = [x for r in runs for x in r["runs"]["update_ms"]]
    load = [x for r in runs for x in r["runs"].get("other_cpu_load", [])]
    calm = rf.quiet(upd, load)
    return dict(
        ups_median=1e3 / statistics.median(calm),
        ups_best=1e3 / min(upd),
        samples=len(upd),
        quiet_samples=sum(0 <= ld < rf.QUIET for ld in load) if len(load) == len(upd) else None,
        finite=all(r.get("losses_finite", False) for r in runs),
        critic_loss=runs[-1].get("final_critic_loss"),
        alpha=runs[-1].get("final_alpha"),
    )


def torch_rate(tr, name, threads):
    """PyTorch lean at `threads` torch threads (OpenBLAS threads equal), or None."""
    for (cfg, variant, _), r in sorted(tr.items()):
        if cfg == name and variant == "lean" and r["threads"] == threads and r["blas_threads"] in (threads, None):
            return r
    return None


def bounds(rf, sg, name, setting):
    """(peak bound, shape bound) in updates/s from best times, None where not measured."""
    shapes = sg.get(setting)
    if not shapes:
        return None, None
    _, _, flop = rf.update_flops(name, "lean")
    peak = shapes[rf.PEAK]["gf_best"] * 1e9 / flop if rf.PEAK in shapes else None
    try:
        shape = 1.0 / rf.gemm_update_time(name, "lean", shapes, "us_best")
    except KeyError:  # a peak-only sgemm run
        shape = None
    return peak, shape


# --------------------------------------------------------------------------- formatting


def fmt(x, spec=".1f", suffix=""):
    return "n/a" if x is None else f"{x:{spec}}{suffix}"


def ratio(a, b):
    return a / b if a is not None and b else None


def pct(x):
    return fmt(None if x is None else 100 * x, ".0f", "%")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- sections


def machine_section(rd, sg_path, tr):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    blas = next((v["line"].get("blas") for v in rd.values()), None)
    core = next((v["line"].get("blas_core") for v in rd.values()), None)
    sg_head = ""
    try:
        with open(sg_path) as f:
            sg_head = f.readline().lstrip("# ").strip()
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             check=False).stdout.strip()
    except OSError:
        rev = ""
    torch_version = next((r["torch"] for r in tr.values()), "n/a")
    rows = [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("CPU", cpu),
        ("nproc", f"{os.cpu_count()} (usable here: {len(os.sched_getaffinity(0))})"),
        ("kernel", platform.release()),
        ("OpenBLAS (bench_update)", f"{blas} (core {core}), 1 thread" if blas else "n/a"),
        ("OpenBLAS (sgemm_peak)", sg_head or "n/a"),
        ("PyTorch", torch_version),
        ("redqd revision", rev or "n/a"),
    ]
    return "## Machine\n\n" + table(["", ""], rows)


def headline_section(rf, rd, tr, sg, names):
    rows = []
    for name in names:
        single, split, agents = rd.get((name, "single")), rd.get((name, "split2")), rd.get((name, "agents2"))
        t1, t2 = torch_rate(tr, name, 1), torch_rate(tr, name, 2)
        peak, shape = bounds(rf, sg, name, SINGLE_SETTING)
        r1 = single["ups_median"] if single else None
        rows.append([
            name,
            fmt(r1),
            fmt(t1 and t1["ups_median"]),
            fmt(t2 and t2["ups_median"]),
            fmt(ratio(r1, t1 and t1["ups_median"]), ".2f", "x"),
            pct(ratio(r1, shape)),
            pct(ratio(r1, peak)),
            fmt(ratio(split and split["ups_median"], r1), ".2f", "x"),
            f"{pct(ratio(agents and agents['min_agent'], r1))} / {pct(ratio(agents and agents['ups_median'], r1))}",
            f"{fmt(single and single['act_us'], '.1f')} ({fmt(single and single['act_us_mean'], '.1f')})",
            fmt(t1 and t1["act_us_median"], ".1f"),
        ])
    hdr = ["config", "redqd updates/s (1 thread)", "PyTorch lean, 1 thread", "PyTorch lean, 2 threads",
           "redqd / PyTorch (1 thread)", "% of shape bound (1 thread)", "% of peak bound (1 thread)",
           "split2 speed-up", "agents2 per agent, % of single (slowest / mean)",
           "act us redqd, median (mean)", "act us PyTorch"]
    note = ("Updates/s are medians over quiet samples. redqd's act latency is the median (and mean) of "
            "single timed calls of redq_agent_act (eval, one observation); PyTorch's is the mean per call "
            "of a timed loop (median over repeats), mostly interpreter overhead.")
    return "## Results\n\n" + note + "\n\n" + table(hdr, rows)


def bounds_section(rf, rd, tr, sg, names):
    rows = []
    for name in names:
        _, _, flop = rf.update_flops(name, "lean")
        peak, shape = bounds(rf, sg, name, SINGLE_SETTING)
        _, shape2 = bounds(rf, sg, name, CALLERS_SETTING)
        single, split = rd.get((name, "single")), rd.get((name, "split2"))
        t1 = torch_rate(tr, name, 1)
        ach = single and flop * single["ups_median"] / 1e9
        rows.append([name, f"{flop / 1e9:.4f}", fmt(peak), fmt(shape), fmt(ach),
                     pct(ratio(t1 and t1["ups_median"], shape)), fmt(shape2),
                     pct(ratio(split and split["ups_median"], shape2))])
    hdr = ["config", "GFLOP per update (lean)", "peak bound, 1 thread (updates/s)",
           "shape bound, 1 thread (updates/s)", "redqd single achieved GFLOP/s",
           "PyTorch lean 1 thread, % of shape bound",
           f"shape bound, {CALLERS_SETTING} (updates/s)", "split2 % of that bound"]
    note = ("From bench/redq_flops.py with the best (fastest) sgemm samples. The "
            f"'{CALLERS_SETTING}' bound is two single-threaded GEMM streams at once: the ceiling for "
            "split2 (and for the two agents of agents2 together).")
    return "## Bounds (lean model)\n\n" + note + "\n\n" + table(hdr, rows)


def runs_section(rd, names):
    rows = []
    order = {"single": 0, "split2": 1, "agents2": 2}

    def key(kv):
        (name, mode), _ = kv
        return (names.index(name) if name in names else len(names), name, order.get(mode, 9), mode)

    for (name, mode), r in sorted(rd.items(), key=key):
        line = r["line"]
        for i, a in enumerate(r["agents"]):
            label = mode if len(r["agents"]) == 1 else f"{mode} agent {i}"
            rows.append([name, label, line.get("threads"), fmt(a["ups_median"]), fmt(a["ups_best"]),
                         fmt(1e3 / a["ups_median"], ".3f"), f"{fmt(a['quiet_samples'], 'd')}/{a['samples']}",
                         fmt(a["critic_loss"], ".4g"), fmt(a["alpha"], ".4f"), "yes" if a["finite"] else "NO"])
    hdr = ["config", "mode", "threads", "updates/s median", "updates/s best", "ms/update", "quiet/all samples",
           "final critic loss", "final alpha", "losses finite"]
    return "## Every redqd run\n\n" + table(hdr, rows)


def torch_section(tr, names):
    rows = []
    for (name, variant, setting), r in sorted(tr.items(), key=lambda kv: (names.index(kv[0][0]) if kv[0][0] in names else 99, kv[0])):
        rows.append([name, variant, setting, fmt(r["ups_median"]), fmt(r["ups_best"]),
                     fmt(r["critic_ms_median"], ".2f"), fmt(r["actor_ms_median"], ".2f"),
                     fmt(r["act_us_median"], ".1f"), f"{fmt(r['quiet_samples'], 'd')}/{r['samples']}"])
    hdr = ["config", "variant", "threads", "updates/s median", "updates/s best", "critic step ms",
           "actor step ms", "act us", "quiet/all samples"]
    return "## PyTorch reference runs\n\n" + table(hdr, rows)


def bar(what, value, ok):
    return [what, value, "n/a" if ok is None else ("met" if ok else "**not met**")]


def at_least(x, limit):
    return None if x is None else x >= limit


def bars_section(rf, rd, tr, sg, names):
    rows = []
    for name in BAR_CONFIGS:
        single = rd.get((name, "single"))
        t1 = torch_rate(tr, name, 1)
        r1 = single and single["ups_median"]
        x = ratio(r1, t1 and t1["ups_median"])
        rows.append(bar(f"{name}: redqd >= {BAR_VS_TORCH}x PyTorch lean, 1 thread", fmt(x, ".2f", "x"),
                        at_least(x, BAR_VS_TORCH)))
        peak, shape = bounds(rf, sg, name, SINGLE_SETTING)
        s, p = ratio(r1, shape), ratio(r1, peak)
        rows.append(bar(f"{name}: redqd >= {100 * BAR_OF_BOUND:.0f}% of the sgemm bound, 1 thread "
                        "(shape bound; peak bound for reference)",
                        f"{pct(s)} of shape bound ({pct(p)} of peak bound: "
                        f"{'met' if at_least(p, BAR_OF_BOUND) else 'not met'})", at_least(s, BAR_OF_BOUND)))
    single, t1 = rd.get(("small", "single")), torch_rate(tr, "small", 1)
    x = ratio(single and single["ups_median"], t1 and t1["ups_median"])
    rows.append(bar(f"small: redqd >= {BAR_SMALL:g}x PyTorch lean, 1 thread", fmt(x, ".2f", "x"),
                    at_least(x, BAR_SMALL)))
    for name in names:
        single, split = rd.get((name, "single")), rd.get((name, "split2"))
        x = ratio(split and split["ups_median"], single and single["ups_median"])
        rows.append(bar(f"{name}: split2 >= {BAR_SPLIT2}x single", fmt(x, ".2f", "x"), at_least(x, BAR_SPLIT2)))
    for name in names:
        single, agents = rd.get((name, "single")), rd.get((name, "agents2"))
        x = ratio(agents and agents["min_agent"], single and single["ups_median"])
        each = "" if not agents else " (" + ", ".join(pct(ratio(a["ups_median"], single and single["ups_median"]))
                                                      for a in agents["agents"]) + ")"
        rows.append(bar(f"{name}: agents2, each agent >= {100 * BAR_AGENTS2:.0f}% of single",
                        f"slowest {pct(x)}{each}", at_least(x, BAR_AGENTS2)))
    met = sum(r[2] == "met" for r in rows)
    known = sum(r[2] != "n/a" for r in rows)
    note = (f"{met} of {known} measured bars met. The sgemm bar is judged against the shape bound, "
            "which prices each GEMM at the rate its own shape reaches (one call per member and layer, "
            "as redqd issues them); the peak bound assumes every GEMM ran at the 1024^3 rate.")
    return "## Bars\n\n" + table(["bar", "measured", "status"], rows) + "\n\n" + note


def noise_note(rd, tr):
    quiet = total = 0
    for r in rd.values():
        for a in r["agents"]:
            if a["quiet_samples"] is not None:
                quiet, total = quiet + a["quiet_samples"], total + a["samples"]
    for r in tr.values():
        if r["quiet_samples"] is not None:
            quiet, total = quiet + r["quiet_samples"], total + r["samples"]
    if total and quiet < total:
        return (f"> Noise: other processes used 5% or more of the CPUs during {total - quiet} of {total} "
                "timed samples; medians skip those where a config has quiet ones.\n")
    return ""


def commands_section(path, args):
    cmds = []
    if path and os.path.exists(path):
        with open(path) as f:
            cmds = [ln.rstrip("\n") for ln in f if ln.strip()]
    cmds.append(" ".join(["bench/report.py"] + args))
    raw = "Raw outputs: build/bench/sgemm.txt, build/bench/torch.jsonl, build/bench/redqd.jsonl."
    return "## Commands\n\n```\n" + "\n".join(cmds) + "\n```\n\n" + raw


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", required=True, help="the directory whose bench/ holds redq_flops.py (the repository)")
    ap.add_argument("--sgemm", required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--redqd", required=True)
    ap.add_argument("--commands", help="file of the commands run (written by run_bench.sh)")
    ap.add_argument("--out", help="also write the report here")
    ap.add_argument("--quick", action="store_true", help="mark the report as a smoke test")
    args = ap.parse_args()

    rf = load_flops_module(args.shared)
    sg = rf.load_sgemm([args.sgemm])
    tr = rf.load_torch([args.torch])
    rd = load_redqd(rf, args.redqd)
    names = [n for n in rf.CONFIGS if any(k[0] == n for k in rd) or any(k[0] == n for k in tr)]

    parts = ["# redqd update benchmark"]
    if args.quick:
        parts.append("> Smoke test (BENCH_QUICK=1): every timing is far too short to mean anything.")
    parts.append("Critic updates per second of one REDQ agent (Chen et al. 2021), redqd's C core against "
                 "the PyTorch reference (lean variant) and the sgemm bounds, all measured in one run on "
                 "this machine. bench/run_bench.sh made it; `make bench` reruns it.")
    note = noise_note(rd, tr)
    if note:
        parts.append(note)
    if not all(r["finite"] for r in rd.values()):
        parts.append("> **A redqd run ended with a non-finite loss** (see 'Every redqd run').")
    parts += [headline_section(rf, rd, tr, sg, names), bars_section(rf, rd, tr, sg, names),
              bounds_section(rf, rd, tr, sg, names), runs_section(rd, names), torch_section(tr, names),
              machine_section(rd, args.sgemm, tr), commands_section(args.commands, sys.argv[1:])]
    text = "\n\n".join(parts) + "\n"
    print(text, end="")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
