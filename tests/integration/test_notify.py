"""tests/integration/test_notify.py: the sd_notify protocol as systemd's Type=notify sees
it (daemon/notify.c): the test plays systemd with a datagram socket in NOTIFY_SOCKET
(a path, and the abstract namespace) and WATCHDOG_USEC, and checks READY=1 only once the
daemon answers, STATUS= lines, WATCHDOG=1 at half the period, and STOPPING=1 at SIGTERM."""
import os
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon  # noqa: E402


def collect(sock, seconds):
    """Every datagram received within the given time, decoded."""
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            out.append(sock.recv(4096).decode())
        except socket.timeout:
            break
    return out


class NotifyTest(unittest.TestCase):
    def run_protocol(self, address, env_value):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        os.environ["NOTIFY_SOCKET"] = env_value
        os.environ["WATCHDOG_USEC"] = "2000000"  # 2 s: WATCHDOG=1 every second
        os.environ.pop("WATCHDOG_PID", None)
        d = Daemon()
        try:
            d.start()  # returns once GET /v1/health answers
            msgs = collect(sock, 3.5)
            text = "\n".join(msgs)
            self.assertIn("READY=1", text, msgs)
            self.assertIn("STATUS=", text, msgs)
            self.assertGreaterEqual(sum(m.count("WATCHDOG=1") for m in msgs), 2, msgs)
            ready_at = next(i for i, m in enumerate(msgs) if "READY=1" in m)
            self.assertFalse(any("WATCHDOG=1" in m for m in msgs[:ready_at]), msgs)
            self.assertEqual(d.stop(), 0)
            self.assertIn("STOPPING=1", "\n".join(collect(sock, 1.0)))
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
