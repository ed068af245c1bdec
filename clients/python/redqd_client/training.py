"""train(): an agent learns from Gymnasium-style environments through the daemon.

    from redqd_client import train

    result = train([lambda: gymnasium.make("Pendulum-v1")] * 4,
                   {"name": "pendulum", "config": {"training": "sync"}},
                   steps=20_000, eval_every=2_000, eval_episodes=5)
    print(result.final_eval)

An environment is anything with Gymnasium's API (gymnasium itself is not needed):

    reset(seed=None) -> (obs, info)
    step(action) -> (obs, reward, terminated, truncated, info)

and, when the agent spec leaves the agent's shape out, observation_space.shape and
action_space.low / .high (Gymnasium's Box; redqd_client.Box stands in for it in
environments written without gymnasium). Observations of any shape are flattened.

The loop, with K = len(env_fns) environments stepped side by side:
  1. one batched act (mode "explore") for the K observations;
  2. each environment steps, and its transition, tagged with its own env_id, joins the
     pending list (the daemon keeps n-step returns and episode returns per env_id);
  3. every `post_every` rounds the pending transitions go in one post whose batch_id is
     the run's id and a sequence number, so a retried post is stored once;
  4. every `eval_every` environment steps, after posting what is pending,
     `eval_episodes` episodes run on environments of their own (fixed seeds, so that
     evaluations compare; one batched act of mode "eval" per step), and their returns
     and lengths are recorded with POST .../evaluations, against the agent's env_steps:
     the curve papers plot, which the dashboard and `redqctl plot` show;
  5. a progress line every `log_every` environment steps (or a callback).

The env_ids are new for every call (run id + index): a stream the daemon still holds
from an earlier, interrupted call (an episode cut short) is never continued by a fresh
reset, which would have added the old partial return to a new episode.
"""

import math
import sys
import time
import uuid
from dataclasses import dataclass, field

from .client import Client, default_token, default_url

__all__ = ["train", "TrainResult", "Box"]

EVAL_SEED_OFFSET = 1_000_000     # eval environments' seeds: seed + this + episode index
RECENT = 10                      # training returns averaged in progress lines


class Box:
    """A stand-in for gymnasium.spaces.Box: low and high (lists), shape.

    Box([-2.0], [2.0]) is a one-dimensional action in [-2, 2];
    Box(-math.inf, math.inf, shape=(3,)) three unbounded observations."""

    def __init__(self, low, high, shape=None):
        if shape is not None:
            n = math.prod(shape)
            low = [low] * n if not isinstance(low, (list, tuple)) else list(low)
            high = [high] * n if not isinstance(high, (list, tuple)) else list(high)
        self.low = [float(x) for x in low]
        self.high = [float(x) for x in high]
        if len(self.low) != len(self.high):
            raise ValueError(f"Box: {len(self.low)} lows but {len(self.high)} highs")
        self.shape = tuple(shape) if shape is not None else (len(self.low),)

    def __repr__(self):
        return f"Box({self.low}, {self.high})"


@dataclass
class TrainResult:
    """What train() did.

    agent            the agent at the end (GET /v1/agents/{name})
    steps            environment steps taken in this call
    episode_returns  returns of the training episodes that ended in this call, in order
    evaluations      the evaluation rows recorded in this call (POST .../evaluations answers)
    """

    agent: dict
    steps: int
    episode_returns: list = field(default_factory=list)
    evaluations: list = field(default_factory=list)

    @property
    def final_eval(self):
        """The mean return of the last evaluation, or None without one."""
        return self.evaluations[-1]["mean"] if self.evaluations else None


def train(env_fns, agent, steps, eval_every=0, eval_episodes=5, *, client=None,
          eval_env_fn=None, seed=0, post_every=1, log_every=None, progress=True,
          final_eval=True):
    """Trains `agent` for `steps` environment steps on the environments env_fns make.

    env_fns      callables, each making one environment; each is its own env_id stream
    agent        the agent's name (it must exist), or a spec {"name", "config"?,
                 "obs_dim"?, "action_low"?, "action_high"?}: sent with PUT, so the agent
                 is created, or the existing one with exactly this shape and config is
                 trained further; one that differs raises RedqdError 409
                 `already_exists` naming the first difference (nothing is trained).
                 obs_dim and the action box default to the first environment's spaces.
    steps        environment steps in this call, over all environments together
    eval_every   evaluate every this many environment steps (0: only at the end)
    eval_episodes  episodes per evaluation (0: never evaluate)
    client       a Client; default Client($REDQD_URL, $REDQD_TOKEN)
    eval_env_fn  makes the eval environments (default env_fns[0])
    seed         environment i's first reset takes seed + i; eval episode j always
                 starts from seed + 1000000 + j
    post_every   rounds (of K steps) per transitions post
    log_every    environment steps between progress lines (default steps / 20)
    progress     True: print progress lines; False: silent; a callable: called with a
                 dict per event ("start", "progress", "eval", "end")
    final_eval   evaluate once more at the end (unless an evaluation just ran)

    Returns a TrainResult. Ctrl-C posts the transitions already taken, then raises
    KeyboardInterrupt.
    """
    env_fns = list(env_fns)
    if not env_fns or not all(callable(f) for f in env_fns):
        raise ValueError("env_fns must be a non-empty list of callables that make environments")
    for label, value, least in (("steps", steps, 1), ("eval_every", eval_every, 0),
                                ("eval_episodes", eval_episodes, 0),
                                ("post_every", post_every, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{label} must be an integer >= {least}, not {value!r}")
    own_client = client is None
    if own_client:
        client = Client(default_url(), token=default_token(), timeout=300)
    envs = []
    run = None
    try:
        envs = [fn() for fn in env_fns]
        run = _Run(client, envs, eval_env_fn or env_fns[0], seed, post_every,
                   _reporter(progress))
        run.start(agent)
        return run.loop(steps, eval_every, eval_episodes,
                        log_every or max(1, steps // 20), final_eval)
    finally:
        for env in envs + (run.eval_envs if run else []):
            close = getattr(env, "close", None)
            if close is not None:
                close()
        if own_client:
            client.close()


class _Run:
    """The state of one train() call."""

    def __init__(self, client, envs, eval_env_fn, seed, post_every, report):
        self.client = client
        self.envs = envs
        self.eval_env_fn = eval_env_fn
        self.eval_envs = []
        self.seed = seed
        self.post_every = post_every
        self.report = report
        self.run_id = uuid.uuid4().hex[:8]
        self.env_ids = [f"{self.run_id}-{i}" for i in range(len(envs))]
        self.posts = 0
        self.pending = []
        self.returns = []              # ended training episodes, in order
        self.evaluations = []
        self.name = None

    # ---- the agent ---------------------------------------------------------------------

    def start(self, agent):
        first_obs = [_reset(env, self.seed + i) for i, env in enumerate(self.envs)]
        if isinstance(agent, str):
            self.name, created = agent, False
            info = self.client.get_agent(agent)
        else:
            spec = _agent_spec(agent, self.envs[0])
            self.name = spec["name"]
            created, info = self.client._put_agent(spec["name"], spec["obs_dim"],
                                                   spec["action_low"], spec["action_high"],
                                                   spec.get("config"))
        self.obs = first_obs
        self.start_updates = info["state"]["updates"]
        self.running = [0.0] * len(self.envs)
        self.report({"event": "start", "agent": self.name, "created": created,
                     "by_name": isinstance(agent, str),
                     "env_steps": info["state"]["env_steps"],
                     "training": info["config"]["training"], "envs": len(self.envs),
                     "run_id": self.run_id})

    # ---- the loop ----------------------------------------------------------------------

    def loop(self, steps, eval_every, eval_episodes, log_every, final_eval):
        done = 0
        # (time, steps, updates) at the last progress line
        mark = (time.monotonic(), 0, self.start_updates)
        evaluated_at = None
        try:
            while done < steps:
                k = min(len(self.envs), steps - done)
                self.round(k)
                before, done = done, done + k
                if len(self.pending) >= self.post_every * len(self.envs) or done == steps:
                    self.flush()
                if done // log_every > before // log_every or done == steps:
                    self.flush()
                    mark = self.progress(done, steps, mark)
                if eval_episodes and eval_every and done // eval_every > before // eval_every:
                    self.evaluate(eval_episodes, done)
                    evaluated_at = done
            if eval_episodes and final_eval and evaluated_at != done:
                self.evaluate(eval_episodes, done)
        except KeyboardInterrupt:
            self.flush()                 # what was taken is kept; then stop
            raise
        result = TrainResult(self.client.get_agent(self.name), done, self.returns,
                             self.evaluations)
        self.report({"event": "end", "agent": self.name, "steps": done,
                     "env_steps": result.agent["state"]["env_steps"],
                     "final_eval": result.final_eval})
        return result

    def round(self, k):
        """One step of the first k environments, with one batched explore act."""
        actions = self.client.act(self.name, self.obs[:k])
        for i in range(k):
            env = self.envs[i]
            obs, reward, terminated, truncated = _step(env, actions[i])
            self.pending.append({"obs": self.obs[i], "action": actions[i], "reward": reward,
                                 "next_obs": obs, "terminated": terminated,
                                 "truncated": truncated, "env_id": self.env_ids[i]})
            self.running[i] += reward
            if terminated or truncated:
                self.returns.append(self.running[i])
                self.running[i] = 0.0
                obs = _reset(env)
            self.obs[i] = obs

    def flush(self):
        if self.pending:
            self.posts += 1
            self.client.post_transitions(self.name, self.pending,
                                         batch_id=f"{self.run_id}-{self.posts}")
            self.pending = []

    def evaluate(self, episodes, done):
        """Runs `episodes` eval episodes side by side and records them."""
        self.flush()
        while len(self.eval_envs) < episodes:
            self.eval_envs.append(self.eval_env_fn())
        envs = self.eval_envs[:episodes]
        obs = [_reset(env, self.seed + EVAL_SEED_OFFSET + j) for j, env in enumerate(envs)]
        returns, lengths = [0.0] * episodes, [0] * episodes
        running = list(range(episodes))
        while running:
            actions = self.client.act(self.name, [obs[j] for j in running], mode="eval")
            still = []
            for j, action in zip(running, actions):
                obs[j], reward, terminated, truncated = _step(envs[j], action)
                returns[j] += reward
                lengths[j] += 1
                if not (terminated or truncated):
                    still.append(j)
            running = still
        row = self.client.post_evaluation(self.name, returns, lengths)
        self.evaluations.append(row)
        self.report(dict(row, event="eval", agent=self.name, steps=done))

    def progress(self, done, total, mark):
        now = time.monotonic()
        state = self.client.get_agent(self.name)["state"]
        recent = self.returns[-RECENT:]
        dt = max(now - mark[0], 1e-9)
        self.report({"event": "progress", "agent": self.name, "steps": done, "total": total,
                     "steps_per_s": (done - mark[1]) / dt,
                     "env_steps": state["env_steps"], "updates": state["updates"],
                     "updates_per_s": (state["updates"] - mark[2]) / dt,
                     "pending": state["pending_updates"],
                     "critic_loss": state.get("critic_loss"), "alpha": state.get("alpha"),
                     "episodes": len(self.returns),
                     "recent_return": sum(recent) / len(recent) if recent else None,
                     "recent": len(recent)})
        return now, done, state["updates"]


# ---- environments ----------------------------------------------------------------------

def _reset(env, seed=None):
    answer = env.reset(seed=seed) if seed is not None else env.reset()
    if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[1], dict)):
        raise TypeError(f"{type(env).__name__}.reset() must answer (obs, info) as Gymnasium's "
                        f"reset does, not {type(answer).__name__}")
    return _flat(answer[0])


def _step(env, action):
    answer = env.step(_env_action(env, action))
    if not (isinstance(answer, tuple) and len(answer) == 5):
        raise TypeError(f"{type(env).__name__}.step() must answer (obs, reward, terminated, "
                        f"truncated, info) as Gymnasium's step does")
    obs, reward, terminated, truncated, _ = answer
    return _flat(obs), float(reward), bool(terminated), bool(truncated)


def _env_action(env, action):
    """The action as the environment takes it: a numpy array of the action space's
    dtype and shape for a Gymnasium Box (numpy is loaded then), else the list."""
    space = getattr(env, "action_space", None)
    dtype = getattr(space, "dtype", None)
    numpy = sys.modules.get("numpy")
    if numpy is None or dtype is None:
        return action
    return numpy.asarray(action, dtype=dtype).reshape(space.shape)


def _flat(value):
    """Any nesting of lists, tuples and arrays as one flat list of floats."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(_flat(v))
        return out
    return [float(value)]


def _agent_spec(agent, env):
    """The PUT body of an agent spec, its shape filled in from the environment's spaces."""
    allowed = {"name", "config", "obs_dim", "action_low", "action_high"}
    if not isinstance(agent, dict) or "name" not in agent or set(agent) - allowed:
        raise ValueError(f"agent must be a name or a dict with keys {sorted(allowed)} "
                         f"(name required), not {agent!r}")
    spec = dict(agent)
    if "obs_dim" not in spec:
        space = getattr(env, "observation_space", None)
        if getattr(space, "shape", None) is None:
            raise ValueError(f"agent {spec['name']!r}: give obs_dim (the environment has no "
                             f"observation_space.shape)")
        spec["obs_dim"] = math.prod(space.shape)
    for key, attr in (("action_low", "low"), ("action_high", "high")):
        if key not in spec:
            value = getattr(getattr(env, "action_space", None), attr, None)
            if value is None:
                raise ValueError(f"agent {spec['name']!r}: give {key} (the environment has "
                                 f"no action_space.{attr})")
            spec[key] = _flat(value)
        if not all(math.isfinite(x) for x in spec[key]):
            raise ValueError(f"agent {spec['name']!r}: {key} must be finite, not {spec[key]}")
    return spec


# ---- progress --------------------------------------------------------------------------

def _reporter(progress):
    if callable(progress):
        return progress
    if progress:
        return lambda event: print(describe(event), flush=True)
    return lambda event: None


def describe(event):
    """One line of text for a train() event."""
    kind, name = event["event"], event["agent"]
    if kind == "start":
        how = "created" if event["created"] else (
            "exists" if event["by_name"] else "exists with this shape and config") + \
            f": continuing from env_steps {event['env_steps']}"
        envs = event["envs"]
        return (f"agent {name!r} {how} (training {event['training']}; {envs} "
                f"environment{'s' if envs != 1 else ''}, run {event['run_id']})")
    if kind == "progress":
        return (f"{name}  steps {event['steps']:>7}/{event['total']}"
                f"  env_steps {event['env_steps']:>8}  steps/s {event['steps_per_s']:7.1f}"
                f"  updates {event['updates']:>8} ({fmt(event['updates_per_s'], '.0f')}/s)"
                f"  pending {fmt(event['pending'], '.0f')}"
                f"  critic_loss {fmt(event['critic_loss'])}  alpha {fmt(event['alpha'])}"
                f"  return {fmt(event['recent_return'], '.1f')} (last {event['recent']})")
    if kind == "eval":
        return (f"{name}  eval at env_steps {event['env_steps']}: mean return "
                f"{event['mean']:.1f} (min {event['min']:.1f}, max {event['max']:.1f}, "
                f"{event['n']} episodes)")
    return (f"{name}  done: {event['steps']} steps (env_steps {event['env_steps']}), "
            f"final eval return {fmt(event['final_eval'], '.1f')}")


def fmt(value, spec=".4g"):
    return "n/a" if value is None else format(value, spec)
