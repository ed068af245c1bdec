#!/usr/bin/env python3
"""Train a redqd agent on Pendulum-v1 over HTTP, with nothing but the standard library.

The environment is Gymnasium's Pendulum-v1 written out in Python (same dynamics, reward,
observation, reset distribution and 200-step time limit, and Gymnasium's reset/step
API). The loop is redqd_client.train(): --envs environments side by side, one batched
act per step, transitions posted with batch ids, and every --eval-every steps an
evaluation of --eval-episodes episodes recorded in the daemon (GET .../evaluations, the
dashboard and `redqctl plot` show it).

    make run                                    # the daemon, in another terminal
    python3 clients/examples/pendulum.py --steps 10000
    python3 clients/examples/pendulum.py --name pendulum-async --mode async --envs 4 --batch 10

The agent is created with PUT: run again with the same name and config, the command
trains the same agent further; an agent of that name with another config is an error
naming the first difference (use another --name), never silently reused. gym_env.py
runs the same loop on any Gymnasium environment; make_parser() and main_with() are
shared with it.
"""

import argparse
import json
import math
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from redqd_client import Box, Client, RedqdError, default_token, default_url, train  # noqa: E402

# Small and fast: Pendulum learns with this in a few thousand steps.
DEFAULT_CONFIG = {
    "hidden_sizes": [64, 64],
    "ensemble_size": 5,
    "subset_size": 2,
    "batch_size": 128,
    "update_per_step": 5,
    "actor_delay": 5,
    "start_timesteps": 1000,
    "actor_lr": 1e-3,
    "critic_lr": 1e-3,
    "alpha": "auto",
    "training": "sync",
}


class Pendulum:
    """Gymnasium's Pendulum-v1 (g = 10) under its TimeLimit of 200 steps, with Gymnasium's
    API: reset(seed=None, options=None) -> (obs, info); step(action) -> (obs, reward,
    terminated, truncated, info). Observations are [cos(theta), sin(theta), theta_dot];
    the action is a torque in [-2, 2]."""

    max_speed = 8.0
    max_torque = 2.0
    dt = 0.05
    g = 10.0
    m = 1.0
    length = 1.0
    max_steps = 200

    observation_space = Box([-1.0, -1.0, -max_speed], [1.0, 1.0, max_speed])
    action_space = Box([-max_torque], [max_torque])

    def __init__(self):
        self.rng = random.Random()
        self.th = self.thdot = 0.0
        self.steps = 0

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng.seed(seed)
        self.th = self.rng.uniform(-math.pi, math.pi)
        self.thdot = self.rng.uniform(-1.0, 1.0)
        self.steps = 0
        return self._obs(), {}

    def step(self, action):
        u = min(max(float(action[0]), -self.max_torque), self.max_torque)
        th, thdot = self.th, self.thdot
        cost = angle_normalize(th) ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2
        newthdot = thdot + (3 * self.g / (2 * self.length) * math.sin(th)
                            + 3.0 / (self.m * self.length ** 2) * u) * self.dt
        newthdot = min(max(newthdot, -self.max_speed), self.max_speed)
        self.th = th + newthdot * self.dt
        self.thdot = newthdot
        self.steps += 1
        return self._obs(), -cost, False, self.steps >= self.max_steps, {}

    def _obs(self):
        return [math.cos(self.th), math.sin(self.th), self.thdot]


def angle_normalize(x):
    return ((x + math.pi) % (2 * math.pi)) - math.pi


# ---- the run ---------------------------------------------------------------------------

def load_config(text):
    """--config-json: a JSON object, or @FILE holding one; None gives DEFAULT_CONFIG."""
    if text is None:
        return dict(DEFAULT_CONFIG)
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"--config-json: not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise SystemExit("--config-json must be a JSON object")
    return config


def make_parser(description, default_name, default_steps=20000):
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    add("--url", default=default_url(),
        help="daemon URL (default: $REDQD_URL or http://127.0.0.1:8470)")
    add("--token", default=default_token(), help="API token (default: $REDQD_TOKEN)")
    add("--name", default=default_name,
        help="agent name (default: %s)" % (default_name or "from --env"))
    add("--steps", type=int, default=default_steps,
        help="environment steps to train for (default: %(default)s)")
    add("--envs", type=int, default=1, metavar="K",
        help="environments stepped side by side (default: %(default)s)")
    add("--config-json", metavar="JSON",
        help="agent config as a JSON object or @FILE (default: DEFAULT_CONFIG in "
             "pendulum.py: hidden [64, 64], 5 critics, UTD 5, sync training)")
    add("--mode", choices=["sync", "async"], help="training mode; overrides the config's")
    add("--batch", type=int, default=1, metavar="N",
        help="post transitions every N rounds of K steps (default: %(default)s)")
    add("--eval-every", type=int, default=2000, metavar="STEPS",
        help="evaluate every STEPS steps; 0: only at the end (default: %(default)s)")
    add("--eval-episodes", type=int, default=5, metavar="N",
        help="episodes per evaluation (default: %(default)s)")
    add("--log-every", type=int, default=1000, metavar="STEPS",
        help="print a progress line every STEPS steps (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of the environments (default: %(default)s)")
    add("--timeout", type=float, default=120, metavar="SECONDS",
        help="HTTP timeout; sync posts wait for their updates (default: %(default)s)")
    add("--min-return", type=float, metavar="R",
        help="exit 1 if the final eval return is below R")
    return parser


def parse_args(parser):
    args = parser.parse_args()
    for opt in ("steps", "envs", "batch", "eval_episodes", "log_every"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt.replace('_', '-')} must be at least 1")
    if args.eval_every < 0:
        parser.error("--eval-every must be >= 0")
    return args


def main_with(args, make_env):
    """Trains args.name on environments make_env() makes; returns the exit status."""
    config = load_config(args.config_json)
    if args.mode:
        config["training"] = args.mode
    client = Client(args.url, token=args.token, timeout=args.timeout)
    try:
        result = train([make_env] * args.envs, {"name": args.name, "config": config},
                       args.steps, eval_every=args.eval_every,
                       eval_episodes=args.eval_episodes, client=client, seed=args.seed,
                       post_every=args.batch, log_every=args.log_every)
    except RedqdError as exc:
        print(f"redqd error: {exc}", file=sys.stderr)
        if exc.code == "already_exists":
            print(f"(an agent {args.name!r} with another shape or config exists: use "
                  f"another --name, or delete it with `redqctl delete {args.name}`)",
                  file=sys.stderr)
        return 1
    except (ConnectionError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        client.close()
    score = result.final_eval
    if args.min_return is not None and (score is None or score < args.min_return):
        print(f"final eval return {score} is below --min-return {args.min_return}",
              file=sys.stderr)
        return 1
    return 0


def main():
    parser = make_parser("Train a redqd agent on Pendulum-v1 over HTTP.", "pendulum")
    return main_with(parse_args(parser), Pendulum)


if __name__ == "__main__":
    sys.exit(main())
