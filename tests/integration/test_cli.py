"""redqctl (clients/python/redqd_client/cli.py) run as a subprocess against the real daemon.

Every subcommand once, the way a user types it (`python3 -m redqd_client` is redqctl from
a checkout; tests/integration/test_client_install.py runs the installed `redqctl`):
create from TOML and JSON through PUT (the same agent again is unchanged, another config
is refused naming the difference), list, get, patch, delete, act, transitions, train,
stats, evaluations, episodes, checkpoints, export, import, restore, policy, health,
metrics, openapi; watch (frames, in place on a terminal, Ctrl-C exits 0); plot (a PNG
with matplotlib, a clear message without it); a daemon that is not there (the URL and a
hint, at once: the client's unit tests check that no retry waits).
"""

import importlib.util
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest

from tests.integration.harness import REPO, DaemonTestCase, rand_rows

CLIENT_DIR = os.path.join(REPO, "clients", "python")

AGENT_TOML = """\
# an agent for the CLI test
obs_dim = 3
action_low = [-2.0]
action_high = [2.0]

[config]
hidden_sizes = [32, 32]
ensemble_size = 3
batch_size = 16
start_timesteps = 0
update_per_step = 1
actor_delay = 2
training = "manual"
checkpoint_every = 0
"""


def cli_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDQD_")}
    env["PYTHONPATH"] = CLIENT_DIR
    return env



def _sigint_default():
    """In the child before exec: Ctrl-C's default action, as a terminal's foreground job
    has it. A `make test` started in the background (`&` without job control) runs with
    SIGINT ignored, which Python keeps, and the child would never see the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

class CliTest(DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="redqctl-", dir=cls.daemon.tmp)
        cls.url = "http://127.0.0.1:%d" % cls.daemon.port

    def redqctl(self, *args, expect=0, stdin=None):
        """Runs redqctl; asserts the exit status (unless expect is None); returns the
        CompletedProcess (text)."""
        r = subprocess.run([sys.executable, "-m", "redqd_client", "--url", self.url] +
                           [str(a) for a in args], cwd=self.tmp, env=cli_env(), input=stdin,
                           capture_output=True, text=True, timeout=120)
        if expect is not None:
            self.assertEqual(r.returncode, expect, "redqctl %s\nstdout: %s\nstderr: %s"
                             % (" ".join(map(str, args)), r.stdout, r.stderr))
        return r

    def json_of(self, *args):
        return json.loads(self.redqctl(*args).stdout)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def make_agent(self, name):
        self.write(name + ".toml", AGENT_TOML)
        self.redqctl("create", name + ".toml", "--name", name)

    def feed(self, name, n=40):
        self.post_transitions(name, rand_rows(n, 3, 1))

    # ---- agents ----------------------------------------------------------------------

    def test_create_from_toml_and_json_through_put(self):
        self.write("agent.toml", 'name = "c1"\n' + AGENT_TOML)
        r = self.redqctl("create", "agent.toml")
        self.assertIn("created agent 'c1'", r.stderr)
        agent = json.loads(r.stdout)
        self.assertEqual(agent["name"], "c1")
        self.assertEqual(agent["config"]["hidden_sizes"], [32, 32])
        self.assertEqual(agent["config"]["training"], "manual")

        # the same again, from TOML and from the equivalent JSON: unchanged, exit 0
        r = self.redqctl("create", "agent.toml")
        self.assertIn("unchanged", r.stderr)
        spec = dict(tomllib.loads(AGENT_TOML), name="c1")
        self.write("agent.json", json.dumps(spec))
        self.assertIn("unchanged", self.redqctl("create", "agent.json").stderr)
        r = self.redqctl("create", "-", stdin=json.dumps(spec))
        self.assertIn("unchanged", r.stderr)

        # another config under the name: refused, naming the difference; nothing changed
        r = self.redqctl("create", "agent.toml", "--set", "seed=5", "--set", "gamma=0.9",
                         expect=1)
        self.assertIn("already_exists", r.stderr)
        self.assertIn("config.", r.stderr)
        self.assertEqual(self.agent("c1")["config"]["seed"], 0)

        # --name and --set make a second run from the same file
        r = self.redqctl("create", "agent.toml", "--name", "c2", "--set", "seed=5",
                         "--set", 'hidden_sizes=[16, 16]')
        agent = json.loads(r.stdout)
        self.assertEqual((agent["name"], agent["config"]["seed"],
                          agent["config"]["hidden_sizes"]), ("c2", 5, [16, 16]))

    def test_create_refuses_bad_files(self):
        self.write("noname.toml", AGENT_TOML)
        self.assertIn("--name", self.redqctl("create", "noname.toml", expect=2).stderr)
        self.write("bad.toml", "obs_dim = 3\nhidden_sizes = [8]\n")
        r = self.redqctl("create", "bad.toml", "--name", "b", expect=2)
        self.assertIn("missing action_high, action_low", r.stderr)
        self.assertIn("unknown hidden_sizes", r.stderr)
        self.write("broken.toml", "obs_dim = = 3\n")
        self.assertIn("not TOML", self.redqctl("create", "broken.toml", "--name", "b",
                                               expect=2).stderr)
        r = self.redqctl("create", "noname.toml", "--name", "b", "--set", "seed", expect=2)
        self.assertIn("KEY=VALUE", r.stderr)
        self.assertEqual(self.c.get("/v1/agents/b").status, 404)

    def test_list_get_patch_delete(self):
        self.make_agent("lgpd")
        r = self.redqctl("list")
        header, *rows = r.stdout.splitlines()
        self.assertEqual(header.split()[:3], ["name", "status", "training"])
        self.assertIn(["lgpd", "ok", "manual"], [row.split()[:3] for row in rows])
        listed = self.json_of("list", "--json")["agents"]
        self.assertIn("lgpd", [a["name"] for a in listed])
        self.assertEqual(self.json_of("get", "lgpd")["obs_dim"], 3)

        agent = self.json_of("patch", "lgpd", "training=paused", "actor_lr=1e-4",
                             'exploration_noise={"type": "gaussian", "sigma": 0.2}')
        self.assertEqual(agent["config"]["training"], "paused")
        self.assertAlmostEqual(agent["config"]["actor_lr"], 1e-4)
        self.assertEqual(agent["config"]["exploration_noise"]["sigma"], 0.2)

        r = self.redqctl("delete", "lgpd", expect=2)          # stdin is not a terminal
        self.assertIn("--yes", r.stderr)
        self.assertEqual(self.c.get("/v1/agents/lgpd").status, 200)
        self.assertIn("deleted", self.redqctl("delete", "lgpd", "--yes").stderr)
        self.assertEqual(self.c.get("/v1/agents/lgpd").status, 404)
        r = self.redqctl("get", "lgpd", expect=1)
        self.assertIn("404 not_found", r.stderr)

    # ---- acting, learning, statistics --------------------------------------------------

    def test_act_transitions_train_stats(self):
        self.make_agent("learn")
        answer = self.json_of("act", "learn", "1", "0", "0.3")
        self.assertEqual(len(answer["action"]), 1)
        self.assertEqual(answer["policy_version"], 0)
        answer = self.json_of("act", "learn", "[[1, 0, 0.3], [0, 1, -0.3]]", "--mode", "eval")
        self.assertEqual(len(answer["action"]), 2)
        self.assertEqual(self.redqctl("act", "learn", "1", "2", expect=1).returncode, 1)

        path = self.write("rows.json", json.dumps({"transitions": rand_rows(40, 3, 1)}))
        first = self.json_of("transitions", "learn", path, "--batch-id", "cli-1")
        self.assertEqual((first["accepted"], first["env_steps"]), (40, 40))
        again = self.json_of("transitions", "learn", path, "--batch-id", "cli-1")
        self.assertEqual(again, first)                           # stored once
        rows = rand_rows(10, 3, 1)
        r = self.redqctl("transitions", "learn", "-", stdin=json.dumps(rows))
        self.assertEqual(json.loads(r.stdout)["env_steps"], 50)

        trained = self.json_of("train", "learn", "6")
        self.assertEqual(trained["updates"], 6)
        stats = self.json_of("stats", "learn", "--limit", "2")["rows"]
        self.assertEqual(len(stats), 2)
        every = self.json_of("stats", "learn", "--all")["rows"]
        self.assertGreaterEqual(len(every), 3)
        self.assertEqual(every[-1]["update"], 6)
        csv = self.redqctl("stats", "learn", "--format", "csv", "--all").stdout.splitlines()
        self.assertTrue(csv[0].startswith("row,update,env_steps"), csv[0])
        self.assertEqual(len(csv), len(every) + 1)
        since = self.json_of("stats", "learn", "--since", every[0]["row"])["rows"]
        self.assertEqual(since, every[1:])

    def test_evaluations(self):
        self.make_agent("ev")
        self.feed("ev")
        row = self.json_of("evaluations", "ev", "--add", "1", "2", "3",
                           "--lengths", "10", "10", "12")
        self.assertEqual((row["n"], row["mean"], row["min"], row["max"], row["env_steps"]),
                         (3, 2.0, 1.0, 3.0, 40))
        self.assertAlmostEqual(row["mean_length"], 32 / 3)
        self.json_of("evaluations", "ev", "--add", "-5")
        rows = self.json_of("evaluations", "ev")["rows"]
        self.assertEqual([r["mean"] for r in rows], [2.0, -5.0])
        csv = self.redqctl("evaluations", "ev", "--format", "csv").stdout.splitlines()
        self.assertTrue(csv[0].startswith("row,env_steps,updates"), csv[0])
        self.assertEqual(len(csv), 3)
        r = self.redqctl("evaluations", "ev", "--add", "1", "--lengths", "1", "2", expect=2)
        self.assertIn("--lengths", r.stderr)

    def test_episodes(self):
        self.make_agent("epi")
        started = self.json_of("episodes", "epi", "--start", "[0.1, 0.2, 0.3]")
        eid = started["episode_id"]
        self.assertEqual(len(started["action"]), 1)
        step = self.json_of("episodes", "epi", "--step", eid, "--reward", "1.5",
                            "--obs", "[0.2, 0.3, 0.4]")
        self.assertIn("action", step)
        done = self.json_of("episodes", "epi", "--step", eid, "--reward", "2",
                            "--obs", "[0.3, 0.4, 0.5]", "--truncated")
        self.assertEqual((done["done"], done["return"], done["length"]), (True, 3.5, 2))
        other = self.json_of("episodes", "epi", "--start", "[0, 0, 0]")["episode_id"]
        self.assertIn("abandoned", self.redqctl("episodes", "epi", "--abandon", other).stderr)
        listed = {e["id"]: e for e in self.json_of("episodes", "epi")["episodes"]}
        self.assertEqual(listed[eid]["return"], 3.5)
        self.assertTrue(listed[other]["abandoned"])
        self.assertEqual(len(self.json_of("episodes", "epi", "--limit", "1")["episodes"]), 1)
        self.assertIn("--reward", self.redqctl("episodes", "epi", "--step", eid,
                                               expect=2).stderr)

    # ---- checkpoints and the policy ----------------------------------------------------

    def test_checkpoints_export_import_restore_policy(self):
        self.make_agent("ck")
        self.feed("ck")
        self.train("ck", 4)
        made = self.json_of("checkpoints", "ck", "--create")
        listed = self.json_of("checkpoints", "ck")["checkpoints"]
        self.assertIn(made["id"], [c["id"] for c in listed])

        out = self.json_of("export", "ck", "--checkpoint", made["id"], "-o", "ck.ckpt",
                           "--with-buffer")
        self.assertEqual((out["file"], out["checkpoint"], out["with_buffer"]),
                         ("ck.ckpt", made["id"], True))
        self.assertEqual(os.path.getsize(os.path.join(self.tmp, "ck.ckpt")), out["bytes"])
        fresh = self.json_of("export", "ck")                     # a new checkpoint
        self.assertGreater(fresh["checkpoint"], made["id"])
        self.assertTrue(os.path.exists(os.path.join(self.tmp, fresh["file"])))

        copy = self.json_of("import", "ck-copy", "ck.ckpt")
        self.assertEqual((copy["name"], copy["state"]["env_steps"], copy["state"]["updates"]),
                         ("ck-copy", 40, 4))
        self.assertEqual(self.redqctl("import", "ck-copy", "ck.ckpt", expect=1).returncode, 1)

        self.train("ck", 3)
        restored = self.json_of("restore", "ck", made["id"])
        self.assertEqual(restored["state"]["updates"], 4)
        self.assertIn("deleted checkpoint",
                      self.redqctl("checkpoints", "ck", "--delete", made["id"]).stderr)
        ids = [c["id"] for c in self.json_of("checkpoints", "ck")["checkpoints"]]
        self.assertNotIn(made["id"], ids)

        info = self.json_of("policy", "ck", "-o", "ck.safetensors")
        self.assertEqual(info["metadata"]["obs_dim"], "3")
        self.assertEqual(info["tensors"]["mu.weight"], [1, 32])
        with open(os.path.join(self.tmp, "ck.safetensors"), "rb") as f:
            blob = f.read()
        self.assertEqual(len(blob), info["bytes"])
        (n,) = struct.unpack_from("<Q", blob)
        self.assertIn("__metadata__", json.loads(blob[8:8 + n]))

    # ---- service -----------------------------------------------------------------------

    def test_service(self):
        self.assertEqual(self.json_of("health")["status"], "ok")
        self.assertIn("redqd_agents", self.redqctl("metrics").stdout)
        self.assertIn("openapi", self.json_of("openapi"))
        self.assertIn("redqctl", self.redqctl("--version").stdout)
        self.assertIn("watch", self.redqctl("--help").stdout)

    def test_unreachable_daemon_names_the_url_with_a_hint(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = "http://127.0.0.1:%d" % sock.getsockname()[1]
        for args in (["health"], ["list"], ["watch", "x"], ["plot", "x", "-o", "p.png"]):
            r = subprocess.run([sys.executable, "-m", "redqd_client", "--url", url] + args,
                               cwd=self.tmp, env=cli_env(), capture_output=True, text=True,
                               timeout=120)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("cannot connect to redqd at " + url, r.stderr)
            self.assertIn("make run", r.stderr)
            self.assertIn("REDQD_URL", r.stderr)
            self.assertNotIn("Traceback", r.stderr)
        env = dict(cli_env(), REDQD_URL=url)                    # the address from the env
        r = subprocess.run([sys.executable, "-m", "redqd_client", "health"], cwd=self.tmp,
                           env=env, capture_output=True, text=True, timeout=120)
        self.assertIn(url, r.stderr)

    # ---- watch -------------------------------------------------------------------------

    def test_watch_frames(self):
        self.make_agent("w1")
        self.feed("w1")
        self.train("w1", 4)
        self.c.post("/v1/agents/w1/evaluations", {"returns": [-7.5, -8.5]})
        r = self.redqctl("watch", "w1", "w-missing", "--count", "2", "-n", "0.05")
        frames = r.stdout.split("redqd at ")[1:]
        self.assertEqual(len(frames), 2, r.stdout)
        for frame in frames:
            self.assertTrue(frame.startswith(self.url), frame)
            lines = frame.splitlines()
            header = lines[2].split()
            row = dict(zip(header, lines[3].split()))
            self.assertEqual(row["agent"], "w1")
            self.assertEqual((row["env_steps"], row["updates"], row["mode"]),
                             ("40", "4", "manual"))
            self.assertEqual(row["eval"], "-8.0")
            self.assertEqual(row["eval@"], "40")
            self.assertIn("w-missing not found", frame)
        self.assertNotIn("\x1b[", r.stdout)                     # not a terminal: no escapes

        r = self.redqctl("watch", "--count", "1")                # no names: every agent
        self.assertIn("w1", r.stdout)

    def test_watch_redraws_in_place_and_stops_on_ctrl_c(self):
        self.make_agent("w2")
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "redqd_client", "--url", self.url,
                                 "watch", "w2", "-n", "0.05"], cwd=self.tmp, env=cli_env(),
                                stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=subprocess.PIPE, preexec_fn=_sigint_default)
        os.close(slave)
        seen = b""
        try:
            deadline = time.monotonic() + 60
            while seen.count(b"redqd at") < 3 and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1)
                if ready:
                    seen += os.read(master, 65536)
            self.assertGreaterEqual(seen.count(b"redqd at"), 3, seen)
            proc.send_signal(signal.SIGINT)
            # Read on, as a terminal does, until it exits: a frame that filled the pty's
            # buffer would block the child's write (and its closing newline).
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        seen += os.read(master, 65536)
                    except OSError:         # EIO: the child closed its side
                        break
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn(b"Traceback", err)
        # Each later frame moves the cursor up over the last one (4 lines) and clears
        # what is left below: redrawn in place.
        self.assertIn(b"\x1b[4F", seen)
        self.assertIn(b"\x1b[J", seen)
        self.assertIn(b"w2", seen)

    # ---- plot --------------------------------------------------------------------------

    def test_plot(self):
        for name, seed in (("p1", 0), ("p2", 1)):
            self.make_agent(name)
            self.post_transitions(name, rand_rows(40, 3, 1) + [
                dict(rand_rows(1, 3, 1)[0], truncated=True)])
            self.train(name, 4)
            self.c.post("/v1/agents/%s/evaluations" % name, {"returns": [seed, seed + 1.0]})
        if importlib.util.find_spec("matplotlib") is not None:
            r = self.redqctl("plot", "p1", "p2", "-o", "curves.png", "--smooth", "3")
            self.assertIn("wrote curves.png", r.stdout)
            self.assertRegex(r.stdout, r"p1: env_steps 41, updates 4; 1 evaluations")
            with open(os.path.join(self.tmp, "curves.png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # Without matplotlib: a clear message, no file, exit 1.
        code = ("import sys; sys.modules['matplotlib'] = None; "
                "from redqd_client.cli import main; sys.exit(main(sys.argv[1:]))")
        r = subprocess.run([sys.executable, "-c", code, "--url", self.url, "plot", "p1",
                            "-o", "none.png"], cwd=self.tmp, env=cli_env(),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("matplotlib is not installed", r.stderr)
        self.assertIn("--format csv", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "none.png")))


if __name__ == "__main__":
    unittest.main()
