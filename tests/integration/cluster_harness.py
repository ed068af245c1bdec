"""tests/integration/cluster_harness.py: three redqd nodes and HAProxy with the shipped
deploy/haproxy/redqd.cfg on loopback ports, as tests/integration/test_cluster.py and
bench/bench_cluster.py run them. Each node runs with --node X and the same --peers (all
three), a token, and the data directory and port of its own harness.Daemon."""
import types
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
from harness import REPO, Daemon, _die_with_parent, free_port  # noqa: E402
from harness import Client as HttpClient  # noqa: E402
from redqd_client import Client  # noqa: E402
from redqd_client.cluster import Router  # noqa: E402

HAPROXY = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
CFG = os.path.join(REPO, "deploy", "haproxy", "redqd.cfg")
TOKEN = "cluster-test-token"
NODES = ("a", "b", "c")


class Cluster:
    """Three nodes (each --node X --peers all) and HAProxy with the shipped config."""

    def __init__(self, node_args=("--trainer-threads", "1", "--http-threads", "2"),
                 token=TOKEN):
        self.tmp = tempfile.mkdtemp(prefix="redqd-cluster-")
        self.token = token
        auth = []
        if token:
            self.token_file = os.path.join(self.tmp, "token")
            with open(self.token_file, "w") as f:
                f.write(token + "\n")
            auth = ["--token-file", self.token_file]
        self.ports = {n: free_port() for n in NODES}
        peers = ",".join("%s=http://127.0.0.1:%d" % (n, p) for n, p in self.ports.items())
        self.nodes = {n: Daemon(extra_args=["--node", n, "--peers", peers] + auth
                                + list(node_args), port=self.ports[n])
                      for n in NODES}
        self.map_path = os.path.join(self.tmp, "redqd.map")
        with open(self.map_path, "w") as f:
            f.write("# the placement map: NAME NODE\n")
        self.socket = os.path.join(self.tmp, "haproxy.sock")
        self.router_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.router_port
        self.haproxy = None
        self.log_path = os.path.join(self.tmp, "haproxy.log")

    def start(self):
        for d in self.nodes.values():
            d.start()
        env = dict(os.environ, REDQD_MAP=self.map_path, REDQD_HAPROXY_SOCKET=self.socket,
                   REDQD_HAPROXY_LOG="stdout", REDQD_ROUTER_BIND="127.0.0.1:%d" % self.router_port,
                   **{"REDQD_NODE_" + n.upper(): "127.0.0.1:%d" % p for n, p in self.ports.items()})
        log = open(self.log_path, "ab")
        self.haproxy = subprocess.Popen([HAPROXY, "-db", "-f", CFG], stdout=log,
                                        stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=_die_with_parent)
        log.close()
        self.router = Router(self.socket, self.map_path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.haproxy.poll() is not None:
                raise AssertionError("haproxy exited: " + self.log_tail())
            try:
                if self.servers_up() == set(NODES):
                    return self
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError("the router did not see the three nodes up\n" + self.log_tail())

    def servers_up(self):
        """The nodes whose node_X backend's server passes its health checks."""
        up = set()
        for line in self.router.command("show stat").splitlines():
            f = line.split(",")
            if len(f) > 17 and f[0].startswith("node_") and f[1] in NODES and f[17] == "UP":
                up.add(f[1])
        return up

    def client(self, **kw):
        kw.setdefault("retries", 40)
        kw.setdefault("max_retry_wait", 1.0)
        return Client(self.url, token=self.token, timeout=60, **kw)

    def raw(self, method, path, body=None):
        """One request to the router on a fresh connection: (status, headers, body)."""
        c = HttpClient(types.SimpleNamespace(port=self.router_port), timeout=30)
        try:
            hdrs = {"Authorization": "Bearer " + self.token} if self.token else {}
            r = c.request(method, path, headers=hdrs,
                          **({} if body is None else {"body": body}))
            return r.status, r.headers, r.body
        finally:
            c.close()

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.haproxy is not None:
            self.haproxy.send_signal(signal.SIGTERM)
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait()
        for d in self.nodes.values():
            d.cleanup()
        if not os.environ.get("REDQD_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
