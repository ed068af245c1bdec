#!/usr/bin/env python3
"""Train a redqd agent on any Gymnasium environment with Box observations and actions.

The options and output are pendulum.py's; the loop is redqd_client.train(), which takes
Gymnasium environments as they are (observations are flattened, actions handed over as
arrays of the action space's dtype). Needs gymnasium (`pip install gymnasium`, plus
`mujoco` for the MuJoCo tasks); the action bounds must be finite.

    python3 clients/examples/gym_env.py --env Pendulum-v1 --steps 10000
    python3 clients/examples/gym_env.py --env HalfCheetah-v4 --steps 200000 --envs 4 \\
        --mode async --batch 10 --config-json '{"start_timesteps": 5000}'
"""

import importlib.util
import re
import sys

import pendulum   # the shared options and run (this directory is on sys.path as a script)


def make_env_fn(env_id):
    """A function making the environment, once its spaces have been checked."""
    import gymnasium

    env = gymnasium.make(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(obs_space, gymnasium.spaces.Box) or \
            not isinstance(act_space, gymnasium.spaces.Box):
        raise SystemExit(f"{env_id}: needs Box observation and action spaces, has "
                         f"{obs_space} and {act_space}")
    return lambda: gymnasium.make(env_id)


def main():
    parser = pendulum.make_parser(
        "Train a redqd agent on a Gymnasium environment over HTTP.", default_name=None)
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium environment id")
    args = pendulum.parse_args(parser)
    if args.name is None:
        args.name = re.sub(r"[^A-Za-z0-9_.-]", "-", args.env)[:64]
    if importlib.util.find_spec("gymnasium") is None:
        parser.error("gymnasium is not installed (pip install gymnasium)")
    return pendulum.main_with(args, make_env_fn(args.env))


if __name__ == "__main__":
    sys.exit(main())
