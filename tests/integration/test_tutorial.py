"""docs/tutorial.md's commands (and README.md's curl session), run as written against a
daemon on a free port.

The tutorial marks what a reader types with an HTML comment before the fenced block:

    <!-- test -->                 a shell block: run it
    <!-- test: file NAME -->      a block to save as NAME (in the current directory)
    <!-- test: fails -->          a shell block that must fail (the tutorial shows why)

The marked blocks, in order, become one bash script (set -euo pipefail), run from the
repository's top with HOME in a temporary directory (the venv and ~/first-experiment go
there), REDQD_URL pointing at the test's daemon (step 1's `make run`, which the test
does itself), Debian's python3 first on PATH and pip offline (`make deps-test` installs
python3-venv and python3-matplotlib, which the tutorial uses). Then the results are
checked: the two agents trained with their evaluations recorded, the refused run
changed nothing, the plot and the downloaded files exist, the dashboard is served.
"""

import os
import re
import subprocess
import tempfile
import unittest

from tests.integration.harness import REPO, SANITIZED, DaemonTestCase

TUTORIAL = os.path.join(REPO, "docs", "tutorial.md")
MARK = re.compile(r"^<!-- test(?:: (file|fails)\s*(\S*))? -->\n(?:\n)*```[^\n]*\n(.*?)^```$",
                  re.M | re.S)


def tutorial_script(text):
    """The bash script of the marked blocks, and how many there were."""
    parts, count = [], 0
    for kind, arg, body in MARK.findall(text):
        count += 1
        if kind == "file":
            parts.append("cat > %s <<'TUTORIAL_EOF'\n%sTUTORIAL_EOF" % (arg, body))
        elif kind == "fails":
            parts.append("if (\n%s) ; then echo 'tutorial: this block should have failed' "
                         ">&2; exit 1; fi" % body)
        else:
            parts.append(body)
    return "set -euo pipefail\n" + "\n".join(parts), count


@unittest.skipIf(SANITIZED, "its subject is the tutorial's text; its requests are of the kinds the "
                 "other files of this pass make, and the plain pass runs it")
class TutorialTest(DaemonTestCase):

    def test_tutorial_commands(self):
        with open(TUTORIAL, encoding="utf-8") as f:
            text = f.read()
        script, blocks = tutorial_script(text)
        self.assertGreaterEqual(blocks, 8, "the tutorial's test markers went missing")
        self.assertIn("](img/dashboard.png)", text)
        self.assertIn("make run", text)

        home = tempfile.mkdtemp(prefix="tutorial-home-", dir=self.daemon.tmp)
        url = "http://127.0.0.1:%d" % self.daemon.port
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("REDQD_", "PIP_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(HOME=home, REDQD_URL=url, PATH="/usr/bin:/bin:/usr/sbin:/sbin",
                   PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
        r = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=540)
        self.assertEqual(r.returncode, 0, "script:\n%s\nstdout:\n%s\nstderr:\n%s"
                         % (script, r.stdout[-6000:], r.stderr[-6000:]))

        # redqctl health, the two runs with their evaluations and final returns
        self.assertIn('"status": "ok"', r.stdout)
        for name in ("utd1", "utd5"):
            self.assertRegex(r.stdout, r"%s: final eval return -?\d+\.\d" % name)
        self.assertIn("already_exists", r.stderr)               # the refused run says why
        self.assertIn("config.update_per_step", r.stderr)
        evals = self.assertOK(self.c.get("/v1/agents/utd5/evaluations"))["rows"]
        self.assertEqual([row["env_steps"] for row in evals],
                         [1000, 2000, 3000, 4000, 5000, 6000])
        agent = self.agent("utd5")
        self.assertEqual((agent["config"]["update_per_step"], agent["state"]["env_steps"]),
                         (5, 6000))                              # the refused run: nothing
        self.assertGreater(agent["state"]["episodes"], 0)
        self.assertEqual(self.c.get("/v1/agents/utd1").status, 404)   # step 7 deleted it
        self.assertIn("utd5", r.stdout)                          # watch and list

        work = os.path.join(home, "first-experiment")
        for name in ("utd5.ckpt", "utd5.safetensors"):
            self.assertGreater(os.path.getsize(os.path.join(work, name)), 0, name)
        with open(os.path.join(work, "curves.png"), "rb") as f:    # Debian's matplotlib
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

        page = self.c.get("/")                                   # step 5's dashboard
        self.assertEqual(page.status, 200)
        self.assertIn("html", page.ctype)

    def test_readme_curl_session_runs_twice(self):
        """README.md's curl session, twice: PUT finds its agent the second time."""
        with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        block = re.search(r"^## A session with curl\n\n```sh\n(.*?)^```$", readme,
                          re.M | re.S).group(1)
        url = "http://127.0.0.1:%d" % self.daemon.port
        self.assertIn("U=http://127.0.0.1:8470\n", block)
        script = block.replace("U=http://127.0.0.1:8470\n", "U=%s\n" % url)
        for _ in range(2):
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", script],
                               cwd=self.daemon.tmp, capture_output=True, text=True,
                               timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn('"code":', r.stdout)             # no problem document
        names = [a["name"] for a in self.assertOK(self.c.get("/v1/agents"))["agents"]]
        self.assertIn("curl-pendulum", names)
        state = self.state("curl-pendulum")
        self.assertEqual((state["env_steps"], state["episodes"]), (2, 2))
        evals = self.assertOK(self.c.get("/v1/agents/curl-pendulum/evaluations"))["rows"]
        self.assertEqual(len(evals), 2)

    def test_script_extraction(self):
        text = ("intro\n\n<!-- test -->\n```sh\necho one\n```\n\n```sh\nnot marked\n```\n"
                "<!-- test: file a.py -->\n\n```python\nprint(1)\n```\n"
                "<!-- test: fails -->\n```sh\nfalse\n```\n")
        script, blocks = tutorial_script(text)
        self.assertEqual(blocks, 3)
        self.assertNotIn("not marked", script)
        self.assertIn("cat > a.py <<'TUTORIAL_EOF'\nprint(1)\nTUTORIAL_EOF", script)
        r = subprocess.run(["bash", "-c", script], cwd=self.daemon.tmp, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, "one\n"))
        with open(os.path.join(self.daemon.tmp, "a.py")) as f:
            self.assertEqual(f.read(), "print(1)\n")


if __name__ == "__main__":
    unittest.main()
