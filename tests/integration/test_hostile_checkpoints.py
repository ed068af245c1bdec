"""Imports of hand-made checkpoint files (issue 9, items 1 and 6): a real download with a
value changed and its CRC-32 recomputed, as anyone can. Counters near 2^63, counters that
contradict each other and non-finite weights or buffer rows are 400 invalid_argument
saying what is wrong; nothing is created, and the daemon and its other agents go on.
A buffer of finite but huge rewards imports, and training on it changes nothing: every
update is skipped and counted, the policy and acts stay finite."""
import math
import os
import random
import struct
import sys
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, rand_rows  # noqa: E402

OCTETS = "application/octet-stream"
S, A = 3, 2


def layout(blob):
    """Offsets of the counters, the actor block and the first replay row (redq/ckpt.c)."""
    slen, = struct.unpack_from("<I", blob, 16)
    cfg = blob[20:20 + slen].decode()
    counters = 20 + slen + 16 + 8 * A
    alpha = counters + 32 + 2 * 40
    actor = alpha + 40
    return counters, actor, cfg


def patched(blob, off, fmt, value):
    b = bytearray(blob)
    struct.pack_into(fmt, b, off, value)
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xffffffff)
    return bytes(b)


class HostileCheckpointTest(DaemonTestCase):

    def source(self):
        """A trained agent's checkpoint, with and without its buffer (made once)."""
        if getattr(self, "_src", None) is None:
            self.create("src", obs_dim=S, act_dim=A, low=[-1.0, -1.0], high=[1.0, 1.0])
            self.post_transitions("src", rand_rows(40, S, A, random.Random(3), -1.0, 1.0))
            self.train("src", 6)
            c = self.assertOK(self.c.post("/v1/agents/src/checkpoints", data=b""), 201)
            blobs = []
            for q in ("", "?with_buffer=true"):
                r = self.c.get("/v1/agents/src/checkpoints/%d%s" % (c["id"], q))
                self.assertStatus(r, 200)
                blobs.append(r.body)
            type(self)._src = tuple(blobs)
        return self._src

    def refused(self, name, blob, *needles):
        r = self.c.put("/v1/agents/%s/checkpoint" % name, data=blob, content_type=OCTETS)
        self.assertProblem(r, 400, "invalid_argument")
        detail = r.json()["detail"]
        for n in needles:
            self.assertIn(n, detail)
        self.assertProblem(self.c.get("/v1/agents/%s" % name), 404, "not_found")

    def test_counters_near_2_63_are_refused(self):
        blob, _ = self.source()
        counters, _, _ = layout(blob)
        names = ("env_steps", "updates", "actor_updates", "policy_version")
        for i, name in enumerate(names):
            for v in (2**63 - 1, 2**62 + 7, 2**53, -1):
                self.refused("h-%s" % name.replace("_", "-"), patched(blob, counters + 8 * i, "<q", v),
                             name, "2^53 - 1")
        # more actor updates than updates / actor_delay permit
        self.refused("h-actor", patched(blob, counters + 16, "<q", 1000), "inconsistent")
        # the source is untouched and still acts; the same file unpatched imports
        self.assertEqual(len(self.act("src", [0.1, 0.2, 0.3])["action"]), A)
        a = self.assertOK(self.c.put("/v1/agents/h-ok/checkpoint", data=blob,
                                     content_type=OCTETS), 201)
        self.assertEqual(a["state"]["updates"], 6)

    def test_non_finite_weights_and_rows_are_refused(self):
        blob, full = self.source()
        _, actor, cfg = layout(blob)
        for v in (math.nan, math.inf, -math.inf):
            self.refused("h-w", patched(blob, actor + 4, "<f", v), "actor's parameters")
        # the first replay row sits after the blocks: find it from the sizes
        self.assertIn('"hidden_sizes"', cfg)
        rows_off = len(blob) - 4  # without the buffer the blob ends with the CRC
        self.refused("h-row", patched(full, rows_off + 16, "<f", math.nan), "replay row 0")
        self.refused("h-len", patched(full, rows_off + 8, "<q", 2**63 - 1),
                     "replay buffer header")

    def test_training_on_huge_rewards_changes_nothing(self):
        _, full = self.source()
        rows_off = len(self.source()[0]) - 4
        _, n = struct.unpack_from("<qq", full, rows_off)
        row = 4 * (2 * S + A + 2)
        b = bytearray(full)
        for i in range(n):  # every row's reward: 3.4e38, a valid float32
            struct.pack_into("<f", b, rows_off + 16 + i * row + 4 * (S + A), 3.4e38)
        struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xffffffff)
        a = self.assertOK(self.c.put("/v1/agents/h-poison/checkpoint", data=bytes(b),
                                     content_type=OCTETS), 201)
        before = a["state"]
        pol = self.c.get("/v1/agents/h-poison/policy")
        self.assertStatus(pol, 200)
        self.train("h-poison", 20)
        after = self.state("h-poison")
        self.assertEqual(after["updates"], before["updates"])
        self.assertEqual(after["actor_updates"], before["actor_updates"])
        self.assertEqual(after["policy_version"], before["policy_version"])
        self.assertEqual(after["skipped_updates"], 20)
        self.assertEqual(self.c.get("/v1/agents/h-poison/policy").body, pol.body)
        for mode in ("explore", "eval"):
            act = self.act("h-poison", [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]], mode)["action"]
            self.assertTrue(all(math.isfinite(x) for row in act for x in row), act)


if __name__ == "__main__":
    unittest.main()
