"""One service over several nodes without a router (docs/operations.md "Running several
nodes"): --node and --peers, GET /v1/agents and /v1/health with scope=cluster, nodes
that are down or do not answer, the token passed to the peers, and that a node waiting
for its peers holds no HTTP thread."""
import os
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Client, Daemon, agent_body, free_port  # noqa: E402

TOKEN = "peer-test-token"


class SilentPeer:
    """A peer that accepts connections and never answers, until release()."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted.set()

    def release(self):
        for c in self.conns:
            c.close()
        self.conns = []
        self.accepted.clear()

    def close(self):
        self.release()
        self.sock.close()


class PeersTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.tmp = tempfile.mkdtemp(prefix="redqd-peers-")
        cls.token_file = os.path.join(cls.tmp, "token")
        with open(cls.token_file, "w") as f:
            f.write(TOKEN + "\n")
        cls.silent = SilentPeer()
        pa, pb, dead = free_port(), free_port(), free_port()
        peers = ",".join(["a=http://127.0.0.1:%d" % pa, "b=http://127.0.0.1:%d/" % pb,
                          "dead=http://127.0.0.1:%d" % dead,
                          "silent=http://127.0.0.1:%d" % cls.silent.port])
        common = ["--peers", peers, "--token-file", cls.token_file, "--http-threads", "1"]
        # each on the port its peers were told
        cls.a = Daemon(extra_args=["--node", "a", "--peer-timeout", "30000"] + common, port=pa)
        cls.b = Daemon(extra_args=["--node", "b", "--peer-timeout", "300"] + common, port=pb)
        cls.a.start()
        cls.b.start()
        cls.auth = {"Authorization": "Bearer " + TOKEN}

    @classmethod
    def tearDownClass(cls):
        cls.silent.close()
        import shutil
        try:
            for d in (cls.a, cls.b):
                try:
                    d.stop_ok()
                finally:
                    d.cleanup()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def get(self, d, path, **kw):
        r = d.client.get(path, headers=self.auth, **kw)
        return r

    def put_agent(self, d, name):
        body = agent_body(name)
        body.pop("name")
        r = d.client.put("/v1/agents/" + name, body=body, headers=self.auth)
        self.assertEqual(r.status, 201, repr(r))

    def test_cluster_list_merges_and_marks(self):
        self.put_agent(self.a, "pa1")
        self.put_agent(self.b, "pb1")
        self.put_agent(self.b, "pa0")
        # b asks a (ok), dead (refused) and silent (no answer within 300 ms)
        r = self.get(self.b, "/v1/agents")
        self.assertEqual(r.status, 200, repr(r))
        doc = r.json()
        got = [(x["name"], x["node"]) for x in doc["agents"]]
        self.assertEqual(got, sorted(got))                    # byte order of name, then node
        self.assertIn(("pa1", "a"), got)
        self.assertIn(("pb1", "b"), got)
        self.assertIn(("pa0", "b"), got)
        for x in doc["agents"]:
            self.assertIn("moving_to", x)
        nodes = {n["name"]: n for n in doc["nodes"]}
        self.assertEqual(list(nodes), ["b", "a", "dead", "silent"])   # itself first
        self.assertEqual(nodes["b"]["status"], "ok")
        self.assertEqual(nodes["a"]["status"], "ok")              # the token went along
        self.assertEqual(nodes["a"]["url"], "http://127.0.0.1:%d" % self.a.port)
        self.assertEqual(nodes["b"]["url"], "http://127.0.0.1:%d" % self.b.port)  # "/" cut
        self.assertEqual(nodes["dead"]["status"], "unreachable")
        self.assertEqual(nodes["silent"]["status"], "unreachable")
        self.assertIn("timed out", nodes["silent"]["detail"].lower())
        self.assertEqual(doc["nodes_unreachable"], 2)
        self.assertEqual(nodes["a"]["agents"], sum(1 for _, n in got if n == "a"))
        self.silent.release()
        # scope=node: this node's own, each with its node
        own = self.get(self.b, "/v1/agents?scope=node").json()
        self.assertNotIn("nodes", own)
        self.assertEqual({x["node"] for x in own["agents"]}, {"b"})
        p = self.get(self.b, "/v1/agents?scope=everything")
        self.assertEqual(p.status, 400)
        self.assertIn("scope", p.json()["detail"])

    def test_health(self):
        r = self.b.client.get("/v1/health")                      # no token needed
        doc = r.json()
        self.assertEqual(doc["node"], "b")
        self.assertNotIn("nodes", doc)                            # a router's check: local
        doc = self.b.client.get("/v1/health?scope=cluster").json()
        self.silent.release()
        nodes = {n["name"]: n for n in doc["nodes"]}
        self.assertEqual(nodes["a"]["status"], "ok")
        for k in ("version", "uptime_s", "agents", "agents_loading"):
            self.assertIn(k, nodes["a"])
        self.assertEqual(nodes["dead"]["status"], "unreachable")
        self.assertNotIn("agents", nodes["dead"])
        self.assertEqual(doc["nodes_unreachable"], 2)

    def test_waiting_for_peers_holds_no_http_thread(self):
        # a (one HTTP thread) waits up to 30 s for the silent peer; meanwhile it serves.
        out = {}

        def listing():
            c = Client(self.a, timeout=60)
            out["r"] = c.get("/v1/agents", headers=self.auth)
            c.close()

        t = threading.Thread(target=listing)
        t.start()
        self.assertTrue(self.silent.accepted.wait(20), "a never asked the silent peer")
        c = Client(self.a, timeout=10)
        try:
            self.assertEqual(c.get("/v1/health").status, 200)
            self.assertEqual(c.get("/v1/agents?scope=node", headers=self.auth).status, 200)
        finally:
            c.close()
        self.assertTrue(t.is_alive())                 # still waiting for the silent peer
        self.silent.release()                         # its connection closes: an error
        t.join(30)
        nodes = {n["name"]: n for n in out["r"].json()["nodes"]}
        self.assertNotEqual(nodes["silent"]["status"], "ok")
        self.assertEqual(nodes["b"]["status"], "ok")


class PeerSettingsTest(unittest.TestCase):
    def refused(self, *args):
        p = subprocess.run([BIN, "--data-dir", "/nonexistent/never"] + list(args),
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        return p.stderr

    def test_bad_settings_name_the_setting(self):
        self.assertIn("peers", self.refused("--peers", "a"))
        self.assertIn("peers", self.refused("--peers", "a=ftp://x:1"))
        self.assertIn("peers", self.refused("--peers", "a=http://x:1/path"))
        self.assertIn("listed twice", self.refused("--peers", "a=http://x:1,a=http://y:2"))
        self.assertIn("bad name", self.refused("--peers", "bad name=http://x:1"))
        self.assertIn("node", self.refused("--node", "no/slash"))
        self.assertIn("peer_timeout", self.refused("--peer-timeout", "5"))
        err = self.refused("--peers", "a=http://x:1", "--peer-timeout", "0")
        self.assertIn("command line", err)


if __name__ == "__main__":
    unittest.main()
