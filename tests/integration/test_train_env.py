"""redqd_client.train() against the real daemon, with Gymnasium-style environments written
here (gymnasium is not needed: anything with its reset/step signature will do).

- K environments are K env_id streams, stepped with one batched act per round; every
  transition is posted, in posts with distinct batch ids; the daemon's episode returns
  per stream are exactly the ones the environments saw.
- Evaluations every eval_every steps (and at the end) run eval_episodes episodes with
  batched eval acts, and are recorded (GET .../evaluations) with the returns the eval
  environments saw.
- PUT: the same spec trains the same agent further; another config is refused with 409
  naming the difference, before anything is stepped or posted.
- The shape comes from the spaces (redqd_client.Box, or numpy-based ones like
  Gymnasium's, whose actions arrive as arrays of their dtype), or from the spec.
- Ctrl-C in the middle posts what was taken; an environment with the old Gym API is
  refused with a clear message.
"""

import io
import math
import os
import random
import sys
import unittest
from contextlib import redirect_stdout

from tests.integration.harness import REPO, DaemonTestCase, small_config

sys.path.insert(0, os.path.join(REPO, "clients", "python"))
from redqd_client import Box, Client, RedqdError, train  # noqa: E402


class Walk:
    """A 3-dimensional walk: obs [x, y, t/10], action in [-1, 1]^1 moves x; reward -|x - y|.
    An episode ends terminated when |x| > 1.5, truncated after `horizon` steps. Every
    ended episode's (return, length) is appended to `log` (a list shared by the test)."""

    observation_space = Box(-math.inf, math.inf, shape=(3,))
    action_space = Box([-1.0], [1.0])

    def __init__(self, log, horizon=12):
        self.log, self.horizon = log, horizon
        self.rng = random.Random()
        self.actions = []

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng.seed(seed)
        self.x, self.y, self.t, self.ret = self.rng.uniform(-1, 1), self.rng.uniform(-1, 1), 0, 0.0
        return [self.x, self.y, 0.0], {}

    def step(self, action):
        self.actions.append(action)
        self.x += 0.5 * float(action[0])
        self.t += 1
        reward = -abs(self.x - self.y)
        self.ret += reward
        terminated, truncated = abs(self.x) > 1.5, self.t >= self.horizon
        if terminated or truncated:
            self.log.append((self.ret, self.t))
        return [self.x, self.y, self.t / 10], reward, terminated, truncated, {"t": self.t}


class SpyClient(Client):
    """Counts the act calls (and their batch sizes) and the transitions posts."""

    def __init__(self, url):
        super().__init__(url)
        self.acts, self.posts = [], []

    def act(self, name, obs, mode="explore"):
        self.acts.append((mode, len(obs)))
        return super().act(name, obs, mode)

    def post_transitions(self, name, transitions, batch_id=None, timeout=None):
        self.posts.append((batch_id, list(transitions)))
        return super().post_transitions(name, transitions, batch_id=batch_id, timeout=timeout)


def spec(name, **config):
    return {"name": name, "config": small_config(training="sync", **config)}


class TrainTest(DaemonTestCase):

    def setUp(self):
        super().setUp()
        self.client = SpyClient("http://127.0.0.1:%d" % self.daemon.port)

    def tearDown(self):
        self.client.close()

    def run_train(self, env_fns, agent, steps, **kw):
        events = []
        kw.setdefault("progress", events.append)
        result = train(env_fns, agent, steps, client=self.client, **kw)
        return result, events

    def test_streams_batches_and_evaluations(self):
        train_log, eval_log = [], []
        envs = [lambda: Walk(train_log)] * 3
        result, events = self.run_train(
            envs, spec("walk"), 100, eval_every=40, eval_episodes=2, post_every=2,
            eval_env_fn=lambda: Walk(eval_log, horizon=7), log_every=50)

        # 100 steps exactly: 33 rounds of 3 and one of 1, each one batched explore act
        explore = [n for mode, n in self.client.acts if mode == "explore"]
        self.assertEqual(explore, [3] * 33 + [1])
        state = self.state("walk")
        self.assertEqual((result.steps, state["env_steps"]), (100, 100))

        # every transition posted once, in posts with distinct batch ids, 3 streams
        ids = [b for b, _ in self.client.posts]
        self.assertEqual(len(set(ids)), len(ids))
        self.assertTrue(all(b for b in ids))
        rows = [r for _, rows in self.client.posts for r in rows]
        self.assertEqual(len(rows), 100)
        self.assertEqual(len({r["env_id"] for r in rows}), 3)
        self.assertLessEqual(max(len(rows) for _, rows in self.client.posts), 6)

        # the daemon's episodes per stream are the environments' own
        eps = self.assertOK(self.c.get("/v1/agents/walk/episodes?limit=1000"))["episodes"]
        got = sorted((round(e["return"], 4), e["length"]) for e in eps
                     if e["source"] == "transitions")
        self.assertEqual(got, sorted((round(r, 4), n) for r, n in train_log))
        self.assertEqual(sorted(result.episode_returns), sorted(r for r, _ in train_log))
        self.assertEqual(state["episodes"], len(train_log))

        # evaluations at 42 (the round that passed 40), 81, and the end; recorded as run
        evals = self.assertOK(self.c.get("/v1/agents/walk/evaluations"))["rows"]
        self.assertEqual([r["env_steps"] for r in evals], [42, 81, 100])
        self.assertEqual(evals, result.evaluations)
        self.assertEqual([r["n"] for r in evals], [2, 2, 2])
        for i, row in enumerate(evals):
            returns = [r for r, _ in eval_log[2 * i:2 * i + 2]]
            self.assertAlmostEqual(row["mean"], sum(returns) / 2, places=4)
            self.assertAlmostEqual(row["min"], min(returns), places=4)
        self.assertEqual(result.final_eval, evals[-1]["mean"])
        # batched eval acts: 2 episodes at once while both run
        self.assertIn(("eval", 2), self.client.acts)
        self.assertEqual(state["episodes"], len(train_log))     # eval episodes add none

        kinds = [e["event"] for e in events]
        self.assertEqual(kinds[0], "start")
        self.assertEqual(kinds[-1], "end")
        self.assertEqual(kinds.count("eval"), 3)
        self.assertEqual([e["steps"] for e in events if e["event"] == "progress"], [51, 100])
        self.assertTrue(events[0]["created"])

    def test_same_spec_continues_other_is_refused(self):
        log = []
        self.run_train([lambda: Walk(log)] * 2, spec("again"), 20, eval_episodes=0)
        result, events = self.run_train([lambda: Walk(log)] * 2, spec("again"), 20,
                                        eval_episodes=0)
        self.assertFalse(events[0]["created"])
        self.assertEqual(events[0]["env_steps"], 20)
        self.assertEqual(result.agent["state"]["env_steps"], 40)
        self.assertEqual(result.evaluations, [])

        acts = len(self.client.acts)
        with self.assertRaises(RedqdError) as cm:
            self.run_train([lambda: Walk(log)], spec("again", gamma=0.9), 20)
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "already_exists"))
        self.assertIn("config.gamma", cm.exception.detail)
        self.assertEqual(len(self.client.acts), acts)            # nothing stepped
        self.assertEqual(self.state("again")["env_steps"], 40)

        # by name: the agent as it is
        result, _ = self.run_train([lambda: Walk(log)], "again", 5, eval_episodes=1)
        self.assertEqual(result.agent["state"]["env_steps"], 45)
        with self.assertRaises(RedqdError) as cm:
            self.run_train([lambda: Walk(log)], "no-such-agent", 5)
        self.assertEqual(cm.exception.status, 404)

    def test_shape_from_the_spec_when_the_env_has_no_spaces(self):
        class Bare:
            """Gymnasium's signature, no spaces: a 2-d observation of shape (2, 1)."""

            def reset(self, seed=None, options=None):
                self.t = 0
                return [[0.5], [0.25]], {}

            def step(self, action):
                self.t += 1
                return [[0.5], [float(self.t)]], 1.0, self.t == 4, False, {}

        with self.assertRaises(ValueError) as cm:
            self.run_train([Bare], spec("bare"), 8)
        self.assertIn("obs_dim", str(cm.exception))
        agent = dict(spec("bare"), obs_dim=2, action_low=[-3.0, 0.0], action_high=[3.0, 1.0])
        result, _ = self.run_train([Bare], agent, 8, eval_episodes=1)
        a = result.agent
        self.assertEqual((a["obs_dim"], a["act_dim"], a["state"]["env_steps"]), (2, 2, 8))
        self.assertEqual(a["state"]["episodes"], 2)
        self.assertEqual(a["state"]["last_return"], 4.0)

    def test_numpy_spaces_and_arrays(self):
        try:
            import numpy as np
        except ImportError:
            self.skipTest("numpy is not installed")

        class NumpyBox:
            def __init__(self, low, high, dtype):
                self.low, self.high, self.dtype = np.asarray(low, dtype), np.asarray(high, dtype), dtype
                self.shape = self.low.shape

        class Arrays:
            """Like a Gymnasium environment: numpy observations (shape (2, 2)) and rewards,
            and actions it wants as float32 arrays of its action space's shape."""
            observation_space = NumpyBox(np.full((2, 2), -np.inf), np.full((2, 2), np.inf),
                                         np.float64)
            action_space = NumpyBox([[-1.0, -2.0]], [[1.0, 2.0]], np.float32)

            def __init__(self):
                self.seen = []

            def reset(self, seed=None, options=None):
                self.t = 0
                return np.zeros((2, 2)), {}

            def step(self, action):
                self.seen.append(action)
                self.t += 1
                return (np.ones((2, 2)) * self.t, np.float32(0.5), np.bool_(False),
                        np.bool_(self.t == 3), {})

        made = []

        def make():
            made.append(Arrays())
            return made[-1]

        result, _ = self.run_train([make, make], spec("arrays"), 12, eval_episodes=1)
        a = result.agent
        self.assertEqual((a["obs_dim"], a["act_dim"], a["action_high"]), (4, 2, [1, 2]))
        self.assertEqual(a["state"]["episodes"], 4)
        self.assertEqual(a["state"]["last_return"], 1.5)
        action = made[0].seen[0]
        self.assertIsInstance(action, np.ndarray)
        self.assertEqual((action.dtype, action.shape), (np.float32, (1, 2)))

    def test_interrupt_posts_what_was_taken(self):
        log = []

        class Stops(Walk):
            def step(self, action):
                if len(self.actions) == 7:
                    raise KeyboardInterrupt
                return super().step(action)

        with self.assertRaises(KeyboardInterrupt):
            self.run_train([lambda: Stops(log)], spec("stops"), 50, post_every=100)
        self.assertEqual(self.state("stops")["env_steps"], 7)

    def test_old_gym_api_is_refused(self):
        class OldGym(Walk):
            def reset(self, seed=None, options=None):
                return super().reset(seed)[0]

        with self.assertRaises(TypeError) as cm:
            self.run_train([lambda: OldGym([])], spec("old"), 5)
        self.assertIn("(obs, info)", str(cm.exception))

    def test_progress_lines(self):
        out = io.StringIO()
        with redirect_stdout(out):
            train([lambda: Walk([])] * 2, spec("printed"), 20, eval_every=10, eval_episodes=1,
                  client=self.client, log_every=10)
        text = out.getvalue()
        self.assertIn("agent 'printed' created (training sync; 2 environments", text)
        self.assertRegex(text, r"printed  steps +10/20  env_steps +10")
        self.assertRegex(text, r"printed  eval at env_steps 10: mean return -?\d")
        self.assertIn("printed  done: 20 steps (env_steps 20)", text)


if __name__ == "__main__":
    unittest.main()
