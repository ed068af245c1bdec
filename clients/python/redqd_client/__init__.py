"""redqd_client: the Python client of redqd, the REDQ training daemon (standard library only).

    from redqd_client import Client, train

    c = Client()                                  # $REDQD_URL or http://127.0.0.1:8470
    c.put_agent("pendulum", obs_dim=3, action_low=[-2.0], action_high=[2.0])
    train([make_env] * 4, {"name": "pendulum", "config": {"training": "sync"}},
          steps=20_000, eval_every=2000, eval_episodes=5)

Modules:
  client    Client (one method per endpoint), RedqdError, DaemonUnreachable, new_batch_id
  training  train(): Gymnasium-style environments -> an agent, with evaluations recorded
  policy    load_policy_safetensors() and eval_action(): the policy file, offline
  cli       the `redqctl` command (also `python3 -m redqd_client`)
  watch, plot   `redqctl watch` and `redqctl plot`
"""

__version__ = "2.0.0"

from .client import (DEFAULT_URL, Client, DaemonUnreachable, RedqdError,  # noqa: E402
                     default_token, default_url, new_batch_id)
from .policy import eval_action, load_policy_safetensors  # noqa: E402
from .training import Box, TrainResult, train  # noqa: E402


def main(argv=None):
    """`redqctl` (kept here for `redqd_client.main()` callers): returns the exit status."""
    from .cli import main as cli_main
    return cli_main(argv)


__all__ = ["Client", "RedqdError", "DaemonUnreachable", "new_batch_id", "DEFAULT_URL",
           "default_url", "default_token", "load_policy_safetensors", "eval_action",
           "train", "TrainResult", "Box", "main", "__version__"]
