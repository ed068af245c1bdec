#!/usr/bin/env python3
"""Learning curves of a redqd agent: critic_loss, actor_loss, alpha and q_mean per update.

Reads the agent's statistics as CSV, from the daemon (GET .../stats?format=csv, paging
through every row) or from a file saved earlier, prints a text summary and, when
matplotlib is installed, draws the four curves into a PNG.

    python3 clients/plot_stats.py pendulum                    # -> pendulum-stats.png
    python3 clients/plot_stats.py pendulum --out curves.png --x env_steps
    python3 clients/plot_stats.py --csv saved.csv --out curves.png
    curl -s "$REDQD_URL/v1/agents/pendulum/stats?format=csv&limit=100000" > saved.csv
"""

import argparse
import csv
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
from redqd_client import DEFAULT_URL, Client, RedqdError  # noqa: E402

METRICS = ["critic_loss", "actor_loss", "alpha", "q_mean"]
PAGE = 100000           # the most rows one stats request answers


def fetch_rows(client, name):
    """Every stats row of the agent, read as CSV a page at a time: [{column: text}]."""
    rows, since = [], None
    while True:
        text = client.stats(name, since=since, limit=PAGE, format="csv")
        page = list(csv.DictReader(io.StringIO(text)))
        rows += page
        if len(page) < PAGE:
            return rows
        since = int(page[-1]["row"])


def to_columns(rows):
    """[{column: text}] -> {column: [float or None, ...]}; an empty cell (a value not yet
    known) is None."""
    columns = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value) if value else None)
    return columns


def summarise(columns, x_name):
    """A few lines per metric: how many values, first, last, min, max."""
    xs = columns.get(x_name, [])
    out = [f"{len(xs)} rows, {x_name} {xs[0]:.0f} .. {xs[-1]:.0f}" if xs else "no rows"]
    for metric in METRICS:
        values = [v for v in columns.get(metric, []) if v is not None]
        if not values:
            out.append(f"  {metric:<12} no values")
            continue
        out.append(f"  {metric:<12} first {fmt(values[0])}  last {fmt(values[-1])}  "
                   f"min {fmt(min(values))}  max {fmt(max(values))}")
    return "\n".join(out)


def plot(columns, x_name, title, out):
    """Draws the metrics on a 2x2 grid into `out`; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    xs = columns.get(x_name, [])
    for ax, metric in zip(axes.flat, METRICS):
        points = [(x, y) for x, y in zip(xs, columns.get(metric, []))
                  if x is not None and y is not None]
        if points:
            ax.plot(*zip(*points), linewidth=1)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel(x_name)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def fmt(value):
    return "n/a" if value is None else f"{value:.4g}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="agent to fetch the statistics of")
    parser.add_argument("--csv", metavar="FILE", help="read this stats CSV instead")
    parser.add_argument("--url", default=os.environ.get("REDQD_URL", DEFAULT_URL),
                        help="daemon URL (default: $REDQD_URL or %(default)s)")
    parser.add_argument("--token", default=os.environ.get("REDQD_TOKEN"),
                        help="API token (default: $REDQD_TOKEN)")
    parser.add_argument("--x", choices=["update", "env_steps", "row"], default="update",
                        help="the horizontal axis (default: %(default)s)")
    parser.add_argument("--out", metavar="PNG",
                        help="image to write (default: NAME-stats.png)")
    args = parser.parse_args(argv)
    if (args.name is None) == (args.csv is None):
        parser.error("give an agent NAME or --csv FILE")

    if args.csv:
        with open(args.csv, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        label = os.path.splitext(os.path.basename(args.csv))[0]
    else:
        label = args.name
        try:
            with Client(args.url, token=args.token) as client:
                rows = fetch_rows(client, args.name)
        except (RedqdError, OSError) as exc:
            print(f"cannot read the statistics of {args.name!r} from {args.url}: {exc}",
                  file=sys.stderr)
            return 1

    columns = to_columns(rows)
    print(summarise(columns, args.x))
    out = args.out or f"{label}-stats.png"
    if plot(columns, args.x, f"redqd agent {label}", out):
        print(f"wrote {out}")
    else:
        print("matplotlib is not installed: text summary only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
