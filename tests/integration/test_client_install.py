"""`pip install ./clients/python`, offline, gives the redqd_client module and the redqctl
command; both work against the real daemon with nothing but the standard library.

- into a fresh venv (no system site packages, so no numpy or matplotlib), with
  PIP_NO_INDEX=1 and a proxy that goes nowhere: the in-tree build backend needs nothing
  from the network;
- with --target into a directory, from the sdist the backend builds, and editable (-e);
- the installed `redqctl` creates an agent through PUT and lists it, train() trains it
  on an environment defined in the venv's own Python, and `redqctl plot` says
  matplotlib is missing (there is none in the venv).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from tests.integration.harness import REPO, SANITIZED, Daemon

CLIENT_DIR = os.path.join(REPO, "clients", "python")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

ENV_AND_TRAIN = r"""
import math, random, sys
from redqd_client import Box, train

class Line:
    observation_space = Box(-math.inf, math.inf, shape=(2,))
    action_space = Box([-1.0], [1.0])
    def reset(self, seed=None, options=None):
        self.t = 0
        return [0.0, 1.0], {}
    def step(self, action):
        self.t += 1
        return [self.t / 10, 1.0], -abs(float(action[0])), False, self.t >= 10, {}

result = train([Line, Line], {"name": "venv-run", "config": {
    "hidden_sizes": [16], "ensemble_size": 2, "batch_size": 8, "start_timesteps": 0,
    "training": "sync", "update_per_step": 1, "checkpoint_every": 0}},
    steps=40, eval_every=20, eval_episodes=2, progress=False)
print(result.agent["state"]["env_steps"], len(result.evaluations), "numpy" in sys.modules)
"""


def offline_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDQD_", "PIP_", "PYTHON")) and k != "VIRTUAL_ENV"}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    env.update(extra)
    return env


@unittest.skipIf(SANITIZED, "its subject is the Python package's installation; the plain "
                 "pass runs it")
class ClientInstallTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="redqd-pip-")
        cls.daemon = Daemon()
        cls.daemon.start()
        cls.url = "http://127.0.0.1:%d" % cls.daemon.port

    @classmethod
    def tearDownClass(cls):
        try:
            cls.daemon.stop_ok()
        finally:
            cls.daemon.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_ok(self, args, **kw):
        kw.setdefault("env", offline_env())
        r = subprocess.run(args, cwd=self.tmp, capture_output=True, text=True, timeout=300,
                           **kw)
        self.assertEqual(r.returncode, 0, "%s\nstdout: %s\nstderr: %s"
                         % (" ".join(args), r.stdout, r.stderr))
        return r

    def version(self):
        with open(os.path.join(CLIENT_DIR, "redqd_client", "__init__.py")) as f:
            for line in f:
                if line.startswith("__version__"):
                    return line.split('"')[1]
        self.fail("no __version__")

    def test_venv_install_and_use(self):
        venv = os.path.join(self.tmp, "venv")
        self.run_ok([PYTHON, "-m", "venv", venv])
        pip, py = os.path.join(venv, "bin", "pip"), os.path.join(venv, "bin", "python")
        redqctl = os.path.join(venv, "bin", "redqctl")
        self.run_ok([pip, "install", CLIENT_DIR])
        self.assertIn(self.version(), self.run_ok([redqctl, "--version"]).stdout)

        # the installed module, not the checkout's (the cwd is a temporary directory)
        where = self.run_ok([py, "-c", "import redqd_client; print(redqd_client.__file__)"])
        self.assertTrue(where.stdout.strip().startswith(venv), where.stdout)

        env = offline_env(REDQD_URL=self.url)
        health = json.loads(self.run_ok([redqctl, "health"], env=env).stdout)
        self.assertEqual(health["status"], "ok")
        with open(os.path.join(self.tmp, "a.toml"), "w") as f:
            f.write('name = "venv-agent"\nobs_dim = 2\naction_low = [-1.0]\n'
                    'action_high = [1.0]\n[config]\nhidden_sizes = [16]\n')
        self.assertIn("created", self.run_ok([redqctl, "create", "a.toml"], env=env).stderr)
        self.assertIn("unchanged", self.run_ok([redqctl, "create", "a.toml"], env=env).stderr)
        self.assertIn("venv-agent", self.run_ok([redqctl, "list"], env=env).stdout)

        out = self.run_ok([py, "-c", ENV_AND_TRAIN], env=env).stdout.split()
        self.assertEqual(out, ["40", "2", "False"])              # no numpy was needed

        r = subprocess.run([redqctl, "plot", "venv-run", "-o", "c.png"], cwd=self.tmp,
                           env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("matplotlib is not installed", r.stderr)

        self.run_ok([py, "-m", "redqd_client", "--url", self.url, "get", "venv-run"])
        self.run_ok([pip, "uninstall", "-y", "redqd-client"])
        self.assertFalse(os.path.exists(redqctl))

    def test_target_sdist_and_editable(self):
        target = os.path.join(self.tmp, "target")
        self.run_ok([PYTHON, "-m", "pip", "install", "--target", target, CLIENT_DIR])
        self.assertTrue(os.path.isfile(os.path.join(target, "bin", "redqctl")))
        names = sorted(os.listdir(os.path.join(target, "redqd_client")))
        # Every module of the source tree is installed, and nothing else.
        src = os.path.join(REPO, "clients", "python", "redqd_client")
        self.assertEqual([n for n in names if n.endswith(".py")],
                         sorted(n for n in os.listdir(src) if n.endswith(".py")))
        self.assertIn("cli.py", names)
        r = self.run_ok([PYTHON, "-m", "redqd_client", "--url", self.url, "health"],
                        env=offline_env(PYTHONPATH=target))
        self.assertEqual(json.loads(r.stdout)["status"], "ok")

        # the sdist the backend builds installs too
        dist = os.path.join(self.tmp, "dist")
        os.makedirs(dist)
        code = ("import sys; sys.path.insert(0, %r); import redqd_build; "
                "print(redqd_build.build_sdist(%r))" % (CLIENT_DIR, dist))
        sdist = os.path.join(dist, self.run_ok([PYTHON, "-c", code]).stdout.strip())
        target2 = os.path.join(self.tmp, "target2")
        self.run_ok([PYTHON, "-m", "pip", "install", "--target", target2, sdist])
        self.assertTrue(os.path.isfile(os.path.join(target2, "redqd_client", "training.py")))

        # editable: the venv imports the checkout itself
        venv = os.path.join(self.tmp, "venv-e")
        self.run_ok([PYTHON, "-m", "venv", venv])
        self.run_ok([os.path.join(venv, "bin", "pip"), "install", "-e", CLIENT_DIR])
        r = self.run_ok([os.path.join(venv, "bin", "python"), "-c",
                         "import redqd_client; print(redqd_client.__file__)"])
        self.assertEqual(r.stdout.strip(), os.path.join(CLIENT_DIR, "redqd_client",
                                                        "__init__.py"))


if __name__ == "__main__":
    unittest.main()
