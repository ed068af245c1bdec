"""Unit tests of redqctl's input handling, the watch table, the plot helpers and train()'s
environment adapters, none of which needs a daemon (tests/integration/test_cli.py and
test_train_env.py run them against the real one).

    /usr/bin/python3 -m unittest tests/clients/test_cli_unit.py -v
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "clients", "python"))
from redqd_client import Box, RedqdError, cli, plot, training, watch  # noqa: E402


class TestInput(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_settings(self):
        self.assertEqual(cli.parse_settings(["training=paused", "actor_lr=1e-4",
                                             "hidden_sizes=[8, 8]", "alpha=auto",
                                             "exploration_noise=null", "name=a=b"]),
                         {"training": "paused", "actor_lr": 1e-4, "hidden_sizes": [8, 8],
                          "alpha": "auto", "exploration_noise": None, "name": "a=b"})
        for bad in (["seed"], ["=1"]):
            with self.assertRaises(cli.UsageError):
                cli.parse_settings(bad)

    def test_numbers(self):
        self.assertEqual(cli.parse_numbers(["1", "-2.5", "3e-1"], "obs"), [1.0, -2.5, 0.3])
        self.assertEqual(cli.parse_numbers(["[[1, 2], [3, 4]]"], "obs"), [[1, 2], [3, 4]])
        with self.assertRaises(cli.UsageError):
            cli.parse_numbers(["1", "x"], "obs")

    def test_agent_files(self):
        toml = 'name = "t"\nobs_dim = 3\naction_low = [-1.0]\naction_high = [1.0]\n' \
               '[config]\nhidden_sizes = [8]\n'
        want = {"name": "t", "obs_dim": 3, "action_low": [-1.0], "action_high": [1.0],
                "config": {"hidden_sizes": [8]}}
        self.assertEqual(cli.load_agent_file(self.write("a.toml", toml)), want)
        self.assertEqual(cli.load_agent_file(self.write("a.json", json.dumps(want))), want)
        self.assertEqual(cli.load_agent_file(self.write("a.conf", toml)), want)
        self.assertEqual(cli.load_agent_file(self.write("b.conf", json.dumps(want))), want)
        for name, text in (("x.json", "{"), ("x.toml", "a = = 1"), ("y.json", "[1]")):
            with self.assertRaises(cli.UsageError):
                cli.load_agent_file(self.write(name, text))
        with self.assertRaises(cli.UsageError):
            cli.load_agent_file(os.path.join(self.dir.name, "missing.toml"))

    def test_render_json_is_json(self):
        value = {"a": [1, 2.5, "x"], "b": {"c": [[1, 2], [3]], "d": {}}, "e": [], "f": None,
                 "g": [{"h": 1}]}
        text = cli.render_json(value)
        self.assertEqual(json.loads(text), value)
        self.assertIn('"a": [1, 2.5, "x"]', text)          # lists of scalars on one line


class FakeClient:
    """Answers watch's calls from dicts; a missing agent is a 404."""

    base_url = "http://fake:1"

    def __init__(self, agents):
        self.agents = agents
        self.retries = 10

    def list_agents(self):
        return {"agents": [{"name": n} for n in sorted(self.agents)]}

    def get_agent(self, name):
        if name not in self.agents:
            raise RedqdError(404, "not_found", "no agent", "Not Found")
        return {"state": self.agents[name]["state"]}

    def list_episodes(self, name, limit=None):
        return {"episodes": self.agents[name]["episodes"][:limit]}

    def evaluations(self, name, since=None, limit=None):
        rows = [r for r in self.agents[name]["evals"] if since is None or r["row"] > since]
        return {"rows": rows[:limit]}


def state(env_steps, updates, **more):
    st = {"status": "ok", "training": "async", "env_steps": env_steps, "updates": updates,
          "pending_updates": 12.5, "critic_loss": 0.5, "actor_loss": -3.25, "alpha": 0.1,
          "episodes": 3, "last_return": -120.0, "updates_per_s": 0}
    st.update(more)
    return st


class TestWatch(unittest.TestCase):
    def test_frame(self):
        eps = [{"return": r, "mode": m, "ended_at": e, "abandoned": a}
               for r, m, e, a in ((-100.0, "explore", "t", False), (-50.0, "eval", "t", False),
                                  (-300.0, "explore", None, False),
                                  (-999.0, "explore", "t", True), (-200.0, "explore", "t", False))]
        fake = FakeClient({"run-a": {"state": state(1000, 5000), "episodes": eps,
                                     "evals": [{"row": 1, "mean": -80.0, "env_steps": 900}]}})
        agents = {}
        lines = watch.frame(fake, ["run-a", "gone"], agents, 2.0, first=True)
        self.assertIn("http://fake:1", lines[0])
        header = lines[2].split()
        row = dict(zip(header, lines[3].split()))
        self.assertEqual(row, {"agent": "run-a", "status": "ok", "mode": "async",
                               "env_steps": "1000", "steps/s": "-", "updates": "5000",
                               "upd/s": "-", "pending": "12", "critic": "0.5",
                               "actor": "-3.25", "alpha": "0.1", "episodes": "3",
                               "last_ret": "-120.0", "ret(10)": "-150.0", "eval": "-80.0",
                               "eval@": "900"})
        self.assertEqual(lines[4].split(), ["gone", "not", "found"])
        # a second frame: rates from the difference, the eval row remembered
        agents["run-a"].last = (agents["run-a"].last[0] - 2.0,) + agents["run-a"].last[1:]
        fake.agents["run-a"]["state"] = state(1400, 6000)
        fake.agents["run-a"]["evals"] = []
        row = dict(zip(header, watch.frame(fake, ["run-a"], agents, 2.0)[3].split()))
        self.assertAlmostEqual(float(row["steps/s"]), 200.0, delta=5)
        self.assertAlmostEqual(float(row["upd/s"]), 500.0, delta=15)
        self.assertEqual(row["eval"], "-80.0")

    def test_no_agents_and_daemon_gone(self):
        self.assertEqual(watch.frame(FakeClient({}), [], {}, 1.0)[1], "no agents yet")

        class Gone(FakeClient):
            def list_agents(self):
                raise ConnectionRefusedError("refused")

        lines = watch.frame(Gone({}), [], {}, 1.0)                 # later frames say so
        self.assertIn("refused", lines[1])
        with self.assertRaises(ConnectionError):
            watch.frame(Gone({}), [], {}, 1.0, first=True)          # the first one raises

    def test_count_and_non_terminal_output(self):
        import io
        out = io.StringIO()
        fake = FakeClient({"a": {"state": state(1, 1), "episodes": [], "evals": []}})
        self.assertEqual(watch.watch(fake, [], interval=0.001, count=3, out=out), 0)
        self.assertEqual(out.getvalue().count("redqd at"), 3)
        self.assertEqual(fake.retries, 0)


class TestPlotHelpers(unittest.TestCase):
    def test_moving_average(self):
        self.assertEqual(plot.moving_average([1, 2, 3, 4, 5], 2), [1, 1.5, 2.5, 3.5, 4.5])
        self.assertEqual(plot.moving_average([4, 2], 1), [4, 2])
        self.assertEqual(plot.moving_average([], 3), [])

    def test_explore_returns_against_steps(self):
        class C:
            def get_agent(self, name):
                return {"state": {"env_steps": 1000, "updates": 0}}

            def list_episodes(self, name, limit):
                return {"episodes": [   # newest first
                    {"return": 3.0, "length": 30, "mode": "explore", "ended_at": "t"},
                    {"return": 0.0, "length": 5, "mode": "explore", "ended_at": None},
                    {"return": 9.0, "length": 7, "mode": "eval", "ended_at": "t"},
                    {"return": 2.0, "length": 20, "mode": "explore", "ended_at": "t"},
                    {"return": 1.0, "length": 10, "mode": "explore", "ended_at": "t"}]}

            def iter_evaluations(self, name, page_size):
                return iter([])

            iter_stats = iter_evaluations

        run = plot.fetch(C(), "x")
        self.assertEqual(run["explore"], ([10, 30, 60], [1.0, 2.0, 3.0]))


class TestEnvironments(unittest.TestCase):
    def test_flat(self):
        self.assertEqual(training._flat([[1, 2], (3,), 4.5]), [1.0, 2.0, 3.0, 4.5])
        self.assertEqual(training._flat(7), [7.0])

    def test_box(self):
        box = Box(-1.0, 1.0, shape=(2, 2))
        self.assertEqual((box.low, box.high, box.shape), ([-1.0] * 4, [1.0] * 4, (2, 2)))
        self.assertEqual(Box([0, 1], [2, 3]).shape, (2,))
        with self.assertRaises(ValueError):
            Box([0], [1, 2])

    def test_agent_spec(self):
        class Env:
            observation_space = Box(-1.0, 1.0, shape=(3, 2))
            action_space = Box([-2.0, 0.0], [2.0, 1.0])

        spec = training._agent_spec({"name": "a", "config": {"seed": 1}}, Env())
        self.assertEqual(spec, {"name": "a", "config": {"seed": 1}, "obs_dim": 6,
                                "action_low": [-2.0, 0.0], "action_high": [2.0, 1.0]})
        for bad in ({"config": {}}, {"name": "a", "confg": {}}, "a b".split()):
            with self.assertRaises(ValueError):
                training._agent_spec(bad, Env())

        class Unbounded(Env):
            action_space = Box([-float("inf")], [1.0])

        with self.assertRaises(ValueError) as cm:
            training._agent_spec({"name": "a"}, Unbounded())
        self.assertIn("finite", str(cm.exception))

    def test_train_checks_its_arguments(self):
        for args in (([], "a", 10), ([object()], "a", 10), ([dict], "a", 0),
                     ([dict], "a", 10.5)):
            with self.assertRaises(ValueError):
                training.train(*args, client=object())

    def test_describe(self):
        line = training.describe({"event": "eval", "agent": "a", "env_steps": 10, "mean": -1.25,
                                  "min": -2.0, "max": 0.5, "n": 2})
        self.assertEqual(line, "a  eval at env_steps 10: mean return -1.2 (min -2.0, max 0.5, "
                               "2 episodes)")


if __name__ == "__main__":
    unittest.main()
