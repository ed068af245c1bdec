"""tests/integration/harness.py: the daemon under test and an HTTP client for it.

Each test file starts its own redqd (build/redqd, or $REDQD_BIN, e.g. an ASan build) on
a free port with a fresh temporary data directory:

    redqd --port N --data-dir DIR --log-level debug [extra args]   > DIR/../redqd.log

and waits for GET /v1/health (and its SIGTERM handler: catches_sigterm) for as long as
the process is alive (up to scaled(START_TIMEOUT)): a slow start (a sanitizer build
loading large agents on a loaded machine) is waited for, a daemon that exits fails at
once. Daemon.stop() sends SIGTERM
and returns the exit code (tests assert 0 within scaled(STOP_TIMEOUT)); restart() is
stop + start on the same data dir; kill() is SIGKILL. The daemon's log is printed when a
test fails (DaemonTestCase).

Time bounds. A test that must bound a wall-clock time does it with scaled(seconds): the
seconds the plain build needs on an idle machine, times time_factor() (SAN_FACTOR for a
sanitizer build of $REDQD_BIN, times the machine's load per CPU; or
$REDQD_TEST_TIME_FACTOR). DaemonTestCase.wait_until scales its timeout the same way. A
bound that is only a guard against a hang (a readiness wait, a thread join) can be as
generous as it likes; one that is the point of a test should be one-sided, and a check of
the quantity that matters (an order, a count, a state) is better still.

Python 3 standard library only. Every assertion is against /work/shared/API.md.
"""

import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("REDQD_BIN") or os.path.join(REPO, "build", "redqd")

START_TIMEOUT = 60.0      # seconds (before scaling) a start may take before it is a hang
STOP_TIMEOUT = 20.0       # seconds (before scaling) a SIGTERM'd daemon may take to exit
PROBE_TIMEOUT = 2.0       # seconds (before scaling) one readiness probe may take
_MISSING = object()


# ------------------------------------------------------------------ time bounds

SAN_FACTOR = 4.0          # a sanitizer build is this many times slower (ASan+UBSan: 2-10x)
MAX_LOAD_FACTOR = 6.0     # the load's share of the factor is capped here


def is_sanitized(path):
    """True when the binary at path was built with a sanitizer: the runtime's entry
    points (__asan_init, __ubsan_handle_*, __tsan_init) are among its symbols."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return any(m in data for m in (b"__asan_init", b"__ubsan_handle_", b"__tsan_init",
                                   b"__msan_init"))


SANITIZED = is_sanitized(BIN)
BUILD_FACTOR = SAN_FACTOR if SANITIZED else 1.0


def load_factor():
    """The machine's load per CPU (the larger of the 1- and 5-minute averages), between 1
    and MAX_LOAD_FACTOR: how much slower than on an idle machine a process runs now."""
    try:
        l1, l5, _ = os.getloadavg()
    except OSError:
        return 1.0
    return min(MAX_LOAD_FACTOR, max(1.0, max(l1, l5) / (os.cpu_count() or 1)))


def time_factor():
    """How many times longer than the plain build on an idle machine anything may take
    now: $REDQD_TEST_TIME_FACTOR if set, else BUILD_FACTOR times load_factor()."""
    env = os.environ.get("REDQD_TEST_TIME_FACTOR")
    if env:
        try:
            return max(1.0, float(env))
        except ValueError:
            pass
    return BUILD_FACTOR * load_factor()


def scaled(seconds):
    """A time bound of `seconds` (what the plain build needs on an idle machine, with a
    margin) scaled for the build under test and the machine's load (time_factor())."""
    return seconds * time_factor()


def _die_with_parent():
    """preexec_fn: the daemon gets SIGKILL when the test process dies (a timeout, a
    crash), so that no daemon outlives its test."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ HTTP

def health_doc(port, ctx=None, timeout=5.0):
    """GET /v1/health on a fresh connection (HTTPS with ctx); returns (status, body)."""
    if ctx is None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        c.request("GET", "/v1/health")
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def health_ok(port, ctx=None, timeout=5.0):
    """GET /v1/health on a fresh connection (HTTPS with ctx); returns the status."""
    return health_doc(port, ctx, timeout)[0]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # http.client.HTTPMessage: case-insensitive get()
        self.body = body
        self._json = _MISSING

    @property
    def ctype(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        if self._json is _MISSING:
            self._json = json.loads(self.body.decode("utf-8"))
        return self._json

    def __repr__(self):
        b = self.body[:400]
        try:
            b = b.decode("utf-8")
        except UnicodeDecodeError:
            pass
        return "<%d %s %r>" % (self.status, self.header("Content-Type"), b)


class Client:
    """One keep-alive connection to the daemon. A request that fails because a reused
    connection had been closed by the server (before it read anything) is retried once
    on a fresh connection."""

    def __init__(self, daemon, timeout=120.0):
        self.daemon = daemon
        self.timeout = timeout
        self.conn = None
        self.port = None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def _connect(self):
        self.close()
        self.port = self.daemon.port
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fresh = True

    def request(self, method, path, body=_MISSING, data=None, headers=None,
                content_type=_MISSING):
        """body: a JSON value (sent as application/json); data: raw bytes (no
        Content-Type unless given in headers or content_type)."""
        hdrs = dict(headers or {})
        if body is not _MISSING:
            data = json.dumps(body).encode("utf-8") if not isinstance(body, (bytes, str)) \
                else (body.encode("utf-8") if isinstance(body, str) else body)
            if content_type is _MISSING:
                content_type = "application/json"
        if content_type is not _MISSING and content_type is not None:
            hdrs["Content-Type"] = content_type
        first_error = None
        for attempt in (0, 1):
            if self.conn is None or self.port != self.daemon.port:
                try:
                    self._connect()
                except ConnectionRefusedError:
                    # The retry's connection is refused: the daemon is gone. The request
                    # went out on the first attempt and may have been processed, so the
                    # caller must not read "refused" as "never sent".
                    if first_error is not None:
                        raise first_error from None
                    raise
            reused = not self.fresh
            self.fresh = False
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.will_close:
                    self.close()
                return Response(resp.status, resp.headers, payload)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt == 1 or not reused:
                    raise
                first_error = e
        raise AssertionError("unreachable")

    # shorthands
    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=_MISSING, **kw):
        return self.request("POST", path, body=body, **kw)

    def patch(self, path, body=_MISSING, **kw):
        return self.request("PATCH", path, body=body, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


# ------------------------------------------------------------------ the daemon

def catches_sigterm(pid):
    """True when the process has a handler for SIGTERM (SigCgt in /proc/PID/status), or
    when that cannot be told. redqd serves HTTP a moment before it installs its signal
    handlers (daemon/main.c), and a SIGTERM in between would kill it outright: a daemon
    is ready for a test once it answers and would shut down cleanly."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except (OSError, ValueError):
        pass
    return True


class _PortTaken(Exception):
    """The port free_port() gave was taken before the daemon could bind it."""


class Daemon:
    def __init__(self, extra_args=(), data_dir=None, port=None):
        self.tmp = tempfile.mkdtemp(prefix="redqd-it-")
        self.fixed_port = port          # None: a free port at each start
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "redqd.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.client = Client(self)
        self.starts = 0

    def _env(self):
        # The daemon reads REDQD_* variables as settings: none may leak in.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REDQD_") and k != "JOURNAL_STREAM"}
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        return env

    def start(self, extra_args=None):
        """Starts the daemon and returns once GET /v1/health answers 200. It waits as long
        as the process is alive, up to scaled(START_TIMEOUT) (a hang); a daemon that exits
        fails at once, with its log. A port taken by another process between free_port()
        and the daemon's bind is retried on a new port."""
        assert self.proc is None, "already running"
        if extra_args is not None:
            self.extra_args = list(extra_args)
        for attempt in range(3):
            try:
                return self._start_once()
            except _PortTaken:
                if attempt == 2:
                    raise AssertionError("redqd could not bind a free port three times\n%s"
                                         % self.log_tail())
        raise AssertionError("unreachable")

    def _start_once(self):
        self.port = self.fixed_port or free_port()
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(("\n===== start #%d: port %d =====\n" % (self.starts, self.port)).encode())
        log.flush()
        log_start = log.tell()
        args = [BIN, "--port", str(self.port), "--data-dir", self.data_dir,
                "--log-level", "debug"] + self.extra_args
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self._env(),
                                     preexec_fn=_die_with_parent)
        log.close()
        self.client.close()
        bound = scaled(START_TIMEOUT)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                if b"Address already in use" in self._log_since(log_start):
                    raise _PortTaken()
                raise AssertionError("redqd exited with %s during startup\n%s"
                                     % (rc, self.log_tail()))
            try:
                if (self.health_status() == 200 and catches_sigterm(self.proc.pid) and
                        self.loaded()):
                    self.last_start_seconds = time.monotonic() - t0
                    return self
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() - t0 > bound:
                self.kill()
                raise AssertionError("redqd was running but did not answer GET /v1/health "
                                     "within %.0f s (scaled(START_TIMEOUT): a hang)\n%s"
                                     % (bound, self.log_tail()))
            time.sleep(0.05)

    def loaded(self):
        """The daemon serves before every stored agent is loaded (API.md "loading"); tests
        start once none is loading, as they did when loading came first."""
        status, body = health_doc(self.port, getattr(self, "ctx", None), timeout=1.0)
        return status == 200 and json.loads(body).get("agents_loading", 0) == 0

    def _log_since(self, offset):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return b""

    def log_offset(self):
        """The log's size now: log_since(offset) is what the daemon logged after."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        """The log from byte offset on (log_offset()), as text."""
        return self._log_since(offset).decode("utf-8", "replace")

    def health_status(self):
        """The readiness probe: GET /v1/health's status (plain HTTP; subclasses may
        speak otherwise)."""
        return health_ok(self.port, timeout=scaled(PROBE_TIMEOUT))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM; returns the exit code (None if it had to be killed after timeout,
        by default scaled(STOP_TIMEOUT))."""
        if timeout is None:
            timeout = scaled(STOP_TIMEOUT)
        self.client.close()
        if self.proc is None:
            return 0
        p = self.proc
        self.proc = None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None

    def stop_ok(self, test=None):
        bound = scaled(STOP_TIMEOUT)
        rc = self.stop(bound)
        if rc != 0:
            raise AssertionError("redqd exited with %r after SIGTERM (expected 0 within %.0f s)"
                                 "\n%s" % (rc, bound, self.log_tail()))

    def kill(self):
        self.client.close()
        if self.proc is None:
            return
        p = self.proc
        self.proc = None
        if p.poll() is None:
            p.kill()
        p.wait()

    def restart(self):
        self.stop_ok()
        return self.start()

    def log_tail(self, n=80):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "----- redqd log (%s), last %d lines -----\n%s\n-----" % (
            self.log_path, min(n, len(lines)), "\n".join(lines[-n:]))

    def cleanup(self):
        self.kill()
        if not os.environ.get("REDQD_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------ test base

class DaemonTestCase(unittest.TestCase):
    """One daemon per test class (per file, usually). The daemon's log tail is printed
    on every failing test; tearDownClass asserts a clean SIGTERM exit."""

    daemon_args = ()
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(extra_args=cls.daemon_args)
        cls.deaths = []
        cls.daemon.start()
        cls.c = cls.daemon.client

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.daemon.proc is not None:
                cls.daemon.stop_ok()
            if cls.deaths:
                raise AssertionError("redqd died unexpectedly: " + "; ".join(cls.deaths))
        finally:
            cls.daemon.cleanup()

    def setUp(self):
        # A daemon that died in an earlier test (reported there) is started again on the
        # same data dir, so that one crash does not fail every later test.
        if self.daemon.proc is None:
            self.daemon.start()

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        d = getattr(type(self), "daemon", None)
        died = d is not None and d.proc is not None and d.proc.poll() is not None
        if died:
            rc = d.proc.returncode
            d.proc = None
            d.client.close()
            type(self).deaths.append("exit code %s during %s" % (rc, self.id()))
            sys.stderr.write("\n*** redqd DIED (exit code %s) during %s\n" % (rc, self.id()))
        if d is not None and (died or len(result.failures) + len(result.errors) > before):
            sys.stderr.write("\n" + d.log_tail() + "\n")
            sys.stderr.flush()
        return out

    # ---- assertions
    def assertStatus(self, resp, status, msg=None):
        if resp.status != status:
            self.fail("expected HTTP %d, got %r%s" % (status, resp, (": " + msg) if msg else ""))

    def assertProblem(self, resp, status, code, field=None, contains=None):
        """A problem+json document with this status and code; detail names field."""
        self.assertStatus(resp, status)
        self.assertEqual(resp.ctype, "application/problem+json", repr(resp))
        p = resp.json()
        self.assertEqual(p.get("status"), status, repr(p))
        self.assertEqual(p.get("code"), code, repr(p))
        self.assertIsInstance(p.get("detail"), str, repr(p))
        self.assertTrue(p.get("title"), repr(p))
        if field is not None:
            self.assertIn(field, p["detail"], "detail does not name %r: %r" % (field, p))
        if contains is not None:
            self.assertIn(contains, p["detail"], repr(p))
        return p

    def assertOK(self, resp, status=200):
        self.assertStatus(resp, status)
        if status != 204 and resp.body:
            self.assertEqual(resp.ctype, "application/json", repr(resp))
            return resp.json()
        return None

    # ---- API helpers
    def create(self, name, obs_dim=3, act_dim=1, low=None, high=None, config=None, **cfg):
        body = agent_body(name, obs_dim, act_dim, low, high, config, **cfg)
        r = self.c.post("/v1/agents", body)
        return self.assertOK(r, 201)

    def agent(self, name):
        return self.assertOK(self.c.get("/v1/agents/" + name))

    def state(self, name):
        return self.agent(name)["state"]

    def post_transitions(self, name, rows, batch_id=None, expect=200):
        body = {"transitions": rows}
        if batch_id is not None:
            body["batch_id"] = batch_id
        r = self.c.post("/v1/agents/%s/transitions" % name, body)
        if expect == 200:
            return self.assertOK(r)
        return r

    def act(self, name, obs, mode=None):
        body = {"obs": obs}
        if mode is not None:
            body["mode"] = mode
        return self.assertOK(self.c.post("/v1/agents/%s/act" % name, body))

    def train(self, name, k):
        return self.assertOK(self.c.post("/v1/agents/%s/train" % name, {"updates": k}))

    def wait_until(self, fn, timeout=30.0, what="condition", interval=0.05):
        """Polls fn until it returns something true, and returns that. timeout is what the
        plain build needs on an idle machine: it is scaled (scaled()); running out of it
        means the condition never came (a hang), not that it came late."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(interval)
        last = fn()  # once more: the time may have gone to a descheduled process
        if last:
            return last
        self.fail("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


# ------------------------------------------------------------------ data

def rfc3339_utc(s):
    """An RFC 3339 UTC timestamp (API.md: everywhere but in stats rows), within a day of
    now; returns the datetime."""
    import datetime
    assert isinstance(s, str) and len(s) >= 20 and s[10] == "T", s
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    assert d.utcoffset() == datetime.timedelta(0), "not UTC: %r" % s
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - d).total_seconds()) < 86400, s
    return d


def small_config(**over):
    """Small networks so that every test is quick."""
    c = {"hidden_sizes": [32, 32], "ensemble_size": 3, "subset_size": 2, "batch_size": 16,
         "start_timesteps": 0, "update_per_step": 1, "actor_delay": 2, "buffer_size": 100000,
         "training": "manual", "checkpoint_every": 0}
    c.update(over)
    return c


def agent_body(name, obs_dim=3, act_dim=1, low=None, high=None, config=None, **cfg):
    if low is None:
        low = [-2.0] * act_dim
    if high is None:
        high = [2.0] * act_dim
    if config is None:
        config = small_config(**cfg)
    body = {"name": name, "obs_dim": obs_dim, "action_low": low, "action_high": high}
    if config is not _MISSING:
        body["config"] = config
    return body


def rand_rows(n, obs_dim, act_dim, rng=None, low=-2.0, high=2.0, env_id=None):
    rng = rng or random.Random(1)
    rows = []
    for _ in range(n):
        row = {"obs": [rng.uniform(-1, 1) for _ in range(obs_dim)],
               "action": [rng.uniform(low, high) for _ in range(act_dim)],
               "reward": rng.uniform(-1, 1),
               "next_obs": [rng.uniform(-1, 1) for _ in range(obs_dim)],
               "terminated": False, "truncated": False}
        if env_id is not None:
            row["env_id"] = env_id
        rows.append(row)
    return rows


# ------------------------------------------------------------------ policy files

def parse_safetensors(blob):
    """(header dict without __metadata__, metadata dict, {name: (shape, [floats])},
    data bytes)."""
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = blob[8 + hlen:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        assert t["dtype"] == "F32", t
        n = (end - start) // 4
        vals = struct.unpack("<%df" % n, data[start:end])
        tensors[name] = (list(t["shape"]), list(vals))
    return header, meta, tensors, data


def tensor_bytes(blob):
    """Every tensor's raw bytes by name (policy_version in the metadata left out)."""
    header, _, _, data = parse_safetensors(blob)
    return {name: data[t["data_offsets"][0]:t["data_offsets"][1]] for name, t in header.items()}


def eval_action(tensors, meta, obs):
    """The eval action of API.md: low + (high - low) * (tanh(mu(s)) + 1) / 2, with the
    hidden layers hidden.{i} (ReLU) as nn.Linear keeps them ([out, in])."""
    def linear(name, x):
        (out_n, in_n), w = tensors[name + ".weight"]
        _, b = tensors[name + ".bias"]
        assert in_n == len(x), (name, in_n, len(x))
        return [b[o] + sum(w[o * in_n + i] * x[i] for i in range(in_n)) for o in range(out_n)]

    x = list(obs)
    i = 0
    while "hidden.%d.weight" % i in tensors:
        x = [max(0.0, v) for v in linear("hidden.%d" % i, x)]
        i += 1
    mu = linear("mu", x)
    low = json.loads(meta["action_low"])
    high = json.loads(meta["action_high"])
    return [lo + (hi - lo) * (math.tanh(m) + 1.0) / 2.0 for m, lo, hi in zip(mu, low, high)]


# ------------------------------------------------------------------ Pendulum-v1

class Pendulum:
    """Gymnasium's Pendulum-v1: g=10, dt=0.05, m=l=1, max_speed 8, max_torque 2,
    200-step episodes (truncation)."""

    def __init__(self, seed=0):
        self.rng = random.Random(seed)
        self.th = self.thdot = 0.0
        self.t = 0

    def obs(self):
        return [math.cos(self.th), math.sin(self.th), self.thdot]

    def reset(self):
        self.th = self.rng.uniform(-math.pi, math.pi)
        self.thdot = self.rng.uniform(-1.0, 1.0)
        self.t = 0
        return self.obs()

    def step(self, u):
        g, m, l, dt = 10.0, 1.0, 1.0, 0.05
        u = min(max(u, -2.0), 2.0)
        th, thdot = self.th, self.thdot
        an = ((th + math.pi) % (2 * math.pi)) - math.pi
        cost = an * an + 0.1 * thdot * thdot + 0.001 * u * u
        newthdot = thdot + (3 * g / (2 * l) * math.sin(th) + 3.0 / (m * l * l) * u) * dt
        newthdot = min(max(newthdot, -8.0), 8.0)
        self.th = th + newthdot * dt
        self.thdot = newthdot
        self.t += 1
        return self.obs(), -cost, False, self.t >= 200
