"""tests/integration/test_systemd.py: systemd/redqd.service under a real systemd.

The machine runs no systemd, so the test boots one: /lib/systemd/systemd as PID 1 of new
PID, mount, cgroup, UTS and IPC namespaces (the network is the host's), on a cgroup2
hierarchy of its own, with tmpfs over /run, /tmp, /var/lib, /var/log and /var/tmp so that
nothing it writes outlives it, and /usr/local bound to a `make install DESTDIR=...` tree.
It loads only the units given: the installed redqd.service (unchanged; a drop-in sets the
port), journald and the standard targets. `systemctl` talks to it through nsenter.

Checked: `systemctl start` returns only after READY=1, once the daemon listens; STATUS=
lines reach `systemctl status`; the hardening holds on the live process (dynamic user, no
capabilities, seccomp, no new privileges, its own user namespace, / read-only but the
StateDirectory writable, /proc and /dev private, the IP allow-list); WATCHDOG=1 arrives
and a frozen daemon is killed by the watchdog and restarted with its agents; `systemctl
stop` is a clean exit; a start that cannot listen fails without ever being active.

Skipped, with the reason, when not root, without systemd, unshare or a cgroup2 mount, and
in the sanitizer pass (the unit runs the installed plain build)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, REPO, free_port, scaled  # noqa: E402

SYSTEMD = "/lib/systemd/system"
UNITS = ["sysinit.target", "basic.target", "sockets.target", "timers.target",
         "paths.target", "slices.target", "shutdown.target", "local-fs.target",
         "swap.target", "network.target", "multi-user.target", "exit.target",
         "final.target", "umount.target", "systemd-exit.service",
         "systemd-journald.service", "systemd-journald.socket",
         "systemd-journald-dev-log.socket"]

BOOT_TARGET = """[Unit]
Description=redqd test boot target
Requires=basic.target
After=basic.target
Wants=systemd-journald.socket systemd-journald-dev-log.socket
AllowIsolate=yes
"""

# PID 1 of new namespaces; the cgroup this script is moved into becomes their root.
START = r"""set -e
echo $$ > "$CG/cgroup.procs"
exec unshare --pid --mount --cgroup --uts --ipc --fork --mount-proc --propagation private \
  /bin/bash -c '
  set -e
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  mount -t tmpfs -o mode=755 tmpfs /run
  mkdir -p /run/units && cp -a "$UNITS"/. /run/units/
  mount --bind "$TREE" /usr/local
  mount -t tmpfs -o mode=1777 tmpfs /tmp
  mount -t tmpfs -o mode=755 tmpfs /var/lib
  mount -t tmpfs -o mode=755 tmpfs /var/log
  mount -t tmpfs -o mode=1777 tmpfs /var/tmp
  exec env -i container=redqd-test SYSTEMD_UNIT_PATH=/run/units \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=redqd-test.target --log-target=journal \
    --show-status=no'
"""


def cgroup2_root():
    """A writable cgroup2 mount point (pure v2, or the hybrid 'unified' one), or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split()[0] == "cgroup2":
                    mnt = left.split()[4]
                    if os.access(mnt, os.W_OK):
                        return mnt
    except OSError:
        pass
    return None


def why_not():
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, cgroups)"
    if not os.access("/lib/systemd/systemd", os.X_OK):
        return "no /lib/systemd/systemd"
    for tool in ("unshare", "nsenter", "make"):
        if shutil.which(tool) is None:
            return "no %s" % tool
    if os.path.realpath(BIN) != os.path.realpath(os.path.join(REPO, "build", "redqd")):
        return "the unit runs the installed plain build; not repeated for %s" % BIN
    if cgroup2_root() is None:
        return "no writable cgroup2 mount"
    return None


def external_ipv4():
    """An address of this host that is not loopback, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent; it only picks a source address
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


def http_status(url, timeout=3.0, data=None, body=False):
    """The status of one request (None when nothing answered); with body, (status, body)."""
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            got = (r.status, r.read())
    except urllib.error.HTTPError as e:
        got = (e.code, e.read())
    except OSError:
        got = (None, b"")
    return got if body else got[0]


class SystemdUnitTest(unittest.TestCase):
    """One systemd for the class; the tests run in name order and build on each other."""

    @classmethod
    def setUpClass(cls):
        # A reason not to run skips each test (setUp), so that each is counted skipped.
        cls.reason = why_not()
        cls.sd = None
        if cls.reason:
            return
        cls.tmp = tempfile.mkdtemp(prefix="redqd-systemd-")
        cls.sd = None
        cls.wrapper = None
        cls.cg = os.path.join(cgroup2_root(), os.path.basename(cls.tmp))
        try:
            cls.boot()
        except BaseException:
            cls.teardown()
            raise

    @classmethod
    def boot(cls):
        tree = os.path.join(cls.tmp, "root")
        r = subprocess.run(["make", "-s", "-C", REPO, "install", "DESTDIR=" + tree,
                            "PREFIX=/usr/local"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise AssertionError("make install failed:\n" + r.stdout + r.stderr)
        units = os.path.join(cls.tmp, "units")
        os.makedirs(os.path.join(units, "redqd.service.d"))
        for u in UNITS:
            os.symlink(os.path.join(SYSTEMD, u), os.path.join(units, u))
        shutil.copy(os.path.join(tree, "usr/local/lib/systemd/system/redqd.service"), units)
        with open(os.path.join(units, "redqd-test.target"), "w") as f:
            f.write(BOOT_TARGET)
        cls.port = free_port()
        with open(os.path.join(units, "redqd.service.d", "port.conf"), "w") as f:
            f.write("[Service]\nEnvironment=REDQD_PORT=%d\n" % cls.port)
        os.makedirs(cls.cg)
        script = os.path.join(cls.tmp, "start.sh")
        with open(script, "w") as f:
            f.write(START)
        cls.log = open(os.path.join(cls.tmp, "boot.log"), "wb")
        env = dict(os.environ, CG=cls.cg, UNITS=units, TREE=os.path.join(tree, "usr/local"))
        cls.wrapper = subprocess.Popen(["setsid", "/bin/bash", script], env=env,
                                       stdout=cls.log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + scaled(10)
        while cls.sd is None and time.monotonic() < deadline:
            p = subprocess.run(["pgrep", "-x", "systemd", "-P", str(cls.wrapper.pid)],
                               capture_output=True, text=True)
            if p.stdout.strip():
                cls.sd = int(p.stdout.split()[0])
            else:
                time.sleep(0.1)
        if cls.sd is None:
            raise AssertionError("systemd did not start:\n" + cls.boot_log())
        # systemctl needs the manager's private socket, which comes a moment after exec
        deadline = time.monotonic() + scaled(30)
        while cls.ns("test", "-S", "/run/systemd/private", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError("systemd never opened its socket:\n" + cls.boot_log())
            time.sleep(0.1)
        state = cls.ctl("is-system-running", "--wait", check=False,
                        timeout=60).stdout.strip()
        if state not in ("running", "degraded"):
            raise AssertionError("systemd is %r:\n%s" % (state, cls.boot_log()))

    @classmethod
    def boot_log(cls):
        try:
            with open(os.path.join(cls.tmp, "boot.log"), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    @classmethod
    def tearDownClass(cls):
        if not cls.reason:
            cls.teardown()

    def setUp(self):
        if self.reason:
            self.skipTest(self.reason)

    @classmethod
    def teardown(cls):
        if cls.sd is not None:
            cls.ctl("exit", "0", check=False, timeout=10)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and os.path.exists("/proc/%d" % cls.sd):
                time.sleep(0.1)
            if os.path.exists("/proc/%d" % cls.sd):
                os.kill(cls.sd, signal.SIGKILL)  # PID 1 of the namespace: it all goes
        if cls.wrapper is not None:
            try:
                cls.wrapper.wait(15)
            except subprocess.TimeoutExpired:
                cls.wrapper.kill()
                cls.wrapper.wait()
        for root, dirs, _ in os.walk(getattr(cls, "cg", "/nonexistent"), topdown=False):
            for d in dirs:
                try:
                    os.rmdir(os.path.join(root, d))
                except OSError:
                    pass
        try:
            os.rmdir(cls.cg)
        except OSError:
            pass
        if getattr(cls, "log", None):
            cls.log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- talking to the namespaced systemd
    @classmethod
    def ns(cls, *cmd, check=True, timeout=60, stdin=None):
        r = subprocess.run(["nsenter", "-t", str(cls.sd), "-m", "-p", "-u", "-i"] + list(cmd),
                           capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and r.returncode != 0:
            raise AssertionError("%s: exit %d\n%s%s" % (" ".join(cmd), r.returncode,
                                                        r.stdout, r.stderr))
        return r

    @classmethod
    def ctl(cls, *args, check=True, timeout=60):
        return cls.ns("systemctl", *args, check=check, timeout=timeout)

    def prop(self, name):
        return self.ctl("show", "redqd.service", "-P", name).stdout.strip()

    def journal(self):
        return self.ns("journalctl", "-u", "redqd.service", "-o", "cat", "--no-pager").stdout

    def main_pid(self):
        """The daemon's PID as this (the host's) PID namespace sees it; MainPID is the
        namespace's own number."""
        p = subprocess.run(["pgrep", "-x", "redqd", "-P", str(self.sd)], capture_output=True,
                           text=True)
        pids = p.stdout.split()
        return int(pids[0]) if len(pids) == 1 else 0

    def url(self, path, host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def drop_in(self, name, text):
        """Writes (text) or removes (None) a drop-in of redqd.service and reloads."""
        path = "/run/units/redqd.service.d/%s.conf" % name
        if text is None:
            self.ns("rm", "-f", path)
        else:
            self.ns("sh", "-c", "cat > " + path, stdin=text)
        self.ctl("daemon-reload")

    def wait_for(self, fn, timeout, what):
        """Polls fn until true; timeout (seconds on an idle machine) is scaled for the
        machine's load and the build (harness.scaled)."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fn():
                return
            time.sleep(0.1)
        self.fail("timed out after %.0f s waiting for %s\n%s" % (timeout, what,
                                                                 self.journal()[-3000:]))

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before and self.sd is not None:
            sys.stderr.write("\n----- journal of redqd.service -----\n%s\n-----\n"
                             % self.journal()[-4000:])
        return out

    # ---- the tests
    def test_1_start_returns_once_ready(self):
        self.ctl("start", "redqd.service", timeout=120)
        self.assertEqual((self.prop("ActiveState"), self.prop("SubState")),
                         ("active", "running"))
        # Active means READY=1 came, which the daemon sends once it listens and every
        # agent is loaded: the first request after `systemctl start` returns is served, no
        # retry. (The journal's stamps cannot order this: journald stamps a stdout line
        # when it reads it, which under load can be after systemd took READY=1.)
        st, body = http_status(self.url("/v1/health"), body=True)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["agents_loading"], 0)
        out = self.ns("journalctl", "-u", "redqd.service", "-o", "cat", "--no-pager").stdout
        self.assertIn("listening on", out)
        body = json.dumps({"name": "sd", "obs_dim": 3, "action_low": [-2],
                           "action_high": [2]}).encode()
        self.assertEqual(http_status(self.url("/v1/agents"), data=body), 201)
        status = self.ctl("status", "redqd.service", "--no-pager", check=False).stdout
        self.assertRegex(status, r'Status: "Serving')

    def test_2_hardening_holds_on_the_process(self):
        pid = self.main_pid()
        with open("/proc/%d/status" % pid) as f:
            st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        uid = int(st["Uid"].split()[0])
        self.assertTrue(61184 <= uid <= 65519, "not a dynamic user: uid %d" % uid)
        self.assertEqual(int(st["CapEff"], 16), 0)
        self.assertEqual(int(st["CapBnd"], 16), 0)
        self.assertEqual(st["NoNewPrivs"].strip(), "1")
        self.assertEqual(st["Seccomp"].strip(), "2")
        self.assertNotEqual(os.readlink("/proc/%d/ns/user" % pid),
                            os.readlink("/proc/%d/ns/user" % self.sd), "PrivateUsers")
        mounts = {}
        with open("/proc/%d/mountinfo" % pid) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                mounts[fields[4]] = (fields[5], right.split()[0], right.split()[-1])
        self.assertTrue(mounts["/"][0].startswith("ro"), "/ is writable: ProtectSystem")
        self.assertTrue(mounts["/var/lib/private/redqd"][0].startswith("rw"),
                        "the StateDirectory is not writable")
        self.assertIn("hidepid=invisible", mounts["/proc"][2])
        self.assertEqual(mounts["/dev"][1], "tmpfs", "PrivateDevices")
        self.assertTrue(mounts["/tmp"][0].startswith("rw"))
        # the database is in the StateDirectory
        ls = self.ns("ls", "/var/lib/private/redqd").stdout.split()
        self.assertIn("redqd.db", ls)

    def test_3_ip_allow_list(self):
        ext = external_ipv4()
        if ext is None:
            self.skipTest("no non-loopback IPv4 address to try")
        self.drop_in("bind", "[Service]\nEnvironment=REDQD_BIND=0.0.0.0\n")
        try:
            self.ctl("restart", "redqd.service", timeout=120)
            self.assertEqual(http_status(self.url("/v1/health")), 200)
            # listening on every address, but IPAddressAllow=localhost drops the rest
            self.assertIsNone(http_status(self.url("/v1/health", host=ext), timeout=2))
        finally:
            self.drop_in("bind", None)
            self.ctl("restart", "redqd.service", timeout=120)

    def test_4_status_line_counts_agents(self):
        # the 10 s progress timer sends STATUS=Serving N agents
        self.wait_for(lambda: self.prop("StatusText") == "Serving 1 agents", 15,
                      "STATUS=Serving 1 agents")

    def test_5_watchdog_restarts_a_frozen_daemon(self):
        self.drop_in("watchdog", "[Service]\nWatchdogSec=4s\n")
        try:
            self.ctl("restart", "redqd.service", timeout=120)
            t0 = int(self.prop("WatchdogTimestampMonotonic") or 0)
            self.wait_for(lambda: int(self.prop("WatchdogTimestampMonotonic") or 0) > t0, 6,
                          "a WATCHDOG=1 ping")
            restarts = int(self.prop("NRestarts"))
            frozen = self.main_pid()
            os.kill(frozen, signal.SIGSTOP)
            self.wait_for(lambda: int(self.prop("NRestarts")) > restarts, 20,
                          "the watchdog to kill and restart the frozen daemon")
            self.wait_for(lambda: self.prop("SubState") == "running" and
                          self.main_pid() not in (0, frozen), 30, "the restarted daemon")
            self.assertIn("Watchdog timeout", self.ns("journalctl", "--no-pager", "-o",
                                                      "cat").stdout)
            self.assertEqual(http_status(self.url("/v1/agents/sd")), 200,
                             "the agent did not survive the watchdog's kill")
        finally:
            self.drop_in("watchdog", None)

    def test_6_stop_is_clean(self):
        self.ctl("restart", "redqd.service", timeout=120)
        self.ctl("stop", "redqd.service", timeout=150)
        tail = self.journal().splitlines()[-6:]
        self.assertTrue(any("stopped cleanly" in line for line in tail), tail)
        self.assertTrue(any("Deactivated successfully" in line for line in tail), tail)
        self.assertIsNone(http_status(self.url("/v1/health"), timeout=1))

    def test_7_start_that_cannot_listen_fails(self):
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", self.port))
        blocker.listen()
        try:
            r = self.ctl("start", "redqd.service", check=False, timeout=120)
            self.assertNotEqual(r.returncode, 0, "start succeeded with the port taken")
            self.assertNotEqual(self.prop("ActiveState"), "active")
        finally:
            blocker.close()
            self.ctl("stop", "redqd.service", check=False)
            self.ctl("reset-failed", "redqd.service", check=False)


if __name__ == "__main__":
    unittest.main()
