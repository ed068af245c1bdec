"""The dashboard (GET /) rendered by headless Chromium against a real redqd: two runs
compared, driven over the DevTools protocol (tests/integration/cdp.py) like a person would
(untick, hover, toggle, smooth, drag to zoom), a screenshot checked for both runs' colours
in the chart areas, the token form and an unavailable agent's error.

Keep the screenshot as docs/img/dashboard.png:
    REDQD_DASHBOARD_PNG=docs/img/dashboard.png REDQD_BIN=build/redqd \
        /usr/bin/python3 tests/integration/run.py tests/integration/test_dashboard.py

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
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402  (tests/integration/cdp.py: Chromium over the DevTools protocol)
from harness import START_TIMEOUT, catches_sigterm, scaled  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("REDQD_BIN") or os.path.join(ROOT, "build", "redqd")
CHROMIUM = cdp.find_chromium()
SKIP_MSG = ("chromium is not installed (apt-get install chromium, or set CHROMIUM=/path): "
            "the dashboard cannot be rendered")


# --------------------------------------------------------------------------- daemon

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, tmp, token=None, reuse=False):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.data = os.path.join(tmp, "data")
        os.makedirs(self.data, exist_ok=reuse)
        self.log_path = os.path.join(tmp, "redqd.log")
        args = [BIN, "--port", str(self.port), "--data-dir", self.data, "--log-level", "warning"]
        if token is not None:
            tf = os.path.join(tmp, "token")
            with open(tf, "w") as f:
                f.write(token + "\n")
            args += ["--token-file", tf]
        self.token = token
        self.log = open(self.log_path, "ab")
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
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(30))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def make_run(d, name, seed, slope, training="manual"):
    """A small run as a client would make it: four rounds of 120 transitions over two
    env_ids (an episode ends every 30 steps of each), 60 updates and an evaluation of
    four returns; then two episodes of the episodes API. Returns improve with the round
    by `slope`, so two runs draw apart. Manual training: nothing changes after the return
    (the page's numbers are final)."""
    d.call("POST", "/v1/agents", {
        "name": name, "obs_dim": 3, "action_low": [-2], "action_high": [2],
        "config": {"hidden_sizes": [16, 16], "ensemble_size": 2, "batch_size": 16,
                   "start_timesteps": 0, "update_per_step": 1, "actor_delay": 2,
                   "training": training, "alpha": "auto", "seed": seed}})
    rnd = random.Random(seed)

    def obs():
        return [rnd.uniform(-1, 1) for _ in range(3)]

    for k in range(4):
        rows = [{"obs": obs(), "action": [rnd.uniform(-2, 2)],
                 "reward": rnd.uniform(-1, 0) + slope * k, "next_obs": obs(),
                 "terminated": (i // 2) % 30 == 29, "truncated": False, "env_id": "env%d" % (i % 2)}
                for i in range(120)]
        d.call("POST", "/v1/agents/%s/transitions" % name, {"transitions": rows})
        d.call("POST", "/v1/agents/%s/train" % name, {"updates": 60})
        d.call("POST", "/v1/agents/%s/evaluations" % name,
               {"returns": [rnd.uniform(-30, -10) + 10 * slope * k for _ in range(4)],
                "lengths": [30, 30, 30, 30]})
    for ep in range(2):
        eid = d.call("POST", "/v1/agents/%s/episodes" % name, {"obs": obs()})["episode_id"]
        for t in range(10):
            out = d.call("POST", "/v1/agents/%s/episodes/%s/step" % (name, eid),
                         {"reward": -1.0 + 0.2 * ep, "obs": obs(), "terminated": False,
                          "truncated": t == 9})
        assert out.get("done"), out
    return d.call("GET", "/v1/agents/" + name)["state"]


def count_rows(d, name, what):
    return len(d.call("GET", "/v1/agents/%s/%s?since=0&limit=100000" % (name, what))["rows"])


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


def png_pixels(path):
    """(width, height, bytes per pixel, rows of pixel bytes) of an 8-bit RGB/RGBA/grey PNG,
    stdlib only."""
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
    rows = []
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
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def colour_count(path, rgb, tol=48):
    """pixels of the PNG within tol (per channel) of the colour rgb"""
    w, h, bpp, rows = png_pixels(path)
    n = 0
    for line in rows:
        for i in range(0, w * bpp, bpp):
            if (abs(line[i] - rgb[0]) <= tol and abs(line[i + 1] - rgb[1]) <= tol
                    and abs(line[i + 2] - rgb[2]) <= tol):
                n += 1
    return n


def css_rgb(c):
    """'#2f6fdf' or 'rgb(47, 111, 223)' -> (47, 111, 223)"""
    c = c.strip()
    if c.startswith("#"):
        return tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(v) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3])


# --------------------------------------------------------------------------- tests

CHART_IDS = ("eval_return", "explore_return", "critic_loss", "actor_loss", "alpha", "q_mean")
LOADED = "document.documentElement.getAttribute('data-loaded') === '1'"


def attr(b, sel, name):
    return b.eval("document.querySelector(%s).getAttribute(%s)" % (json.dumps(sel), json.dumps(name)))


class TestDashboard(unittest.TestCase):
    """Two runs compared (and a third agent that is not), against a real daemon."""

    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(BIN):
            raise AssertionError("no redqd binary at %s (make build/redqd, or set REDQD_BIN)" % BIN)
        cls.tmp = tempfile.mkdtemp(prefix="redqd-dash-")
        cls.d = None
        try:
            cls.d = Daemon(cls.tmp)
            cls.state = {"run-a": make_run(cls.d, "run-a", 7, 0.0),
                         "run-b": make_run(cls.d, "run-b", 8, 0.5)}
            cls.d.call("POST", "/v1/agents", {
                "name": "zz-other", "obs_dim": 2, "action_low": [-1], "action_high": [1],
                "config": {"hidden_sizes": [8], "ensemble_size": 2, "batch_size": 4,
                           "training": "manual"}})
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

    def test_page_and_assets_are_served(self):
        status, headers, body = self.d.request("GET", "/", auth=False)
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"), headers["Content-Type"])
        self.assertEqual(headers["Cache-Control"], "no-cache")
        text = body.decode()
        # nothing comes from elsewhere: every src= and href= is one of our /assets/
        for bad in ("http://", "https://", "//cdn", "@ASSET_TAG@"):
            self.assertNotIn(bad, text, bad)
        refs = [t.split('"', 2)[1] for t in text.split(" src=")[1:] + text.split(" href=")[1:]]
        self.assertEqual(sorted(r.split("?")[0] for r in refs),
                         ["assets/dygraph.min.css", "assets/dygraph.min.js"], refs)
        types = {"dygraph.min.js": "text/javascript", "dygraph.min.css": "text/css",
                 "dygraphs-copyright.txt": "text/plain"}
        for ref in refs + ["assets/dygraphs-copyright.txt"]:
            status, headers, body = self.d.request("GET", "/" + ref, auth=False)
            self.assertEqual(status, 200, ref)
            name = ref.split("?")[0].split("/")[1]
            self.assertTrue(headers["Content-Type"].startswith(types[name]), headers["Content-Type"])
            self.assertIn("max-age=31536000", headers["Cache-Control"])
            self.assertGreater(len(body), 1000 if name != "dygraphs-copyright.txt" else 100)
        self.assertIn(b"Dygraph", self.d.request("GET", "/assets/dygraph.min.js")[2][:2000])
        self.assertIn(b"MIT", self.d.request("GET", "/assets/dygraphs-copyright.txt")[2])
        status, headers, body = self.d.request("GET", "/assets/app.js", auth=False)
        self.assertEqual(status, 404)
        self.assertEqual(body["code"], "not_found")

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_rendered_dom(self):
        """--dump-dom: the table, with all three agents and the two runs ticked by address"""
        dom = DOM(chromium(self.d.base + "/#agents=run-a,run-b", self.tmp, "--dump-dom"))
        ids = dom.ids
        for i in ("health", "agents", "status", "token-form", "compare", "x-axis", "smoothing",
                  "band", "reset-zoom") + tuple("chart-" + c for c in CHART_IDS):
            self.assertIn(i, ids, "no #%s in the rendered page" % i)
        status = ids["status"]
        self.assertNotIn("error", status.classes(), "status shows an error: " + status.text())
        self.assertEqual(status.attrs.get("data-state"), "ok", status.text())
        self.assertIn("live", status.text())
        self.assertIn(self.health["version"], ids["health"].text())
        self.assertEqual(ids["health-agents"].text(), "3")
        self.assertFalse(dom.visible(ids["token-form"]), "token form shown without a token file")
        for name in self.state:
            st = self.d.call("GET", "/v1/agents/" + name)["state"]   # other tests train run-a
            row = ids.get("agent-" + name)
            self.assertIsNotNone(row, "no #agent-%s row" % name)
            cells = {c: n.text().strip() for n in row.walk() for c in n.classes()}
            self.assertEqual(cells["env_steps"], "{:,}".format(st["env_steps"]))
            self.assertEqual(cells["updates"], "{:,}".format(st["updates"]))
            self.assertEqual(cells["episodes"], "{:,}".format(st["episodes"]))
            self.assertEqual(cells["policy_version"], "{:,}".format(st["policy_version"]))
            self.assertEqual(cells["node"], self.health["node"])   # the node that holds it
            self.assertIn("ok", cells["status"])
            self.assertIn("selected", row.classes(), name + " is ticked by #agents=")
        self.assertNotIn("selected", ids["agent-zz-other"].classes())
        self.assertTrue(dom.visible(ids["compare"]))
        self.assertIn("2 agents", ids["compare-note"].text())
        self.assertTrue(dom.visible(ids["detail"]))
        self.assertEqual(ids["detail-name"].text(), "run-a")
        for c in CHART_IDS:
            self.assertEqual(ids["chart-" + c].attrs.get("data-series"), "2", c)

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_compare_two_runs(self):
        """Driven like a person: untick the third agent, hover, toggle, smooth, zoom; the
        screenshot shows both runs' colours in the chart areas."""
        stats = {n: count_rows(self.d, n, "stats") for n in self.state}
        evals = {n: count_rows(self.d, n, "evaluations") for n in self.state}
        self.assertEqual(evals, {"run-a": 4, "run-b": 4})
        with cdp.Browser((1280, 900), tmp=self.tmp) as b:
            b.navigate(self.d.base + "/")
            b.wait(LOADED, 60, "the first load")
            # all three are ticked at first (up to four are); untick zz-other by its row
            self.assertEqual(b.eval("location.hash"), "#agents=run-a,run-b,zz-other")
            r = b.rect("#agent-zz-other td.obs, #agent-zz-other td:nth-child(4)")
            b.click(r[0] + r[2] / 2, r[1] + r[3] / 2)
            b.wait("location.hash === '#agents=run-a,run-b'", 10, "the row click to untick zz-other")
            b.wait(LOADED, 30)
            self.assertIn("2 agents", b.eval("document.getElementById('compare-note').textContent"))

            expect = {"eval_return": sum(evals.values()),
                      "explore_return": sum(s["episodes"] for s in self.state.values()),
                      "critic_loss": sum(stats.values())}
            for c in CHART_IDS:
                sel = "#chart-" + c
                self.assertEqual(attr(b, sel, "data-series"), "2", c)
                if c in expect:
                    self.assertEqual(int(attr(b, sel, "data-points")), expect[c], c)
                self.assertEqual(attr(b, sel, "data-x"), "updates" if c not in
                                 ("eval_return", "explore_return") else "env_steps", c)
            # a legend with both runs, in two different colours
            legend = b.eval("""Array.from(document.querySelectorAll('#legend-eval_return .li'))
                               .map(function (e) { return [e.dataset.agent, e.dataset.color, e.textContent]; })""")
            self.assertEqual([l[0] for l in legend], ["run-a", "run-b"], legend)
            colours = {l[0]: css_rgb(l[1]) for l in legend}
            self.assertNotEqual(colours["run-a"], colours["run-b"])
            for l in legend:
                self.assertIn("last", l[2])

            # hover: values of both runs at the x under the mouse
            r = b.rect("#plot-critic_loss")
            b.mouse("mouseMoved", r[0] + r[2] * 0.55, r[1] + r[3] * 0.5)
            text = b.wait("""(function () { var t = document.getElementById('legend-critic_loss').textContent;
                              return t.indexOf('updates ') === 0 ? t : null; })()""", 5, "hover values")
            self.assertIn("run-a", text)
            self.assertIn("run-b", text)
            b.mouse("mouseMoved", 2, 2)

            # the x axis toggle
            for x, label in (("time", "wall time"), ("env_steps", "env steps"), ("updates", "updates")):
                b.eval("(function (s) { s.value = %s; s.dispatchEvent(new Event('change')); })"
                       "(document.getElementById('x-axis'))" % json.dumps(x))
                for c in CHART_IDS:
                    self.assertEqual(attr(b, "#chart-" + c, "data-x"), x, c)
                self.assertIn(label, b.eval("document.querySelector('#chart-critic_loss .x').textContent"))
            b.eval("(function (s) { s.value = 'auto'; s.dispatchEvent(new Event('change')); })"
                   "(document.getElementById('x-axis'))")

            # smoothing: the legend gives the raw value beside the smoothed one
            def smooth(v):
                b.eval("(function (s) { s.value = %s; s.dispatchEvent(new Event('input')); })"
                       "(document.getElementById('smoothing'))" % json.dumps(str(v)))
                return b.eval("document.getElementById('legend-actor_loss').textContent")
            self.assertNotIn("raw", smooth(0))
            self.assertIn("raw", smooth(0.9))
            smooth(0.6)

            # drag to zoom: the charts on the updates axis zoom together, the others not
            r = b.rect("#plot-critic_loss")
            b.drag(r[0] + r[2] * 0.3, r[1] + r[3] * 0.5, r[0] + r[2] * 0.7, r[1] + r[3] * 0.5)
            b.wait("document.getElementById('chart-actor_loss').dataset.window !== 'full'", 5, "the zoom")
            lo, hi = (float(v) for v in attr(b, "#chart-critic_loss", "data-window").split(","))
            self.assertLess(lo, hi)
            self.assertEqual(attr(b, "#chart-actor_loss", "data-window"), attr(b, "#chart-critic_loss", "data-window"))
            self.assertEqual(attr(b, "#chart-eval_return", "data-window"), "full")
            b.eval("document.getElementById('reset-zoom').click()")
            self.assertEqual(attr(b, "#chart-critic_loss", "data-window"), "full")

            # the screenshot: both colours in the chart areas
            b.eval("window.scrollTo(0, 0)")
            shot = os.path.join(self.tmp, "dashboard.png")
            b.screenshot(shot, full=True)
            for c in ("eval_return", "critic_loss", "q_mean"):
                png = os.path.join(self.tmp, "plot-%s.png" % c)
                b.screenshot(png, clip=b.rect("#plot-" + c))
                for name, rgb in colours.items():
                    n = colour_count(png, rgb)
                    self.assertGreater(n, 40, "%s: only %d pixels of %s's colour %s" % (c, n, name, rgb))
            keep = os.environ.get("REDQD_DASHBOARD_PNG")
            if keep:   # docs/img/dashboard.png is made this way (docs/BENCHMARKS.md)
                shutil.copyfile(shot, keep)
            w, h, _, _ = png_pixels(shot)
            self.assertEqual(w, 1280)

            # live: new rows are fetched with since= (only what is new) and drawn
            before = int(attr(b, "#chart-critic_loss", "data-points"))
            last_row = self.d.call("GET", "/v1/agents/run-a/stats?since=0&limit=100000")["rows"][-1]["row"]
            self.d.call("POST", "/v1/agents/run-a/train", {"updates": 20})
            b.wait("+document.getElementById('chart-critic_loss').dataset.points > %d" % before, 20,
                   "the new stats rows on the page")
            urls = b.eval("performance.getEntriesByType('resource').map(function (e) { return e.name; })")
            self.assertTrue(any("/v1/agents/run-a/stats?" in u and "since=%d" % last_row in u for u in urls), urls)
            # everything the page loaded came from the daemon
            self.assertEqual([u for u in urls if not u.startswith(self.d.base + "/")], [])
            self.assertEqual(b.errors, [])


class TestDashboardUnavailable(unittest.TestCase):
    """An agent whose stored state cannot be loaded is listed with its error."""

    def test_error_shown(self):
        if not os.path.isfile(BIN):
            raise AssertionError("no redqd binary at %s" % BIN)
        if CHROMIUM is None:
            self.skipTest(SKIP_MSG)
        tmp = tempfile.mkdtemp(prefix="redqd-dash-bad-")
        d = Daemon(tmp)
        try:
            make_run(d, "good", 1, 0.1)
            make_run(d, "broken", 2, 0.1)
            d.stop()
            con = sqlite3.connect(os.path.join(d.data, "redqd.db"))
            con.execute("UPDATE agents SET config = '{\"hidden_sizes\": ' WHERE name = 'broken'")
            con.commit()
            con.close()
            d = Daemon(tmp, reuse=True)
            # The daemon serves while its agents load: wait until this one has been tried.
            deadline = time.monotonic() + scaled(30)
            state = d.call("GET", "/v1/agents/broken")["state"]
            while state["status"] == "loading" and time.monotonic() < deadline:
                time.sleep(0.05)
                state = d.call("GET", "/v1/agents/broken")["state"]
            self.assertEqual(state["status"], "unavailable")
            dom = DOM(chromium(d.base + "/#agents=broken,good", tmp, "--dump-dom"))
            row = dom.ids["agent-broken"]
            self.assertIn("unavailable", row.text())
            err = dom.ids.get("agent-error-broken")
            self.assertIsNotNone(err, "no error row under the broken agent")
            self.assertIn(state["error"], err.text())
            self.assertNotIn("agent-error-good", dom.ids)
            self.assertIn(state["error"], dom.ids["detail-error"].text())   # broken is focused
            # its history is still drawn (GET works on an unavailable agent)
            self.assertEqual(dom.ids["chart-eval_return"].attrs.get("data-series"), "2")
        finally:
            d.stop()
            shutil.rmtree(tmp, ignore_errors=True)


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
        self.assertEqual(self.d.request("GET", "/assets/dygraph.min.js", auth=False)[0], 200)
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
        self.assertFalse(dom.visible(dom.ids["compare"]))
        # health needs no token
        self.assertIn("version", dom.ids["health"].text())

    @unittest.skipIf(CHROMIUM is None, SKIP_MSG)
    def test_token_typed_into_the_form(self):
        with cdp.Browser((1280, 900), tmp=self.tmp) as b:
            b.navigate(self.d.base + "/")
            b.wait("!document.getElementById('token-form').hidden", 20, "the token form")
            b.eval("document.getElementById('token-input').focus()")
            b.call("Input.insertText", text=self.TOKEN)
            b.eval("document.querySelector('#token-form button[type=submit]').click()")
            b.wait("!!document.getElementById('agent-secret-agent')", 20, "the agents after the token")
            self.assertTrue(b.eval("document.getElementById('token-form').hidden"))
            self.assertEqual(b.eval("sessionStorage.getItem('redqd_token')"), self.TOKEN)
            self.assertEqual(b.errors, [])

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
