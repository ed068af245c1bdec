#!/usr/bin/env python3
"""Train a redqd agent on Pendulum-v1 over HTTP, with nothing but the standard library.

The environment is Gymnasium's Pendulum-v1 written out in Python (same dynamics, reward,
observation, reset distribution and 200-step time limit). The loop is the usual one:

    act (explore) -> environment step -> post the transition

or, with --use-episodes, one episode-step call per environment step (the daemon keeps the
last observation and action and forms the transition itself). Progress lines show the
environment steps per second, the agent's update count and its latest statistics; every
--eval-every steps the eval policy (act mode "eval") runs --eval-episodes episodes.

    make run                                    # the daemon, in another terminal
    python3 clients/examples/pendulum.py --steps 10000
    python3 clients/examples/pendulum.py --mode async --batch 20 --name pendulum-async
    python3 clients/examples/pendulum.py --use-episodes --name pendulum-episodes

An existing agent of the same name is reused (trained further). gym_env.py runs the same
loop on any Gymnasium environment; run() and make_parser() are shared with it.
"""

import argparse
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from redqd_client import DEFAULT_URL, Client, RedqdError  # noqa: E402

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
    """Gymnasium's Pendulum-v1 (g = 10) under its TimeLimit of 200 steps.

    reset(seed=None) -> obs; step(action) -> (obs, reward, terminated, truncated).
    Observations are [cos(theta), sin(theta), theta_dot]; the action is a torque in [-2, 2].
    """

    max_speed = 8.0
    max_torque = 2.0
    dt = 0.05
    g = 10.0
    m = 1.0
    length = 1.0
    max_steps = 200

    obs_dim = 3
    action_low = [-max_torque]
    action_high = [max_torque]

    def __init__(self, seed=None):
        self.rng = random.Random(seed)
        self.th = self.thdot = 0.0
        self.steps = 0

    def reset(self, seed=None):
        if seed is not None:
            self.rng.seed(seed)
        self.th = self.rng.uniform(-math.pi, math.pi)
        self.thdot = self.rng.uniform(-1.0, 1.0)
        self.steps = 0
        return self._obs()

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
        return self._obs(), -cost, False, self.steps >= self.max_steps

    def _obs(self):
        return [math.cos(self.th), math.sin(self.th), self.thdot]


def angle_normalize(x):
    return ((x + math.pi) % (2 * math.pi)) - math.pi


# ---- stepping the environment through the daemon ---------------------------------------

class TransitionStepper:
    """act(explore) -> env.step -> post_transitions, posting every `batch` transitions."""

    def __init__(self, client, name, env, batch):
        self.client, self.name, self.env, self.batch = client, name, env, batch
        self.obs = env.reset()
        self.episode_return = 0.0
        self.pending = []

    def step(self):
        """One environment step; returns the episode's return when one ended, else None."""
        action = self.client.act(self.name, self.obs)
        next_obs, reward, terminated, truncated = self.env.step(action)
        self.pending.append({"obs": self.obs, "action": action, "reward": reward,
                             "next_obs": next_obs, "terminated": terminated,
                             "truncated": truncated})
        if len(self.pending) >= self.batch:
            self.flush()
        self.episode_return += reward
        if terminated or truncated:
            finished, self.episode_return = self.episode_return, 0.0
            self.obs = self.env.reset()
            return finished
        self.obs = next_obs
        return None

    def flush(self):
        if self.pending:
            self.client.post_transitions(self.name, self.pending)
            self.pending = []

    def abort(self):
        """On an interrupted run: the unposted transitions are dropped."""
        if self.pending:
            say(f"dropping {len(self.pending)} transitions not yet posted")
            self.pending = []


class EpisodeStepper:
    """The episodes endpoints: the daemon forms the transitions and records the returns."""

    def __init__(self, client, name, env):
        self.client, self.name, self.env = client, name, env
        self.episode_id = None
        self.action = None

    def step(self):
        if self.episode_id is None:
            started = self.client.start_episode(self.name, self.env.reset())
            self.episode_id, self.action = started["episode_id"], started["action"]
        obs, reward, terminated, truncated = self.env.step(self.action)
        answer = self.client.step_episode(self.name, self.episode_id, reward, obs,
                                          terminated, truncated)
        if answer.get("done"):
            self.episode_id = None
            return answer["return"]
        self.action = answer["action"]
        return None

    def flush(self):
        pass

    def abort(self):
        """On an interrupted run: abandons the open episode, if the daemon can be told."""
        if self.episode_id is not None:
            try:
                self.client.abandon_episode(self.name, self.episode_id)
            except (RedqdError, OSError) as exc:
                say(f"could not abandon episode {self.episode_id}: {exc}")
            self.episode_id = None


# ---- reporting -------------------------------------------------------------------------

class StatsTail:
    """The newest stats row, fetched incrementally (only rows after the last one seen)."""

    PAGE = 10000

    def __init__(self, client, name):
        self.client, self.name = client, name
        self.since = None
        self.last = None

    def latest(self):
        while True:
            rows = self.client.stats(self.name, since=self.since, limit=self.PAGE)["rows"]
            if rows:
                self.last, self.since = rows[-1], rows[-1]["row"]
            if len(rows) < self.PAGE:
                return self.last


def evaluate(client, name, envs, seed):
    """Mean return of one eval episode per env, all stepped together: one batched act call
    (mode "eval") per time step. Seeds are fixed, so evaluations are comparable."""
    obs = [env.reset(seed=seed + i) for i, env in enumerate(envs)]
    returns = [0.0] * len(envs)
    running = list(range(len(envs)))
    while running:
        actions = client.act(name, [obs[i] for i in running], mode="eval")
        still = []
        for i, action in zip(running, actions):
            obs[i], reward, terminated, truncated = envs[i].step(action)
            returns[i] += reward
            if not (terminated or truncated):
                still.append(i)
        running = still
    return sum(returns) / len(returns)


def fmt(value, spec=".4g"):
    return "n/a" if value is None else format(value, spec)


def say(*args):
    print(*args, flush=True)


# ---- the run ---------------------------------------------------------------------------

def ensure_agent(client, name, env, config, mode):
    """Creates the agent, or reuses an existing one of the same shape."""
    try:
        agent = client.create_agent(name, env.obs_dim, env.action_low, env.action_high, config)
        say(f"created agent {name!r}: training {agent['config']['training']}, "
            f"config {json.dumps(config, separators=(',', ':'))}")
        return agent
    except RedqdError as exc:
        if exc.code != "already_exists":
            raise
    agent = client.get_agent(name)
    if agent["obs_dim"] != env.obs_dim or not (
            close(agent["action_low"], env.action_low)
            and close(agent["action_high"], env.action_high)):
        raise SystemExit(f"agent {name!r} exists with obs_dim {agent['obs_dim']} and bounds "
                         f"{agent['action_low']}..{agent['action_high']}; use another --name")
    if mode and agent["config"]["training"] != mode:
        agent = client.patch_agent(name, training=mode)
    state = agent["state"]
    say(f"reusing agent {name!r}: training {agent['config']['training']}, "
        f"env_steps {state['env_steps']}, updates {state['updates']}")
    return agent


def close(xs, ys):
    """Bounds compare equal up to float32 rounding (the daemon stores float32)."""
    return len(xs) == len(ys) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(xs, ys))


def run(args, make_env):
    """Trains args.name for args.steps environment steps; returns the final eval return.

    make_env(seed) -> an environment with obs_dim, action_low, action_high,
    reset(seed=None) -> obs and step(action) -> (obs, reward, terminated, truncated).
    """
    config = load_config(args.config_json)
    if args.mode:
        config["training"] = args.mode
    client = Client(args.url, token=args.token, timeout=args.timeout)
    env = make_env(args.seed)
    eval_envs = [make_env(args.seed + 1 + i) for i in range(args.eval_episodes)]
    eval_seed = args.seed + 100_000

    ensure_agent(client, args.name, env, config, args.mode)
    if args.use_episodes:
        if args.batch != 1:
            say("note: --batch is ignored with --use-episodes (one call per step)")
        stepper = EpisodeStepper(client, args.name, env)
    else:
        stepper = TransitionStepper(client, args.name, env, args.batch)
    stats = StatsTail(client, args.name)

    returns = []                    # training episode returns, newest last
    interval_steps, interval_time = 0, 0.0
    try:
        for t in range(1, args.steps + 1):
            started = time.perf_counter()
            finished = stepper.step()
            interval_time += time.perf_counter() - started
            interval_steps += 1
            if finished is not None:
                returns.append(finished)

            if t % args.log_every == 0 or t == args.steps:
                stepper.flush()
                state = client.get_agent(args.name)["state"]
                row = stats.latest() or {}
                recent = returns[-10:]
                say(f"steps {t:>7}  env steps/s {interval_steps / max(interval_time, 1e-9):7.1f}"
                    f"  updates {state['updates']:>8}  pending {fmt(state['pending_updates'])}"
                    f"  critic_loss {fmt(row.get('critic_loss'))}  alpha {fmt(row.get('alpha'))}"
                    f"  train return {fmt(sum(recent) / len(recent) if recent else None, '.1f')}"
                    f" (last {len(recent)})")
                interval_steps, interval_time = 0, 0.0
            if args.eval_every and t % args.eval_every == 0 and t != args.steps:
                stepper.flush()
                score = evaluate(client, args.name, eval_envs, eval_seed)
                say(f"eval  steps {t:>7}  mean return {score:.1f} over {len(eval_envs)} episodes")
        stepper.flush()
    except BaseException:
        stepper.abort()
        raise

    score = evaluate(client, args.name, eval_envs, eval_seed)
    say(f"final eval return: {score:.1f} (mean of {len(eval_envs)} episodes, "
        f"{args.steps} steps)")
    client.close()
    return score


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
    add("--url", default=os.environ.get("REDQD_URL", DEFAULT_URL),
        help="daemon URL (default: $REDQD_URL or %(default)s)")
    add("--token", default=os.environ.get("REDQD_TOKEN"),
        help="API token (default: $REDQD_TOKEN)")
    add("--name", default=default_name,
        help="agent name (default: %s)" % (default_name or "from --env"))
    add("--steps", type=int, default=default_steps,
        help="environment steps to train for (default: %(default)s)")
    add("--config-json", metavar="JSON",
        help="agent config as a JSON object or @FILE (default: DEFAULT_CONFIG in "
             "pendulum.py: hidden [64, 64], 5 critics, UTD 5, sync training)")
    add("--mode", choices=["sync", "async"],
        help="training mode; overrides the config's, and PATCHes a reused agent")
    add("--batch", type=int, default=1, metavar="N",
        help="post transitions in batches of N (default: %(default)s)")
    add("--use-episodes", action="store_true",
        help="use the episodes endpoints instead of act + transitions")
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
    for opt in ("steps", "batch", "eval_episodes", "log_every"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt.replace('_', '-')} must be at least 1")
    if args.eval_every < 0:
        parser.error("--eval-every must be >= 0")
    return args


def main_with(args, make_env):
    """Runs, and maps the outcome to an exit status."""
    try:
        score = run(args, make_env)
    except RedqdError as exc:
        print(f"redqd error: {exc}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"cannot reach redqd at {args.url}: {exc} (is it running? `make run`)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.min_return is not None and score < args.min_return:
        print(f"final eval return {score:.1f} is below --min-return {args.min_return}",
              file=sys.stderr)
        return 1
    return 0


def main():
    parser = make_parser("Train a redqd agent on Pendulum-v1 over HTTP.", "pendulum")
    return main_with(parse_args(parser), Pendulum)


if __name__ == "__main__":
    sys.exit(main())
