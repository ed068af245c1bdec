#!/usr/bin/env python3
"""Train a redqd agent on any Gymnasium environment with Box observations and actions.

The loop, options and output are pendulum.py's (this file only adapts Gymnasium's API to
it); it needs gymnasium and numpy installed (`pip install gymnasium`, plus `mujoco` for the
MuJoCo tasks). Observations are flattened; the action bounds must be finite.

    python3 clients/examples/gym_env.py --env Pendulum-v1 --steps 10000
    python3 clients/examples/gym_env.py --env HalfCheetah-v4 --steps 200000 --mode async \\
        --config-json '{"start_timesteps": 5000, "training": "async"}'
"""

import importlib.util
import math
import re
import sys

import pendulum   # the shared loop (this directory is on sys.path when run as a script)


class GymEnv:
    """A Gymnasium environment behind the interface pendulum.run() steps."""

    def __init__(self, env_id, seed):
        import gymnasium
        import numpy as np

        self._np = np
        self.env = gymnasium.make(env_id)
        obs_space, act_space = self.env.observation_space, self.env.action_space
        if not isinstance(obs_space, gymnasium.spaces.Box) or \
                not isinstance(act_space, gymnasium.spaces.Box):
            raise SystemExit(f"{env_id}: needs Box observation and action spaces, has "
                             f"{obs_space} and {act_space}")
        self.obs_dim = math.prod(obs_space.shape)
        self.action_low = [float(x) for x in act_space.low.reshape(-1)]
        self.action_high = [float(x) for x in act_space.high.reshape(-1)]
        if not all(math.isfinite(x) for x in self.action_low + self.action_high):
            raise SystemExit(f"{env_id}: the action bounds must be finite, not {act_space}")
        self._act_shape = act_space.shape
        self._act_dtype = act_space.dtype
        self._seed = seed               # used by the first reset

    def reset(self, seed=None):
        if seed is None:
            seed, self._seed = self._seed, None
        obs, _ = self.env.reset(seed=seed)
        return self._flat(obs)

    def step(self, action):
        action = self._np.asarray(action, dtype=self._act_dtype).reshape(self._act_shape)
        obs, reward, terminated, truncated, _ = self.env.step(action)
        return self._flat(obs), float(reward), bool(terminated), bool(truncated)

    def _flat(self, obs):
        return self._np.asarray(obs, dtype=self._np.float64).reshape(-1).tolist()


def main():
    parser = pendulum.make_parser(
        "Train a redqd agent on a Gymnasium environment over HTTP.", default_name=None)
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium environment id")
    args = pendulum.parse_args(parser)
    if args.name is None:
        args.name = re.sub(r"[^A-Za-z0-9_.-]", "-", args.env)[:64]
    if importlib.util.find_spec("gymnasium") is None:
        parser.error("gymnasium is not installed (pip install gymnasium)")
    return pendulum.main_with(args, lambda seed: GymEnv(args.env, seed))


if __name__ == "__main__":
    sys.exit(main())
