#!/usr/bin/python3
"""tests/integration/run.py: runs every tests/integration/test_*.py (or the files given)
as its own process, `python3 -m unittest -v FILE`, with a per-file timeout; prints each
file's output, then exactly one final line:

    N passed, N failed

counting individual tests. A file that crashes or times out counts its tests that did
not report "ok" as failed (at least one). Exit code 0 only when nothing failed.

    /usr/bin/python3 tests/integration/run.py [--timeout S] [FILE ...]
    REDQD_BIN=build/san/redqd /usr/bin/python3 tests/integration/run.py   # another binary
"""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
# Per-file timeouts (seconds); the Pendulum run is the long one.
TIMEOUTS = {"test_pendulum_http.py": 240, "test_security.py": 300, "test_tutorial.py": 600,
            "test_dashboard.py": 300}
DEFAULT_TIMEOUT = 150


def count_defined(path):
    try:
        with open(path, encoding="utf-8") as f:
            return len(re.findall(r"^\s+def (test\w*)\(", f.read(), re.M))
    except OSError:
        return 1


def parse(output):
    """(ran, failures, errors, skipped, expected_failures, unexpected_successes) from
    unittest's summary, or None when there is none."""
    m = None
    for m in re.finditer(r"^Ran (\d+) tests? in ", output, re.M):
        pass
    if m is None:
        return None
    ran = int(m.group(1))
    tail = output[m.end():]
    st = re.search(r"^(OK|FAILED)\b(?: \(([^)]*)\))?", tail, re.M)
    if st is None:
        return None
    counts = dict(failures=0, errors=0, skipped=0, expected_failures=0,
                  unexpected_successes=0)
    for part in (st.group(2) or "").split(","):
        if "=" in part:
            k, v = part.strip().split("=")
            counts[k] = int(v)
    return ran, counts


def run_file(path, timeout, env):
    rel = os.path.relpath(path, REPO)
    cwd, arg = (REPO, rel) if not rel.startswith("..") else (os.path.dirname(path),
                                                            os.path.basename(path))
    cmd = [sys.executable or "/usr/bin/python3", "-m", "unittest", "-v", arg]
    t0 = time.monotonic()
    # Its own session: on a timeout the whole group (the test and its daemons) is killed.
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    timed_out = False
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = p.communicate()
    return out.decode("utf-8", "replace"), p.returncode, timed_out, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per file (default: %d; Pendulum %d)"
                    % (DEFAULT_TIMEOUT, TIMEOUTS["test_pendulum_http.py"]))
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    total_pass = total_fail = 0
    summary = []
    for f in files:
        path = os.path.abspath(f)
        if not os.path.exists(path) and os.path.exists(os.path.join(HERE, f)):
            path = os.path.join(HERE, f)       # a bare file name: tests/integration/<f>
        name = os.path.basename(path)
        timeout = args.timeout or TIMEOUTS.get(name, DEFAULT_TIMEOUT)
        print("=" * 70)
        print("== %s" % os.path.relpath(path, REPO))
        print("=" * 70, flush=True)
        out, rc, timed_out, dt = run_file(path, timeout, env)
        sys.stdout.write(out)
        if not out.endswith("\n"):
            sys.stdout.write("\n")
        res = None if timed_out else parse(out)
        if res is not None:
            ran, c = res
            # errors in setUpClass/tearDownClass/...Module are not tests: they do not make
            # a test that passed fail, but they count as failures of their own
            fixture = len(re.findall(r"^ERROR: (setUpClass|tearDownClass|setUpModule|"
                                     r"tearDownModule) ", out, re.M))
            test_failed = c["failures"] + max(0, c["errors"] - fixture) + \
                c["unexpected_successes"]
            passed = max(0, ran - test_failed - c["skipped"] - c["expected_failures"])
            # tests that never ran (a failed setUpClass) count as failed
            missing = max(0, count_defined(path) - ran)
            failed = test_failed + max(fixture, missing)
            if rc != 0 and failed == 0:   # exited non-zero after reporting success
                failed = 1
            note = ""
        else:
            passed = len(re.findall(r" \.\.\. ok$", out, re.M))
            failed = max(1, count_defined(path) - passed)
            note = " (TIMED OUT after %.0f s)" % timeout if timed_out else \
                " (crashed: exit %s, no unittest summary)" % rc
        total_pass += passed
        total_fail += failed
        summary.append("%-28s %3d passed, %3d failed  %6.1f s%s" % (name, passed, failed, dt,
                                                                   note))
        print("-- %s: %d passed, %d failed in %.1f s%s" % (name, passed, failed, dt, note),
              flush=True)
    print("=" * 70)
    for line in summary:
        print(line)
    print("%d passed, %d failed" % (total_pass, total_fail))
    sys.exit(1 if total_fail else 0)


if __name__ == "__main__":
    main()
