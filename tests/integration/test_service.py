"""Service endpoints: health, OpenAPI, dashboard, metrics, routing errors, HEAD."""
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, rand_rows  # noqa: E402


class ServiceTest(DaemonTestCase):

    def test_health(self):
        h = self.assertOK(self.c.get("/v1/health"))
        self.assertEqual(h["status"], "ok")
        self.assertIsInstance(h["version"], str)
        self.assertTrue(h["version"])
        self.assertIsInstance(h["uptime_s"], (int, float))
        self.assertGreaterEqual(h["uptime_s"], 0)
        self.assertIsInstance(h["agents"], int)
        n0 = h["agents"]
        self.create("health-a")
        self.assertEqual(self.assertOK(self.c.get("/v1/health"))["agents"], n0 + 1)
        self.assertStatus(self.c.delete("/v1/agents/health-a"), 204)
        self.assertEqual(self.assertOK(self.c.get("/v1/health"))["agents"], n0)

    def test_openapi(self):
        r = self.c.get("/v1/openapi.json")
        doc = self.assertOK(r)
        self.assertIn("openapi", doc)
        self.assertTrue(str(doc["openapi"]).startswith("3"), doc["openapi"])
        self.assertIn("paths", doc)
        self.assertIsInstance(doc["paths"], dict)
        self.assertTrue(doc["paths"])

    def test_dashboard(self):
        r = self.c.get("/")
        self.assertStatus(r, 200)
        self.assertEqual(r.ctype, "text/html")
        self.assertIn(b"<html", r.body.lower())

    def test_metrics(self):
        self.create("metrics-a")
        self.post_transitions("metrics-a", rand_rows(3, 3, 1))
        r = self.c.get("/metrics")
        self.assertStatus(r, 200)
        self.assertEqual(r.ctype, "text/plain")
        text = r.body.decode("utf-8")
        names = set()
        for line in text.splitlines():
            if not line or line.startswith("#"):
                self.assertTrue(line == "" or line.startswith("# HELP ") or
                                line.startswith("# TYPE "), line)
                continue
            # name{labels} value
            name_labels, _, value = line.rpartition(" ")
            self.assertTrue(name_labels, line)
            float(value)  # a number (NaN allowed by the format)
            name = name_labels.split("{")[0]
            self.assertRegex(name, r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
            names.add(name)
        self.assertTrue(any(n.startswith("redqd_") for n in names), names)
        self.assertIn('agent="metrics-a"', text)
        # per-agent env_steps shows the 3 transitions
        steps = [l for l in text.splitlines()
                 if not l.startswith("#") and 'agent="metrics-a"' in l and "env_steps" in l]
        self.assertTrue(steps, text[:2000])
        self.assertEqual(float(steps[0].rsplit(" ", 1)[1]), 3.0)
        # the series the operations issue asks for, by their Prometheus names
        for want in ("redqd_agent_env_steps_total", "redqd_agent_updates_total",
                     "redqd_agent_pending_updates", "redqd_agent_alpha",
                     "redqd_agent_critic_loss", "redqd_agent_actor_loss",
                     "redqd_agent_alpha_loss", "redqd_agent_q_mean",
                     "redqd_agent_episode_return", "redqd_agent_checkpoint_bytes",
                     "redqd_http_requests_total", "redqd_http_request_duration_seconds_bucket",
                     "redqd_db_commit_duration_seconds_bucket",
                     "redqd_db_commit_duration_seconds_count", "redqd_db_write_failures_total"):
            self.assertIn(want, names)
        # the commit histogram is cumulative and ends at its count
        buckets = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith("redqd_db_commit_duration_seconds_bucket")]
        self.assertEqual(buckets, sorted(buckets))
        count = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                 if l.startswith("redqd_db_commit_duration_seconds_count")][0]
        self.assertGreaterEqual(count, 2)  # the agent's creation and the post at least
        self.assertEqual(buckets[-1], count)
        # the checkpoint size is the latest checkpoint's
        ck = self.assertOK(self.c.post("/v1/agents/metrics-a/checkpoints", data=b""), 201)
        size = [float(l.rsplit(" ", 1)[1]) for l in self.c.get("/metrics").body.decode()
                .splitlines() if l.startswith('redqd_agent_checkpoint_bytes{agent="metrics-a"}')]
        self.assertEqual(size, [float(ck["bytes"])])
        # a deleted agent leaves the metrics
        self.assertStatus(self.c.delete("/v1/agents/metrics-a"), 204)
        self.assertNotIn('agent="metrics-a"', self.c.get("/metrics").body.decode())

    def test_unknown_route(self):
        for path in ("/v1/nope", "/nope", "/v1/agents/x/nope", "/v2/health"):
            self.assertProblem(self.c.get(path), 404, "not_found")
        self.assertProblem(self.c.post("/v1/nothing-here", {}), 404, "not_found")

    def test_wrong_method(self):
        cases = [("DELETE", "/v1/health", {"GET"}),
                 ("PUT", "/v1/agents", {"GET", "POST"}),
                 ("POST", "/v1/health", {"GET"}),
                 ("GET", "/v1/agents/x/act", {"POST"}),
                 ("GET", "/v1/agents/x/train", {"POST"}),
                 ("POST", "/v1/agents/x", {"GET", "PATCH", "DELETE", "PUT"})]
        for method, path, allowed in cases:
            r = self.c.request(method, path)
            self.assertProblem(r, 405, "method_not_allowed")
            allow = r.header("Allow")
            self.assertTrue(allow, "no Allow header on %s %s" % (method, path))
            got = {m.strip() for m in allow.split(",")}
            self.assertTrue(allowed <= got, (method, path, allow))
            self.assertNotIn(method, got, (method, path, allow))

    def test_head_is_get(self):
        g = self.c.get("/v1/health")
        h = self.c.request("HEAD", "/v1/health")
        self.assertStatus(h, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.ctype, "application/json")
        self.create("head-a")
        g = self.c.get("/v1/agents/head-a")
        h = self.c.request("HEAD", "/v1/agents/head-a")
        self.assertStatus(h, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.ctype, g.ctype)
        self.assertEqual(int(h.header("Content-Length")), len(g.body))
        h = self.c.request("HEAD", "/v1/agents/no-such-agent")
        self.assertStatus(h, 404)
        self.assertEqual(h.body, b"")
        # a connection keeps working after HEAD answers
        self.assertOK(self.c.get("/v1/health"))

    def test_openapi_describes_the_api(self):
        doc = self.assertOK(self.c.get("/v1/openapi.json"))
        paths = doc["paths"]
        for p in ("/v1/health", "/v1/agents", "/v1/agents/{name}",
                  "/v1/agents/{name}/transitions", "/v1/agents/{name}/act"):
            self.assertIn(p, paths, sorted(paths))


TOKEN = "s3cret-Token_1"


def _write_token(path, token):
    with open(path, "w") as f:
        f.write(token + "  \n# the first line only\n")


class AuthTest(DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.tokdir = tempfile.mkdtemp(prefix="redqd-it-tok-")
        cls.tokfile = os.path.join(cls.tokdir, "token")
        _write_token(cls.tokfile, TOKEN)
        cls.daemon_args = ("--token-file", cls.tokfile)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        import shutil
        shutil.rmtree(cls.tokdir, ignore_errors=True)

    def auth(self, tok=TOKEN):
        return {"Authorization": "Bearer " + tok}

    def test_token_required(self):
        self.assertOK(self.c.get("/v1/health"))
        self.assertStatus(self.c.get("/"), 200)
        for method, path in (("GET", "/v1/agents"), ("GET", "/metrics"),
                             ("GET", "/v1/agents/x"), ("POST", "/v1/agents"),
                             ("DELETE", "/v1/agents/x"), ("GET", "/v1/agents/x/policy")):
            for hdr in ({}, self.auth("wrong"), self.auth(TOKEN + "x"), self.auth(TOKEN[:-1]),
                        {"Authorization": TOKEN}, {"Authorization": "Basic " + TOKEN}):
                r = self.c.request(method, path, headers=hdr)
                self.assertProblem(r, 401, "unauthenticated")
        self.assertOK(self.c.get("/v1/agents", headers=self.auth()))
        r = self.c.post("/v1/agents", {"name": "authed", "obs_dim": 2, "action_low": [-1],
                                       "action_high": [1]}, headers=self.auth())
        self.assertOK(r, 201)
        # no agent was created by the refused POSTs
        names = [a["name"] for a in self.c.get("/v1/agents", headers=self.auth())
                 .json()["agents"]]
        self.assertEqual(names, ["authed"])

    def test_sighup_rereads_token(self):
        _write_token(self.tokfile, "new-token")
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_until(lambda: self.c.get("/v1/agents", headers=self.auth("new-token"))
                        .status == 200, 5, "the new token to be accepted")
        self.assertProblem(self.c.get("/v1/agents", headers=self.auth()), 401,
                           "unauthenticated")
        _write_token(self.tokfile, TOKEN)
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_until(lambda: self.c.get("/v1/agents", headers=self.auth()).status == 200,
                        5, "the old token again")


if __name__ == "__main__":
    unittest.main()
