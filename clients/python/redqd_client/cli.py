"""redqctl: redqd from the command line, one subcommand per endpoint, plus `watch` and `plot`.

    redqctl health
    redqctl create agent.toml --name run-a --set seed=1    # PUT: created, or the same found
    redqctl list
    redqctl watch run-a run-b                               # live progress; Ctrl-C stops
    redqctl plot run-a run-b -o curves.png                  # needs matplotlib
    redqctl map --node b                                    # placement map lines (cluster)
    redqctl move run-a --to c                               # to another node of a cluster

The daemon's address is --url, else $REDQD_URL, else http://127.0.0.1:8470; the token
--token, else $REDQD_TOKEN. Answers are printed as JSON on stdout (`list` prints a table,
CSV formats print CSV); notes for people go to stderr. Exit status: 0 on success, 1 when
the daemon refuses a request or cannot be reached (with the URL and a hint), 2 for a
usage error. `redqctl COMMAND --help` describes each command.
"""

import argparse
import json
import os
import sys

from . import __version__
from .client import Client, DaemonUnreachable, RedqdError, default_token, default_url
from .cluster import ClusterError, Router, RouterError, map_entries, move_agent
from .policy import load_policy_safetensors


class UsageError(Exception):
    """Bad input on the command line or in a file given to it (exit status 2)."""


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    client = Client(args.url, token=args.token, timeout=args.timeout)
    try:
        return args.run(client, args) or 0
    except UsageError as exc:
        print(f"redqctl {args.command}: {exc}", file=sys.stderr)
        return 2
    except (RedqdError, ClusterError, RouterError) as exc:
        print(f"redqctl {args.command}: {exc}", file=sys.stderr)
        return 1
    except DaemonUnreachable as exc:
        print(f"redqctl: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:             # `redqctl ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"redqctl {args.command}: {args.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    finally:
        client.close()


# ---- the parser ------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(
        prog="redqctl", description="Talk to a redqd daemon (docs/api.md).",
        epilog="`redqctl COMMAND --help` describes a command.")
    parser.add_argument("--url", default=default_url(),
                        help="daemon URL (default: $REDQD_URL or http://127.0.0.1:8470; "
                             "now %(default)s)")
    parser.add_argument("--token", default=default_token(),
                        help="API token (default: $REDQD_TOKEN)")
    parser.add_argument("--timeout", type=float, default=120, metavar="S",
                        help="seconds to wait for an answer (default: %(default)s)")
    parser.add_argument("--version", action="version", version=f"redqctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, run, help, aliases=()):
        p = sub.add_parser(name, help=help, description=help, aliases=list(aliases))
        p.set_defaults(run=run)
        return p

    def with_name(name, run, help, aliases=()):
        p = command(name, run, help, aliases)
        p.add_argument("name", help="agent name")
        return p

    command("health", cmd_health, "GET /v1/health: status, version, uptime, agents")
    command("metrics", cmd_metrics, "GET /metrics: the Prometheus text")
    command("openapi", cmd_openapi, "GET /v1/openapi.json")

    p = command("list", cmd_list, "GET /v1/agents: a table of the agents", aliases=["agents"])
    p.add_argument("--json", action="store_true", help="print the JSON answer instead")

    p = command("create", cmd_create,
                "PUT /v1/agents/NAME from a JSON or TOML file: creates the agent, or finds "
                "the one with exactly this shape and config (a different one is an error "
                "naming the first difference)")
    p.add_argument("file", help="JSON or TOML with obs_dim, action_low, action_high, "
                                "optional name and [config]; - reads JSON from stdin")
    p.add_argument("--name", help="the agent's name (overrides the file's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config setting over the file's (VALUE is JSON, or a string); "
                        "repeatable")

    with_name("get", cmd_get, "GET /v1/agents/NAME: config and state", aliases=["agent"])

    p = with_name("patch", cmd_patch,
                  "PATCH /v1/agents/NAME, e.g. `redqctl patch run-a training=paused`")
    p.add_argument("settings", nargs="+", metavar="KEY=VALUE",
                   help="settings to change (VALUE is JSON, or a string)")

    p = with_name("delete", cmd_delete, "DELETE /v1/agents/NAME: the agent and all its data")
    p.add_argument("--yes", action="store_true", help="do not ask")

    p = with_name("act", cmd_act, "POST .../act: the action for an observation (or several)")
    p.add_argument("obs", nargs="+", help="numbers, or one JSON list (a list of lists: a batch)")
    p.add_argument("--mode", choices=["explore", "eval"], default="explore")

    p = with_name("transitions", cmd_transitions,
                  "POST .../transitions from a JSON file: a list of transitions or "
                  "{\"transitions\": [...]}")
    p.add_argument("file", help="the JSON file; - reads stdin")
    p.add_argument("--batch-id", help="makes a retry safe (default: a new one)")

    p = with_name("train", cmd_train, "POST .../train: run UPDATES updates now")
    p.add_argument("updates", type=int)

    for name, run, what in (("stats", cmd_stats, "GET .../stats: training statistics"),
                            ("evaluations", cmd_evaluations,
                             "GET .../evaluations: eval returns against env steps; "
                             "--add records one (POST)")):
        p = with_name(name, run, what)
        p.add_argument("--since", type=int, help="rows after this row number")
        p.add_argument("--limit", type=int, help="at most this many rows (one page)")
        p.add_argument("--all", action="store_true", help="every row, paging")
        p.add_argument("--format", choices=["json", "csv"], default="json")
    p.add_argument("--add", nargs="+", type=float, metavar="RETURN",
                   help="record an evaluation with these episode returns")
    p.add_argument("--lengths", nargs="+", type=int, metavar="N",
                   help="with --add: the episodes' lengths")

    p = with_name("episodes", cmd_episodes,
                  "GET .../episodes (recent episodes), or one call of the episodes API")
    p.add_argument("--limit", type=int)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--start", metavar="OBS", help="POST .../episodes with this obs (JSON)")
    group.add_argument("--step", metavar="ID", help="POST .../episodes/ID/step "
                                                    "(with --reward and --obs)")
    group.add_argument("--abandon", metavar="ID", help="DELETE .../episodes/ID")
    p.add_argument("--mode", choices=["explore", "eval"], default="explore",
                   help="with --start")
    p.add_argument("--reward", type=float, help="with --step")
    p.add_argument("--obs", help="with --step: the observation (JSON)")
    p.add_argument("--terminated", action="store_true", help="with --step")
    p.add_argument("--truncated", action="store_true", help="with --step")

    p = with_name("checkpoints", cmd_checkpoints,
                  "GET .../checkpoints, or --create (POST) or --delete ID")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--create", action="store_true", help="make a checkpoint now")
    group.add_argument("--delete", type=int, metavar="ID", help="delete checkpoint ID")

    p = with_name("restore", cmd_restore, "POST .../restore: back to checkpoint ID")
    p.add_argument("checkpoint", type=int, metavar="ID")

    p = with_name("export", cmd_export,
                  "download a checkpoint file (a new checkpoint unless --checkpoint)")
    p.add_argument("-o", "--output", metavar="FILE", help="default: NAME-ID.ckpt")
    p.add_argument("--checkpoint", type=int, metavar="ID", help="an existing checkpoint")
    p.add_argument("--with-buffer", action="store_true",
                   help="include the replay buffer (to continue elsewhere with the data)")

    p = with_name("import", cmd_import,
                  "PUT .../checkpoint: a new agent NAME from a checkpoint file")
    p.add_argument("file")

    p = with_name("policy", cmd_policy,
                  "GET .../policy: the actor as safetensors (loadable by PyTorch)")
    p.add_argument("-o", "--output", metavar="FILE", help="default: NAME.safetensors")

    p = command("map", cmd_map,
                "the router's placement map (deploy/haproxy/redqd.cfg): one line 'NAME NODE' "
                "per agent of the cluster, or of --node; --apply sets them in the running "
                "router. Fails when a node does not answer")
    p.add_argument("--node", help="only the agents this node holds")
    p.add_argument("--apply", action="store_true",
                   help="also set each entry through HAProxy's runtime API (--haproxy)")
    router_options(p)

    p = with_name("move", cmd_move,
                  "move the agent to another node of the cluster: it takes no writes while "
                  "it moves (clients get 503 and retry), nothing acknowledged is lost, the "
                  "router's map entry then points at the new node")
    p.add_argument("--to", required=True, metavar="NODE", help="the node to move it to")
    router_options(p)
    p.add_argument("--no-router", action="store_true",
                   help="no HAProxy to update (clients find the agent themselves)")

    p = command("watch", cmd_watch,
                "live progress of agents (all when none is named): env steps, updates/s, "
                "pending, losses, last returns; Ctrl-C stops")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-n", "--interval", type=float, default=2.0, metavar="S",
                   help="seconds between refreshes (default: %(default)s)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N refreshes")

    p = command("plot", cmd_plot,
                "learning curves of agents, overlaid, into a PNG (needs matplotlib)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("-o", "--output", metavar="FILE", default="curves.png",
                   help="image to write (default: %(default)s)")
    p.add_argument("--smooth", type=int, default=10, metavar="N",
                   help="moving average over N points for explore returns and losses "
                        "(default: %(default)s; 1: none)")
    return parser


def router_options(p):
    p.add_argument("--haproxy", default=os.environ.get("REDQD_HAPROXY_SOCKET"),
                   metavar="ADDR", help="HAProxy's runtime API: a socket path or host:port "
                   "(default: $REDQD_HAPROXY_SOCKET)")
    p.add_argument("--map", default=os.environ.get("REDQD_MAP", "/etc/haproxy/redqd.map"),
                   metavar="PATH", help="the placement map as the router's config names it; "
                   "rewritten too when writable (default: $REDQD_MAP or %(default)s)")


# ---- commands --------------------------------------------------------------------------

def cmd_health(client, args):
    show(client.health())


def cmd_metrics(client, args):
    sys.stdout.write(client.metrics())


def cmd_openapi(client, args):
    show(client.openapi())


def cmd_list(client, args):
    agents = client.list_agents()
    if args.json:
        return show(agents)
    columns = ["name", "status", "training", "obs_dim", "act_dim", "env_steps", "updates",
               "node"]
    rows = [[str(a.get(c, "")) + (f" -> {a['moving_to']}" if c == "node" and a.get("moving_to")
                                  else "") for c in columns] for a in agents["agents"]]
    print_table(columns, rows)
    for n in agents.get("nodes", []):
        if n.get("status") != "ok":
            note(f"node {n['name']} did not answer ({n.get('detail')}): its agents are not listed")


def cmd_create(client, args):
    spec = load_agent_file(args.file)
    name = args.name or spec.get("name")
    spec.pop("name", None)
    if not name:
        raise UsageError(f"{args.file} has no name: add `name = \"...\"` or give --name")
    unknown = set(spec) - {"obs_dim", "action_low", "action_high", "config"}
    missing = {"obs_dim", "action_low", "action_high"} - set(spec)
    if unknown or missing:
        raise UsageError(f"{args.file}: " + "; ".join(
            filter(None, [missing and f"missing {', '.join(sorted(missing))}",
                          unknown and f"unknown {', '.join(sorted(unknown))} (settings go "
                                      f"in [config])"])))
    config = dict(spec.get("config") or {})
    config.update(parse_settings(args.set))
    created, agent = client._put_agent(name, spec["obs_dim"], spec["action_low"],
                                       spec["action_high"], config or None)
    note(f"created agent {name!r}" if created else
         f"agent {name!r} exists with this shape and config: unchanged "
         f"(env_steps {agent['state']['env_steps']})")
    show(agent)


def cmd_get(client, args):
    show(client.get_agent(args.name))


def cmd_patch(client, args):
    show(client.patch_agent(args.name, **parse_settings(args.settings)))


def cmd_delete(client, args):
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"deleting {args.name!r} removes all its data; "
                             f"confirm with --yes")
        answer = input(f"delete agent {args.name!r} and all its data? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            note("not deleted")
            return 1
    client.delete_agent(args.name)
    note(f"deleted agent {args.name!r}")


def cmd_act(client, args):
    obs = parse_numbers(args.obs, "obs")
    show(client.act_full(args.name, obs, mode=args.mode))


def cmd_transitions(client, args):
    doc = load_json(args.file)
    rows = doc.get("transitions") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise UsageError(f"{args.file}: expected a list of transitions or "
                         f"{{\"transitions\": [...]}}")
    batch_id = args.batch_id or (doc.get("batch_id") if isinstance(doc, dict) else None)
    show(client.post_transitions(args.name, rows, batch_id=batch_id))


def cmd_train(client, args):
    show(client.train(args.name, args.updates, timeout=args.timeout))


def cmd_stats(client, args):
    print_rows(client.stats, client.iter_stats, args)


def cmd_evaluations(client, args):
    if args.add:
        if args.lengths is not None and len(args.lengths) != len(args.add):
            raise UsageError(f"--lengths has {len(args.lengths)} values, --add "
                             f"{len(args.add)}")
        return show(client.post_evaluation(args.name, args.add, args.lengths))
    if args.lengths:
        raise UsageError("--lengths goes with --add")
    print_rows(client.evaluations, client.iter_evaluations, args)


def print_rows(fetch, iterate, args):
    """stats and evaluations: one page, or with --all every row (JSON or CSV)."""
    if not args.all:
        answer = fetch(args.name, since=args.since, limit=args.limit, format=args.format)
        return sys.stdout.write(answer) if args.format == "csv" else show(answer)
    if args.format == "json":
        return show({"rows": list(iterate(args.name, since=args.since, page_size=100000))})
    since, header = args.since, True
    while True:
        lines = fetch(args.name, since=since, limit=100000, format="csv").splitlines()
        sys.stdout.writelines(line + "\n" for line in lines[0 if header else 1:])
        header = False
        if len(lines) - 1 < 100000:
            return
        since = int(lines[-1].split(",", 1)[0])


def cmd_episodes(client, args):
    if args.start is not None:
        return show(client.start_episode(args.name, parse_numbers([args.start], "--start"),
                                         mode=args.mode))
    if args.step is not None:
        if args.reward is None or args.obs is None:
            raise UsageError("--step needs --reward and --obs")
        return show(client.step_episode(args.name, args.step, args.reward,
                                        parse_numbers([args.obs], "--obs"),
                                        args.terminated, args.truncated))
    if args.abandon is not None:
        client.abandon_episode(args.name, args.abandon)
        return note(f"abandoned episode {args.abandon}")
    show(client.list_episodes(args.name, limit=args.limit))


def cmd_checkpoints(client, args):
    if args.create:
        return show(client.create_checkpoint(args.name))
    if args.delete is not None:
        client.delete_checkpoint(args.name, args.delete)
        return note(f"deleted checkpoint {args.delete} of {args.name!r}")
    show(client.list_checkpoints(args.name))


def cmd_restore(client, args):
    show(client.restore(args.name, args.checkpoint))


def cmd_export(client, args):
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = client.create_checkpoint(args.name)["id"]
    data = client.download_checkpoint(args.name, ckpt, with_buffer=args.with_buffer)
    path = args.output or f"{args.name}-{ckpt}.ckpt"
    write_file(path, data)
    note(f"wrote {path}: checkpoint {ckpt} of {args.name!r}, {len(data)} bytes"
         + (", with the replay buffer" if args.with_buffer else ""))
    show({"file": path, "checkpoint": ckpt, "bytes": len(data),
          "with_buffer": args.with_buffer})


def cmd_import(client, args):
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(str(exc)) from None
    show(client.import_checkpoint(args.name, data))


def cmd_policy(client, args):
    data = client.policy(args.name)
    path = args.output or f"{args.name}.safetensors"
    write_file(path, data)
    policy = load_policy_safetensors(data)
    meta = policy.pop("__metadata__")
    note(f"wrote {path}: policy_version {meta.get('policy_version')}, {len(data)} bytes")
    show({"file": path, "bytes": len(data), "metadata": meta,
          "tensors": {name: shape for name, (shape, _) in policy.items()}})


def cmd_map(client, args):
    lines = map_entries(client.list_agents(scope="cluster"), node=args.node)
    for line in lines:
        print(line)
    if args.apply:
        router = need_router(args)
        for line in lines:
            router.set_entry(*line.split())
        note(f"{len(lines)} entries set in the router's {args.map}")


def cmd_move(client, args):
    router = None if args.no_router else need_router(args)
    show(move_agent(client, args.name, args.to, router, log=note))


def need_router(args):
    if not args.haproxy:
        raise UsageError("give HAProxy's runtime API with --haproxy (or $REDQD_HAPROXY_SOCKET)"
                         ", or --no-router")
    return Router(args.haproxy, args.map)


def cmd_watch(client, args):
    from .watch import watch
    if args.interval <= 0:
        raise UsageError("--interval must be > 0")
    return watch(client, args.names, interval=args.interval, count=args.count)


def cmd_plot(client, args):
    from .plot import PlotUnavailable, plot
    if args.smooth < 1:
        raise UsageError("--smooth must be at least 1")
    try:
        summary = plot(client, args.names, args.output, smooth=args.smooth)
    except PlotUnavailable as exc:
        print(f"redqctl plot: {exc}", file=sys.stderr)
        return 1
    for line in summary:
        print(line)
    print(f"wrote {args.output}")


# ---- input and output ------------------------------------------------------------------

def show(answer):
    print(render_json(answer))


def render_json(value, indent=0):
    """JSON with one key per line, and lists of numbers or strings on one line."""
    pad = "  " * indent
    if isinstance(value, dict) and value:
        items = [f"{pad}  {json.dumps(k)}: {render_json(v, indent + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{pad}  {render_json(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)


def note(text):
    print(text, file=sys.stderr)


def print_table(columns, rows):
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    for row in [columns] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def load_json(path):
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None


def load_agent_file(path):
    """An agent spec from JSON (.json, or stdin) or TOML (.toml; Python 3.11+'s tomllib).
    A file with another extension is read as JSON, then as TOML."""
    if path == "-" or path.endswith(".json"):
        doc = load_json(path)
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise UsageError(str(exc)) from None
        doc = None
        if not path.endswith(".toml"):
            try:
                doc = json.loads(raw)
            except ValueError:
                pass
        if doc is None:
            doc = _load_toml(path, raw)
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected an object (a table) at the top")
    return doc


def _load_toml(path, raw):
    try:
        import tomllib
    except ImportError:
        raise UsageError(f"{path}: reading TOML needs Python 3.11 or later (tomllib); "
                         f"use JSON") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not TOML: {exc}") from None


def parse_settings(items):
    """["key=value", ...] -> {key: value}; the value as JSON (numbers, lists, objects,
    true/false/null), else as a string: training=paused, actor_lr=1e-4."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def parse_numbers(values, what):
    """One JSON list (or list of lists), or several numbers."""
    try:
        if len(values) == 1 and values[0].lstrip().startswith("["):
            return json.loads(values[0])
        return [float(v) for v in values]
    except ValueError:
        raise UsageError(f"{what}: expected numbers or a JSON list, not {' '.join(values)!r}") \
            from None


def write_file(path, data):
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise UsageError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
