"""Security and limits against the real daemon: TLS (--tls-cert/--tls-key), the bearer
token (--token-file), slow and silent clients (--connection-timeout), the connection cap
(--max-connections), oversized request lines, headers and bodies (--max-body), and
malformed requests. The daemon must never crash: every class ends with a SIGTERM that
must exit 0 (DaemonTestCase.tearDownClass).

Already covered elsewhere, and not repeated here:
- test_service.py AuthTest: missing, wrong, "Basic", scheme-less, prefix and token+x
  answer 401 unauthenticated on six routes; SIGHUP switches to a new token.
- test_agents.py: a chunked upload (under the default limit) is accepted; a chunked
  upload past --max-body is 413 and health answers after; a 1 GB Content-Length is 413.

The TLS tests need openssl (Debian's `openssl` package) to make a throwaway self-signed
certificate; without it they are skipped with a message saying so.

Time. Deadlines are the point of several tests here: a connection must not be closed
before its deadline (a lower bound, which a slow machine cannot break), and must be
closed after it, within cut_bound(deadline): the deadline plus CUT_SLACK seconds (the 1 s
tick, the close reaching the client) scaled for the build and the machine's load
(harness.scaled). That upper bound is one-sided and generous; where the daemon tells
which rule closed a connection (redqd_http_slow_connections_closed_total counts the
deadline cuts, not the idle timeout's) the count is checked too. "Others are served
meanwhile" is checked as an order: a request made while the stalled connections were
all open was answered before the first of them was closed.
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, PROBE_TIMEOUT, Daemon, DaemonTestCase,  # noqa: E402
                     _die_with_parent, agent_body, free_port, health_ok, scaled)

OPENSSL = shutil.which("openssl")
CUT_SLACK = 2.5   # seconds past a deadline (plain build, idle machine) for the close


def cut_bound(deadline, slack=CUT_SLACK):
    """The latest a connection with this deadline (seconds) may be closed: the deadline
    and a scaled slack for the 1 s tick and the close reaching the client."""
    return deadline + scaled(slack)


# ------------------------------------------------------------------ raw sockets

def raw_exchange(port, data, timeout=10.0, half_close=False, ctx=None, sent=None):
    """Sends data on a fresh connection (TLS with ctx) and reads until the server closes
    it or timeout passes. Returns (bytes received, seconds from the last byte sent until
    the close, closed: True if the server closed, False on timeout). sent (an Event) is
    set once the data is sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    got = b""
    try:
        try:
            if data:
                s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before taking everything: fine
        if sent is not None:
            sent.set()
        return read_to_close(s, got, time.monotonic(), timeout)
    finally:
        s.close()


def read_to_close(s, got, t0, timeout, answered=None):
    """Reads s until the server closes it (closed True), timeout passes, or answered(got)
    says the answer is complete (closed False). Returns (got, seconds since t0, closed)."""
    s.settimeout(timeout)
    while True:
        try:
            b = s.recv(65536)
        except socket.timeout:
            return got, time.monotonic() - t0, False
        except (ConnectionResetError, ssl.SSLError):
            return got, time.monotonic() - t0, True
        if not b:
            return got, time.monotonic() - t0, True
        got += b
        if answered is not None and answered(got):
            return got, time.monotonic() - t0, False


def status_of(resp):
    """The status code of a raw HTTP/1.x answer, or None."""
    if not resp.startswith(b"HTTP/1."):
        return None
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def make_cert(directory, name):
    """A throwaway self-signed certificate and key for 127.0.0.1: (cert path, key path)."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-days", "1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return cert, key


def run_refused(args, timeout=None):
    """Runs redqd expecting it to refuse to start: (exit code, its output). A daemon still
    running after timeout seconds (default scaled(10)) has started: it is killed and the
    code is None."""
    if timeout is None:
        timeout = scaled(10.0)
    tmp = tempfile.mkdtemp(prefix="redqd-it-sec-")
    out = os.path.join(tmp, "out")
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REDQD_") and k != "JOURNAL_STREAM"}
        with open(out, "wb") as f:
            p = subprocess.Popen([BIN, "--port", str(free_port()), "--data-dir",
                                  os.path.join(tmp, "data")] + list(args),
                                 stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, preexec_fn=_die_with_parent)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
        with open(out, "rb") as f:
            return rc, f.read().decode("utf-8", "replace")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ TLS

class TLSDaemon(Daemon):
    """A Daemon whose readiness probe speaks HTTPS (the harness's speaks plain HTTP)."""

    def __init__(self, ctx, extra_args=()):
        super().__init__(extra_args=extra_args)
        self.ctx = ctx

    def health_status(self):
        return health_ok(self.port, self.ctx, timeout=scaled(PROBE_TIMEOUT))


class TLSTest(DaemonTestCase):
    """--tls-cert/--tls-key: HTTPS only, with the certificate given."""

    @classmethod
    def setUpClass(cls):
        if OPENSSL is None:
            raise unittest.SkipTest("openssl is not installed (apt-get install openssl): "
                                    "no certificate to test TLS with")
        cls.certdir = tempfile.mkdtemp(prefix="redqd-it-tls-")
        cls.cert, cls.key = make_cert(cls.certdir, "server")
        cls.ctx = ssl.create_default_context(cafile=cls.cert)
        cls.daemon = TLSDaemon(cls.ctx, ["--tls-cert", cls.cert, "--tls-key", cls.key,
                                         "--connection-timeout", "2"])
        cls.deaths = []
        try:
            cls.daemon.start()
        except BaseException:
            cls.daemon.cleanup()
            shutil.rmtree(cls.certdir, ignore_errors=True)
            raise
        cls.c = None  # the harness's client speaks plain HTTP; see https()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.certdir, ignore_errors=True)

    def https(self, method, path, body=None, ctx=None):
        """One request on a fresh HTTPS connection: (status, headers, body bytes)."""
        c = http.client.HTTPSConnection("127.0.0.1", self.daemon.port, timeout=30,
                                        context=ctx or self.ctx)
        try:
            hdrs = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def test_https_health_create_act(self):
        st, _, b = self.https("GET", "/v1/health")
        self.assertEqual(st, 200, b)
        self.assertEqual(json.loads(b)["status"], "ok")
        st, _, b = self.https("POST", "/v1/agents", agent_body("tls-a"))
        self.assertEqual(st, 201, b)
        self.assertEqual(json.loads(b)["name"], "tls-a")
        st, hdrs, b = self.https("POST", "/v1/agents/tls-a/act", {"obs": [0.1, 0.2, 0.3]})
        self.assertEqual(st, 200, b)
        self.assertEqual(hdrs.get("Content-Type", "").split(";")[0], "application/json")
        a = json.loads(b)
        self.assertEqual(len(a["action"]), 1)
        self.assertTrue(-2.0 <= a["action"][0] <= 2.0, a)
        # keep-alive over TLS: several requests on one connection
        c = http.client.HTTPSConnection("127.0.0.1", self.daemon.port, timeout=30,
                                        context=self.ctx)
        try:
            for _ in range(3):
                c.request("GET", "/v1/agents/tls-a")
                r = c.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(json.loads(r.read())["obs_dim"], 3)
        finally:
            c.close()

    def test_server_presents_the_given_certificate(self):
        c = http.client.HTTPSConnection("127.0.0.1", self.daemon.port, timeout=10,
                                        context=self.ctx)
        try:
            c.connect()
            with open(self.cert) as f:
                want = ssl.PEM_cert_to_DER_cert(f.read())
            self.assertEqual(c.sock.getpeercert(binary_form=True), want)
        finally:
            c.close()
        # a client that trusts only the system's CAs refuses it (it is self-signed)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.https("GET", "/v1/health", ctx=ssl.create_default_context())

    def test_plain_http_to_tls_port_fails(self):
        c = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=10)
        try:
            with self.assertRaises((http.client.HTTPException, OSError)):
                c.request("GET", "/v1/health")
                r = c.getresponse()
                r.read()
                self.fail("plain HTTP was answered on the TLS port: %d" % r.status)
        finally:
            c.close()
        resp, _, closed = raw_exchange(self.daemon.port,
                                       b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", 10)
        self.assertTrue(closed, "the connection stayed open")
        self.assertIsNone(status_of(resp), resp[:200])
        self.assertEqual(self.https("GET", "/v1/health")[0], 200)

    def test_stalled_handshake_is_closed(self):
        # nothing at all, and half a ClientHello: closed after --connection-timeout (2 s)
        hello = bytes.fromhex("160301020001")  # a record header and the start of a hello
        bound = cut_bound(2.0)
        for what, data in (("nothing", b""), ("half a ClientHello", hello)):
            _, dt, closed = raw_exchange(self.daemon.port, data, timeout=bound + 5)
            self.assertTrue(closed, "%s: still open after %.0f s" % (what, bound + 5))
            self.assertGreater(dt, 1.0, "%s: closed too early (%.2f s)" % (what, dt))
            self.assertLess(dt, bound, "%s: closed after %.2f s (timeout 2 s, bound %.1f s)"
                            % (what, dt, bound))
        self.assertEqual(self.https("GET", "/v1/health")[0], 200)


class TLSStartupTest(unittest.TestCase):
    """TLS settings that cannot work are refused at start, with a message naming them."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="redqd-it-tlsbad-")
        cls.cert = cls.key = cls.cert2 = cls.key2 = None
        if OPENSSL is not None:
            cls.cert, cls.key = make_cert(cls.tmp, "a")
            cls.cert2, cls.key2 = make_cert(cls.tmp, "b")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def need_openssl(self):
        if OPENSSL is None:
            self.skipTest("openssl is not installed: no certificate to test with")

    def assertRefused(self, args, *mentions):
        rc, out = run_refused(args)
        self.assertIsNotNone(rc, "redqd started and served with %r:\n%s" % (args, out))
        self.assertNotEqual(rc, 0, "redqd exited 0 with %r:\n%s" % (args, out))
        for m in mentions:
            self.assertIn(m, out, "the refusal does not mention %r:\n%s" % (m, out))
        return out

    def test_cert_without_key(self):
        cert = self.cert or os.path.join(self.tmp, "absent.crt")
        self.assertRefused(["--tls-cert", cert], "--tls-key")

    def test_key_without_cert(self):
        key = self.key or os.path.join(self.tmp, "absent.key")
        self.assertRefused(["--tls-key", key], "--tls-cert")

    def test_unreadable_files(self):
        self.need_openssl()
        missing = os.path.join(self.tmp, "no-such.pem")
        self.assertRefused(["--tls-cert", missing, "--tls-key", self.key], missing)
        self.assertRefused(["--tls-cert", self.cert, "--tls-key", missing], missing)
        self.assertRefused(["--tls-cert", self.tmp, "--tls-key", self.key], "--tls-cert")

    def test_not_pem(self):
        self.need_openssl()
        junk = os.path.join(self.tmp, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        self.assertRefused(["--tls-cert", junk, "--tls-key", self.key], junk)
        self.assertRefused(["--tls-cert", self.cert, "--tls-key", junk], junk)
        empty = os.path.join(self.tmp, "empty.pem")
        open(empty, "w").close()
        self.assertRefused(["--tls-cert", self.cert, "--tls-key", empty], empty)

    def test_key_of_another_certificate(self):
        self.need_openssl()
        self.assertRefused(["--tls-cert", self.cert, "--tls-key", self.key2], "HTTPS")
        self.assertRefused(["--tls-cert", self.key, "--tls-key", self.cert], "HTTPS")


# ------------------------------------------------------------------ token

TOKEN = "Zq8-sec-T0ken_e5c1d2"   # distinctive, so that grepping the log finds only it
OTHER = "second-T0ken_77ab"


class TokenTest(DaemonTestCase):
    """--token-file: which routes need the token, the 401 answer, SIGHUP edge cases and
    the log."""

    OPEN = {("GET", "/v1/health"), ("GET", "/"), ("GET", "/assets/{id}")}  # API.md

    @classmethod
    def setUpClass(cls):
        cls.tokdir = tempfile.mkdtemp(prefix="redqd-it-sectok-")
        cls.tokfile = os.path.join(cls.tokdir, "token")
        cls.write_token(TOKEN + "\n")
        cls.daemon_args = ("--token-file", cls.tokfile)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tokdir, ignore_errors=True)

    @classmethod
    def write_token(cls, text):
        tmp = cls.tokfile + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, cls.tokfile)

    @staticmethod
    def auth(tok=TOKEN):
        return {"Authorization": "Bearer " + tok}

    def setUp(self):
        super().setUp()
        try:
            with open(self.tokfile) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != TOKEN + "\n":  # a test before this one changed it
            self.write_token(TOKEN + "\n")
            self.hup_and_wait("SIGHUP: token reloaded")
        if self.c.get("/v1/agents/tok-a", headers=self.auth()).status == 404:
            self.assertOK(self.c.post("/v1/agents", agent_body("tok-a"),
                                      headers=self.auth()), 201)

    def log_text(self):
        with open(self.daemon.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def hup_and_wait(self, line):
        """SIGHUP, then waits for one more log line containing line."""
        before = self.log_text().count(line)
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_until(lambda: self.log_text().count(line) > before, 5,
                        "the log line %r after SIGHUP" % line)

    def assertUnauthenticated(self, r, what):
        self.assertEqual(r.status, 401, "%s: %r" % (what, r))
        p = self.assertProblem(r, 401, "unauthenticated")
        self.assertIn("Bearer", r.header("WWW-Authenticate") or "",
                      "%s: no WWW-Authenticate challenge: %r" % (what, r.headers.items()))
        return p

    def routes(self):
        """(method, path template) of every route, from the daemon's own OpenAPI document,
        so that a route added later is checked too; HEAD for every GET."""
        doc = self.assertOK(self.c.get("/v1/openapi.json", headers=self.auth()))
        out = []
        for path, ops in doc["paths"].items():
            for m in ops:
                if m.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                    out.append((m.upper(), path))
                    if m.upper() == "GET":
                        out.append(("HEAD", path))
        self.assertGreaterEqual(len(out), 2 * 12 + 11, "OpenAPI lists too few routes: %r" % out)
        return out

    def test_every_route_but_health_and_dashboard_needs_the_token(self):
        checked = 0
        for method, template in self.routes():
            path = template.replace("{name}", "tok-a").replace("{id}", "1")
            r = self.c.request(method, path)
            what = "%s %s without a token" % (method, path)
            if (method.replace("HEAD", "GET"), template) in self.OPEN:
                self.assertNotEqual(r.status, 401, what)
                continue
            checked += 1
            if method == "HEAD":  # no body to carry a problem document
                self.assertEqual(r.status, 401, "%s: %r" % (what, r))
                self.assertIn("Bearer", r.header("WWW-Authenticate") or "", what)
            else:
                self.assertUnauthenticated(r, what)
            if method in ("GET", "HEAD"):  # with the token it gets past authentication
                r = self.c.request(method, path, headers=self.auth())
                self.assertNotEqual(r.status, 401, "%s %s with the token: %r" % (method, path, r))
        self.assertGreaterEqual(checked, 28)
        self.assertOK(self.c.get("/v1/health"))
        self.assertStatus(self.c.get("/"), 200)
        self.assertEqual(self.agent_with_token()["state"]["env_steps"], 0)

    def agent_with_token(self):
        return self.assertOK(self.c.get("/v1/agents/tok-a", headers=self.auth()))

    def test_bad_credentials(self):
        bad = [
            ("missing", {}),
            ("wrong", self.auth("wrong")),
            ("Basic scheme", {"Authorization": "Basic " + TOKEN}),
            ("no scheme", {"Authorization": TOKEN}),
            ("prefix", self.auth(TOKEN[:-1])),
            ("first character only", self.auth(TOKEN[:1])),
            ("token plus one", self.auth(TOKEN + "x")),
            ("token plus many", self.auth(TOKEN + TOKEN)),
            ("empty token", {"Authorization": "Bearer "}),
            ("scheme only", {"Authorization": "Bearer"}),
            ("empty header", {"Authorization": ""}),
            ("another header", {"X-Authorization": "Bearer " + TOKEN}),
        ]
        for what, hdrs in bad:
            r = self.c.get("/v1/agents", headers=hdrs)
            self.assertUnauthenticated(r, what)
            # a refused write changes nothing
            r = self.c.post("/v1/agents/tok-a/transitions",
                            {"transitions": [{"obs": [0, 0, 0], "action": [0], "reward": 0,
                                              "next_obs": [0, 0, 0], "terminated": False,
                                              "truncated": False}]}, headers=hdrs)
            self.assertUnauthenticated(r, what + " (POST)")
        self.assertEqual(self.agent_with_token()["state"]["env_steps"], 0)
        self.assertOK(self.c.get("/v1/agents", headers=self.auth()))
        # the scheme is case-insensitive (RFC 9110 11.1); the token is not
        self.assertOK(self.c.get("/v1/agents", headers={"Authorization": "bearer " + TOKEN}))
        self.assertOK(self.c.get("/v1/agents", headers={"Authorization": "BEARER " + TOKEN}))
        self.assertUnauthenticated(self.c.get("/v1/agents", headers=self.auth(TOKEN.upper())),
                                   "token in upper case")

    def test_sighup_with_an_empty_first_line_keeps_the_old_token(self):
        # A half-written or blank file must not lock every client out (nor let all in).
        for what, content in (("empty first line", "\n" + OTHER + "\n"),
                              ("empty file", ""),
                              ("whitespace only", "   \t\n")):
            self.write_token(content)
            self.hup_and_wait("keeping the old token")
            self.assertOK(self.c.get("/v1/agents", headers=self.auth()), 200)
            self.assertUnauthenticated(self.c.get("/v1/agents", headers=self.auth(OTHER)),
                                       what + ": the second line")
            self.assertUnauthenticated(self.c.get("/v1/agents", headers=self.auth("")), what)
            self.assertUnauthenticated(self.c.get("/v1/agents"), what)
        # a deleted file too
        os.unlink(self.tokfile)
        self.hup_and_wait("keeping the old token")
        self.assertOK(self.c.get("/v1/agents", headers=self.auth()))
        # a good file afterwards is taken, and the old token is refused from then on
        self.write_token(OTHER + "\n")
        self.hup_and_wait("SIGHUP: token reloaded")
        self.assertOK(self.c.get("/v1/agents", headers=self.auth(OTHER)))
        self.assertUnauthenticated(self.c.get("/v1/agents", headers=self.auth()), "old token")
        self.assertTrue(self.daemon.running())

    def test_token_never_in_the_log(self):
        # The daemon runs at --log-level debug (one line per request).
        for hdrs in (self.auth(), self.auth(TOKEN + "x"), self.auth(TOKEN[:-1]),
                     {"Authorization": "Basic " + TOKEN}, {"Authorization": TOKEN}):
            self.c.get("/v1/agents", headers=hdrs)
            self.c.get("/v1/agents/no-such-agent", headers=hdrs)
            self.c.post("/v1/agents", {"bad": 1}, headers=hdrs)
            self.c.request("FOO", "/v1/agents", headers=hdrs)
        # a malformed request carrying it (MHD's own error messages are logged too)
        raw_exchange(self.daemon.port, b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\nNoColon\r\n\r\n", 5)
        raw_exchange(self.daemon.port, b"GET /v1/agents HTTP/1.1\r\nAuthorization: Bearer "
                     + TOKEN.encode() + b"\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 5)
        self.write_token(OTHER + "\n")
        self.hup_and_wait("SIGHUP: token reloaded")
        self.c.get("/v1/agents", headers=self.auth(OTHER))
        self.write_token(TOKEN + "\n")
        self.hup_and_wait("SIGHUP: token reloaded")
        self.assertOK(self.c.get("/v1/agents", headers=self.auth()))
        log = self.log_text()
        self.assertIn("GET /v1/agents 200", log, "no per-request debug lines to check")
        for secret in (TOKEN, TOKEN[:-1], OTHER):
            self.assertNotIn(secret, log, "the token %r is in the log" % secret)


# ------------------------------------------------------------------ slow clients

class SlowClientTest(DaemonTestCase):
    """--connection-timeout 2: stalled and silent connections are closed, and cost other
    clients nothing meanwhile."""
    daemon_args = ("--connection-timeout", "2")

    STALLS = [
        ("half a request line", b"GET /v1/hea"),
        ("a request line, no headers", b"GET /v1/health HTTP/1.1\r\n"),
        ("headers without the blank line", b"GET /v1/health HTTP/1.1\r\nHost: x\r\n"),
        ("half a header", b"GET /v1/health HTTP/1.1\r\nHost: x\r\nUser-Ag"),
        ("part of a body", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: 300\r\n\r\n{\"name\":"),
        ("part of a chunked body", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                   b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"10\r\n{\"name\": \"x\", "),
        ("nothing at all", b""),
    ]

    def test_stalled_clients_are_closed_while_others_are_served(self):
        results, closed_at = {}, {}
        bound = cut_bound(2.0)
        sent = [threading.Event() for _ in self.STALLS]

        def stall(what, data, ev):
            results[what] = raw_exchange(self.daemon.port, data, timeout=bound + 5, sent=ev)
            closed_at[what] = time.monotonic()

        threads = [threading.Thread(target=stall, args=s + (ev,))
                   for s, ev in zip(self.STALLS, sent)]
        for t in threads:
            t.start()
        for ev in sent:
            self.assertTrue(ev.wait(scaled(10)), "a stalled client could not connect")
        # meanwhile another client is answered, on fresh connections: (begun, answered)
        probes = []
        while any(t.is_alive() for t in threads) or len(probes) < 3:
            t0 = time.monotonic()
            self.assertEqual(health_ok(self.daemon.port, timeout=scaled(5)), 200)
            probes.append((t0, time.monotonic()))
            time.sleep(0.1)
        for t in threads:
            t.join(bound + 10)
        first_close = min(closed_at.values())
        self.assertTrue(any(t1 < first_close for _, t1 in probes),
                        "no request was answered while the stalled connections were all "
                        "open (first answer %.2f s after the first close)"
                        % (probes[0][1] - first_close))
        worst = max(t1 - t0 for t0, t1 in probes)
        self.assertLess(worst, scaled(1.0), "a request took %.2f s while others stalled"
                        % worst)
        for what, _ in self.STALLS:
            resp, dt, closed = results[what]
            self.assertTrue(closed, "%s: still open %.0f s later" % (what, bound + 5))
            self.assertGreater(dt, 1.0, "%s: closed after only %.2f s" % (what, dt))
            self.assertLess(dt, bound, "%s: closed after %.2f s (timeout 2 s, bound %.1f s)"
                            % (what, dt, bound))
            self.assertIn(status_of(resp), (None, 408), "%s: %r" % (what, resp[:200]))
        # nothing was created by the stalled POSTs
        self.assertProblem(self.c.get("/v1/agents/x"), 404, "not_found")

    def test_keep_alive_connection_idle_past_the_timeout_is_closed(self):
        bound = cut_bound(2.0)
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=bound + 5)
        try:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)
            self.assertEqual(status_of(first), 200, first[:200])
            t0 = time.monotonic()
            tail = s.recv(65536)  # the rest of the answer, or the close
            while tail:
                tail = s.recv(65536)
            dt = time.monotonic() - t0
        finally:
            s.close()
        self.assertGreater(dt, 1.0)
        self.assertLess(dt, bound, "an idle keep-alive connection stayed %.2f s (timeout 2 s, "
                        "bound %.1f s)" % (dt, bound))

    def test_sigterm_with_stalled_clients_connected(self):
        socks = []
        try:
            for _, data in self.STALLS:
                s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
                if data:
                    s.sendall(data)
                socks.append(s)
            time.sleep(0.3)
            t0 = time.monotonic()
            rc = self.daemon.stop()
            self.assertEqual(rc, 0, self.daemon.log_tail())
            # stalled clients do not hold the shutdown up (nothing to checkpoint here)
            self.assertLess(time.monotonic() - t0, scaled(10.0))
        finally:
            for s in socks:
                s.close()
        self.daemon.start()
        self.assertOK(self.c.get("/v1/health"))


# ------------------------------------------------------------------ trickling clients

def trickle(port, head, pieces, every, timeout=10.0):
    """Sends head, then each of pieces every `every` seconds, on one connection, until the
    server answers or closes it. Returns (bytes received, seconds from the first byte
    until the close or the answer, closed by the server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    got = b""
    try:
        s.sendall(head)
        for piece in pieces:
            s.settimeout(every)
            try:
                b = s.recv(65536)
                if not b:
                    return got, time.monotonic() - t0, True
                got += b
                break  # answered
            except socket.timeout:
                pass
            try:
                s.sendall(piece)
            except OSError:  # reset by the server
                return got, time.monotonic() - t0, True
        return read_to_close(s, got, t0, timeout, answered=lambda g: status_of(g) is not None
                             and b"\r\n\r\n" in g and len(g) > 200)
    finally:
        s.close()


class TrickleTest(DaemonTestCase):
    """--request-header-timeout 2 and --min-transfer-rate 1000: a client that keeps a
    connection alive with a byte now and then (never silent for --connection-timeout 8)
    is still closed once its request is late (the deadline runs from the first byte,
    seen within the 1 s tick: 2 to 4 s); a slow but steady upload goes through; an idle
    keep-alive connection is left to the idle timeout."""
    daemon_args = ("--connection-timeout", "8", "--request-header-timeout", "2",
                   "--min-transfer-rate", "1000")

    def slow_closed(self):
        m = self.c.get("/metrics").body.decode()
        for ln in m.splitlines():
            if ln.startswith("redqd_http_slow_connections_closed_total "):
                return int(ln.split()[1])
        self.fail("no redqd_http_slow_connections_closed_total in /metrics")

    def test_headers_a_byte_at_a_time_are_cut(self):
        before = self.slow_closed()
        req = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n\r\n"
        got, dt, closed = trickle(self.daemon.port, req[:1], [req[i:i + 1] for i in
                                                            range(1, len(req))], 0.3)
        self.assertTrue(closed, "a trickled request was still open after %.1f s" % dt)
        self.assertIsNone(status_of(got), got[:200])
        self.assertGreater(dt, 1.5)
        bound = cut_bound(2.0, 3.5)
        self.assertLess(dt, bound, "closed after %.2f s (header deadline 2 s, bound %.1f s)"
                        % (dt, bound))
        # closed by the header deadline (the count), not by anything else
        self.assertEqual(self.slow_closed(), before + 1)
        with open(self.daemon.log_path, encoding="utf-8", errors="replace") as f:
            self.assertIn("closed a slow connection from 127.0.0.1: the request headers",
                          f.read())

    def test_body_below_the_minimum_rate_is_cut(self):
        self.create("tr", obs_dim=1, act_dim=1)
        before = self.slow_closed()
        head = (b"POST /v1/agents/tr/transitions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/json\r\nContent-Length: 100000\r\n\r\n")
        bound = cut_bound(2.0, 3.5)
        # 20 bytes every 0.3 s for as long as the bound (the idle timeout never comes)
        pieces = max(40, int(bound / 0.3) + 10)
        got, dt, closed = trickle(self.daemon.port, head, [b" " * 20] * pieces, 0.3)
        self.assertTrue(closed, "a trickled body was still open after %.1f s" % dt)
        self.assertIsNone(status_of(got), got[:200])
        self.assertLess(dt, bound, "closed after %.2f s (bound %.1f s)" % (dt, bound))
        self.assertEqual(self.slow_closed(), before + 1, "not closed by the body's deadline")
        self.assertEqual(self.state("tr")["env_steps"], 0)

    def test_slow_but_steady_upload_goes_through(self):
        # 48 KiB at about 8 KiB/s: 6 s in all, three times the header deadline, but well
        # above the minimum rate
        row = {"obs": [0.0], "action": [0.0], "reward": 0.0, "next_obs": [0.0],
               "terminated": False, "truncated": False}
        self.create("steady", obs_dim=1, act_dim=1)
        body = json.dumps({"transitions": [row] * 3}).encode()
        body = body[:-1] + b" " * (48 * 1024 - len(body)) + b"}"
        head = (b"POST /v1/agents/steady/transitions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        pieces = [body[i:i + 4096] for i in range(0, len(body), 4096)]
        got, dt, _ = trickle(self.daemon.port, head, pieces, 0.5)
        self.assertEqual(status_of(got), 200, got[:300])
        self.assertGreater(dt, 4.0)
        self.assertEqual(self.state("steady")["env_steps"], 3)

    def test_keep_alive_requests_each_get_their_own_deadline(self):
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=scaled(10))
        try:
            # 3 requests, 3 s apart on one connection: idle past the header deadline
            # between them, which only counts once a request begins
            for _ in range(3):
                s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                    b = s.recv(65536)
                    self.assertTrue(b, "closed between keep-alive requests")
                    got += b
                self.assertEqual(status_of(got), 200)
                time.sleep(3.0)
        finally:
            s.close()

    def test_long_train_call_is_not_cut(self):
        # A train call waits for its updates far longer than the header deadline without
        # being closed: only receiving the request has a deadline. Its length is sized
        # from the measured update rate (the sanitizer build is ten times slower).
        self.create("lt", obs_dim=3, act_dim=1)
        self.post_transitions("lt", [{"obs": [0.1, 0.2, 0.3], "action": [0.5], "reward": 1.0,
                                      "next_obs": [0.2, 0.3, 0.4], "terminated": False,
                                      "truncated": False}] * 32)
        self.train("lt", 100)  # the first updates allocate and warm up
        t0 = time.monotonic()
        self.train("lt", 400)
        rate = 400 / (time.monotonic() - t0)
        k = min(100000, max(100, int(rate * 6.0)))  # about 6 s
        # The rate was measured under a load that may change: a call that ends up
        # shorter than the deadline and a tick proves nothing, so it is made longer
        # (never cut, each time) until one outlasts it.
        while True:
            t0 = time.monotonic()
            r = self.c.post("/v1/agents/lt/train", {"updates": k})
            dt = time.monotonic() - t0
            self.assertStatus(r, 200)
            if dt > 3.2 or k >= 100000:
                break
            k = min(100000, int(k * max(2.0, 6.0 / max(dt, 0.1))))
        if k < 100000:
            self.assertGreater(dt, 3.2, "the call did not outlast the 2 s deadline and a tick")


class SlowReadTest(DaemonTestCase):
    """--min-transfer-rate 100K: a client that takes a large answer (a checkpoint of
    about 12 MB) a hundred bytes at a time is closed within seconds, while one that
    reads it at full speed gets all of it."""
    daemon_args = ("--connection-timeout", "30", "--request-header-timeout", "2",
                   "--min-transfer-rate", "100K")

    def big_checkpoint(self):
        self.create("big", obs_dim=17, act_dim=6, hidden_sizes=[256, 256], ensemble_size=10,
                    batch_size=256)
        ck = self.assertOK(self.c.post("/v1/agents/big/checkpoints", data=b""), 201)
        self.assertGreater(ck["bytes"], 8 << 20)
        return "/v1/agents/big/checkpoints/%d" % ck["id"], ck["bytes"]

    def slow_closed(self):
        return TrickleTest.slow_closed(self)

    def test_slow_reader_is_closed_and_a_fast_one_is_not(self):
        path, size = self.big_checkpoint()
        # at full speed: every byte
        self.assertEqual(len(self.c.get(path).body), size)
        before = self.slow_closed()
        result = {}

        def drip():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", self.daemon.port))
            got, t0 = 0, time.monotonic()
            try:
                s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(scaled(5))
                while time.monotonic() - t0 < scaled(60):
                    try:
                        b = s.recv(100)
                    except ConnectionResetError:
                        b = b""
                    if not b:
                        result["closed"] = True
                        break
                    got += len(b)
                    time.sleep(0.25)
            finally:
                s.close()
                result["got"] = got

        t = threading.Thread(target=drip)
        t0 = time.monotonic()
        t.start()
        # the daemon gives up on it within its deadline (2 s) and two ticks; the client
        # learns of it once it has read what its own buffer still holds
        self.wait_until(lambda: self.slow_closed() > before, timeout=10,
                        what="the slow reader to be closed")
        self.assertLess(time.monotonic() - t0, cut_bound(2.0, 4.0))
        t.join(scaled(70))
        self.assertTrue(result.get("closed"), "a slow reader was still served: %r" % result)
        self.assertLess(result["got"], size)
        with open(self.daemon.log_path, encoding="utf-8", errors="replace") as f:
            self.assertIn("closed a slow connection from 127.0.0.1: the answer taken", f.read())
        # and the daemon serves on
        self.assertEqual(len(self.c.get(path).body), size)


class PerAddressLimitTest(DaemonTestCase):
    """--max-connections-per-ip 4: a fifth connection from 127.0.0.1 is refused while four
    are open, and served once they go."""
    daemon_args = ("--max-connections-per-ip", "4")

    def four_served(self):
        """Four connections, each answered once (so MHD surely counts all four). The
        harness's earlier connections count until the daemon has seen them close, so a
        refused one means: close all, and try again."""
        deadline = time.monotonic() + scaled(10)
        while True:
            socks = [socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
                     for _ in range(4)]
            served = 0
            for s in socks:
                try:
                    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                    served += status_of(s.recv(65536)) == 200
                except OSError:
                    pass
            if served == 4:
                return socks
            for s in socks:
                s.close()
            self.assertLess(time.monotonic(), deadline, "four connections never all served")
            time.sleep(0.2)

    def test_fifth_connection_from_one_address(self):
        self.daemon.client.close()
        socks = self.four_served()
        try:
            got, _, closed = raw_exchange(self.daemon.port,
                                          b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
                                          timeout=5)
            self.assertTrue(closed, "a fifth connection stayed open; it got %r" % got[:200])
            self.assertIsNone(status_of(got), got[:200])
        finally:
            for s in socks:
                s.close()
        time.sleep(0.3)
        self.assertEqual(health_ok(self.daemon.port), 200)


# ------------------------------------------------------------------ connection cap

class ConnectionLimitTest(DaemonTestCase):
    """--max-connections 8: idle sockets past the cap wait (they do not take the daemon
    down), and the daemon serves again once they go."""
    daemon_args = ("--max-connections", "8")

    def test_twenty_idle_sockets(self):
        self.daemon.client.close()  # the harness's keep-alive connection counts too
        socks = [socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
                 for _ in range(20)]
        probe = None
        try:
            time.sleep(0.5)
            self.assertTrue(self.daemon.running())
            # at the cap a new connection is not served (it waits in the backlog, or is
            # refused), rather than one past the limit being taken
            probe = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=1.5)
            try:
                probe.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                early = probe.recv(65536)
            except socket.timeout:
                early = None
            except (ConnectionResetError, BrokenPipeError):
                early = b""
            self.assertNotEqual(status_of(early or b""), 200,
                             "served a 21st connection with --max-connections 8")
        finally:
            for s in socks:
                s.close()
        t0 = time.monotonic()
        if early is None:  # it waited in the backlog: now it is answered
            probe.settimeout(scaled(10))
            resp = probe.recv(65536)
            self.assertEqual(status_of(resp), 200, resp[:200])
        probe.close()
        self.assertEqual(health_ok(self.daemon.port, timeout=scaled(10)), 200)
        self.assertLess(time.monotonic() - t0, scaled(5.0))
        self.assertTrue(self.daemon.running())
        # and then plenty of connections one after another, each closed
        for _ in range(30):
            self.assertEqual(health_ok(self.daemon.port, timeout=10), 200)


# ------------------------------------------------------------------ oversized input

class OversizeTest(DaemonTestCase):
    """Request lines and headers far past MHD's 32 KiB connection pool, and bodies at
    the --max-body boundary."""
    daemon_args = ("--max-body", "2048")

    def assertRefusedOrClosed(self, req, statuses, what):
        resp, _, closed = raw_exchange(self.daemon.port, req, timeout=scaled(10))
        st = status_of(resp)
        self.assertTrue(st in statuses or (st is None and closed),
                        "%s: %r" % (what, resp[:300]))
        self.assertEqual(health_ok(self.daemon.port), 200, what)

    def test_huge_request_line_and_headers(self):
        big = b"a" * 100000
        self.assertRefusedOrClosed(b"GET /v1/" + big + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                   (400, 404, 414, 431), "100 kB path")
        self.assertRefusedOrClosed(b"GET /v1/health?q=" + big + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                   (400, 414, 431), "100 kB query")
        self.assertRefusedOrClosed(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + big +
                                   b"\r\n\r\n", (400, 431), "one 100 kB header")
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(1000))
        self.assertRefusedOrClosed(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n",
                                   (400, 431), "1000 headers")
        self.assertRefusedOrClosed(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" +
                                   b"A: b\r\n" * 20000 + b"\r\n", (400, 431), "20000 headers")
        self.assertRefusedOrClosed(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                   b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"5\r\n{\"a\":\r\n0\r\nX-Trailer: " + big + b"\r\n\r\n",
                                   (400, 413, 431), "100 kB trailer")

    def test_content_length_over_the_limit_is_refused_before_the_body(self):
        head = (b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2049\r\n")
        for what, extra in (("plain", b""), ("Expect: 100-continue",
                                              b"Expect: 100-continue\r\n")):
            # no body byte is sent: the answer must not wait for it (it would never come;
            # the status is the proof, the time only a generous bound)
            resp, dt, _ = raw_exchange(self.daemon.port, head + extra + b"\r\n",
                                       timeout=scaled(5))
            self.assertEqual(status_of(resp), 413, "%s: %r" % (what, resp[:300]))
            self.assertNotIn(b"100 Continue", resp)
            self.assertIn(b"payload_too_large", resp)
            self.assertIn(b"2048", resp)
            self.assertLess(dt, scaled(2.0), what)
        self.assertEqual(health_ok(self.daemon.port), 200)

    def body_of(self, name, size):
        """A valid agent body of exactly size bytes (padded with JSON whitespace)."""
        data = json.dumps(agent_body(name)).encode()
        self.assertLessEqual(len(data), size)
        return data[:-1] + b" " * (size - len(data)) + b"}"

    def post_chunked(self, body, chunk=100):
        req = (b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for i in range(0, len(body), chunk):
            part = body[i:i + chunk]
            req += b"%x\r\n%s\r\n" % (len(part), part)
        req += b"0\r\n\r\n"
        return raw_exchange(self.daemon.port, req, timeout=10)[0]

    def test_the_limit_is_exact(self):
        # --max-body 2048: 2048 bytes are taken, 2049 are not, whether the length is
        # announced (Content-Length) or not (chunked, API.md: "Chunked uploads are accepted")
        self.assertOK(self.c.post("/v1/agents", self.body_of("edge-cl", 2048)), 201)
        self.assertProblem(self.c.post("/v1/agents", self.body_of("edge-cl2", 2049)), 413,
                           "payload_too_large", "2048")
        resp = self.post_chunked(self.body_of("edge-ch", 2048))
        self.assertEqual(status_of(resp), 201, resp[:300])
        resp = self.post_chunked(self.body_of("edge-ch2", 2049))
        self.assertEqual(status_of(resp), 413, resp[:300])
        self.assertIn(b"payload_too_large", resp)
        # one-byte chunks
        resp = self.post_chunked(self.body_of("edge-ch3", 600), chunk=1)
        self.assertEqual(status_of(resp), 201, resp[:300])
        for name in ("edge-cl", "edge-ch", "edge-ch3"):
            self.assertEqual(self.agent(name)["obs_dim"], 3)
        for name in ("edge-cl2", "edge-ch2"):
            self.assertProblem(self.c.get("/v1/agents/" + name), 404, "not_found")

    def test_chunked_stream_far_past_the_limit(self):
        # 4 MiB in 64 KiB chunks against a 2 KiB cap: 413, nothing buffered, still up
        chunk = b"x" * 65536
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=20)
        resp = b""
        try:
            s.sendall(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            try:
                for _ in range(64):
                    s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                s.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            while True:
                b = s.recv(65536)
                if not b:
                    break
                resp += b
        except ConnectionResetError:
            pass
        finally:
            s.close()
        self.assertIn(status_of(resp), (413, None), resp[:300])
        self.assertEqual(health_ok(self.daemon.port), 200)


# ------------------------------------------------------------------ garbage

class GarbageTest(DaemonTestCase):
    """Malformed requests: each gets an error or a closed connection, never a crash; the
    daemon answers health after each, and SIGTERM still exits 0 (tearDownClass).

    The client half-closes after sending. MHD closes most broken connections at once,
    but keeps some (an answered request, an incomplete line such as "GET 3") until
    --connection-timeout, so that is set to 2 s and each must be closed within
    cut_bound(2, 4) (6 s on the plain build on an idle machine)."""
    daemon_args = ("--connection-timeout", "2")

    CASES = [
        ("invalid method", b"FOO /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("invalid method with a body", b"FOO /v1/agents HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 5\r\n\r\nhello"),
        ("lower-case method", b"get /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("HTTP/0.9", b"GET /\r\n"),
        ("HTTP/0.9 to the API", b"GET /v1/health\r\n\r\n"),
        ("header without a colon", b"GET /v1/health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"),
        ("header with an empty name", b"GET /v1/health HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n"),
        ("folded header", b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n"),
        ("bare LF", b"GET /v1/health HTTP/1.1\nHost: x\n\n"),
        ("bare CR", b"GET /v1/health HTTP/1.1\rHost: x\r\r"),
        ("NUL in the path", b"GET /v1/he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("NUL in a header", b"GET /v1/health HTTP/1.1\r\nHost: x\x00y\r\n\r\n"),
        ("no path", b"GET HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("absolute URI", b"GET http://x/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("HTTP/9.9", b"GET /v1/health HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("HTTP/1.1 without Host", b"GET /v1/health HTTP/1.1\r\n\r\n"),
        ("dot segments", b"GET /v1/../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("bad percent escape", b"GET /v1/agents/%zz%%%0 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("negative Content-Length", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: -1\r\n\r\n"),
        ("non-numeric Content-Length", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: abc\r\n\r\n"),
        ("overflowing Content-Length", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 99999999999999999999999\r\n\r\n"),
        ("two Content-Lengths", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                b"application/json\r\nContent-Length: 2\r\n"
                                b"Content-Length: 40\r\n\r\n{}"),
        ("chunked and Content-Length", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                       b"application/json\r\nContent-Length: 5\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ("bad chunk size", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                           b"chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
        ("overflowing chunk size", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:"
                                   b" chunked\r\n\r\nffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
        ("chunk shorter than said", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                    b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"10\r\n{}\r\n0\r\n\r\n"),
        ("unknown transfer coding", b"POST /v1/agents HTTP/1.1\r\nHost: x\r\n"
                                    b"Transfer-Encoding: gzip\r\n\r\n{}"),
        ("TLS ClientHello to the plain port", bytes.fromhex(
            "16030100a5010000a10303") + bytes(range(32)) + b"\x00\x00\x02\x13\x01\x01\x00"),
        ("pipelined garbage after a request", b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
                                              b"\x01\x02\x03garbage\r\n\r\n"),
        ("a 1 MB line without a newline", b"G" * (1 << 20)),
    ]

    def test_malformed_requests(self):
        bound = cut_bound(2.0, 4.0)
        for what, data in self.CASES:
            # half-close: the daemon sees the end of what the client will send
            resp, dt, closed = raw_exchange(self.daemon.port, data, timeout=bound,
                                            half_close=True)
            self.assertTrue(closed, "%s: the connection is still open after %.0f s"
                            % (what, bound))
            st = status_of(resp)
            self.assertTrue(st is None or st < 500 or st in (501, 505),
                            "%s: %r" % (what, resp[:300]))
            self.assertTrue(self.daemon.running(), "died on: %s" % what)
            self.assertEqual(health_ok(self.daemon.port), 200, what)

    def test_content_length_with_chunked_is_refused_and_closed(self):
        # request smuggling (RFC 9112 6.1): both framings is a 400, and the connection
        # closes at once, so that nothing after it is read as a request
        req = (b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nGET /v1/agents HTTP/1.1\r\nHost: x\r\n\r\n")
        resp, dt, closed = raw_exchange(self.daemon.port, req, timeout=cut_bound(2.0, 4.0))
        self.assertEqual(status_of(resp), 400, resp[:300])
        self.assertIn(b"invalid_argument", resp)
        self.assertEqual(resp.count(b"HTTP/1.1 "), 1, "a second request was read: %r" % resp)
        # closed by the daemon on purpose (it says so), not left to the 2 s idle timeout
        head = resp.split(b"\r\n\r\n", 1)[0].lower()
        self.assertIn(b"\r\nconnection: close", head, resp[:300])
        self.assertTrue(closed and dt < scaled(1.0), "kept open %.2f s" % dt)

    def test_random_bytes(self):
        rng = random.Random(20240613)
        prefixes = [b"", b"GET ", b"POST /v1/agents HTTP/1.1\r\n",
                    b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"GET /v1/health HTTP/1.1\r\nHost: x\r\n"]
        bound = cut_bound(2.0, 4.0)
        for i in range(120):
            n = rng.choice((1, 7, 64, 512, 4096, 40000))
            data = rng.choice(prefixes) + rng.randbytes(n)
            resp, _, closed = raw_exchange(self.daemon.port, data, timeout=bound,
                                           half_close=True)
            self.assertTrue(closed, "case %d: the connection is still open after %.0f s"
                            % (i, bound))
            st = status_of(resp)
            self.assertTrue(st is None or st < 500, "case %d: %r" % (i, resp[:300]))
            if i % 10 == 0:
                self.assertTrue(self.daemon.running(), "died on random case %d" % i)
        self.assertEqual(health_ok(self.daemon.port), 200)

    def test_many_garbage_connections_at_once(self):
        rng = random.Random(7)
        payloads = [rng.randbytes(rng.randint(1, 2000)) for _ in range(40)] + [d for _, d in self.CASES]
        errors = []

        def send(d):
            try:
                raw_exchange(self.daemon.port, d, timeout=10, half_close=True)
            except OSError as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=send, args=(d,)) for d in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(20))
        self.assertFalse(errors, errors[:5])
        self.assertEqual(health_ok(self.daemon.port), 200)
        self.assertOK(self.c.post("/v1/agents", agent_body("after-garbage")), 201)


if __name__ == "__main__":
    unittest.main()
