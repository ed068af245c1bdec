"""What a client sends cannot blow up the daemon's memory or slip past its parser (issue 9,
the request-parsing items), against the real daemon:

- memory: a 16 MB act body of 8 million zeros, alone and four at once, and a large
  valid transitions post: the peak RSS growth of each is a few times its body at most,
  and RSS comes back near its baseline after the burst (VmHWM and VmRSS from /proc);
- --max-abs-value: observations, rewards and action bounds past it are refused, naming
  the field and the flag, and change nothing;
- HTTP framing (RFC 9112): two Content-Length headers, a space before a header's colon,
  HTTP/1.1 without Host, and a URL with more query parameters than MHD's pool holds;
- contract points: a string holding U+0000 names its field (offsets are for syntax
  errors only), and integers up to 2^53 - 1 are echoed exactly.

The memory bars are skipped (with the reason) against a sanitizer build, whose allocator
keeps freed memory in quarantine and is not glibc's.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, DaemonTestCase, _die_with_parent, agent_body,  # noqa: E402
                     free_port, health_ok, small_config)
from test_security import raw_exchange, status_of  # noqa: E402

MIB = 1 << 20


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def sanitized(pid):
    """True when the process runs under AddressSanitizer (its runtime is mapped)."""
    with open("/proc/%d/maps" % pid) as f:
        return any("libasan" in line or "libtsan" in line for line in f)


def post_raw(port, path, data):
    """One POST of JSON bytes on a fresh connection: (status, parsed body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def zeros_obs(n):
    return b'{"obs":[' + b",".join([b"0"] * n) + b"]}"


class MemoryTest(DaemonTestCase):
    """Issue 9 item 5: a 16 MB act body of 8 million zeros took RSS from 58 MB to 714 MB
    and 3 s of CPU before its 400; four at once reached 2 GB, and RSS stayed there."""

    HOSTILE = zeros_obs(8000000)  # 16 000 009 bytes, under the 16 MiB --max-body

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pid = cls.daemon.proc.pid
        cls.c.post("/v1/agents", agent_body("mem", obs_dim=3))
        cls.c.post("/v1/agents", agent_body("rows", obs_dim=17,
                                            config=small_config(buffer_size=1000000)))

    def hostile_act(self):
        st, p = post_raw(self.daemon.port, "/v1/agents/mem/act", self.HOSTILE)
        self.assertEqual(st, 400, p)
        self.assertEqual(p["code"], "invalid_argument")
        self.assertEqual(p["detail"], "obs has 8000000 values; agent 'mem' expects 3")

    def need_glibc_rss(self):
        if sanitized(self.pid):
            self.skipTest("the daemon runs under a sanitizer: its allocator keeps freed "
                          "memory in quarantine, so RSS does not measure redqd's use")
        try:
            with open("/proc/%d/clear_refs" % self.pid, "w") as f:
                f.write("5")
        except OSError as e:
            self.skipTest("cannot reset the daemon's VmHWM (/proc/PID/clear_refs): %s" % e)

    def reset_peak(self):
        """Resets VmHWM to the current RSS; returns that RSS."""
        with open("/proc/%d/clear_refs" % self.pid, "w") as f:
            f.write("5")
        return proc_status(self.pid)["VmRSS"]

    def settled(self):
        """RSS once the daemon has given back what it can (its 1 s tick trims)."""
        last = [None]

        def steady():
            now = proc_status(self.pid)["VmRSS"]
            ok = last[0] is not None and abs(now - last[0]) < MIB
            last[0] = now
            return ok
        self.wait_until(steady, timeout=60, what="RSS to settle", interval=1.2)
        return last[0]

    def test_hostile_act_is_refused_naming_the_field(self):
        self.hostile_act()
        # the same refusal for a batch past --max-obs-per-act, and for one observation
        st, p = post_raw(self.daemon.port, "/v1/agents/mem/act",
                         b'{"obs":[' + b",".join([b"[0,0,0]"] * 5000) + b"]}")
        self.assertEqual(st, 400, p)
        self.assertEqual(p["detail"], "obs has 5000 observations, over the limit of 4096 per "
                                      "act (--max-obs-per-act)")
        st, p = post_raw(self.daemon.port, "/v1/agents/mem/act",
                         b'{"obs":[[0,0,0],[' + b",".join([b"0"] * 100000) + b"]]}")
        self.assertEqual(st, 400, p)
        self.assertEqual(p["detail"], "obs[1] has 100000 values; agent 'mem' expects 3")
        self.assertEqual(self.act("mem", [0.1, 0.2, 0.3])["policy_version"], 0)

    def test_peak_per_request_and_return_after_a_burst(self):
        self.need_glibc_rss()
        body = len(self.HOSTILE)
        baseline = self.settled()

        start = self.reset_peak()
        self.hostile_act()
        grew = proc_status(self.pid)["VmHWM"] - start
        self.assertLessEqual(grew, 3 * body, "one hostile act grew RSS by %.0f MiB" % (grew / MIB))

        start = self.reset_peak()
        errors = []

        def one():
            try:
                self.hostile_act()
            except BaseException as e:  # reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertFalse(errors, errors)
        grew = proc_status(self.pid)["VmHWM"] - start
        self.assertLessEqual(grew, 3 * 4 * body,
                             "four hostile acts grew RSS by %.0f MiB" % (grew / MIB))
        after = self.settled()
        self.assertLessEqual(after, baseline + body // 2,
                             "RSS %.0f MiB after the burst, %.0f MiB before"
                             % (after / MIB, baseline / MIB))

    def test_large_valid_transitions_post(self):
        self.need_glibc_rss()
        row = {"obs": [0] * 17, "action": [0], "reward": 0, "next_obs": [0] * 17,
               "terminated": False, "truncated": False}
        n = 60000  # zeros: the densest valid text, the most values per byte
        data = json.dumps({"transitions": [row] * n}, separators=(",", ":")).encode()
        held = self.state("rows")["memory_bytes"]
        baseline = self.settled()
        start = self.reset_peak()
        st, p = post_raw(self.daemon.port, "/v1/agents/rows/transitions", data)
        self.assertEqual(st, 200, p)
        self.assertEqual(p["accepted"], n)
        grew = proc_status(self.pid)["VmHWM"] - start
        self.assertLessEqual(grew, 3 * len(data), "a %.1f MiB post grew RSS by %.0f MiB"
                             % (len(data) / MIB, grew / MIB))
        # what stays is the agent's (its replay buffer), not the request's
        kept = self.state("rows")["memory_bytes"] - held
        after = self.settled()
        self.assertLessEqual(after, baseline + kept + len(data) // 2,
                             "RSS %.0f MiB after, %.0f MiB before, the agent keeps %.0f MiB"
                             % (after / MIB, baseline / MIB, kept / MIB))


class MaxAbsValueTest(DaemonTestCase):
    """Issue 9 item 6 (input): observations, rewards and action bounds past
    --max-abs-value (default 1e9) are invalid_argument naming the field and the flag."""

    FLAG = "(--max-abs-value)"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.c.post("/v1/agents", agent_body("v", obs_dim=3))

    def refused(self, resp, field, detail=None):
        p = self.assertProblem(resp, 400, "invalid_argument", field, self.FLAG)
        if detail is not None:
            self.assertEqual(p["detail"], detail)

    def rows(self, n):
        return [{"obs": [0.1, 0.2, 0.3], "action": [0.5], "reward": 1.0,
                 "next_obs": [0.2, 0.3, 0.4], "terminated": False, "truncated": False}
                for _ in range(n)]

    def test_act(self):
        self.refused(self.c.post("/v1/agents/v/act", {"obs": [0, 2e9, 0]}), "obs[1]",
                     "obs[1] 2000000000 is over the limit of 1e+09 (--max-abs-value)")
        self.refused(self.c.post("/v1/agents/v/act", {"obs": [[0, 0, 0], [0, 0, -3e38]]}),
                     "obs[1][2]")
        self.act("v", [1e9, -1e9, 0])  # the limit itself is allowed

    def test_transitions(self):
        before = self.state("v")["env_steps"]
        rows = self.rows(4)
        rows[3]["reward"] = 3.4e38
        self.refused(self.c.post("/v1/agents/v/transitions", {"transitions": rows}),
                     "transitions[3].reward",
                     "transitions[3].reward 3.4e+38 is over the limit of 1e+09 (--max-abs-value)")
        for key in ("obs", "next_obs"):
            rows = self.rows(2)
            rows[1][key] = [0, 0, -1e10]
            self.refused(self.c.post("/v1/agents/v/transitions", {"transitions": rows}),
                         "transitions[1].%s[2]" % key)
        self.assertEqual(self.state("v")["env_steps"], before)
        rows = self.rows(1)
        rows[0]["action"] = [5e9]  # an executed action is clipped into the box, not refused
        self.post_transitions("v", rows)

    def test_episodes(self):
        st = self.state("v")
        self.refused(self.c.post("/v1/agents/v/episodes", {"obs": [3e38, 0, 0]}), "obs[0]")
        self.assertEqual(self.state("v")["open_episodes"], st["open_episodes"])
        ep = self.assertOK(self.c.post("/v1/agents/v/episodes", {"obs": [0, 0, 0]}), 201)
        path = "/v1/agents/v/episodes/%s/step" % ep["episode_id"]
        step = {"reward": 1e10, "obs": [0, 0, 0], "terminated": False, "truncated": False}
        self.refused(self.c.post(path, step), "reward")
        step["reward"] = 1.0
        step["obs"] = [0, -2e9, 0]
        self.refused(self.c.post(path, step), "obs[1]")
        self.assertEqual(self.state("v")["env_steps"], st["env_steps"])
        step["obs"] = [0, 0, 0]
        step["terminated"] = True
        done = self.assertOK(self.c.post(path, step))
        self.assertEqual(done, {"done": True, "return": 1.0, "length": 1})

    def test_action_bounds(self):
        self.refused(self.c.post("/v1/agents", agent_body("huge-box", low=[-3e38], high=[1])),
                     "action_low[0]")
        self.refused(self.c.post("/v1/agents", agent_body("huge-box", low=[-1], high=[3e38])),
                     "action_high[0]")
        body = agent_body("huge-box", low=[-1], high=[1e10])
        self.refused(self.c.put("/v1/agents/huge-box", body=body), "action_high[0]")  # PUT too
        self.assertProblem(self.c.get("/v1/agents/huge-box"), 404, "not_found")
        self.create("edge-box", low=[-1e9], high=[1e9])


class MaxAbsValueFlagTest(DaemonTestCase):
    daemon_args = ("--max-abs-value", "100")

    def test_the_flag_sets_the_limit(self):
        self.create("f", obs_dim=2)
        p = self.assertProblem(self.c.post("/v1/agents/f/act", {"obs": [150, 0]}), 400,
                               "invalid_argument", "obs[0]")
        self.assertEqual(p["detail"], "obs[0] 150 is over the limit of 100 (--max-abs-value)")
        self.act("f", [100, -100])

    def test_bad_values_of_the_flag_are_refused_at_start(self):
        for value in ("0", "-1", "abc", "1e39", "nan"):
            tmp = tempfile.mkdtemp(prefix="redqd-it-abs-")
            env = {k: v for k, v in os.environ.items() if not k.startswith("REDQD_")}
            env["REDQD_MAX_ABS_VALUE"] = value
            p = subprocess.run([BIN, "--port", str(free_port()), "--data-dir",
                                os.path.join(tmp, "data")], env=env, capture_output=True,
                               timeout=30, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            self.assertEqual(p.returncode, 2, (value, p.stderr))
            self.assertIn(b"max_abs_value=" + value.encode(), p.stderr)
            self.assertIn(b"(environment)", p.stderr)


class FramingTest(DaemonTestCase):
    """Issue 9 item 7 (RFC 9112): what a server must refuse, over raw sockets. Each
    refusal is a 400 problem whose connection closes, so that nothing after it is read as
    another request."""
    daemon_args = ("--connection-timeout", "5")

    SECOND = b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n\r\n"  # answered 200 if read

    def refused(self, head, mention):
        resp, _, closed = raw_exchange(self.daemon.port, head + self.SECOND, timeout=10)
        self.assertEqual(status_of(resp), 400, resp[:300])
        self.assertIn(b"application/problem+json", resp)
        self.assertIn(b"invalid_argument", resp)
        self.assertIn(mention, resp)
        self.assertNotIn(b"HTTP/1.1 200", resp, "a second request was read")
        self.assertTrue(closed, "the connection was left open")
        self.assertEqual(health_ok(self.daemon.port), 200)

    def test_two_content_lengths(self):
        # MHD went by the first (0): the second hides the body from this daemon but not
        # from a proxy that reads the last one
        self.refused(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     b"Content-Length: 5\r\n\r\nhello", b"Content-Length")
        self.refused(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     b"content-length: 0\r\n\r\n", b"Content-Length")

    def test_space_before_a_colon(self):
        # "Transfer-Encoding : chunked" was another header to MHD, and the body went by
        # Content-Length; a proxy may take it as chunked
        self.refused(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", b"'Transfer-Encoding '")
        self.refused(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length\t: 0\r\n\r\n",
                     b"not a token")

    def test_host(self):
        self.refused(b"GET /v1/health HTTP/1.1\r\n\r\n", b"Host")
        self.refused(b"GET /v1/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"Host")
        resp, _, _ = raw_exchange(self.daemon.port, b"GET /v1/health HTTP/1.0\r\n\r\n",
                                  timeout=10)
        self.assertEqual(status_of(resp), 200, resp[:300])  # HTTP/1.0 needs no Host

    def test_many_query_parameters_get_an_answer(self):
        # about 500 filled MHD's 32 KiB pool, and the connection stayed silent until
        # --connection-timeout
        for n, sep in ((600, b"a%d=1"), (2000, b"")):
            query = b"&".join((sep % i if sep else b"") for i in range(n))
            resp, _, closed = raw_exchange(self.daemon.port, b"GET /v1/health?" + query +
                                           b" HTTP/1.1\r\nHost: x\r\n\r\n", timeout=4)
            self.assertEqual(status_of(resp), 414, "%d parameters: %r" % (n, resp[:300]))
            self.assertIn(b"more than 64 query parameters", resp)
            self.assertTrue(closed)
        query = b"&".join(b"p%d=1" % i for i in range(64))
        resp, _, _ = raw_exchange(self.daemon.port, b"GET /v1/health?" + query +
                                  b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
        self.assertEqual(status_of(resp), 200, resp[:300])
        self.assertOK(self.c.get("/v1/agents?x=1"))


class ContractTest(DaemonTestCase):
    """U+0000 in a string names the field; integers up to 2^53 - 1 are echoed exactly."""

    def no_offset(self, resp, field):
        p = self.assertProblem(resp, 400, "invalid_argument", field, "U+0000")
        self.assertNotIn("offset", p["detail"])

    def test_u0000_names_the_field(self):
        self.no_offset(self.c.post("/v1/agents", '{"name": "a\\u0000b", "obs_dim": 3, '
                                   '"action_low": [-1], "action_high": [1]}'), "name")
        self.assertProblem(self.c.get("/v1/agents/a"), 404, "not_found")  # not cut to "a"
        self.create("z")
        row = ('{"obs": [0, 0, 0], "action": [0], "reward": 0, "next_obs": [0, 0, 0], '
               '"terminated": false, "truncated": false, "env_id": "%s"}')
        self.no_offset(self.c.post("/v1/agents/z/transitions", '{"transitions": [%s, %s]}'
                                   % (row % "e", row % "e\\u0000")), "transitions[1].env_id")
        self.no_offset(self.c.post("/v1/agents/z/transitions", '{"batch_id": "b\\u0000", '
                                   '"transitions": [%s]}' % (row % "e")), "batch_id")
        self.no_offset(self.c.post("/v1/agents/z/act", '{"obs": [0, 0, 0], '
                                   '"mode": "eval\\u0000"}'), "mode")
        self.no_offset(self.c.patch("/v1/agents/z", '{"training": "paused\\u0000x"}'),
                       "training")
        self.assertEqual(self.state("z")["env_steps"], 0)
        p = self.assertProblem(self.c.post("/v1/agents/z/act", '{"obs": [0, 0, 0]'), 400,
                               "invalid_argument")
        self.assertIn("byte offset 17", p["detail"])  # syntax errors keep their offset

    def test_integers_echoed_exactly(self):
        big = 2 ** 53 - 1
        cfg = small_config(seed=big, checkpoint_every=big, start_timesteps=10 ** 15,
                           lr_scheduler={"type": "linear", "total_updates": 10 ** 15},
                           max_pending_updates=10 ** 12)
        r = self.c.post("/v1/agents", agent_body("ints", config=cfg))
        self.assertStatus(r, 201)
        for resp in (r, self.c.get("/v1/agents/ints")):
            text = resp.body.decode()
            self.assertIn('"seed":%d' % big, text)
            self.assertIn('"checkpoint_every":%d' % big, text)
            self.assertNotIn("e+", text)
            got = resp.json()["config"]
            for key in ("seed", "checkpoint_every", "start_timesteps", "max_pending_updates",
                        "buffer_size", "batch_size"):
                self.assertIs(type(got[key]), int, key)
            self.assertEqual(got["seed"], big)
            self.assertEqual(got["start_timesteps"], 10 ** 15)
            self.assertEqual(got["lr_scheduler"]["total_updates"], 10 ** 15)


if __name__ == "__main__":
    unittest.main()
