"""Unit tests of the client module (clients/python/redqd_client/client.py, policy.py) that
need no daemon.

A scripted HTTP server on 127.0.0.1 (a free port, in a thread) records each request and
answers from a queue, so the tests check what the client sends (method, path, query,
headers, body) and what it makes of the answers: problem+json errors, 429 retries,
connection drops. The safetensors parser and eval_action run on a file built here with
struct.

    /usr/bin/python3 -m unittest tests/clients/test_client_unit.py -v
"""

import http.server
import io
import json
import math
import os
import socket
import struct
import sys
import threading
import unittest
import unittest.mock
import urllib.parse
from contextlib import redirect_stdout

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "clients", "python"))
import redqd_client  # noqa: E402
from redqd_client import (Client, DaemonUnreachable, RedqdError, eval_action,  # noqa: E402
                          load_policy_safetensors)
from redqd_client.client import _backoff, _parse_retry_after  # noqa: E402

DROP = "drop"   # a scripted answer: close the connection without answering


class Reply:
    """One scripted answer."""

    def __init__(self, status=200, body=None, headers=None, content_type=None, close=False):
        self.status = status
        self.headers = dict(headers or {})
        if body is None:
            self.body = b""
        elif isinstance(body, bytes):
            self.body = body
        elif isinstance(body, str):
            self.body = body.encode()
        else:
            self.body = json.dumps(body).encode()
            content_type = content_type or "application/json"
        if content_type:
            self.headers["Content-Type"] = content_type
        self.close = close          # close the connection afterwards, without saying so


def problem(status, code, detail, title="Bad Request", headers=None):
    doc = {"type": "about:blank", "title": title, "status": status, "code": code,
           "detail": detail}
    return Reply(status, json.dumps(doc), headers,
                 content_type="application/problem+json")


class Recorded:
    def __init__(self, method, target, headers, body):
        url = urllib.parse.urlsplit(target)
        self.method = method
        self.path = url.path
        self.query = dict(urllib.parse.parse_qsl(url.query))
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"        # keep-alive, as the daemon does

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm holds the
        # body back for the client's delayed ACK (40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        server.requests.append(Recorded(self.command, self.path, self.headers, body))
        reply = server.replies.pop(0) if server.replies else Reply(200, {})
        if reply == DROP:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        if reply.close:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.requests = []
        self.replies = []
        self.closed = threading.Event()    # set whenever the server closes a connection

    def shutdown_request(self, request):
        super().shutdown_request(request)
        self.closed.set()


class ClientTestCase(unittest.TestCase):
    def setUp(self):
        self.server = FakeServer()
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.client = self.make_client()

    def tearDown(self):
        self.client.close()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def make_client(self, **kwargs):
        client = Client(self.url, **kwargs)
        client.sleeps = []
        client._sleep = client.sleeps.append       # record retry waits instead of sleeping
        return client

    def reply(self, *replies):
        self.server.replies.extend(replies)

    @property
    def requests(self):
        return self.server.requests

    @property
    def last(self):
        return self.server.requests[-1]


class TestRequests(ClientTestCase):
    """Method, path, query and body of every endpoint."""

    def test_every_endpoint(self):
        c = self.client
        obs = [0.5, -0.25, 1.0]
        row = {"obs": obs, "action": [1.0], "reward": -1.5, "next_obs": obs,
               "terminated": False, "truncated": True, "env_id": "e0"}
        cases = [
            # call, method, path, query, JSON body (None: no body)
            (lambda: c.health(), "GET", "/v1/health", {}, None),
            (lambda: c.openapi(), "GET", "/v1/openapi.json", {}, None),
            (lambda: c.list_agents(), "GET", "/v1/agents", {}, None),
            (lambda: c.get_agent("p"), "GET", "/v1/agents/p", {}, None),
            (lambda: c.patch_agent("p", training="paused", actor_lr=1e-4), "PATCH",
             "/v1/agents/p", {}, {"training": "paused", "actor_lr": 1e-4}),
            (lambda: c.delete_agent("p"), "DELETE", "/v1/agents/p", {}, None),
            (lambda: c.act_full("p", obs, mode="eval"), "POST", "/v1/agents/p/act", {},
             {"obs": obs, "mode": "eval"}),
            (lambda: c.post_transitions("p", [row], batch_id="b-1"), "POST",
             "/v1/agents/p/transitions", {}, {"transitions": [row], "batch_id": "b-1"}),
            (lambda: c.start_episode("p", obs), "POST", "/v1/agents/p/episodes", {},
             {"obs": obs, "mode": "explore"}),
            (lambda: c.step_episode("p", "ep-7", -2, obs, 0, True), "POST",
             "/v1/agents/p/episodes/ep-7/step", {},
             {"reward": -2.0, "obs": obs, "terminated": False, "truncated": True}),
            (lambda: c.abandon_episode("p", "ep-7"), "DELETE", "/v1/agents/p/episodes/ep-7",
             {}, None),
            (lambda: c.list_episodes("p"), "GET", "/v1/agents/p/episodes", {}, None),
            (lambda: c.list_episodes("p", limit=5), "GET", "/v1/agents/p/episodes",
             {"limit": "5"}, None),
            (lambda: c.train("p", 50), "POST", "/v1/agents/p/train", {}, {"updates": 50}),
            (lambda: c.stats("p"), "GET", "/v1/agents/p/stats", {"format": "json"}, None),
            (lambda: c.stats("p", since=10, limit=20), "GET", "/v1/agents/p/stats",
             {"since": "10", "limit": "20", "format": "json"}, None),
            (lambda: c.create_checkpoint("p"), "POST", "/v1/agents/p/checkpoints", {}, {}),
            (lambda: c.list_checkpoints("p"), "GET", "/v1/agents/p/checkpoints", {}, None),
            (lambda: c.delete_checkpoint("p", 3), "DELETE", "/v1/agents/p/checkpoints/3",
             {}, None),
            (lambda: c.restore("p", 3), "POST", "/v1/agents/p/restore", {}, {"checkpoint": 3}),
            (lambda: c.put_agent("p", 3, [-2.0], [2.0], {"seed": 1}), "PUT", "/v1/agents/p", {},
             {"obs_dim": 3, "action_low": [-2.0], "action_high": [2.0], "config": {"seed": 1}}),
            (lambda: c.put_agent("p", 3, (-2,), (2,)), "PUT", "/v1/agents/p", {},
             {"obs_dim": 3, "action_low": [-2], "action_high": [2]}),
            (lambda: c.post_evaluation("p", [-1, 2.5], lengths=[200, 180]), "POST",
             "/v1/agents/p/evaluations", {}, {"returns": [-1.0, 2.5], "lengths": [200, 180]}),
            (lambda: c.post_evaluation("p", [3]), "POST", "/v1/agents/p/evaluations", {},
             {"returns": [3.0]}),
            (lambda: c.evaluations("p", since=4, limit=2), "GET", "/v1/agents/p/evaluations",
             {"since": "4", "limit": "2", "format": "json"}, None),
        ]
        for call, method, path, query, body in cases:
            with self.subTest(f"{method} {path}"):
                call()
                self.assertEqual(self.last.method, method)
                self.assertEqual(self.last.path, path)
                self.assertEqual(self.last.query, query)
                if body is None:
                    self.assertEqual(self.last.body, b"")
                    self.assertIsNone(self.last.headers.get("Content-Type"))
                else:
                    self.assertEqual(self.last.headers["Content-Type"], "application/json")
                    self.assertEqual(self.last.json(), body)

    def test_create_agent(self):
        agent = {"name": "p", "obs_dim": 3, "act_dim": 1, "state": {}}
        self.reply(Reply(201, agent), Reply(201, agent))
        got = self.client.create_agent("p", 3, [-2.0], [2.0], config={"batch_size": 32})
        self.assertEqual(got, agent)
        self.assertEqual(self.last.method, "POST")
        self.assertEqual(self.last.path, "/v1/agents")
        self.assertEqual(self.last.json(), {"name": "p", "obs_dim": 3, "action_low": [-2.0],
                                            "action_high": [2.0],
                                            "config": {"batch_size": 32}})
        self.client.create_agent("p", 3, [-2.0], [2.0])
        self.assertNotIn("config", self.last.json())

    def test_put_agent_tells_created_from_found(self):
        agent = {"name": "p", "obs_dim": 3, "act_dim": 1, "state": {}}
        self.reply(Reply(201, agent), Reply(200, agent), Reply(200, agent))
        self.assertEqual(self.client._put_agent("p", 3, [-2.0], [2.0], None), (True, agent))
        self.assertEqual(self.client._put_agent("p", 3, [-2.0], [2.0], None), (False, agent))
        self.assertEqual(self.client.put_agent("p", 3, [-2.0], [2.0]), agent)

    def test_put_agent_is_retried_after_a_lost_connection(self):
        self.reply(DROP, Reply(200, {"name": "p"}))
        self.assertEqual(self.client.put_agent("p", 3, [-2.0], [2.0]), {"name": "p"})
        self.assertEqual([r.method for r in self.requests], ["PUT", "PUT"])

    def test_iter_evaluations_pages_forward(self):
        self.reply(Reply(200, {"rows": [{"row": 1}, {"row": 2}]}),
                   Reply(200, {"rows": []}))
        rows = list(self.client.iter_evaluations("p", page_size=2))
        self.assertEqual([r["row"] for r in rows], [1, 2])
        self.assertEqual(self.requests[1].query, {"since": "2", "limit": "2", "format": "json"})

    def test_agent_names_and_ids_are_quoted(self):
        self.client.get_agent("a/b c")
        self.assertEqual(self.last.path, "/v1/agents/a%2Fb%20c")

    def test_act_single_and_batch(self):
        self.reply(Reply(200, {"action": [0.5], "policy_version": 4}),
                   Reply(200, {"action": [[0.5], [-1.0]], "policy_version": 4}),
                   Reply(200, {"action": [0.1], "policy_version": 5}))
        self.assertEqual(self.client.act("p", [1, 2, 3]), [0.5])
        self.assertEqual(self.last.json(), {"obs": [1, 2, 3], "mode": "explore"})
        self.assertEqual(self.client.act("p", [[1, 2, 3], [4, 5, 6]], mode="eval"),
                         [[0.5], [-1.0]])
        self.assertEqual(self.last.json(), {"obs": [[1, 2, 3], [4, 5, 6]], "mode": "eval"})
        self.assertEqual(self.client.act_full("p", (1, 2, 3)),
                         {"action": [0.1], "policy_version": 5})

    def test_non_finite_numbers_are_refused_before_sending(self):
        with self.assertRaises(ValueError):
            self.client.act("p", [1.0, float("nan"), 0.0])
        with self.assertRaises(ValueError):
            self.client.post_transitions("p", [{"obs": [float("inf")]}])
        self.assertEqual(self.requests, [])

    def test_numpy_values_are_sent_as_lists(self):
        try:
            import numpy as np
        except ImportError:
            self.skipTest("numpy is not installed")
        self.client.act_full("p", np.array([1.0, 2.0], dtype=np.float32))
        self.assertEqual(self.last.json()["obs"], [1.0, 2.0])
        self.client.post_transitions("p", [{"obs": np.zeros(2), "reward": np.float32(0.5),
                                            "terminated": np.bool_(True)}])
        row = self.last.json()["transitions"][0]
        self.assertEqual(row, {"obs": [0.0, 0.0], "reward": 0.5, "terminated": True})

    def test_transitions_get_a_generated_batch_id(self):
        rows = [{"obs": [0.0], "action": [0.0], "reward": 0.0, "next_obs": [0.0],
                 "terminated": False, "truncated": False}]
        self.client.post_transitions("p", rows)
        first = self.last.json()["batch_id"]
        self.client.post_transitions("p", rows)
        second = self.last.json()["batch_id"]
        for batch_id in (first, second):
            self.assertRegex(batch_id, r"^[A-Za-z0-9_.:-]{1,128}$")
        self.assertNotEqual(first, second)
        self.client.post_transitions("p", rows, batch_id=False)
        self.assertNotIn("batch_id", self.last.json())

    def test_stats_csv_returns_text(self):
        csv = "row,update,env_steps\n1,5,100\n"
        self.reply(Reply(200, csv, content_type="text/csv; charset=utf-8"))
        self.assertEqual(self.client.stats("p", format="csv"), csv)
        self.assertEqual(self.last.query, {"format": "csv"})

    def test_iter_stats_pages_forward(self):
        self.reply(Reply(200, {"rows": [{"row": 1}, {"row": 2}]}),
                   Reply(200, {"rows": [{"row": 3}]}))
        rows = list(self.client.iter_stats("p", page_size=2))
        self.assertEqual([r["row"] for r in rows], [1, 2, 3])
        self.assertEqual(self.requests[0].query, {"limit": "2", "format": "json"})
        self.assertEqual(self.requests[1].query, {"since": "2", "limit": "2", "format": "json"})

    def test_metrics_text(self):
        self.reply(Reply(200, "redqd_agents 2\n", content_type="text/plain; version=0.0.4"))
        self.assertEqual(self.client.metrics(), "redqd_agents 2\n")
        self.assertEqual(self.last.path, "/metrics")

    def test_delete_answers_none(self):
        self.reply(Reply(204))
        self.assertIsNone(self.client.delete_agent("p"))

    def test_checkpoint_download_and_import(self):
        blob = bytes(range(256)) * 3
        self.reply(Reply(200, blob, content_type="application/octet-stream"),
                   Reply(200, blob, content_type="application/octet-stream"),
                   Reply(201, {"name": "copy"}))
        self.assertEqual(self.client.download_checkpoint("p", 4), blob)
        self.assertEqual((self.last.method, self.last.path, self.last.query),
                         ("GET", "/v1/agents/p/checkpoints/4", {}))
        self.client.download_checkpoint("p", 4, with_buffer=True)
        self.assertEqual(self.last.query, {"with_buffer": "true"})
        self.assertEqual(self.client.import_checkpoint("copy", blob), {"name": "copy"})
        self.assertEqual((self.last.method, self.last.path), ("PUT", "/v1/agents/copy/checkpoint"))
        self.assertEqual(self.last.headers["Content-Type"], "application/octet-stream")
        self.assertEqual(self.last.body, blob)

    def test_policy_download_and_conditional_get(self):
        blob = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "
        self.reply(Reply(200, blob, {"ETag": '"7"'}, "application/octet-stream"),
                   Reply(304, headers={"ETag": '"7"'}),
                   Reply(200, blob, {"ETag": '"8"'}, "application/octet-stream"))
        self.assertEqual(self.client.policy("p"), blob)
        self.assertEqual((self.last.path, self.last.query),
                         ("/v1/agents/p/policy", {"format": "safetensors"}))
        self.assertIsNone(self.client.policy_if_changed("p", 7))
        self.assertEqual(self.last.headers["If-None-Match"], '"7"')
        self.assertEqual(self.client.policy_if_changed("p", 7), blob)

    def test_base_url_path_prefix(self):
        client = Client(self.url + "/redqd/")
        client.health()
        client.close()
        self.assertEqual(self.last.path, "/redqd/v1/health")

    def test_bad_base_url(self):
        with self.assertRaises(ValueError):
            Client("127.0.0.1:8470")


class TestAuthentication(ClientTestCase):
    def test_bearer_token_sent_when_set(self):
        client = self.make_client(token="s3cret")
        client.list_agents()
        client.import_checkpoint("x", b"data")
        client.close()
        for request in self.requests:
            self.assertEqual(request.headers["Authorization"], "Bearer s3cret")

    def test_no_authorization_without_token(self):
        self.client.list_agents()
        self.assertIsNone(self.last.headers.get("Authorization"))


class TestErrors(ClientTestCase):
    def test_problem_json_is_raised(self):
        detail = "obs has 4 values; agent 'p' expects 3"
        self.reply(problem(400, "invalid_argument", detail))
        with self.assertRaises(RedqdError) as cm:
            self.client.act("p", [1, 2, 3, 4])
        err = cm.exception
        self.assertEqual((err.status, err.code, err.detail, err.title),
                         (400, "invalid_argument", detail, "Bad Request"))
        self.assertEqual(err.problem["type"], "about:blank")
        self.assertIn("invalid_argument", str(err))
        self.assertIn(detail, str(err))
        self.assertEqual(len(self.requests), 1)

    def test_not_found_and_conflict_are_not_retried(self):
        self.reply(problem(404, "not_found", "no agent 'x'", "Not Found"),
                   problem(409, "already_exists", "agent 'p' exists", "Conflict"))
        with self.assertRaises(RedqdError) as cm:
            self.client.get_agent("x")
        self.assertEqual((cm.exception.status, cm.exception.code), (404, "not_found"))
        with self.assertRaises(RedqdError) as cm:
            self.client.create_agent("p", 3, [-1], [1])
        self.assertEqual(cm.exception.code, "already_exists")
        self.assertEqual(len(self.requests), 2)

    def test_error_without_problem_document(self):
        self.reply(Reply(502, "<html>Bad Gateway</html>", content_type="text/html"))
        with self.assertRaises(RedqdError) as cm:
            self.client.health()
        err = cm.exception
        self.assertEqual((err.status, err.code, err.title), (502, None, "Bad Gateway"))
        self.assertIn("Bad Gateway", err.detail)

    def test_connection_refused_fails_at_once_naming_the_url(self):
        with socket.socket() as sock:            # a port that nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = "http://127.0.0.1:%d" % port
        client = Client(url, retries=5)
        client.sleeps = []
        client._sleep = client.sleeps.append
        with self.assertRaises(DaemonUnreachable) as cm:
            client.health()                      # a GET, yet never retried: no daemon there
        self.assertEqual(client.sleeps, [])
        self.assertIsInstance(cm.exception, ConnectionError)
        self.assertEqual(cm.exception.url, url)
        self.assertIn(url, str(cm.exception))
        self.assertIn("Connection refused", str(cm.exception))
        self.assertIn("REDQD_URL", str(cm.exception))
        self.assertIn("make run", str(cm.exception))

    def test_unknown_host_fails_at_once(self):
        client = Client("http://no-such-host.invalid:8470", retries=5)
        client._sleep = self.fail
        with self.assertRaises(DaemonUnreachable) as cm:
            client.list_agents()
        self.assertIn("no-such-host.invalid", str(cm.exception))

    def test_a_daemon_gone_after_answering_is_retried_for_any_request(self):
        # Reached once, then refused: a restart. Nothing was sent, so even train (never
        # resent after a lost connection) is tried again, a bounded number of times.
        client = self.make_client(retries=2)
        self.reply(Reply(200, {"status": "ok"}, close=True))
        client.health()
        self.assertTrue(self.server.closed.wait(5))
        self.server.shutdown()
        self.server.server_close()               # the port refuses connections now
        with self.assertRaises(DaemonUnreachable):
            client.train("p", 10)
        self.assertEqual(client.sleeps, [_backoff(0), _backoff(1)])
        self.assertEqual(len(self.requests), 1)


class TestRetries(ClientTestCase):
    ROWS = [{"obs": [0.0], "action": [0.0], "reward": 0.0, "next_obs": [0.0],
             "terminated": False, "truncated": False}]
    OK = {"accepted": 1, "env_steps": 1, "pending_updates": 0}

    def busy(self, retry_after="2"):
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return problem(429, "busy", "pending_updates would pass max_pending_updates",
                       "Too Many Requests", headers)

    def test_transitions_retry_after_busy(self):
        self.reply(self.busy("2"), self.busy("1"), Reply(200, self.OK))
        self.assertEqual(self.client.post_transitions("p", self.ROWS), self.OK)
        self.assertEqual(self.client.sleeps, [2.0, 1.0])
        self.assertEqual(len(self.requests), 3)
        batch_ids = {r.json()["batch_id"] for r in self.requests}
        self.assertEqual(len(batch_ids), 1, "every try must carry the same batch_id")

    def test_episode_step_retries_after_busy(self):
        self.reply(self.busy("3"), Reply(200, {"action": [0.25]}))
        self.assertEqual(self.client.step_episode("p", "e1", 1.0, [0.0], False, False),
                         {"action": [0.25]})
        self.assertEqual(self.client.sleeps, [3.0])
        self.assertEqual(self.requests[0].body, self.requests[1].body)

    def test_busy_retries_are_bounded(self):
        client = self.make_client(retries=2)
        self.reply(self.busy(), self.busy(), self.busy(), Reply(200, self.OK))
        with self.assertRaises(RedqdError) as cm:
            client.post_transitions("p", self.ROWS)
        client.close()
        self.assertEqual((cm.exception.status, cm.exception.code), (429, "busy"))
        self.assertEqual(cm.exception.retry_after, 2.0)
        self.assertEqual(len(self.requests), 3)
        self.assertEqual(client.sleeps, [2.0, 2.0])

    def test_retry_wait_is_capped_and_has_a_default(self):
        client = self.make_client(max_retry_wait=5)
        self.reply(self.busy("3600"), self.busy(None), Reply(200, self.OK))
        client.post_transitions("p", self.ROWS)
        client.close()
        self.assertEqual(client.sleeps, [5, _backoff(1)])

    def test_retries_zero_disables(self):
        client = self.make_client(retries=0)
        self.reply(self.busy())
        with self.assertRaises(RedqdError):
            client.post_transitions("p", self.ROWS)
        client.close()
        self.assertEqual(len(self.requests), 1)

    def test_dropped_transitions_post_is_resent_with_the_same_batch_id(self):
        self.reply(DROP, Reply(200, self.OK))
        self.assertEqual(self.client.post_transitions("p", self.ROWS, batch_id="b-9"), self.OK)
        self.assertEqual([r.json()["batch_id"] for r in self.requests], ["b-9", "b-9"])
        self.assertEqual(len(self.client.sleeps), 1)

    def test_dropped_unsafe_requests_are_not_resent(self):
        for call in (lambda: self.client.train("p", 10),
                     lambda: self.client.post_transitions("p", self.ROWS, batch_id=False),
                     lambda: self.client.step_episode("p", "e1", 0.0, [0.0], False, False)):
            self.reply(DROP)
            before = len(self.requests)
            with self.assertRaises(ConnectionError):
                call()
            self.assertEqual(len(self.requests), before + 1)
        self.assertEqual(self.client.sleeps, [])

    def test_unavailable_is_retried_only_when_safe(self):
        # A 503 without Retry-After (a daemon shutting down, a train call it cut short)
        # may have done something: only safe requests are sent again.
        unavailable = problem(503, "unavailable", "shutting down", "Service Unavailable")
        self.reply(unavailable, Reply(200, {"agents": []}))
        self.assertEqual(self.client.list_agents(), {"agents": []})
        self.reply(unavailable)
        with self.assertRaises(RedqdError) as cm:
            self.client.train("p", 10)
        self.assertEqual(cm.exception.code, "unavailable")
        self.assertIsNone(cm.exception.retry_after)
        self.assertEqual(len(self.requests), 3)

    def test_unavailable_with_retry_after_is_retried_for_any_request(self):
        # With Retry-After, nothing was done and the same request will succeed later (an
        # agent moving to another node, one loading, a cluster node down): any request.
        moving = problem(503, "unavailable", "agent 'p' is moving to node b",
                         "Service Unavailable", {"Retry-After": "2"})
        self.reply(moving, moving, Reply(200, {"updates": 10}))
        self.assertEqual(self.client.train("p", 10), {"updates": 10})
        self.assertEqual(self.client.sleeps, [2.0, 2.0])
        self.reply(moving, Reply(201, {"row": 1}))
        self.assertEqual(self.client.post_evaluation("p", [1.0]), {"row": 1})
        self.assertEqual(len(self.requests), 5)

    def test_connection_closed_by_the_daemon_is_replaced_before_use(self):
        # The daemon closes an idle keep-alive connection; a POST that must not be resent
        # still goes through, because the client notices before sending.
        self.reply(Reply(200, {"status": "ok"}, close=True), Reply(200, {"updates": 10}))
        self.client.health()
        self.assertTrue(self.server.closed.wait(5))
        self.assertEqual(self.client.train("p", 10), {"updates": 10})
        self.assertEqual(len(self.requests), 2)

    def test_keep_alive_reuses_one_connection(self):
        for _ in range(3):
            self.client.health()
        self.assertFalse(self.server.closed.is_set())

    def test_retry_after_http_date(self):
        self.assertAlmostEqual(_parse_retry_after("12"), 12.0)
        self.assertEqual(_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), 0.0)
        self.assertIsNone(_parse_retry_after("soon"))


# ---- the policy file ---------------------------------------------------------------------

def safetensors_bytes(tensors, metadata, pad=0):
    """A safetensors file: u64 LE header length, JSON header, F32 data (stored in
    reverse order, so that offsets and not the header's order locate each tensor)."""
    header = {"__metadata__": metadata}
    data = b""
    for name, (shape, values) in reversed(list(tensors.items())):
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(head)) + head + data


# obs_dim 2, one hidden layer of 3, act_dim 2. All values are exact in float32.
W0 = [[1.0, 0.5],       # hidden.0.weight [out=3, in=2]
      [-1.0, 2.0],
      [0.25, -0.75]]
B0 = [0.5, -1.0, 0.0]
WMU = [[0.5, -1.0, 2.0],    # mu.weight [out=2, in=3]
       [-0.25, 0.75, 1.0]]
BMU = [0.125, -0.5]
LOW, HIGH = [-2.0, 0.0], [2.0, 1.0]


def policy_file(pad=0):
    flat = lambda m: [x for row in m for x in row]  # noqa: E731
    tensors = {
        "hidden.0.weight": ([3, 2], flat(W0)),
        "hidden.0.bias": ([3], B0),
        "mu.weight": ([2, 3], flat(WMU)),
        "mu.bias": ([2], BMU),
        "log_std.weight": ([2, 3], [0.0] * 6),
        "log_std.bias": ([2], [-1.0, -1.0]),
    }
    metadata = {"obs_dim": "2", "act_dim": "2", "action_low": json.dumps(LOW),
                "action_high": json.dumps(HIGH), "policy_version": "3", "activation": "relu"}
    return safetensors_bytes(tensors, metadata, pad)


def reference_action(obs):
    """The eval action written out by hand, for comparison."""
    h = [max(0.0, B0[o] + W0[o][0] * obs[0] + W0[o][1] * obs[1]) for o in range(3)]
    mu = [BMU[o] + sum(WMU[o][j] * h[j] for j in range(3)) for o in range(2)]
    return [lo + (hi - lo) * (math.tanh(m) + 1) / 2 for m, lo, hi in zip(mu, LOW, HIGH)]


class TestPolicyFile(unittest.TestCase):
    def test_load(self):
        policy = load_policy_safetensors(policy_file(pad=5))
        self.assertEqual(policy["hidden.0.weight"], ([3, 2], [1.0, 0.5, -1.0, 2.0, 0.25, -0.75]))
        self.assertEqual(policy["mu.bias"], ([2], BMU))
        self.assertEqual(policy["log_std.bias"], ([2], [-1.0, -1.0]))
        self.assertEqual(policy["__metadata__"]["policy_version"], "3")
        self.assertEqual(len(policy), 7)

    def test_eval_action(self):
        policy = load_policy_safetensors(policy_file())
        # obs (1, 1): hidden pre-activations (2, 0, -0.5), so the ReLU zeroes one unit.
        for obs in ([1.0, 1.0], [0.0, 0.0], [-2.0, 0.5], [3.0, -1.0]):
            with self.subTest(obs=obs):
                got = eval_action(policy, obs)
                want = reference_action(obs)
                self.assertEqual(len(got), 2)
                for g, w in zip(got, want):
                    self.assertAlmostEqual(g, w, places=12)
                self.assertTrue(LOW[0] <= got[0] <= HIGH[0] and LOW[1] <= got[1] <= HIGH[1])
        self.assertAlmostEqual(eval_action(policy, [1.0, 1.0])[0],
                               -2.0 + 4.0 * (math.tanh(0.125 + 1.0) + 1) / 2)

    def test_eval_action_batch(self):
        policy = load_policy_safetensors(policy_file())
        batch = [[1.0, 1.0], [-2.0, 0.5]]
        self.assertEqual(eval_action(policy, batch), [eval_action(policy, o) for o in batch])

    def test_eval_action_checks_obs_length(self):
        policy = load_policy_safetensors(policy_file())
        with self.assertRaises(ValueError):
            eval_action(policy, [1.0, 2.0, 3.0])

    def test_malformed_files(self):
        good = policy_file()
        (header_len,) = struct.unpack_from("<Q", good)
        bad_dtype = good.replace(b'"F32"', b'"I64"', 1)
        for name, data in [("empty", b""), ("short header", good[:8 + header_len - 1]),
                           ("truncated data", good[:-1]), ("dtype", bad_dtype),
                           ("not json", struct.pack("<Q", 3) + b"abc")]:
            with self.subTest(name):
                with self.assertRaises(ValueError):
                    load_policy_safetensors(data)


class TestCommandLine(ClientTestCase):
    def test_health(self):
        self.reply(Reply(200, {"status": "ok", "agents": 0}))
        out = io.StringIO()
        with redirect_stdout(out):
            rc = redqd_client.main(["--url", self.url, "health"])
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(out.getvalue()), {"status": "ok", "agents": 0})

    def test_stats(self):
        self.reply(Reply(200, {"rows": []}))
        with redirect_stdout(io.StringIO()):
            rc = redqd_client.main(["--url", self.url, "stats", "p", "--limit", "3"])
        self.assertEqual(rc, 0)
        self.assertEqual((self.last.path, self.last.query),
                         ("/v1/agents/p/stats", {"limit": "3", "format": "json"}))

    def test_error_exit_status(self):
        self.reply(problem(404, "not_found", "no agent 'zz'", "Not Found"))
        err = io.StringIO()
        with redirect_stdout(io.StringIO()), unittest.mock.patch("sys.stderr", err):
            rc = redqd_client.main(["--url", self.url, "agent", "zz"])
        self.assertEqual(rc, 1)
        self.assertIn("not_found", err.getvalue())


if __name__ == "__main__":
    unittest.main()
