"""The policy file offline: parse `GET .../policy` bytes (safetensors) and compute the eval
action in pure Python, as redqd does (docs/api.md, "The policy file")."""

import json
import math
import struct

from .client import _plain

__all__ = ["load_policy_safetensors", "eval_action"]

_DTYPES = {"F32": ("f", 4), "F64": ("d", 8), "F16": ("e", 2)}


def load_policy_safetensors(data):
    """Parses a safetensors file (the bytes of Client.policy()).

    Returns {tensor name: (shape, flat list of floats in row-major order)}, plus
    "__metadata__": the header's metadata as strings (obs_dim, act_dim, action_low,
    action_high, policy_version, activation for a redqd policy). Raises ValueError for
    a file that is truncated or malformed, or holds a dtype other than F32, F64 or F16.
    """
    data = bytes(data)
    if len(data) < 8:
        raise ValueError("safetensors: shorter than its 8-byte header length")
    (header_len,) = struct.unpack_from("<Q", data, 0)
    if header_len > len(data) - 8:
        raise ValueError(f"safetensors: header of {header_len} bytes but only "
                         f"{len(data) - 8} follow")
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"safetensors: bad JSON header: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors: the header is not a JSON object")

    base = 8 + header_len
    out = {"__metadata__": dict(header.pop("__metadata__", None) or {})}
    for name, info in header.items():
        dtype = info.get("dtype")
        if dtype not in _DTYPES:
            raise ValueError(f"safetensors: tensor {name!r} has dtype {dtype!r}")
        code, size = _DTYPES[dtype]
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        count = math.prod(shape)
        if end - begin != count * size or begin < 0 or base + end > len(data):
            raise ValueError(f"safetensors: tensor {name!r}: offsets [{begin}, {end}) do not "
                             f"fit shape {shape} or the file's {len(data)} bytes")
        values = list(struct.unpack_from(f"<{count}{code}", data, base + begin))
        out[name] = (shape, values)
    return out


def eval_action(policy, obs):
    """The eval (deterministic) action of a loaded policy for one observation, or a list
    of actions for a list of observations, computed as redqd does:
        h = relu(W h + b) for each hidden layer, mu = W_mu h + b_mu,
        action = low + (high - low) * (tanh(mu) + 1) / 2
    with weights [out, in] as in PyTorch's nn.Linear."""
    obs = _plain(obs)
    if obs and isinstance(obs[0], (list, tuple)):
        return [eval_action(policy, o) for o in obs]

    meta = policy.get("__metadata__", {})
    activation = meta.get("activation", "relu")
    if activation != "relu":
        raise ValueError(f"policy: activation {activation!r} is not supported")
    low = [float(x) for x in json.loads(meta["action_low"])]
    high = [float(x) for x in json.loads(meta["action_high"])]

    h = [float(x) for x in obs]
    i = 0
    while f"hidden.{i}.weight" in policy:
        h = [max(0.0, v) for v in _linear(policy, f"hidden.{i}", h)]
        i += 1
    mu = _linear(policy, "mu", h)
    if len(mu) != len(low) or len(low) != len(high):
        raise ValueError(f"policy: mu has {len(mu)} outputs, action bounds "
                         f"{len(low)} and {len(high)}")
    return [lo + (hi - lo) * (math.tanh(m) + 1.0) / 2.0 for m, lo, hi in zip(mu, low, high)]


def _linear(policy, prefix, x):
    """W x + b for the nn.Linear layer `prefix` (weight [out, in], bias [out])."""
    (n_out, n_in), w = policy[prefix + ".weight"]
    _, b = policy[prefix + ".bias"]
    if len(x) != n_in:
        raise ValueError(f"policy: {prefix} takes {n_in} inputs, got {len(x)}")
    return [b[o] + sum(w[o * n_in + j] * x[j] for j in range(n_in)) for o in range(n_out)]
