#!/usr/bin/env node
/*
 * Drive the redqd dashboard in headless Chromium over the DevTools protocol and take a
 * screenshot: what --screenshot alone cannot do (type into the token form, click a row,
 * hover a chart). Dependency-free; needs Node 20 with --experimental-websocket (or 22+).
 *
 *   node --experimental-websocket tests/integration/dashboard_shot.js URL OUT.png \
 *        [--size 1280x900] [--wait 3000] [--token T] [--click agent-NAME] \
 *        [--hover chart-critic_loss[:fraction]] [--full]
 *
 * Prints a JSON summary of the page (status line, rows, chart point counts, JS errors) on
 * stdout; exits 1 if the page threw.
 */
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

function usage() {
  console.error("usage: dashboard_shot.js URL OUT.png [--size WxH] [--wait ms] [--token T] " +
                "[--click ID] [--hover ID[:fraction]] [--full]");
  process.exit(2);
}
const argv = process.argv.slice(2);
if (argv.length < 2) usage();
const opt = { url: argv[0], out: argv[1], size: "1280x900", wait: 3000, token: null,
              click: null, hover: null, full: false };
for (let i = 2; i < argv.length; i++) {
  const k = argv[i];
  if (k === "--full") { opt.full = true; continue; }
  if (!["--size", "--wait", "--token", "--click", "--hover"].includes(k) || i + 1 >= argv.length) usage();
  opt[k.slice(2)] = argv[++i];
}
const [W, H] = opt.size.split("x").map(Number);
if (typeof WebSocket === "undefined") {
  console.error("no WebSocket: run with node --experimental-websocket (Node 20) or Node >= 22");
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "dash-shot-"));
  const chrome = spawn(process.env.CHROMIUM || "/usr/bin/chromium", [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0",
    "--user-data-dir=" + profile, "--window-size=" + W + "," + H, "about:blank"
  ], { stdio: ["ignore", "ignore", "pipe"] });
  const cleanup = () => {
    try { chrome.kill("SIGTERM"); } catch (e) { /* gone */ }
    try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* ignore */ }
  };
  try {
    const wsUrl = await new Promise((resolve, reject) => {
      let buf = "";
      const t = setTimeout(() => reject(new Error("chromium did not start:\n" + buf)), 20000);
      chrome.stderr.on("data", (d) => {
        buf += d;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(buf);
        if (m) { clearTimeout(t); resolve(m[1]); }
      });
      chrome.on("exit", (c) => reject(new Error("chromium exited " + c + ":\n" + buf)));
    });
    const ws = new WebSocket(wsUrl);
    await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
    let seq = 0;
    const pending = new Map(), errors = [];
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.id && pending.has(m.id)) {
        const p = pending.get(m.id);
        pending.delete(m.id);
        m.error ? p.reject(new Error(JSON.stringify(m.error))) : p.resolve(m.result);
      } else if (m.method === "Runtime.exceptionThrown") {
        errors.push(m.params.exceptionDetails.exception
          ? m.params.exceptionDetails.exception.description : m.params.exceptionDetails.text);
      }
    };
    const send = (method, params, sessionId) => new Promise((resolve, reject) => {
      const id = ++seq;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params: params || {}, sessionId }));
    });
    const { targetId } = await send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
    const page = (m, p) => send(m, p, sessionId);
    const evaluate = async (expr) => {
      const r = await page("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true });
      if (r.exceptionDetails) throw new Error(expr + ": " + JSON.stringify(r.exceptionDetails));
      return r.result.value;
    };
    await page("Runtime.enable");
    await page("Page.enable");
    await page("Emulation.setDeviceMetricsOverride", { width: W, height: H, deviceScaleFactor: 1, mobile: false });
    await page("Page.navigate", { url: opt.url });
    await sleep(opt.wait);

    if (opt.token !== null) { /* type it into the form like a person would */
      await evaluate("document.getElementById('token-input').focus()");
      await page("Input.insertText", { text: opt.token });
      await evaluate("document.querySelector('#token-form button[type=submit]').click()");
      await sleep(opt.wait);
    }
    const center = async (id, fx) => evaluate(`(function () {
      var e = document.getElementById(${JSON.stringify(id)});
      if (!e) return null;
      e.scrollIntoView({ block: "center" });
      var r = e.getBoundingClientRect();
      return [r.left + r.width * ${fx}, r.top + r.height / 2];
    })()`);
    const mouse = (type, xy) => page("Input.dispatchMouseEvent",
      { type, x: xy[0], y: xy[1], button: type === "mouseMoved" ? "none" : "left", clickCount: 1 });
    if (opt.click) {
      const xy = await center(opt.click, 0.5);
      if (!xy) throw new Error("no #" + opt.click);
      await mouse("mouseMoved", xy); await mouse("mousePressed", xy); await mouse("mouseReleased", xy);
      await sleep(opt.wait);
    }
    if (opt.hover) {
      const [id, f] = opt.hover.split(":");
      const xy = await center(id, f ? Number(f) : 0.6);
      if (!xy) throw new Error("no #" + id);
      await mouse("mouseMoved", xy);
      await sleep(300);
    }
    const summary = await evaluate(`(function () {
      var q = function (s) { return Array.prototype.slice.call(document.querySelectorAll(s)); };
      var st = document.getElementById("status");
      return {
        status: st.textContent, status_state: st.getAttribute("data-state"),
        token_form: !document.getElementById("token-form").hidden,
        rows: q("#agents-body tr[id]").map(function (r) { return r.id + (r.classList.contains("selected") ? " (selected)" : ""); }),
        charts: q("canvas[id^=chart-]").map(function (c) { return c.id + ":" + c.getAttribute("data-points"); }),
        values: q(".chart-head .val").map(function (v) { return v.id + "=" + v.textContent; }),
        token_stored: !!sessionStorage.getItem("redqd_token"),
        page_height: document.documentElement.scrollHeight
      };
    })()`);
    summary.js_errors = errors;
    if (opt.full) {
      await page("Emulation.setDeviceMetricsOverride", { width: W, height: summary.page_height, deviceScaleFactor: 1, mobile: false });
      await evaluate("window.scrollTo(0, 0)");
      await sleep(500);
    }
    const shot = await page("Page.captureScreenshot", { format: "png" });
    fs.writeFileSync(opt.out, Buffer.from(shot.data, "base64"));
    console.log(JSON.stringify(summary, null, 2));
    ws.close();
    return errors.length ? 1 : 0;
  } finally {
    cleanup();
  }
}
main().then((c) => process.exit(c), (e) => { console.error(e.stack || String(e)); process.exit(1); });
