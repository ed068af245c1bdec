#!/usr/bin/python3
"""PyTorch CPU reference of one REDQ gradient step, and its cost on this machine.

The update follows Tianshou's REDQPolicy (REDQ: Chen et al., ICLR 2021):

  critic step (every update)
    batch (s, a, r, done, s') drawn uniformly from a replay buffer (random data);
    a', logp' ~ pi(s')                                   (no grad)
    K = random subset of M of the E target members
    V' = min_{i in K} Qtarg_i(s', a') - alpha * logp'
    y  = r + gamma * (1 - done) * V'
    loss = mean over E and B of (Q_i(s, a) - y)^2        -> one Adam step on all critics
  actor step (after every actor_delay-th critic step)
    a~, logp ~ pi(s) (reparameterised)
    actor_loss = mean(alpha * logp - mean_i Q_i(s, a~))  -> one Adam step on the actor
    alpha_loss = -mean(log_alpha * (logp.detach() + target_entropy))  -> one Adam step
  then Polyak: theta_targ <- (1 - tau) theta_targ + tau theta (Tianshou's sync_weight)

Two variants compute the same numbers and differ only in wasted work:
  tianshou  what Tianshou does: all E target members are evaluated, then the M
            drawn ones are picked; the actor's backward also computes (unused)
            gradients of the critic weights.
  lean      only the M drawn target members are evaluated; the critic weights
            are detached in the actor step. This is the work a C implementation
            needs to do.

Timings (each repeated --repeats times after a warm-up, each >= --min-time s):
  updates_per_s   full updates (critic step every update, actor step every
                  actor_delay-th), timed over whole cycles of actor_delay updates
  critic_step_ms  one critic step alone (sampling, target, loss, Adam, Polyak)
  actor_step_ms   one actor + alpha step alone (no sampling)
  act_us          deterministic action for one observation: tanh(mu(s)),
                  no grad; this is mostly Python/dispatcher overhead

Thread counts: each count runs in its own child process with
OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = n set before torch is imported, and
torch.set_num_threads(n); the OpenBLAS thread count torch actually uses is
read back through ctypes and reported. torch's GEMMs run on OpenBLAS's own
pthreads, its element-wise ops on libgomp's threads. With libgomp's default
wait policy its idle threads spin and fight OpenBLAS's threads for the cores:
on a 2-core machine 2 threads then run 2-3x slower than 1. The runs therefore
use OMP_WAIT_POLICY=PASSIVE unless --omp-wait-policy says otherwise; on the
2-core dev VM that ties with "--threads 1 --blas-threads 2" as PyTorch's best
2-core setting (bench/baseline.md).

Usage:
  /usr/bin/python3 torch_redq_ref.py                       # all configs, 1 and 2 threads
  /usr/bin/python3 torch_redq_ref.py --config halfcheetah --threads 1
  /usr/bin/python3 torch_redq_ref.py --variant lean --repeats 5 --min-time 3
  /usr/bin/python3 torch_redq_ref.py --threads 2 --omp-wait-policy unset   # libgomp's default spinning
  /usr/bin/python3 torch_redq_ref.py --threads 1 --blas-threads 2          # torch's default here (1 intra-op thread)
  /usr/bin/python3 torch_redq_ref.py --selftest            # semantic checks, no timing

Output: one JSON line per (config, threads, variant) on stdout; progress on stderr.
The headline figures are medians over the repeats, *_best / *_min the fastest;
runs.* holds every sample, and runs.other_cpu_load the share of the machine's
CPUs other processes used during each update_ms sample (noise indicator).
Hyper-parameters are Tianshou's mujoco_redq.py defaults (HYPER below).
"""

import argparse
import copy
import ctypes
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

# name: (obs_dim, act_dim, hidden, ensemble E, subset M, batch B)
CONFIGS = {
    "pendulum": (3, 1, (256, 256), 10, 2, 256),
    "halfcheetah": (17, 6, (256, 256), 10, 2, 256),
    "humanoid": (376, 17, (256, 256), 10, 2, 256),
    "small": (3, 1, (64, 64), 4, 2, 64),
}

# Tianshou's mujoco_redq.py defaults.
HYPER = dict(
    gamma=0.99,
    tau=0.005,
    actor_lr=1e-3,
    critic_lr=1e-3,
    alpha_lr=3e-4,
    actor_delay=20,
    buffer_size=20000,
)

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
TANH_EPS = 1.1920929e-7  # np.finfo(np.float32).eps, as in Tianshou


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def openblas_info():
    """Config string and thread count of the libopenblas that torch loaded (None if not OpenBLAS)."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0", mode=os.RTLD_NOLOAD)
    except OSError:
        return None, None
    lib.openblas_get_config.restype = ctypes.c_char_p
    return lib.openblas_get_config().decode(), lib.openblas_get_num_threads()


# --------------------------------------------------------------------------- model


def build_model_classes(torch, nn):
    """Defined inside a function so that the parent process never imports torch."""

    class Actor(nn.Module):
        """MLP obs -> hidden (ReLU) ... -> mu and log_std heads (Tianshou ActorProb, unbounded, conditioned sigma)."""

        def __init__(self, obs_dim, act_dim, hidden):
            super().__init__()
            layers, d = [], obs_dim
            for h in hidden:
                layers += [nn.Linear(d, h), nn.ReLU()]
                d = h
            self.trunk = nn.Sequential(*layers)
            self.mu = nn.Linear(d, act_dim)
            self.log_std = nn.Linear(d, act_dim)

        def forward(self, obs):
            h = self.trunk(obs)
            return self.mu(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

        def sample(self, obs):
            """Reparameterised a = tanh(mu + std * eps) and its log-probability (shape (B,))."""
            mu, log_std = self(obs)
            std = log_std.exp()
            u = mu + std * torch.randn_like(mu)
            a = torch.tanh(u)
            logp = torch.distributions.Normal(mu, std).log_prob(u).sum(-1)
            logp = logp - torch.log(1.0 - a.pow(2) + TANH_EPS).sum(-1)
            return a, logp

        def act_deterministic(self, obs):
            return torch.tanh(self.mu(self.trunk(obs)))

    class EnsembleLinear(nn.Module):
        """E independent linear layers as one (E, in, out) weight; y = baddbmm(b, x, W).

        Every member is drawn independently, weight and bias U(-1/sqrt(in), 1/sqrt(in)),
        like nn.Linear and Tianshou's EnsembleLinear.
        """

        def __init__(self, ensemble, fan_in, fan_out):
            super().__init__()
            k = 1.0 / math.sqrt(fan_in)
            self.weight = nn.Parameter(torch.empty(ensemble, fan_in, fan_out).uniform_(-k, k))
            self.bias = nn.Parameter(torch.empty(ensemble, 1, fan_out).uniform_(-k, k))

        def forward(self, x, members=None, detach=False):
            """x: (E', B, in), possibly an expanded view; members: indices of the E' members to use."""
            w, b = self.weight, self.bias
            if detach:
                w, b = w.detach(), b.detach()
            if members is not None:
                w, b = w.index_select(0, members), b.index_select(0, members)
            return torch.baddbmm(b, x, w)

    class CriticEnsemble(nn.Module):
        """E critics Q_i(s, a): MLP on concat(obs, act) -> hidden (ReLU) ... -> 1."""

        def __init__(self, obs_dim, act_dim, hidden, ensemble):
            super().__init__()
            self.ensemble = ensemble
            dims = [obs_dim + act_dim, *hidden, 1]
            self.layers = nn.ModuleList(EnsembleLinear(ensemble, i, o) for i, o in zip(dims[:-1], dims[1:]))

        def forward(self, obs, act, members=None, detach=False):
            """Returns Q of shape (E, B), or (len(members), B) for a subset of members."""
            x = torch.cat([obs, act], dim=-1)
            n = self.ensemble if members is None else members.numel()
            x = x.unsqueeze(0).expand(n, *x.shape)  # every member sees the same input, no copy
            last = len(self.layers) - 1
            for i, layer in enumerate(self.layers):
                x = layer(x, members, detach)
                if i < last:
                    x = torch.relu(x)
            return x.squeeze(-1)

    return Actor, CriticEnsemble


class REDQ:
    """One REDQ agent: networks, optimisers, replay data and the update of Tianshou's REDQPolicy.learn."""

    def __init__(self, torch, obs_dim, act_dim, hidden, ensemble, subset, batch, variant="tianshou", seed=0, **hyper):
        nn = torch.nn
        Actor, CriticEnsemble = build_model_classes(torch, nn)
        h = dict(HYPER, **hyper)
        self.torch = torch
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.ensemble, self.subset, self.batch = ensemble, subset, batch
        self.variant = variant
        self.gamma, self.tau, self.actor_delay = h["gamma"], h["tau"], h["actor_delay"]

        torch.manual_seed(seed)
        self.actor = Actor(obs_dim, act_dim, hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, hidden, ensemble)
        self.critic_targ = copy.deepcopy(self.critic)
        for p in self.critic_targ.parameters():
            p.requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=h["actor_lr"])
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=h["critic_lr"])
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=h["alpha_lr"])
        self.alpha = self.log_alpha.detach().exp()
        self.target_entropy = -float(act_dim)
        self.critic_updates = 0

        # Replay buffer of random transitions, one row = [obs | act | rew | done | obs_next].
        n = h["buffer_size"]
        self.replay = torch.cat(
            [
                torch.randn(n, obs_dim),
                torch.rand(n, act_dim) * 2 - 1,
                torch.randn(n, 1),
                (torch.rand(n, 1) < 0.01).float(),
                torch.randn(n, obs_dim),
            ],
            dim=1,
        )

    def sample_batch(self):
        rows = self.replay.index_select(0, self.torch.randint(self.replay.shape[0], (self.batch,)))
        s, a = self.obs_dim, self.act_dim
        obs = rows[:, :s]
        act = rows[:, s : s + a]
        rew = rows[:, s + a]
        done = rows[:, s + a + 1]
        obs_next = rows[:, s + a + 2 :]
        return obs, act, rew, done, obs_next

    def critic_step(self, batch):
        torch = self.torch
        obs, act, rew, done, obs_next = batch
        with torch.no_grad():
            a_next, logp_next = self.actor.sample(obs_next)
            members = torch.randperm(self.ensemble)[: self.subset]
            if self.variant == "tianshou":
                q_next = self.critic_targ(obs_next, a_next)[members]
            else:
                q_next = self.critic_targ(obs_next, a_next, members=members)
            v_next = q_next.min(dim=0).values - self.alpha * logp_next
            y = rew + self.gamma * (1.0 - done) * v_next
        q = self.critic(obs, act)  # (E, B)
        loss = (q - y).pow(2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        self.critic_updates += 1
        return loss.detach()

    def actor_step(self, batch):
        obs = batch[0]
        a, logp = self.actor.sample(obs)
        q = self.critic(obs, a, detach=self.variant == "lean").mean(dim=0)
        actor_loss = (self.alpha * logp - q).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        self.alpha = self.log_alpha.detach().exp()
        return actor_loss.detach(), alpha_loss.detach()

    def sync_weight(self):
        with self.torch.no_grad():
            for pt, p in zip(self.critic_targ.parameters(), self.critic.parameters()):
                pt.lerp_(p, self.tau)  # (1 - tau) * pt + tau * p

    def update(self):
        """One critic update; the actor and alpha step after every actor_delay-th one."""
        batch = self.sample_batch()
        critic_loss = self.critic_step(batch)
        if self.critic_updates % self.actor_delay == 0:
            self.actor_step(batch)
        self.sync_weight()
        return critic_loss

    def act(self, obs):
        with self.torch.no_grad():
            return self.actor.act_deterministic(obs)


# --------------------------------------------------------------------------- timing


def cpu_ticks():
    """(busy ticks of the whole machine, busy ticks of this process), or None where /proc is missing."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except OSError:
        return None
    own = os.times()
    return sum(v) - v[3] - v[4], (own.user + own.system) * os.sysconf("SC_CLK_TCK")


def time_loop(fn, calls_per_iter, min_time, load=None):
    """Seconds per call of fn (which makes calls_per_iter calls), running for at least min_time.

    If `load` is a list, appends the share of the machine's CPUs that other processes
    used meanwhile (0 on a quiet machine, 1 = all cores busy elsewhere)."""
    c0, n, t0 = cpu_ticks(), 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            break
    c1 = cpu_ticks()
    if load is not None and c0 and c1:
        total = dt * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
        load.append(round(max(0.0, ((c1[0] - c0[0]) - (c1[1] - c0[1])) / total), 3))
    return dt / (n * calls_per_iter)


def bench_config(torch, name, variant, repeats, min_time, warmup):
    obs_dim, act_dim, hidden, ensemble, subset, batch = CONFIGS[name]
    agent = REDQ(torch, obs_dim, act_dim, hidden, ensemble, subset, batch, variant=variant)
    delay = agent.actor_delay
    fixed_batch = agent.sample_batch()
    obs1 = torch.randn(1, obs_dim)

    def cycle():  # whole cycles, so the actor cost is amortised exactly 1/actor_delay
        for _ in range(delay):
            agent.update()

    def critic_only():
        agent.critic_step(agent.sample_batch())
        agent.sync_weight()

    def actor_only():
        agent.actor_step(fixed_batch)

    def act():
        agent.act(obs1)

    time_loop(cycle, delay, warmup)
    time_loop(critic_only, 1, warmup / 4)
    time_loop(actor_only, 1, warmup / 4)
    time_loop(act, 1, 0.2)
    upd, crit, actr, actt, load = [], [], [], [], []
    for _ in range(repeats):  # interleaved, so slow phases of a shared machine hit all of them
        upd.append(time_loop(cycle, delay, min_time, load))
        crit.append(time_loop(critic_only, 1, min_time))
        actr.append(time_loop(actor_only, 1, min_time))
        actt.append(time_loop(act, 1, min(min_time, 1.0)))
    loss = float(agent.update())
    med, best = statistics.median, min
    return dict(
        updates_per_s=1.0 / med(upd),
        updates_per_s_best=1.0 / best(upd),
        update_ms=med(upd) * 1e3,
        critic_step_ms=med(crit) * 1e3,
        critic_step_ms_min=best(crit) * 1e3,
        actor_step_ms=med(actr) * 1e3,
        actor_step_ms_min=best(actr) * 1e3,
        update_ms_from_parts=(med(crit) + med(actr) / delay) * 1e3,
        act_us=med(actt) * 1e6,
        act_us_min=best(actt) * 1e6,
        updates_done=agent.critic_updates,
        final_critic_loss=loss,  # finite values show the random-data training stayed numerically sane
        final_alpha=float(agent.alpha),
        runs=dict(
            update_ms=[round(x * 1e3, 4) for x in upd],
            critic_step_ms=[round(x * 1e3, 4) for x in crit],
            actor_step_ms=[round(x * 1e3, 4) for x in actr],
            act_us=[round(x * 1e6, 3) for x in actt],
            other_cpu_load=load,  # during each update_ms run: CPU share used by other processes
        ),
    )


def worker(args):
    """Runs in a child process whose thread environment was set before torch is imported."""
    import torch

    n = int(os.environ["OMP_NUM_THREADS"])
    torch.set_num_threads(n)
    blas_config, blas_threads = openblas_info()
    for name in args.config:
        obs_dim, act_dim, hidden, ensemble, subset, batch = CONFIGS[name]
        for variant in args.variant:
            print(f"[torch_redq_ref] {name} variant={variant} threads={n} ...", file=sys.stderr, flush=True)
            res = bench_config(torch, name, variant, args.repeats, args.min_time, args.warmup)
            line = dict(
                bench="torch_redq_ref",
                config=name,
                obs_dim=obs_dim,
                act_dim=act_dim,
                hidden=list(hidden),
                ensemble=ensemble,
                subset=subset,
                batch=batch,
                actor_delay=HYPER["actor_delay"],
                variant=variant,
                threads=torch.get_num_threads(),
                openblas_threads=blas_threads,
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""),
                repeats=args.repeats,
                min_time_s=args.min_time,
            )
            line.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()})
            line.update(torch=torch.__version__, blas=blas_config, cpu=cpu_model(), python=platform.python_version())
            print(json.dumps(line), flush=True)


# --------------------------------------------------------------------------- self-test


def selftest():
    """Checks the semantics the timing relies on; exits non-zero on failure."""
    import torch

    torch.set_num_threads(1)
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    obs_dim, act_dim, hidden, ensemble, subset, batch = CONFIGS["small"]
    agent = REDQ(torch, obs_dim, act_dim, hidden, ensemble, subset, batch, variant="tianshou", seed=1)

    w = agent.critic.layers[0].weight
    check(all(not torch.equal(w[0], w[i]) for i in range(1, ensemble)), "critic members are initialised independently")
    k = 1 / math.sqrt(obs_dim + act_dim)
    check(float(w.abs().max()) <= k, "first critic layer weights lie in U(-1/sqrt(in), 1/sqrt(in))")
    check(
        all(torch.equal(a, b) for a, b in zip(agent.critic.parameters(), agent.critic_targ.parameters())),
        "target critic starts as a copy",
    )

    # log-probability against the closed form in REDQ.md.
    obs = torch.randn(batch, obs_dim)
    torch.manual_seed(7)
    a, logp = agent.actor.sample(obs)
    torch.manual_seed(7)
    mu, log_std = agent.actor(obs)
    eps = torch.randn_like(mu)
    u = mu + log_std.exp() * eps
    closed = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    closed = closed - torch.log(1 - torch.tanh(u).pow(2) + TANH_EPS).sum(-1)
    check(torch.allclose(logp, closed, atol=1e-4) and torch.allclose(a, torch.tanh(u)), "logp matches the closed form")

    # Subset target = the same members evaluated alone.
    s2 = torch.randn(batch, obs_dim)
    a2 = torch.rand(batch, act_dim) * 2 - 1
    members = torch.tensor([3, 1])
    with torch.no_grad():
        full = agent.critic_targ(s2, a2)[members]
        part = agent.critic_targ(s2, a2, members=members)
    check(torch.allclose(full, part, atol=1e-6), "subset forward equals the subset of the full forward")

    # The two variants give the same training trajectory.
    agents = {}
    for variant in ("tianshou", "lean"):
        ag = REDQ(torch, obs_dim, act_dim, hidden, ensemble, subset, batch, variant=variant, seed=3, actor_delay=2)
        for _ in range(6):
            ag.update()
        agents[variant] = ag
    same = all(
        torch.allclose(p, q, atol=1e-6)
        for net in ("actor", "critic", "critic_targ")
        for p, q in zip(getattr(agents["tianshou"], net).parameters(), getattr(agents["lean"], net).parameters())
    )
    check(same and torch.allclose(agents["tianshou"].log_alpha, agents["lean"].log_alpha), "tianshou and lean variants agree after 6 updates")

    # An actor step changes the actor and log_alpha only; a critic step the critics only; Polyak moves the target by tau.
    ag = REDQ(torch, obs_dim, act_dim, hidden, ensemble, subset, batch, seed=4)
    b = ag.sample_batch()
    snap = lambda net: [p.detach().clone() for p in net.parameters()]  # noqa: E731
    c0, a0, t0 = snap(ag.critic), snap(ag.actor), snap(ag.critic_targ)
    ag.actor_step(b)
    check(all(torch.equal(p, q) for p, q in zip(c0, ag.critic.parameters())), "actor step leaves the critics unchanged")
    check(any(not torch.equal(p, q) for p, q in zip(a0, ag.actor.parameters())), "actor step changes the actor")
    check(float(ag.log_alpha) != 0.0, "alpha step changes log_alpha")
    a1 = snap(ag.actor)
    ag.critic_step(b)
    check(all(torch.equal(p, q) for p, q in zip(a1, ag.actor.parameters())), "critic step leaves the actor unchanged")
    c1 = snap(ag.critic)
    ag.sync_weight()
    check(
        all(torch.allclose(t, (1 - ag.tau) * t_old + ag.tau * c, atol=1e-7) for t, t_old, c in zip(ag.critic_targ.parameters(), t0, c1)),
        "Polyak update with tau",
    )

    # Critic loss is the mean over E and B of (Q_i - y)^2 with a subset-min target: recompute by hand.
    ag = REDQ(torch, obs_dim, act_dim, hidden, ensemble, subset, batch, seed=5)
    b = ag.sample_batch()
    obs, act, rew, done, obs_next = b
    torch.manual_seed(11)
    with torch.no_grad():
        mu, log_std = ag.actor(obs_next)
        eps = torch.randn_like(mu)
        u = mu + log_std.exp() * eps
        an = torch.tanh(u)
        lp = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1) - torch.log(1 - an.pow(2) + TANH_EPS).sum(-1)
        members = torch.randperm(ensemble)[:subset]
        qs = []
        for i in members.tolist():
            x = torch.cat([obs_next, an], -1)
            for j, layer in enumerate(ag.critic_targ.layers):
                x = x @ layer.weight[i] + layer.bias[i]
                if j < len(ag.critic_targ.layers) - 1:
                    x = torch.relu(x)
            qs.append(x.squeeze(-1))
        y = rew + ag.gamma * (1 - done) * (torch.stack(qs).min(0).values - ag.alpha * lp)
        q = ag.critic(obs, act)
        expected = ((q - y) ** 2).mean()
    torch.manual_seed(11)
    loss = ag.critic_step(b)
    check(torch.allclose(loss, expected, rtol=1e-5), f"critic loss by hand ({float(loss):.6f} vs {float(expected):.6f})")

    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


# --------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="torch intra-op (OpenMP) thread counts to run")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="OpenBLAS threads for every run (default: the same as --threads)")
    p.add_argument("--variant", nargs="+", choices=["tianshou", "lean"], default=["tianshou"])
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions of every measurement (default 3)")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per timed repetition (default 3)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up updates (default 2)")
    p.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE", "unset"],
                   default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                   help="OMP_WAIT_POLICY for the runs (default PASSIVE; the docstring says why)")
    p.add_argument("--selftest", action="store_true", help="check the update's semantics and exit")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.selftest:
        sys.exit(selftest())
    if args.worker:
        worker(args)
        return
    for n in args.threads:
        nb = n if args.blas_threads is None else args.blas_threads
        env = dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(nb), MKL_NUM_THREADS=str(nb))
        env.pop("OMP_WAIT_POLICY", None)
        if args.omp_wait_policy != "unset":
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", *args.config, "--variant", *args.variant,
               "--repeats", str(args.repeats), "--min-time", str(args.min_time), "--warmup", str(args.warmup)]
        rc = subprocess.call(cmd, env=env)
        if rc:
            sys.exit(rc)


if __name__ == "__main__":
    main()
