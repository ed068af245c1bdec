"""Headless Chromium driven over the DevTools protocol, standard library only.

What `chromium --dump-dom` and `--screenshot` cannot do: wait for the page to reach a
state, run JavaScript in it, click, hover and drag like a person, time things, and take
screenshots of one element. Used by tests/integration/test_dashboard.py and
bench/bench_dashboard.py; as a command it takes a screenshot of the dashboard:

    python3 tests/integration/cdp.py URL OUT.png [--size 1280x900] [--wait-loaded]
                                     [--click ID] [--hover ID[:fraction]] [--full]

The WebSocket client here is the least RFC 6455 needs: one connection, text frames,
masking, fragments, ping and close.
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


def find_chromium():
    for c in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


class WebSocket:
    def __init__(self, url, timeout=60):
        assert url.startswith("ws://"), url
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("WebSocket handshake: connection closed")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("WebSocket handshake refused: %r" % head[:200])

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("WebSocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def send(self, text):
        self._frame(0x1, text.encode())

    def recv(self):
        """the next text message"""
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
            if opcode == 0x9:
                self._frame(0xA, data)
                continue
            if opcode == 0x8:
                raise ConnectionError("WebSocket closed by the browser")
            if opcode in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode("utf-8")

    def close(self):
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Browser:
    """One headless Chromium with one page. Use as a context manager."""

    def __init__(self, size=(1280, 900), tmp=None):
        exe = find_chromium()
        if exe is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium, or set CHROMIUM)")
        self.tmp = tempfile.mkdtemp(prefix="cdp-", dir=tmp)
        self.size = size
        self.errors = []      # uncaught exceptions and console.error calls of the page
        self.events = []
        self.seq = 0
        err = open(os.path.join(self.tmp, "stderr"), "wb")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--remote-debugging-port=0", "--user-data-dir=" + os.path.join(self.tmp, "profile"),
             "--window-size=%d,%d" % size, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self):
        deadline = time.time() + 30
        port = None
        while port is None:
            with open(os.path.join(self.tmp, "stderr"), "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if "DevTools listening on ws://" in line:
                        port = int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            if port is None:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("chromium did not start:\n" + self.stderr())
                time.sleep(0.05)
        while True:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                break
            if time.time() > deadline:
                raise RuntimeError("chromium has no page")
            time.sleep(0.05)
        self.ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                  deviceScaleFactor=1, mobile=False)

    def stderr(self):
        try:
            with open(os.path.join(self.tmp, "stderr"), "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def call(self, method, **params):
        self.seq += 1
        me = self.seq
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == me:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self._event(m)

    def _event(self, m):
        meth = m.get("method")
        if meth == "Runtime.exceptionThrown":
            d = m["params"]["exceptionDetails"]
            self.errors.append((d.get("exception") or {}).get("description") or d.get("text"))
        elif meth == "Runtime.consoleAPICalled" and m["params"].get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                        for a in m["params"].get("args", [])))
        elif meth:
            self.events.append(m)

    def eval(self, expr):
        """the value of a JavaScript expression (promises awaited)"""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expr[:200], r["exceptionDetails"]))
        return r["result"].get("value")

    def navigate(self, url):
        self.call("Page.navigate", url=url)

    def wait(self, expr, timeout=60, what=None):
        """until expr is truthy; returns its value"""
        deadline = time.time() + timeout
        while True:
            try:
                v = self.eval(expr)
            except RuntimeError:
                v = None
            if v:
                return v
            if time.time() > deadline:
                raise AssertionError("timed out waiting for %s" % (what or expr))
            time.sleep(0.05)

    def rect(self, selector):
        """[x, y, width, height] of the element in the viewport, scrolled into view"""
        return self.eval("""(function () {
            var e = document.querySelector(%s);
            if (!e) return null;
            e.scrollIntoView({block: "center"});
            var r = e.getBoundingClientRect();
            return [r.left, r.top, r.width, r.height];
        })()""" % json.dumps(selector))

    def mouse(self, kind, x, y, button="none", modifiers=0):
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button,
                  clickCount=1 if button != "none" else 0, modifiers=modifiers)

    def click(self, x, y):
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, "left")
        self.mouse("mouseReleased", x, y, "left")

    def drag(self, x0, y0, x1, y1, steps=8):
        self.mouse("mouseMoved", x0, y0)
        self.mouse("mousePressed", x0, y0, "left")
        for k in range(1, steps + 1):
            self.mouse("mouseMoved", x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, "left")
        self.mouse("mouseReleased", x1, y1, "left")

    def screenshot(self, path, clip=None, full=False):
        """a PNG of the viewport, of clip [x, y, w, h] (page pixels), or of the whole page"""
        params = {"format": "png"}
        if full:
            h = self.eval("document.documentElement.scrollHeight")
            self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=h,
                      deviceScaleFactor=1, mobile=False)
            self.eval("window.scrollTo(0, 0)")
            time.sleep(0.3)
        if clip:
            sx, sy = self.eval("[window.scrollX, window.scrollY]")
            params["clip"] = {"x": clip[0] + sx, "y": clip[1] + sy, "width": clip[2],
                              "height": clip[3], "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        with open(path, "wb") as f:
            f.write(data)
        if full:
            self.call("Emulation.setDeviceMetricsOverride", width=self.size[0],
                      height=self.size[1], deviceScaleFactor=1, mobile=False)
        return path

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="Screenshot of the redqd dashboard in headless Chromium.")
    ap.add_argument("url")
    ap.add_argument("out")
    ap.add_argument("--size", default="1280x900")
    ap.add_argument("--wait-loaded", action="store_true",
                    help="wait until the ticked agents' curves are loaded and drawn")
    ap.add_argument("--click", help="id of an element to click (e.g. agent-NAME)")
    ap.add_argument("--hover", help="id of an element to hover, :fraction of its width")
    ap.add_argument("--full", action="store_true", help="the whole page, not the viewport")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x"))
    with Browser((w, h)) as b:
        b.navigate(a.url)
        b.wait("document.readyState === 'complete'")
        if a.wait_loaded:
            b.wait("document.documentElement.getAttribute('data-loaded') === '1'", 120)
        else:
            time.sleep(3)
        if a.click:
            r = b.rect("#" + a.click)
            b.click(r[0] + r[2] / 2, r[1] + r[3] / 2)
            time.sleep(1)
        if a.hover:
            ident, _, frac = a.hover.partition(":")
            r = b.rect("#" + ident)
            b.mouse("mouseMoved", r[0] + r[2] * float(frac or 0.6), r[1] + r[3] / 2)
            time.sleep(0.3)
        b.screenshot(a.out, full=a.full)
        print(json.dumps({"status": b.eval("document.getElementById('status').textContent"),
                          "errors": b.errors}, indent=2))
        return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
