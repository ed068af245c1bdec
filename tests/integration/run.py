#!/usr/bin/python3
"""tests/integration/run.py: runs every tests/integration/test_*.py (or the files given)
as its own process (unittest -v, the usual output), with a per-file timeout; prints each
file's output, then a table of the files, every skipped test with its reason, and
exactly one final line:

    N passed, N failed, N skipped

counting individual tests. Each file's process writes what happened to each test to a
result file (not parsed from the output, which tests and daemons also write to): a test
skipped by its class or module (SkipTest in setUpClass) counts once per test it skipped,
a test that never ran (an error in setUpClass) counts as failed, and so does an error in
a tearDownClass. A file that crashes or times out counts its tests that did not report
"ok" or "skipped" as failed (at least one); so does a file that exits non-zero after
reporting no failure. Exit code 0 only when nothing failed.

The per-file timeouts (TIMEOUTS, DEFAULT_TIMEOUT, or --timeout) are what the plain build
needs on an idle machine; each is scaled when the file starts, like every time bound of
the tests, by harness.time_factor() (a sanitizer build of $REDQD_BIN, the machine's load).

Each skip is listed as one line (the tests of a class skipped for one reason share it)

    skipped: FILE: Class.test (or Class (N tests)): reason

which tests/run_suites.sh collects into `make test`'s closing list.

    /usr/bin/python3 tests/integration/run.py [--timeout S] [FILE ...]
    REDQD_BIN=build/san/redqd /usr/bin/python3 tests/integration/run.py   # another binary
"""
import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
# Per-file timeouts (seconds, before scaling); the Pendulum run, the tutorial, the
# dashboard and the large agent are the long ones.
TIMEOUTS = {"test_pendulum_http.py": 240, "test_security.py": 300, "test_tutorial.py": 600,
            "test_dashboard.py": 300,
            "test_large_agent.py": 1800}  # GB-sized checkpoints: up to 8 min
DEFAULT_TIMEOUT = 150


def count_defined(path):
    try:
        with open(path, encoding="utf-8") as f:
            return len(re.findall(r"^\s+def (test\w*)\(", f.read(), re.M))
    except OSError:
        return 1


def one_line(reason, limit=240):
    """A skip reason on one line, shortened."""
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------ the file's process

def child(result_path, arg):
    """Runs one test file as `python3 -m unittest -v FILE` does, and keeps every test's
    outcome in result_path (JSON, rewritten after each test, so that what ran before a
    crash or a timeout is known; "done" once the run is over)."""
    import unittest
    sys.path.insert(0, os.getcwd())  # as `python3 -m unittest` has it
    data = {"tests": [],      # [test id, its class's "module.Class", its module]
            "outcomes": {},   # test id -> [outcome, reason]: ok, fail, skip
            "fixtures": [],   # [description, outcome, reason] of setUpClass, ... errors
            "done": False}
    outcomes = data["outcomes"]

    def save():
        tmp = result_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, result_path)

    class Result(unittest.TextTestResult):
        def _fixture(self, test, outcome, reason):
            if isinstance(test, unittest.suite._ErrorHolder):
                data["fixtures"].append([test.description, outcome, one_line(reason)])
                save()
                return True
            return False

        def stopTest(self, test):
            super().stopTest(test)
            save()

        def addSuccess(self, test):
            super().addSuccess(test)
            outcomes.setdefault(test.id(), ["ok", ""])

        def addFailure(self, test, err):
            super().addFailure(test, err)
            if not self._fixture(test, "fail", err[1]):
                outcomes[test.id()] = ["fail", one_line(err[1])]

        def addError(self, test, err):
            super().addError(test, err)
            if not self._fixture(test, "fail", err[1]):
                outcomes[test.id()] = ["fail", one_line(err[1])]

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                outcomes[test.id()] = ["fail", one_line(err[1])]

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            if not self._fixture(test, "skip", reason):
                outcomes[test.id()] = ["skip", one_line(reason)]

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            outcomes[test.id()] = ["ok", ""]

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            outcomes[test.id()] = ["fail", "unexpected success"]

    def walk(suite):
        for t in suite:
            if isinstance(t, unittest.TestSuite):
                walk(t)
            else:
                cls = type(t)
                data["tests"].append([t.id(), "%s.%s" % (cls.__module__, cls.__qualname__),
                                      cls.__module__])

    class Runner(unittest.TextTestRunner):
        resultclass = Result

        def run(self, test):
            walk(test)
            save()
            result = super().run(test)
            data["done"] = True
            save()
            return result

    prog = unittest.main(module=None, argv=["python3 -m unittest", "-v", arg],
                         testRunner=Runner, exit=False)
    res = prog.result
    sys.exit(0 if res is not None and res.wasSuccessful() else 1)


# ------------------------------------------------------------------ counting

def tally(data, short):
    """(passed, failed, skipped, skip lines) from a file's result JSON."""
    outcomes = data["outcomes"]
    # Fixtures that skipped or failed whole classes or modules: "setUpClass (mod.Class)",
    # "setUpModule (mod)".
    skipped_scope, failed_setups, teardowns = {}, 0, 0
    for desc, outcome, reason in data["fixtures"]:
        m = re.match(r"^(\w+) \((.*)\)$", desc)
        kind, scope = (m.group(1), m.group(2)) if m else (desc, "")
        if outcome == "skip":
            skipped_scope[scope] = reason
        elif kind.startswith("setUp"):
            failed_setups += 1
        else:
            teardowns += 1
    passed = failed = skipped = not_run = 0
    lines, by_scope, by_reason = [], {}, {}
    for test_id, cls, mod in data["tests"]:
        o = outcomes.get(test_id)
        name = test_id[len(mod) + 1:] if test_id.startswith(mod + ".") else test_id
        if o is None:
            scope = cls if cls in skipped_scope else mod if mod in skipped_scope else None
            if scope is None:
                not_run += 1
                continue
            skipped += 1
            by_scope[scope] = by_scope.get(scope, 0) + 1
        elif o[0] == "ok":
            passed += 1
        elif o[0] == "skip":
            skipped += 1
            by_reason.setdefault((cls, o[1]), []).append(name)
        else:
            failed += 1
    for (cls, reason), names in by_reason.items():  # a class's tests skipped alike: one line
        what = names[0] if len(names) == 1 else "%s (%d tests)" % (cls.split(".")[-1],
                                                                  len(names))
        lines.append("skipped: %s: %s: %s" % (short, what, reason))
    for scope, n in by_scope.items():
        lines.append("skipped: %s: %s (%d test%s): %s" % (short, scope.split(".")[-1], n,
                                                          "" if n == 1 else "s",
                                                          skipped_scope[scope]))
    failed += not_run + teardowns + (failed_setups if not_run == 0 else 0)
    return passed, failed, skipped, lines


def tally_output(out, path, short):
    """(passed, failed, skipped, skip lines) from the -v output alone: a file that crashed
    or timed out before its result was written."""
    passed = len(re.findall(r"\.\.\. ok$", out, re.M))
    skips = re.findall(r"\.\.\. skipped (.*)$", out, re.M)
    lines = ["skipped: %s: (a test): %s" % (short, one_line(r.strip("'\""))) for r in skips]
    failed = max(1, count_defined(path) - passed - len(skips))
    return passed, failed, len(skips), lines


def run_file(path, timeout, env):
    rel = os.path.relpath(path, REPO)
    cwd, arg = (REPO, rel) if not rel.startswith("..") else (os.path.dirname(path),
                                                            os.path.basename(path))
    fd, result_path = tempfile.mkstemp(prefix="redqd-run-", suffix=".json")
    os.close(fd)
    os.unlink(result_path)  # it exists only if the file's process wrote it
    cmd = [sys.executable or "/usr/bin/python3", os.path.abspath(__file__), "--child",
           result_path, arg]
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
    data = None
    try:
        with open(result_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        pass
    finally:
        try:
            os.unlink(result_path)
        except OSError:
            pass
    return (out.decode("utf-8", "replace"), p.returncode, timed_out, time.monotonic() - t0,
            data)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per file before scaling (default: %d; Pendulum %d)"
                    % (DEFAULT_TIMEOUT, TIMEOUTS["test_pendulum_http.py"]))
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    sys.path.insert(0, HERE)
    import harness  # noqa: E402 (reads $REDQD_BIN: the build whose factor scales the timeouts)
    files = args.files or sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    total_pass = total_fail = total_skip = 0
    summary, skip_lines = [], []
    for f in files:
        path = os.path.abspath(f)
        if not os.path.exists(path) and os.path.exists(os.path.join(HERE, f)):
            path = os.path.join(HERE, f)       # a bare file name: tests/integration/<f>
        name = os.path.basename(path)
        factor = harness.time_factor()
        timeout = (args.timeout or TIMEOUTS.get(name, DEFAULT_TIMEOUT)) * factor
        print("=" * 70)
        print("== %s (timeout %.0f s: time factor %.1f)" % (os.path.relpath(path, REPO),
                                                           timeout, factor))
        print("=" * 70, flush=True)
        out, rc, timed_out, dt, data = run_file(path, timeout, env)
        sys.stdout.write(out)
        if not out.endswith("\n"):
            sys.stdout.write("\n")
        if data is not None:
            # tests that had not finished when it crashed or timed out count as failed
            passed, failed, skipped, lines = tally(data, name)
        else:
            passed, failed, skipped, lines = tally_output(out, path, name)
        note = ""
        if timed_out:
            note = " (TIMED OUT after %.0f s)" % timeout
        elif data is None or not data["done"]:
            note = " (crashed: exit %s)" % rc
        elif rc != 0 and failed == 0:
            note = " (exit %s after reporting no failure)" % rc
        if note and failed == 0:    # exited non-zero, or never finished, without a failure
            failed = 1
        total_pass += passed
        total_fail += failed
        total_skip += skipped
        skip_lines += lines
        summary.append("%-28s %3d passed, %3d failed, %3d skipped  %6.1f s%s"
                       % (name, passed, failed, skipped, dt, note))
        print("-- %s: %d passed, %d failed, %d skipped in %.1f s%s"
              % (name, passed, failed, skipped, dt, note), flush=True)
    print("=" * 70)
    for line in summary:
        print(line)
    if skip_lines:
        print("skipped tests and why:")
        for line in skip_lines:
            print(line)
    print("%d passed, %d failed, %d skipped" % (total_pass, total_fail, total_skip))
    sys.exit(1 if total_fail else 0)


if __name__ == "__main__":
    main()
