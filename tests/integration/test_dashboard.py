"""The dashboard (GET /) rendered by headless Chromium against a real redqd.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_dashboard.py
Binary: $REDQD_BIN (default build/redqd). Browser: Debian's chromium (/usr/bin/chromium, or
$CHROMIUM); the tests are skipped only when it is not installed. Standard library only.
"""
import html.parser
import json
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
import urllib.error
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import START_TIMEOUT, catches_sigterm, scaled  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("REDQD_BIN") or os.path.join(ROOT, "build", "redqd")


def find_chromium():
    for c in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


CHROMIUM = find_chromium()
SKIP_MSG = ("chromium is not installed (apt-get install chromium, or set CHROMIUM=/path): "
            "the dashboard cannot be rendered")


# --------------------------------------------------------------------------- daemon

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, tmp, token=None):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.data = os.path.join(tmp, "data")
        os.makedirs(self.data)
        self.log_path = os.path.join(tmp, "redqd.log")
        args = [BIN, "--port", str(self.port), "--data-dir", self.data, "--log-level", "warning"]
        if token is not None:
            tf = os.path.join(tmp, "token")
            with open(tf, "w") as f:
                f.write(token + "\n")
            args += ["--token-file", tf]
        self.token = token
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        # as long as it is alive (a slow start is waited for), up to a bound against a hang
        bound = scaled(START_TIMEOUT)
        deadline = time.monotonic() + bound
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redqd exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                if self.request("GET", "/v1/health", auth=False)[0] == 200 and \
                        catches_sigterm(self.proc.pid):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redqd did not answer /v1/health within %.0f s:\n%s"
                                   % (bound, self.log_tail()))
            time.sleep(0.05)

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def request(self, method, path, body=None, auth=True, token=None):
        """(status, headers, parsed JSON or raw bytes)"""
        hdr = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdr["Content-Type"] = "application/json"
        tok = token if token is not None else (self.token if auth else None)
        if tok:
            hdr["Authorization"] = "Bearer " + tok
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdr)
        try:
            with urllib.request.urlopen(req, timeout=scaled(60)) as r:
                status, headers, raw = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, raw = e.code, e.headers, e.read()
        ctype = headers.get("Content-Type", "")
        return status, headers, (json.loads(raw) if "json" in ctype and raw else raw)

    def call(self, method, path, body=None, expect=(200, 201)):
        status, _, out = self.request(method, path, body)
        if status not in expect:
            raise AssertionError("%s %s -> %s: %s" % (method, path, status, out))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(30))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def train_demo(d, name="demo"):
    """An agent with stats rows and a few finished explore episodes; returns its state once
    the trainers are idle (so the numbers the page shows are final). async mode: no request
    waits for training."""
    d.call("POST", "/v1/agents", {
        "name": name, "obs_dim": 3, "action_low": [-2], "action_high": [2],
        "config": {"hidden_sizes": [32, 32], "ensemble_size": 3, "batch_size": 16,
                   "start_timesteps": 0, "update_per_step": 1, "actor_delay": 2,
                   "training": "async", "alpha": "auto", "seed": 7}})
    rnd = random.Random(5)

    def obs():
        return [rnd.uniform(-1, 1) for _ in range(3)]

    rows = [{"obs": obs(), "action": [rnd.uniform(-2, 2)], "reward": rnd.uniform(-1, 0),
             "next_obs": obs(), "terminated": False, "truncated": i % 40 == 39}
            for i in range(240)]
    d.call("POST", "/v1/agents/%s/transitions" % name, {"transitions": rows})
    for ep in range(4):
        eid = d.call("POST", "/v1/agents/%s/episodes" % name, {"obs": obs()})["episode_id"]
        for t in range(10):
            out = d.call("POST", "/v1/agents/%s/episodes/%s/step" % (name, eid),
                         {"reward": -1.0 + 0.2 * ep, "obs": obs(), "terminated": False,
                          "truncated": t == 9})
        assert out.get("done"), out
    bound = scaled(30)
    deadline = time.monotonic() + bound
    while True:
        state = d.call("GET", "/v1/agents/" + name)["state"]
        if state["pending_updates"] == 0 and state["updates"] > 0:
            break
        if time.monotonic() > deadline:
            raise AssertionError("the trainers did not catch up in %.0f s: %s" % (bound, state))
        time.sleep(0.05)
    # Stats rows reach the store up to a second after the updates (and headless Chromium's
    # virtual time runs the page's 2 s polls faster than real time): wait for the last row.
    while True:
        rows = d.call("GET", "/v1/agents/%s/stats?since=0&limit=100000" % name)["rows"]
        if rows and rows[-1]["update"] > state["updates"] - 2:  # a row every actor_delay=2
            return state
        if time.monotonic() > deadline:
            raise AssertionError("stats rows lag: last %s, updates %d" % (rows[-1:] or None, state["updates"]))
        time.sleep(0.05)


# --------------------------------------------------------------------------- browser

def chromium(url, tmp, *extra, budget_ms=8000, size="1280,900"):
    profile = tempfile.mkdtemp(dir=tmp, prefix="profile-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--user-data-dir=" + profile, "--window-size=" + size,
            "--virtual-time-budget=%d" % budget_ms] + list(extra) + [url]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(90))
    if p.returncode != 0:
        raise AssertionError("chromium exited %d:\n%s" % (p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    return p.stdout.decode("utf-8", "replace")


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def classes(self):
        return (self.attrs.get("class") or "").split()


class DOM(html.parser.HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)
        self.feed(text)
        self.close()
        self.ids = {n.attrs["id"]: n for n in self.root.walk() if n.attrs.get("id")}

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in self.VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)

    def visible(self, node):
        """not hidden by the hidden attribute on it or on an ancestor"""
        while node is not None:
            if "hidden" in node.attrs:
                return False
            node = node.parent
        return True


def png_info(path):
    """(width, height, number of distinct colours) of an 8-bit RGB/RGBA/grey PNG, stdlib only."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG: " + path)
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        ln, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + ln]
        if typ == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            break
        pos += 12 + ln
    w, h, depth, ctype, _, _, interlace = ihdr
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or bpp is None or interlace:
        raise AssertionError("unexpected PNG format %s" % (ihdr,))
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    prev = bytearray(stride)
    colours = set()
    pos = 0
    for _ in range(h):
        ft = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if ft == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ft == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ft == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ft == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(bytes(line[i:i + bpp]) for i in range(0, stride, bpp * 3))
        prev = line
    return w, h, len(colours)


# --------------------------------------------------------------------------- tests

class TestDashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(BIN):
            raise AssertionError("no redqd binary at %s (make build/redqd, or set REDQD_BIN)" % BIN)
        cls.tmp = tempfile.mkdtemp(prefix="redqd-dash-")
        cls.d = None
        try:
            cls.d = Daemon(cls.tmp)
            cls.state = train_demo(cls.d)
            cls.health = cls.d.call("GET", "/v1/health")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.d is not None:
            cls.d.stop()
            cls.d = None
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_page_is_served(self):
        status, headers, body = self.d.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"), headers["Content-Type"])
        text = body.decode()
        # self-contained: nothing is fetched from elsewhere
        for bad in ("http://", "https://", "//cdn", "<link ", "src=\""):
            self.assertNotIn(bad, text.replace('xmlns="http://www.w3.org/2000/svg"', ""), bad)

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_rendered_dom(self):
        dom = DOM(chromium(self.d.base + "/", self.tmp, "--dump-dom"))
        ids = dom.ids
        for i in ("health", "agents", "status", "token-form", "chart-critic_loss",
                  "chart-actor_loss", "chart-alpha", "chart-q_mean", "chart-returns"):
            self.assertIn(i, ids, "no #%s in the rendered page" % i)

        status = ids["status"]
        self.assertNotIn("error", status.classes(), "status shows an error: " + status.text())
        self.assertEqual(status.attrs.get("data-state"), "ok", status.text())
        self.assertIn("live", status.text())

        self.assertIn(self.health["version"], ids["health"].text())
        self.assertEqual(ids["health-agents"].text(), "1")
        self.assertFalse(dom.visible(ids["token-form"]), "token form shown without a token file")

        row = ids.get("agent-demo")
        self.assertIsNotNone(row, "no #agent-demo row")
        self.assertEqual(row.tag, "tr")
        cells = {c: n.text().strip() for n in row.walk() for c in n.classes()}
        st = self.state
        self.assertEqual(cells["env_steps"], "{:,}".format(st["env_steps"]))
        self.assertEqual(cells["updates"], "{:,}".format(st["updates"]))
        self.assertEqual(cells["policy_version"], "{:,}".format(st["policy_version"]))
        self.assertIn("async", row.text())
        self.assertIn("3 / 1", row.text())
        self.assertIn("selected", row.classes(), "the only agent is selected")

        self.assertTrue(dom.visible(ids["detail"]))
        self.assertEqual(ids["detail-name"].text(), "demo")
        for c in ("critic_loss", "actor_loss", "alpha", "q_mean"):
            cv = ids["chart-" + c]
            self.assertEqual(cv.tag, "canvas")
            self.assertGreater(int(cv.attrs.get("data-points", "0")), 10, "chart %s has no curve" % c)
        # 4 finished explore episodes
        self.assertEqual(ids["chart-returns"].attrs.get("data-points"), "4")

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_screenshot(self):
        png = os.path.join(self.tmp, "dashboard.png")
        chromium(self.d.base + "/", self.tmp, "--screenshot=" + png, budget_ms=5000)
        self.assertTrue(os.path.isfile(png), "no screenshot written")
        size = os.path.getsize(png)
        self.assertGreater(size, 10_000, "screenshot is only %d bytes" % size)
        w, h, colours = png_info(png)
        self.assertEqual((w, h), (1280, 900))
        self.assertGreater(colours, 50, "screenshot has only %d colours" % colours)


class TestDashboardToken(unittest.TestCase):
    TOKEN = "dash-Test-token_42"

    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(BIN):
            raise AssertionError("no redqd binary at %s (make build/redqd, or set REDQD_BIN)" % BIN)
        cls.tmp = tempfile.mkdtemp(prefix="redqd-dash-tok-")
        cls.d = None
        try:
            cls.d = Daemon(cls.tmp, token=cls.TOKEN)
            cls.d.call("POST", "/v1/agents", {
                "name": "secret-agent", "obs_dim": 2, "action_low": [-1], "action_high": [1],
                "config": {"hidden_sizes": [8], "ensemble_size": 2, "batch_size": 4,
                           "training": "manual"}})
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.d is not None:
            cls.d.stop()
            cls.d = None
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_http_auth(self):
        status, headers, _ = self.d.request("GET", "/", auth=False)
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"))
        self.assertEqual(self.d.request("GET", "/v1/health", auth=False)[0], 200)
        status, headers, body = self.d.request("GET", "/v1/agents", auth=False)
        self.assertEqual(status, 401)
        self.assertTrue(headers["Content-Type"].startswith("application/problem+json"))
        self.assertEqual(body["code"], "unauthenticated")
        self.assertEqual(self.d.request("GET", "/v1/agents", token="wrong")[0], 401)
        self.assertEqual(self.d.request("GET", "/v1/agents")[0], 200)

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_without_token_shows_form(self):
        dom = DOM(chromium(self.d.base + "/", self.tmp, "--dump-dom", budget_ms=5000))
        form = dom.ids.get("token-form")
        self.assertIsNotNone(form)
        self.assertTrue(dom.visible(form), "token form hidden although the API answers 401")
        self.assertIn("token-input", dom.ids)
        self.assertFalse([i for i in dom.ids if i.startswith("agent-")], "agent rows without a token")
        self.assertNotIn("secret-agent", dom.root.text())
        self.assertEqual(dom.ids["status"].attrs.get("data-state"), "auth", dom.ids["status"].text())
        # health needs no token
        self.assertIn("version", dom.ids["health"].text())

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_with_token_in_fragment(self):
        # #token=... seeds sessionStorage (the fragment never reaches the server)
        dom = DOM(chromium(self.d.base + "/#token=" + self.TOKEN, self.tmp, "--dump-dom", budget_ms=5000))
        self.assertFalse(dom.visible(dom.ids["token-form"]))
        self.assertIn("agent-secret-agent", dom.ids)
        self.assertEqual(dom.ids["status"].attrs.get("data-state"), "ok", dom.ids["status"].text())

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_wrong_token_is_reported(self):
        dom = DOM(chromium(self.d.base + "/#token=nope", self.tmp, "--dump-dom", budget_ms=5000))
        self.assertTrue(dom.visible(dom.ids["token-form"]))
        self.assertIn("rejected", dom.ids["token-msg"].text())
        self.assertIn("error", dom.ids["status"].classes())
        self.assertIn("401", dom.ids["status"].text())
        self.assertFalse([i for i in dom.ids if i.startswith("agent-")])


if __name__ == "__main__":
    unittest.main()
