"""`redqctl plot`: several agents' learning curves overlaid in one PNG (matplotlib).

Six panels, one colour per agent:
  eval return       mean of each evaluation (GET .../evaluations) against env_steps, with
                    the min-max band
  explore return    the training episodes' returns (GET .../episodes, explore and ended),
                    smoothed, against environment steps: the sum of the lengths of the
                    episodes so far (exact for one environment; with K side by side it
                    trails env_steps by the K open episodes)
  critic_loss, actor_loss, alpha, q_mean   from GET .../stats, smoothed, against updates
"""

import sys

PANELS = [("critic_loss", "critic loss"), ("actor_loss", "actor loss"), ("alpha", "alpha"),
          ("q_mean", "mean Q")]
EPISODE_LIMIT = 10000       # the most episodes one GET .../episodes answers
PAGE = 100000               # the most stats or evaluation rows one GET answers


class PlotUnavailable(Exception):
    """matplotlib cannot be imported."""


def load_pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            f"matplotlib is not installed for {sys.executable}: install it "
            f"(`apt-get install python3-matplotlib`, or `pip install matplotlib` in a venv; "
            f"a venv made with --system-site-packages sees Debian's). The numbers are "
            f"available without it: `redqctl evaluations NAME --format csv --all`, "
            f"`redqctl stats NAME --format csv --all`.") from None
    return plt


def plot(client, names, output, smooth=10):
    """Fetches every agent's curves, draws them into `output`; returns summary lines."""
    plt = load_pyplot()                 # before fetching anything: fail early
    runs = [fetch(client, name) for name in names]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax_eval, ax_explore = axes[0][0], axes[0][1]
    for run, color in zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
        evals = run["evaluations"]
        if evals:
            xs = [r["env_steps"] for r in evals]
            ax_eval.plot(xs, [r["mean"] for r in evals], color=color, marker=".",
                         label=run["name"])
            ax_eval.fill_between(xs, [r["min"] for r in evals], [r["max"] for r in evals],
                                 color=color, alpha=0.2, linewidth=0)
        else:
            ax_eval.plot([], [], color=color, label=f"{run['name']} (no evaluations)")
        xs, ys = run["explore"]
        ax_explore.plot(xs, moving_average(ys, smooth), color=color, linewidth=1)
        for ax, (key, _) in zip([axes[0][2], axes[1][0], axes[1][1], axes[1][2]], PANELS):
            points = [(r["update"], r[key]) for r in run["stats"] if r.get(key) is not None]
            if points:
                ax.plot([p[0] for p in points], moving_average([p[1] for p in points], smooth),
                        color=color, linewidth=1)
    ax_eval.set_title("eval return (mean, min-max band)")
    ax_explore.set_title("explore return" + (f" (moving average of {smooth})"
                                             if smooth > 1 else ""))
    for ax in (ax_eval, ax_explore):
        ax.set_xlabel("environment steps")
    for ax, (_, title) in zip([axes[0][2], axes[1][0], axes[1][1], axes[1][2]], PANELS):
        ax.set_title(title)
        ax.set_xlabel("updates")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    ax_eval.legend(loc="best", fontsize="small")
    fig.suptitle("redqd: " + ", ".join(names))
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return [summary(run) for run in runs]


def fetch(client, name):
    """One agent's evaluations, explore returns (x, y) and stats rows."""
    state = client.get_agent(name)["state"]
    episodes = client.list_episodes(name, limit=EPISODE_LIMIT)["episodes"]
    ended = [e for e in reversed(episodes)                  # oldest first
             if e.get("mode") == "explore" and e.get("ended_at") and not e.get("abandoned")]
    xs, total = [], 0
    for e in ended:
        total += e["length"]
        xs.append(total)
    if len(episodes) == EPISODE_LIMIT and xs:               # older ones cut off: end at now
        xs = [x - total + state["env_steps"] for x in xs]
    return {"name": name, "state": state,
            "evaluations": list(client.iter_evaluations(name, page_size=PAGE)),
            "explore": (xs, [e["return"] for e in ended]),
            "stats": list(client.iter_stats(name, page_size=PAGE))}


def moving_average(values, n):
    """The mean of each value and the n - 1 before it (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= n:
            total -= values[i - n]
        out.append(total / min(i + 1, n))
    return out


def summary(run):
    evals, (_, returns) = run["evaluations"], run["explore"]
    last = (f"last eval {evals[-1]['mean']:.1f} at env_steps {evals[-1]['env_steps']}"
            if evals else "no evaluations")
    return (f"{run['name']}: env_steps {run['state']['env_steps']}, updates "
            f"{run['state']['updates']}; {len(evals)} evaluations ({last}); "
            f"{len(returns)} explore episodes; {len(run['stats'])} stats rows")
