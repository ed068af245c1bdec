"""Three redqd nodes behind HAProxy, for real (docs/operations.md "Running several nodes"):
the shipped deploy/haproxy/redqd.cfg on loopback ports, agents spread over the nodes by
the router, trained through it with the Python client, one moved while a client keeps
posting to it, a node killed and started again -- and every acknowledged transition
checked at the end (each post's batch id is answered as it was the first time, on the
node that holds the agent now, and env_steps counts exactly the acknowledged rows).

Skipped, saying why, where haproxy is not installed (`make deps-test` installs it)."""
import json
import os
import random
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster_harness import HAPROXY, NODES, TOKEN, Cluster  # noqa: E402
from harness import REPO, rand_rows, small_config  # noqa: E402
from redqd_client import Client, RedqdError  # noqa: E402
from redqd_client.cluster import move_agent  # noqa: E402

AGENTS = ["walker", "hopper", "cheetah", "ant", "swimmer", "reacher", "pusher", "humanoid"]


@unittest.skipUnless(HAPROXY, "haproxy is not installed (Debian: apt-get install haproxy; "
                              "`make deps-test` installs it)")
class ClusterTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.cl = Cluster()
        try:
            cls.cl.start()
        except BaseException:
            cls.cl.stop()
            raise
        cls.acked = {}      # agent -> {batch_id: the answer it was acknowledged with}

    @classmethod
    def tearDownClass(cls):
        try:
            for name, d in cls.cl.nodes.items():
                if d.proc is not None:
                    rc = d.stop()
                    if rc != 0:
                        raise AssertionError("node %s exited %r after SIGTERM\n%s"
                                             % (name, rc, d.log_tail()))
        finally:
            cls.cl.stop()

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for name, d in self.cl.nodes.items():
                sys.stderr.write("\n--- node %s ---\n%s\n" % (name, d.log_tail(30)))
            sys.stderr.write("\n--- haproxy ---\n%s\n" % self.cl.log_tail())
        return out

    def post(self, c, name, n, rng):
        bid = "%s-%d" % (name, len(self.acked.setdefault(name, {})))
        ans = c.post_transitions(name, rand_rows(n, 3, 1, rng), batch_id=bid)
        self.assertEqual(ans["accepted"], n)
        self.acked[name][bid] = ans
        return ans

    def where(self, c=None):
        listing = (c or self.cl.client()).list_agents()
        return {a["name"]: a["node"] for a in listing["agents"]}, listing

    def check_every_acknowledged(self, c, names):
        """Each agent's env_steps is the sum of its acknowledged posts, and every batch id
        is answered as it was acknowledged (found, so stored; stored once)."""
        for name in names:
            want = sum(a["accepted"] for a in self.acked[name].values())
            self.assertEqual(c.get_agent(name)["state"]["env_steps"], want, name)
            for bid, ans in self.acked[name].items():
                again = c.post_transitions(name, rand_rows(2, 3, 1), batch_id=bid)
                self.assertEqual(again, ans, "%s %s" % (name, bid))
            self.assertEqual(c.get_agent(name)["state"]["env_steps"], want, name)

    def test_cluster(self):
        c = self.cl.client()
        cfg = small_config(training="async", update_per_step=1, max_pending_updates=1000000)
        # ---- the router refuses what it cannot route, as problem+json
        status, headers, body = self.cl.raw("POST", "/v1/agents", {"name": "x"})
        self.assertEqual(status, 405)
        self.assertEqual(headers["Content-Type"], "application/problem+json")
        p = json.loads(body)
        self.assertEqual(p["code"], "method_not_allowed")
        self.assertIn("PUT /v1/agents/{name}", p["detail"])
        self.assertEqual(headers["Allow"], "GET, HEAD")
        # ---- agents spread over the nodes by the name's hash, created with PUT
        for name in AGENTS:
            c.put_agent(name, obs_dim=3, action_low=[-2.0], action_high=[2.0], config=cfg)
        where, listing = self.where(c)
        self.assertEqual(sorted(where), sorted(AGENTS))
        self.assertEqual(set(where.values()), set(NODES), where)   # every node holds some
        self.assertEqual([n["status"] for n in listing["nodes"]], ["ok"] * 3)
        for name in AGENTS:   # each on its node alone: the router sent every call there
            own = Client("http://127.0.0.1:%d" % self.cl.ports[where[name]], token=TOKEN)
            self.assertIn(name, [a["name"] for a in own.list_agents(scope="node")["agents"]])
            own.close()
        # ---- pinned: `redqctl map`, then the entries set in the running router
        out = subprocess.run([sys.executable, "-m", "redqd_client", "--url", self.cl.url,
                              "--token", TOKEN, "map", "--apply", "--haproxy", self.cl.socket,
                              "--map", self.cl.map_path],
                             cwd=os.path.join(REPO, "clients", "python"), capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(sorted(out.stdout.split("\n")[:-1]),
                         sorted("%s %s" % kv for kv in where.items()))
        self.assertEqual(self.cl.router.show_map(), where)
        one = subprocess.run([sys.executable, "-m", "redqd_client", "--url", self.cl.url,
                              "--token", TOKEN, "map", "--node", "b"],
                             cwd=os.path.join(REPO, "clients", "python"), capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(one.stdout.split(), [w for n, m in sorted(where.items()) if m == "b"
                                              for w in (n, m)])
        # ---- trained through the router
        rng = random.Random(0)
        for rnd in range(4):
            for name in AGENTS:
                self.post(c, name, 25, rng)
                c.act(name, [0.1, 0.2, 0.3])
        for name in AGENTS[:3]:
            self.assertGreaterEqual(c.train(name, 5)["updates"], 5)
        # ---- a move while a client keeps posting to the agent
        moved = AGENTS[0]
        src = where[moved]
        dst = next(n for n in NODES if n != src)
        poster = self.cl.client()
        sleeps = []
        poster._sleep = lambda s: (sleeps.append(s), time.sleep(s))
        stop = threading.Event()
        errors = []

        def keep_posting():
            prng = random.Random(1)
            try:
                while not stop.is_set():
                    self.post(poster, moved, 3, prng)
            except Exception as exc:          # any error at all fails the test below
                errors.append(exc)

        th = threading.Thread(target=keep_posting)
        th.start()
        while len(self.acked[moved]) < 8:      # it is posting
            time.sleep(0.01)
        summary = move_agent(c, moved, dst, self.cl.router)
        n_at_switch = len(self.acked[moved])
        while len(self.acked[moved]) < n_at_switch + 5:     # it posts on the new node
            time.sleep(0.01)
        stop.set()
        th.join(60)
        self.assertEqual(errors, [])
        self.assertEqual((summary["from"], summary["to"]), (src, dst))
        where2, _ = self.where(c)
        self.assertEqual(where2[moved], dst)
        self.assertEqual(self.cl.router.show_map()[moved], dst)
        with open(self.cl.map_path) as f:
            self.assertIn("%s %s\n" % (moved, dst), f.read())     # a reload keeps it
        old = Client("http://127.0.0.1:%d" % self.cl.ports[src], token=TOKEN)
        self.assertNotIn(moved, [a["name"] for a in old.list_agents(scope="node")["agents"]])
        old.close()
        sys.stderr.write("\n  move of %s %s -> %s: %d bytes, the posting client waited out "
                         "%d 503s\n" % (moved, src, dst, summary["bytes"], len(sleeps)))
        self.check_every_acknowledged(c, AGENTS)
        # ---- an agent created since the map was written: placed by the hash alone
        c.put_agent("late", obs_dim=3, action_low=[-2.0], action_high=[2.0], config=cfg)
        self.post(c, "late", 10, rng)
        where3, _ = self.where(c)
        self.assertNotIn("late", self.cl.router.show_map())
        # ---- a node dies: its agents answer 503 through the router, the others serve
        victim = where3["late"]
        self.cl.nodes[victim].kill()
        gone = [n for n, m in where3.items() if m == victim]
        alive = [n for n, m in where3.items() if m != victim]
        self.assertTrue(alive)
        for name in gone:    # mapped ones and the hashed one alike: never another node
            status, headers, body = self.cl.raw("POST", "/v1/agents/%s/transitions" % name,
                                                {"transitions": rand_rows(1, 3, 1)})
            self.assertEqual(status, 503, body)
            self.assertEqual(headers["Content-Type"], "application/problem+json")
            self.assertEqual(json.loads(body)["code"], "unavailable")
            self.assertEqual(headers["Retry-After"], "2")
            with self.cl.client(retries=0) as once:   # the client sees a retryable 503
                with self.assertRaises(RedqdError) as cm:
                    once.get_agent(name)
            e = cm.exception
            self.assertEqual((e.status, e.code, e.retry_after), (503, "unavailable", 2))
        for name in alive:
            self.post(c, name, 5, rng)
        listing = c.list_agents()
        nodes = {n["name"]: n["status"] for n in listing["nodes"]}
        self.assertEqual(nodes[victim], "unreachable")
        self.assertEqual(sorted(a["name"] for a in listing["agents"]), sorted(alive))
        self.assertEqual(c.health(scope="cluster")["nodes_unreachable"], 1)
        # ---- it comes back with everything it had acknowledged
        self.cl.nodes[victim].start()
        for name in gone:
            self.post(c, name, 5, rng)       # the client retries until the router sees it
        self.check_every_acknowledged(c, AGENTS + ["late"])
        where4, listing = self.where(c)
        self.assertEqual(where4, where3)
        self.assertEqual(listing["nodes_unreachable"], 0)
        c.close()
        poster.close()


if __name__ == "__main__":
    unittest.main()
