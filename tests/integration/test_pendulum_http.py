"""REDQ learns Pendulum-v1 over HTTP: explore acts and transition posts in sync mode,
evaluations with batched eval acts (10 episodes at once). Passes when a mean eval return
reaches THRESHOLD; fails if it has not by MAX_STEPS. The untrained policy must be far
below the bar, so that the test can fail.

PENDULUM_VERBOSE=1 prints every evaluation."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, Pendulum  # noqa: E402

THRESHOLD = -400.0
UNTRAINED_BELOW = -900.0
MAX_STEPS = 6000
EVAL_FROM, EVAL_EVERY, EVAL_EPISODES = 2000, 1000, 10
CONFIG = {"hidden_sizes": [64, 64], "ensemble_size": 5, "subset_size": 2, "batch_size": 128,
          "update_per_step": 5, "actor_delay": 5, "start_timesteps": 1000, "actor_lr": 1e-3,
          "critic_lr": 1e-3, "alpha": "auto", "training": "sync", "buffer_size": 100000,
          "checkpoint_every": 0, "seed": int(os.environ.get("PENDULUM_SEED", "1"))}
VERBOSE = bool(os.environ.get("PENDULUM_VERBOSE"))


class PendulumTest(DaemonTestCase):

    def evaluate(self, name, seed):
        envs = [Pendulum(seed=seed * 100 + i) for i in range(EVAL_EPISODES)]
        obs = [e.reset() for e in envs]
        total = 0.0
        for _ in range(200):
            acts = self.act(name, obs, "eval")["action"]
            obs = []
            for e, a in zip(envs, acts):
                o, r, _, _ = e.step(a[0])
                total += r
                obs.append(o)
        return total / EVAL_EPISODES

    def test_learns_pendulum(self):
        self.create("pendulum", obs_dim=3, act_dim=1, low=[-2.0], high=[2.0],
                    config=dict(CONFIG))
        t0 = time.monotonic()
        untrained = self.evaluate("pendulum", 999)
        if VERBOSE:
            print("untrained: %.1f" % untrained, file=sys.stderr)
        self.assertLess(untrained, UNTRAINED_BELOW,
                        "the untrained policy already scores %.1f" % untrained)
        env = Pendulum(seed=2)
        obs = env.reset()
        history = []
        for step in range(1, MAX_STEPS + 1):
            a = self.act("pendulum", obs)["action"]
            nxt, rew, term, trunc = env.step(a[0])
            self.post_transitions("pendulum", [{"obs": obs, "action": a, "reward": rew,
                                                "next_obs": nxt, "terminated": term,
                                                "truncated": trunc}])
            obs = env.reset() if (term or trunc) else nxt
            if step >= EVAL_FROM and step % EVAL_EVERY == 0:
                st = self.state("pendulum")
                # sync mode: every update owed so far is done
                self.assertEqual(st["updates"], (step - CONFIG["start_timesteps"] + 1) * 5)
                self.assertEqual(st["pending_updates"], 0)
                score = self.evaluate("pendulum", step)
                history.append((step, round(score, 1), round(time.monotonic() - t0, 1)))
                if VERBOSE:
                    print("step %d: eval %.1f (%.0f s)" % history[-1], file=sys.stderr)
                if score >= THRESHOLD:
                    return
        self.fail("no mean eval return >= %.0f within %d steps: %r"
                  % (THRESHOLD, MAX_STEPS, history))


if __name__ == "__main__":
    unittest.main()
