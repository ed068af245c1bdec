"""Checkpoints (create, list, download, restore, delete, import) and the policy file."""
import json
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DaemonTestCase, agent_body, eval_action, parse_safetensors,  # noqa: E402
                     rand_rows, rfc3339_utc as rfc3339, small_config, tensor_bytes)

LOW, HIGH = [-1.0, 0.0], [1.0, 3.0]
OCTETS = "application/octet-stream"




class CheckpointsTest(DaemonTestCase):

    def make(self, name, rows=40, updates=10, **cfg):
        self.create(name, obs_dim=3, act_dim=2, low=LOW, high=HIGH, **cfg)
        self.post_transitions(name, rand_rows(rows, 3, 2, random.Random(name), -1.0, 3.0))
        if updates:
            self.train(name, updates)

    def policy(self, name, headers=None):
        return self.c.get("/v1/agents/%s/policy" % name, headers=headers)

    def ckpt(self, name, body=None):
        if body is None:
            r = self.c.post("/v1/agents/%s/checkpoints" % name, data=b"")
        else:
            r = self.c.post("/v1/agents/%s/checkpoints" % name, body)
        return self.assertOK(r, 201)

    def download(self, name, cid, with_buffer=False):
        r = self.c.get("/v1/agents/%s/checkpoints/%d%s" % (
            name, cid, "?with_buffer=true" if with_buffer else ""))
        self.assertStatus(r, 200)
        self.assertEqual(r.ctype, OCTETS)
        return r.body

    def test_create_list_download_delete(self):
        self.make("ck1")
        c = self.ckpt("ck1")
        for k in ("id", "updates", "env_steps", "created_at", "bytes"):
            self.assertIn(k, c)
        self.assertIsInstance(c["id"], int)
        self.assertEqual((c["updates"], c["env_steps"]), (10, 40))
        rfc3339(c["created_at"])
        self.assertGreater(c["bytes"], 0)
        st = self.state("ck1")
        self.assertEqual(st["last_checkpoint"]["id"], c["id"])
        self.assertEqual(st["last_checkpoint"]["updates"], 10)
        rfc3339(st["last_checkpoint"]["created_at"])
        # a POST with no fields takes {} too; ids increase
        self.train("ck1", 2)
        c2 = self.ckpt("ck1", {})
        self.assertGreater(c2["id"], c["id"])
        self.assertEqual(c2["updates"], 12)
        self.assertProblem(self.c.post("/v1/agents/ck1/checkpoints", {"x": 1}), 400,
                           "invalid_argument", "x")
        lst = self.assertOK(self.c.get("/v1/agents/ck1/checkpoints"))["checkpoints"]
        ids = [x["id"] for x in lst]
        self.assertIn(c["id"], ids)
        self.assertIn(c2["id"], ids)
        got = [x for x in lst if x["id"] == c["id"]][0]
        for k in ("id", "updates", "env_steps", "created_at", "bytes"):
            self.assertEqual(got[k], c[k], k)
        blob = self.download("ck1", c["id"])
        self.assertEqual(len(blob), c["bytes"])
        self.assertEqual(self.download("ck1", c["id"]), blob)
        full = self.download("ck1", c["id"], with_buffer=True)
        self.assertGreater(len(full), len(blob) + 40 * 4 * 8)
        r = self.c.get("/v1/agents/ck1/checkpoints/%d?with_buffer=false" % c["id"])
        self.assertEqual(r.body, blob)
        self.assertProblem(self.c.get("/v1/agents/ck1/checkpoints/%d?with_buffer=maybe"
                                      % c["id"]), 400, "invalid_argument", "with_buffer")
        # delete
        self.assertStatus(self.c.delete("/v1/agents/ck1/checkpoints/%d" % c["id"]), 204)
        self.assertProblem(self.c.get("/v1/agents/ck1/checkpoints/%d" % c["id"]), 404,
                           "not_found")
        self.assertProblem(self.c.delete("/v1/agents/ck1/checkpoints/%d" % c["id"]), 404,
                           "not_found")
        ids = [x["id"] for x in
               self.assertOK(self.c.get("/v1/agents/ck1/checkpoints"))["checkpoints"]]
        self.assertNotIn(c["id"], ids)
        self.assertIn(c2["id"], ids)
        for bad in ("abc", "-1", "1.5"):
            r = self.c.get("/v1/agents/ck1/checkpoints/" + bad)
            self.assertIn(r.status, (400, 404), r)
        self.assertProblem(self.c.get("/v1/agents/ck1/checkpoints/999999"), 404, "not_found")
        self.assertProblem(self.c.get("/v1/agents/nobody/checkpoints"), 404, "not_found")

    def test_restore(self):
        self.make("ck2")
        c = self.ckpt("ck2")
        pol_at_ckpt = tensor_bytes(self.policy("ck2").body)
        obs = [0.3, -0.1, 0.7]
        act_at_ckpt = self.act("ck2", obs, "eval")["action"]
        self.train("ck2", 6)
        self.post_transitions("ck2", rand_rows(5, 3, 2))
        self.assertOK(self.c.patch("/v1/agents/ck2", {"training": "paused"}))
        self.post_transitions("ck2", rand_rows(3, 3, 2))
        st = self.state("ck2")
        self.assertEqual((st["updates"], st["env_steps"]), (16, 48))
        self.assertGreater(st["pending_updates"], 0)
        pv = st["policy_version"]
        self.assertNotEqual(tensor_bytes(self.policy("ck2").body), pol_at_ckpt)
        a = self.assertOK(self.c.post("/v1/agents/ck2/restore", {"checkpoint": c["id"]}))
        s = a["state"]
        self.assertEqual(s["updates"], 10)
        self.assertEqual(s["actor_updates"], 5)
        self.assertEqual(s["env_steps"], 48)
        self.assertEqual(s["buffer_len"], 48)
        self.assertEqual(s["pending_updates"], 0)
        self.assertEqual(s["policy_version"], pv + 1)
        self.assertEqual(a["config"]["training"], "paused")
        self.assertEqual(self.state("ck2")["policy_version"], pv + 1)
        # the networks are the checkpoint's
        self.assertEqual(tensor_bytes(self.policy("ck2").body), pol_at_ckpt)
        self.assertEqual(self.act("ck2", obs, "eval")["action"], act_at_ckpt)
        # restore is recorded as a new checkpoint
        self.assertNotEqual(self.state("ck2")["last_checkpoint"]["id"], c["id"])
        # bad restores change nothing
        for body, status, code, field in (({"checkpoint": 999999}, 404, "not_found", None),
                                          ({"checkpoint": "1"}, 400, "invalid_argument",
                                           "checkpoint"),
                                          ({}, 400, "invalid_argument", "checkpoint"),
                                          ({"checkpoint": c["id"], "x": 1}, 400,
                                           "invalid_argument", "x")):
            r = self.c.post("/v1/agents/ck2/restore", body)
            self.assertProblem(r, status, code, field)
        self.assertEqual(self.state("ck2")["policy_version"], pv + 1)
        # a checkpoint of another agent is not this agent's
        self.make("ck2b", updates=0)
        other = self.ckpt("ck2b")
        if other["id"] not in [x["id"] for x in self.assertOK(
                self.c.get("/v1/agents/ck2/checkpoints"))["checkpoints"]]:
            self.assertProblem(self.c.post("/v1/agents/ck2/restore",
                                           {"checkpoint": other["id"]}), 404, "not_found")

    def test_import(self):
        self.make("ck3")
        c = self.ckpt("ck3")
        pol = self.policy("ck3").body
        _, meta, _, _ = parse_safetensors(pol)
        ck_pv = int(meta["policy_version"])
        self.post_transitions("ck3", rand_rows(7, 3, 2))
        blob = self.download("ck3", c["id"])
        full = self.download("ck3", c["id"], with_buffer=True)
        src = self.agent("ck3")

        r = self.c.put("/v1/agents/imp1/checkpoint", data=blob, content_type=OCTETS)
        a = self.assertOK(r, 201)
        self.assertEqual(a["name"], "imp1")
        self.assertEqual((a["obs_dim"], a["act_dim"]), (3, 2))
        self.assertEqual((a["action_low"], a["action_high"]), (LOW, HIGH))
        self.assertEqual(a["config"], src["config"])
        s = a["state"]
        self.assertEqual(s["env_steps"], 40)
        self.assertEqual(s["buffer_len"], 0)
        self.assertEqual(s["updates"], 10)
        self.assertEqual(s["pending_updates"], 0)
        self.assertEqual(s["policy_version"], ck_pv + 1)
        self.assertIsNotNone(s["last_checkpoint"])
        self.assertEqual(tensor_bytes(self.policy("imp1").body), tensor_bytes(pol))
        self.assertEqual(self.assertOK(self.c.get("/v1/agents/imp1"))["state"]["env_steps"], 40)
        # recorded as the new agent's first checkpoint
        lst = self.assertOK(self.c.get("/v1/agents/imp1/checkpoints"))["checkpoints"]
        self.assertEqual(len(lst), 1, lst)
        self.assertEqual(lst[0]["updates"], 10)
        self.assertEqual(s["last_checkpoint"]["id"], lst[0]["id"])
        # with the buffer: env_steps and rows at download time
        a = self.assertOK(self.c.put("/v1/agents/imp2/checkpoint", data=full,
                                     content_type=OCTETS), 201)
        self.assertEqual(a["state"]["env_steps"], 47)
        self.assertEqual(a["state"]["buffer_len"], 47)
        self.assertEqual(a["state"]["updates"], 10)
        self.assertEqual(a["state"]["pending_updates"], 0)
        self.assertEqual(a["state"]["policy_version"], ck_pv + 1)
        # the imported agent trains on its data
        self.assertEqual(self.train("imp2", 2)["updates"], 12)
        # name taken
        r = self.c.put("/v1/agents/imp1/checkpoint", data=blob, content_type=OCTETS)
        self.assertProblem(r, 409, "already_exists")
        r = self.c.put("/v1/agents/ck3/checkpoint", data=blob, content_type=OCTETS)
        self.assertProblem(r, 409, "already_exists")
        # bad files
        flipped = bytearray(blob)
        flipped[len(flipped) // 2] ^= 0x40
        version = bytearray(blob)
        for k in range(4, 12):       # past a 4-byte magic: the version, whatever its width
            version[k] ^= 0x5A
        magic = b"JUNK" + blob[4:]
        for i, bad in enumerate((bytes(flipped), blob[:len(blob) // 2], blob[:-1], b"",
                                 b"\x00" * 64, full[:len(full) - 10], bytes(version), magic,
                                 blob + b"extra", pol)):
            r = self.c.put("/v1/agents/bad%d/checkpoint" % i, data=bad, content_type=OCTETS)
            self.assertProblem(r, 400, "invalid_argument")
            self.assertProblem(self.c.get("/v1/agents/bad%d" % i), 404, "not_found")
        for ct in (None, "application/json", "text/plain"):
            r = self.c.put("/v1/agents/bad-ct/checkpoint", data=blob, content_type=ct)
            self.assertProblem(r, 415, "unsupported_media_type")
        self.assertProblem(self.c.get("/v1/agents/bad-ct"), 404, "not_found")
        r = self.c.put("/v1/agents/-bad/checkpoint", data=blob, content_type=OCTETS)
        self.assertProblem(r, 400, "invalid_argument", "name")

    def test_policy_file(self):
        self.make("pol1", updates=8, actor_delay=2)
        r = self.policy("pol1")
        self.assertStatus(r, 200)
        self.assertEqual(r.ctype, OCTETS)
        st = self.state("pol1")
        pv = st["policy_version"]
        self.assertEqual(pv, 4)
        self.assertEqual(r.header("ETag"), '"%d"' % pv)
        header, meta, tensors, data = parse_safetensors(r.body)
        expect_shapes = {"hidden.0.weight": [32, 3], "hidden.0.bias": [32],
                         "hidden.1.weight": [32, 32], "hidden.1.bias": [32],
                         "mu.weight": [2, 32], "mu.bias": [2],
                         "log_std.weight": [2, 32], "log_std.bias": [2]}
        self.assertEqual({k: v[0] for k, v in tensors.items()}, expect_shapes)
        for name, t in header.items():
            self.assertEqual(t["dtype"], "F32")
        ends = sorted(t["data_offsets"] for t in header.values())
        self.assertEqual(ends[0][0], 0)
        self.assertEqual(ends[-1][1], len(data))
        for m in ("obs_dim", "act_dim", "action_low", "action_high", "policy_version",
                  "activation"):
            self.assertIn(m, meta)
            self.assertIsInstance(meta[m], str, m)
        self.assertEqual(meta["obs_dim"], "3")
        self.assertEqual(meta["act_dim"], "2")
        self.assertEqual(json.loads(meta["action_low"]), LOW)
        self.assertEqual(json.loads(meta["action_high"]), HIGH)
        self.assertEqual(meta["policy_version"], str(pv))
        self.assertEqual(meta["activation"], "relu")
        # the eval action, computed here from the file, is the daemon's
        rng = random.Random(7)
        obs = [[rng.uniform(-2, 2) for _ in range(3)] for _ in range(10)]
        got = self.act("pol1", obs, "eval")
        self.assertEqual(got["policy_version"], pv)
        for o, a in zip(obs, got["action"]):
            mine = eval_action(tensors, meta, o)
            for x, y in zip(mine, a):
                self.assertAlmostEqual(x, y, delta=1e-5, msg=(o, mine, a))
        # ETag / If-None-Match
        r2 = self.policy("pol1", headers={"If-None-Match": '"%d"' % pv})
        self.assertStatus(r2, 304)
        self.assertEqual(r2.body, b"")
        for inm in ('"%d", "%d"' % (pv + 7, pv), 'W/"%d"' % pv, "*"):
            r2 = self.policy("pol1", headers={"If-None-Match": inm})
            self.assertStatus(r2, 304, inm)
        r3 = self.policy("pol1", headers={"If-None-Match": '"%d"' % (pv + 100)})
        self.assertStatus(r3, 200)
        self.assertEqual(r3.body, r.body)
        r4 = self.c.get("/v1/agents/pol1/policy?format=safetensors")
        self.assertEqual(r4.body, r.body)
        self.assertProblem(self.c.get("/v1/agents/pol1/policy?format=onnx"), 400,
                           "invalid_argument", "format")
        self.train("pol1", 2)
        r5 = self.policy("pol1", headers={"If-None-Match": '"%d"' % pv})
        self.assertStatus(r5, 200)
        self.assertEqual(r5.header("ETag"), '"%d"' % (pv + 1))
        self.assertProblem(self.c.get("/v1/agents/nobody/policy"), 404, "not_found")

    def test_policy_version_untrained(self):
        self.create("pol0", obs_dim=2, act_dim=1)
        r = self.policy("pol0")
        self.assertEqual(r.header("ETag"), '"0"')
        _, meta, tensors, _ = parse_safetensors(r.body)
        self.assertEqual(meta["policy_version"], "0")
        a = self.act("pol0", [0.5, 0.5], "eval")["action"]
        self.assertAlmostEqual(eval_action(tensors, meta, [0.5, 0.5])[0], a[0], delta=1e-5)

    def test_automatic_checkpoints(self):
        self.make("auto1", updates=0, checkpoint_every=4, keep_checkpoints=2)
        self.train("auto1", 20)

        def autos():
            lst = self.assertOK(self.c.get("/v1/agents/auto1/checkpoints"))["checkpoints"]
            return lst if lst and max(x["updates"] for x in lst) == 20 else None
        lst = self.wait_until(autos, 10, "automatic checkpoints")
        manual = self.ckpt("auto1")
        self.train("auto1", 8)
        lst = self.wait_until(lambda: [x for x in self.assertOK(
            self.c.get("/v1/agents/auto1/checkpoints"))["checkpoints"]
            if x["updates"] == 28] and self.assertOK(
            self.c.get("/v1/agents/auto1/checkpoints"))["checkpoints"], 10, "checkpoint at 28")
        ids = [x["id"] for x in lst]
        self.assertIn(manual["id"], ids)                 # made by request: kept
        self.assertEqual(len(lst), 3, lst)               # + the newest 2 automatic ones
        self.assertEqual(ids, sorted(ids))
        # state.last_checkpoint names the newest committed one, with its id.
        newest = max(lst, key=lambda x: x["id"])
        last = self.wait_until(lambda: (lambda lc: lc if lc and lc["id"] == newest["id"] else None)(
            self.assertOK(self.c.get("/v1/agents/auto1"))["state"]["last_checkpoint"]),
            10, "last_checkpoint to name the newest automatic checkpoint")
        self.assertEqual(last["updates"], newest["updates"])


class ImportLimitTest(DaemonTestCase):
    daemon_args = ("--max-import", "16384")

    def test_import_over_limit(self):
        # A learner whose state could not be imported again is refused at creation,
        # naming the flag (in KiB under 1 MiB, never "1 MiB, over the 0 MiB").
        r = self.c.post("/v1/agents", agent_body("wide", hidden_sizes=[256, 256]))
        p = self.assertProblem(r, 400, "invalid_argument", "config.hidden_sizes")
        self.assertIn("KiB, over the 16 KiB a checkpoint may have to be imported again "
                      "(--max-import)", p["detail"])
        # A learner small enough to be imported again (the limits hold creation to that),
        # whose download with its buffer is not.
        self.create("big", obs_dim=3, act_dim=1, config=small_config(
            hidden_sizes=[4], ensemble_size=2, batch_size=8))
        self.post_transitions("big", rand_rows(1000, 3, 1))
        c = self.assertOK(self.c.post("/v1/agents/big/checkpoints", data=b""), 201)
        small = self.c.get("/v1/agents/big/checkpoints/%d" % c["id"]).body
        self.assertLess(len(small), 16384)
        blob = self.c.get("/v1/agents/big/checkpoints/%d?with_buffer=true" % c["id"]).body
        self.assertGreater(len(blob), 16384)
        r = self.c.put("/v1/agents/big2/checkpoint", data=blob, content_type=OCTETS)
        self.assertProblem(r, 413, "payload_too_large", "16384")
        self.daemon.client.close()
        self.assertProblem(self.c.get("/v1/agents/big2"), 404, "not_found")
        self.assertOK(self.c.put("/v1/agents/big3/checkpoint", data=small, content_type=OCTETS),
                      201)
        self.assertOK(self.c.get("/v1/health"))


if __name__ == "__main__":
    unittest.main()
