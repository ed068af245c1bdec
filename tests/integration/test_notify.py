"""tests/integration/test_notify.py: the sd_notify protocol as systemd's Type=notify sees
it (daemon/notify.c): the test plays systemd with a datagram socket in NOTIFY_SOCKET
(a path, and the abstract namespace) and WATCHDOG_USEC, and checks READY=1 only once the
daemon answers, STATUS= lines, WATCHDOG=1 at half the period, and STOPPING=1 at SIGTERM.

"At half the period" is measured where the pings were sent, not by counting them in a
window of wall-clock time: the kernel stamps each datagram as it arrives (SO_TIMESTAMP),
and the median interval between pings must be nearer half the 2 s period than the whole
of it. The wait for the pings is a bound against a hang, scaled (harness.scaled)."""
import os
import socket
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, scaled  # noqa: E402

SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux (asm-generic and x86)


def stamp_arrivals(sock):
    """Asks the kernel to stamp each datagram's arrival (SO_TIMESTAMP), if it can."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    except OSError:
        pass


def collect(sock, seconds, until=None):
    """Every datagram received within the given time (or until until(those so far) is
    true), as (arrival time, text): the kernel's stamp (stamp_arrivals), or else the time
    it was read."""
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end and not (until and until(out)):
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data, anc, _, _ = sock.recvmsg(4096, 256)
        except socket.timeout:
            break
        t = time.time()
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(raw) >= 16:
                sec, usec = struct.unpack("qq", raw[:16])
                t = sec + usec * 1e-6
        out.append((t, data.decode()))
    return out


class NotifyTest(unittest.TestCase):
    def run_protocol(self, address, env_value):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        os.environ["NOTIFY_SOCKET"] = env_value
        os.environ["WATCHDOG_USEC"] = "2000000"  # 2 s: WATCHDOG=1 every second
        os.environ.pop("WATCHDOG_PID", None)
        stamp_arrivals(sock)
        d = Daemon()
        try:
            d.start()  # returns once GET /v1/health answers
            stamped = collect(sock, scaled(6.0), until=lambda got: sum(
                m.count("WATCHDOG=1") for _, m in got) >= 4)
            msgs = [m for _, m in stamped]
            text = "\n".join(msgs)
            self.assertIn("READY=1", text, msgs)
            self.assertIn("STATUS=", text, msgs)
            self.assertGreaterEqual(sum(m.count("WATCHDOG=1") for m in msgs), 2, msgs)
            ready_at = next(i for i, m in enumerate(msgs) if "READY=1" in m)
            self.assertFalse(any("WATCHDOG=1" in m for m in msgs[:ready_at]), msgs)
            # every second: half the 2 s period (a whole period would be 2 s apart)
            pings = [t for t, m in stamped if "WATCHDOG=1" in m]
            gaps = sorted(b - a for a, b in zip(pings, pings[1:]))
            self.assertLess(gaps[len(gaps) // 2], 1.5, "WATCHDOG=1 came %r s apart (the "
                            "period is 2 s: every second expected)" % gaps)
            self.assertEqual(d.stop(), 0)
            stopping = collect(sock, scaled(1.0), until=lambda got: any(
                "STOPPING=1" in m for _, m in got))
            self.assertIn("STOPPING=1", "\n".join(m for _, m in stopping))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            d.cleanup()
            sock.close()

    def test_path_socket(self):
        tmp = tempfile.mkdtemp(prefix="redqd-notify-")
        path = os.path.join(tmp, "notify.sock")
        try:
            self.run_protocol(path, path)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
            os.rmdir(tmp)

    def test_abstract_socket(self):
        name = "redqd-notify-test-%d" % os.getpid()
        self.run_protocol("\0" + name, "@" + name)

    def test_no_notify_socket_is_a_no_op(self):
        os.environ.pop("NOTIFY_SOCKET", None)
        d = Daemon()
        try:
            d.start()
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
