"""redqd_client.cluster without a cluster: the placement map's lines, and the runtime API
client against a fake HAProxy socket (tests/integration/test_cluster.py runs the real
one)."""
import os
import socket
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))
from redqd_client.cluster import ClusterError, Router, RouterError, map_entries  # noqa: E402


def listing(agents, down=()):
    nodes = [{"name": n, "status": "unreachable" if n in down else "ok"} for n in "abc"]
    return {"agents": [dict(name=a, node=n, moving_to=m) for a, n, m in agents],
            "nodes": nodes}


class MapEntriesTest(unittest.TestCase):
    def test_lines_sorted_and_filtered_by_node(self):
        doc = listing([("x", "b", None), ("a", "a", None), ("m", "b", None)])
        self.assertEqual(map_entries(doc), ["a a", "m b", "x b"])
        self.assertEqual(map_entries(doc, node="b"), ["m b", "x b"])
        self.assertEqual(map_entries(doc, node="c"), [])

    def test_a_moving_agent_maps_to_its_new_node_once_it_is_there(self):
        half = listing([("w", "a", "c")])                     # not imported yet
        self.assertEqual(map_entries(half), ["w a"])
        both = listing([("w", "a", "c"), ("w", "c", None)])   # imported, not yet deleted
        self.assertEqual(map_entries(both), ["w c"])

    def test_a_node_that_did_not_answer_makes_no_map(self):
        with self.assertRaises(ClusterError) as cm:
            map_entries(listing([("x", "a", None)], down=("b",)))
        self.assertIn("b", str(cm.exception))


class FakeHAProxy:
    """A unix socket that answers each command (one per connection) from a table."""

    def __init__(self, answers):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "sock")
        self.answers = answers
        self.seen = []
        self.s = socket.socket(socket.AF_UNIX)
        self.s.bind(self.path)
        self.s.listen(4)
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            with c:
                line = c.makefile().readline().strip()
                self.seen.append(line)
                c.sendall(self.answers.get(line.split(" ")[0] + " " + line.split(" ")[1],
                                           "").encode())

    def close(self):
        self.s.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


class RouterTest(unittest.TestCase):
    def setUp(self):
        fd, self.map = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            f.write("# comment\nw a\nx b   # pinned\n")

    def tearDown(self):
        os.unlink(self.map)

    def test_set_then_add_and_the_file_rewritten(self):
        fake = FakeHAProxy({"set map": "entry not found.\n"})
        try:
            r = Router(fake.path, self.map)
            r.set_entry("y", "c")
            self.assertEqual(fake.seen, ["set map %s y c" % self.map, "add map %s y c" % self.map])
            fake.answers = {}
            r.set_entry("x", "a")
            with open(self.map) as f:
                self.assertEqual(f.read(), "# comment\nw a\nx a\ny c\n")
        finally:
            fake.close()

    def test_refusals_and_an_absent_router(self):
        fake = FakeHAProxy({"set map": "unknown map identifier\n"})
        try:
            with self.assertRaises(RouterError) as cm:
                Router(fake.path, self.map).set_entry("w", "b")
            self.assertIn("unknown map", str(cm.exception))
        finally:
            fake.close()
        with open(self.map) as f:
            self.assertIn("w a\n", f.read())                 # refused: the file unchanged
        with self.assertRaises(RouterError):
            Router("/nonexistent/haproxy.sock", self.map).set_entry("w", "b")


if __name__ == "__main__":
    unittest.main()
