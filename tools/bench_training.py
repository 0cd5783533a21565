"""Training speed: our SAC update beside a minimal CleanRL-style SAC, MoSS encoder updates, a MoSS epoch.

1. SAC updates/s, ours (`agents.parts.sac.SAC`) and a plain CleanRL-style update written here (two
   separate Q nets, one Adam over both, the actor and the temperature stepped every update, Polyak targets
   by a parameter loop), on the same random batches, same sizes and batch 256, interleaved repetitions in
   one process: point-robot sizes (hidden 128 x 128, input 6 = obs 2 + belief 4, action 2) and cheetah
   sizes (256 x 256, input 20, action 6). The ratio is ours / CleanRL-style (higher is faster).
2. MoSS and the oracle on their CheetahVel configs, alternating epochs: env steps/s of collection, encoder
   and SAC updates/s, and each epoch's time split (collect / encoder + relabel / SAC).

`--device cuda` runs both on the GPU (networks, batches and the replay buffer there; envs on the CPU), timing
each repetition up to a device synchronisation; `--cpu-baseline P C` also prints our updates/s as a ratio
to P and C, the point-robot and cheetah figures of another machine (docs/benchmarks.md).

    python tools/bench_training.py                       # both parts (~3 min on 2 cores)
    python tools/bench_training.py --skip-epochs --reps 9 # the SAC comparison only
    python tools/bench_training.py --device cuda --cpu-baseline 269 106   # tools/gpu_check.sh
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from agents.config import SACConfig, load_config
from agents.device import resolve_device
from agents.parts.sac import SAC
from agents.parts.sac_nets import TanhGaussianActor
from agents.training.trainer import Trainer

SIZES = {"point robot": (6, 2, (128, 128)), "cheetah": (20, 6, (256, 256))}
BATCH = 256


class CleanRLStyleSAC:
    """The textbook update, as single-file SAC implementations write it."""

    def __init__(
        self, in_dim: int, action_dim: int, hidden: tuple[int, ...], lr: float = 3e-4, gamma: float = 0.99, tau: float = 0.005,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        def q() -> nn.Sequential:
            return nn.Sequential(nn.Linear(in_dim + action_dim, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Linear(hidden[1], 1)).to(device)

        self.actor = TanhGaussianActor(in_dim, action_dim, hidden).to(device)
        self.qf1, self.qf2 = q(), q()
        self.qf1_target, self.qf2_target = q(), q()
        self.qf1_target.load_state_dict(self.qf1.state_dict())
        self.qf2_target.load_state_dict(self.qf2.state_dict())
        self.q_optimizer = torch.optim.Adam(list(self.qf1.parameters()) + list(self.qf2.parameters()), lr=lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.log_alpha = torch.zeros(1, requires_grad=True, device=device)
        self.a_optimizer = torch.optim.Adam([self.log_alpha], lr=lr)
        self.target_entropy, self.gamma, self.tau = -float(action_dim), gamma, tau

    def update(self, x, a, r, x2, done) -> dict[str, float]:
        alpha = self.log_alpha.exp().item()
        with torch.no_grad():
            a2, logp2 = self.actor.sample(x2)
            q1t = self.qf1_target(torch.cat([x2, a2], 1))
            q2t = self.qf2_target(torch.cat([x2, a2], 1))
            next_q = r + (1 - done) * self.gamma * (torch.min(q1t, q2t) - alpha * logp2)
        q1, q2 = self.qf1(torch.cat([x, a], 1)), self.qf2(torch.cat([x, a], 1))
        qf_loss = F.mse_loss(q1, next_q) + F.mse_loss(q2, next_q)
        self.q_optimizer.zero_grad()
        qf_loss.backward()
        self.q_optimizer.step()
        pi, logp = self.actor.sample(x)
        xa = torch.cat([x, pi], 1)
        actor_loss = (alpha * logp - torch.min(self.qf1(xa), self.qf2(xa))).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        with torch.no_grad():
            _, logp = self.actor.sample(x)
        alpha_loss = (-self.log_alpha.exp() * (logp + self.target_entropy)).mean()
        self.a_optimizer.zero_grad()
        alpha_loss.backward()
        self.a_optimizer.step()
        for net, target in ((self.qf1, self.qf1_target), (self.qf2, self.qf2_target)):
            for p, tp in zip(net.parameters(), target.parameters(), strict=True):
                tp.data.copy_(self.tau * p.data + (1 - self.tau) * tp.data)
        return {"qf_loss": qf_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha}


def batches(in_dim: int, action_dim: int, n: int, device: torch.device, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    return [
        tuple(x.to(device) for x in (
            torch.randn(BATCH, in_dim, generator=g), torch.rand(BATCH, action_dim, generator=g) * 2 - 1, torch.randn(BATCH, 1, generator=g),
            torch.randn(BATCH, in_dim, generator=g), (torch.rand(BATCH, 1, generator=g) < 0.01).float()))
        for _ in range(n)
    ]  # fmt: skip


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs an update's kernels after the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sac_comparison(reps: int, updates: int, device: torch.device, cpu_baseline: list[float] | None) -> None:
    print(f"SAC updates/s on {device}, batch {BATCH}, {reps} interleaved repetitions of {updates} updates, medians\n")
    extra = " | ours / CPU baseline |" if cpu_baseline else ""
    print("| sizes | ours | CleanRL-style | ours / CleanRL-style |" + extra)
    print("|---|---:|---:|---:|" + ("---:|" if cpu_baseline else ""))
    for i, (name, (in_dim, action_dim, hidden)) in enumerate(SIZES.items()):
        torch.manual_seed(0)
        actor = TanhGaussianActor(in_dim, action_dim, hidden).to(device)
        ours = SAC(actor, in_dim, action_dim, SACConfig(hidden=hidden, auto_alpha=True))
        plain = CleanRLStyleSAC(in_dim, action_dim, hidden, device=device)
        data = batches(in_dim, action_dim, updates, device)
        for agent in (ours, plain):  # warm-up: kernel selection, allocator, lazy optimiser state
            for b in data[:10]:
                agent.update(*b)
        synchronize(device)
        rates: dict[str, list[float]] = {"ours": [], "plain": []}
        for _ in range(reps):
            for key, agent in (("ours", ours), ("plain", plain)):
                t0 = time.perf_counter()
                for b in data:
                    agent.update(*b)
                synchronize(device)
                rates[key].append(updates / (time.perf_counter() - t0))
        o, p = statistics.median(rates["ours"]), statistics.median(rates["plain"])
        ratio = f" {o / cpu_baseline[i]:.1f}x |" if cpu_baseline else ""
        print(f"| {name} ({hidden[0]} x {hidden[1]}, in {in_dim}, action {action_dim}) | {o:.0f} | {p:.0f} | {o / p:.2f} |{ratio}", flush=True)
    print()


def epoch_split(configs: list[str], epochs: int, threads: int, device: torch.device) -> None:
    trainers = {}
    for path in configs:
        cfg = load_config(path, **{"train.threads": threads, "train.device": str(device)})
        tr = Trainer(cfg, tempfile.mkdtemp(prefix="bench_train_"))
        tr.collect(cfg.train.initial_episodes, random=True)
        trainers[f"{cfg.algorithm} ({path})"] = tr
    rows = {name: {"collect": [], "encoder": [], "relabel": [], "sac": [], "steps": [], "counts": {}} for name in trainers}
    for _ in range(epochs):
        for name, tr in trainers.items():
            r = rows[name]
            s0 = tr.step
            t0 = time.perf_counter()
            tr.collect(tr.cfg.train.episodes_per_epoch, random=False)
            r["collect"].append(time.perf_counter() - t0)
            r["steps"].append(tr.step - s0)
            r["counts"] = tr.learner.epoch_updates(tr.buffer)
            t0 = time.perf_counter()
            m = tr.learner.train_epoch(tr.buffer, tr.rng)
            synchronize(device)
            wall = time.perf_counter() - t0
            for k in ("encoder", "relabel"):
                r[k].append(m.get(f"time_{k}_s", 0.0))
            # the learner's phase clocks read the host (no sync per phase): on a GPU its last phase, SAC,
            # also waits for the work still queued, which the synchronised epoch wall includes
            r["sac"].append(wall - r["encoder"][-1] - r["relabel"][-1])
    print(f"{epochs} alternating epochs per algorithm on {device}, medians per epoch, torch threads = {threads}\n")
    print("| algorithm | env steps/s (collect) | encoder updates/s | SAC updates/s | time: collect / encoder+relabel / SAC | epoch wall s |")
    print("|---|---:|---:|---:|---|---:|")
    for name, r in rows.items():
        med = {k: statistics.median(r[k]) for k in ("collect", "encoder", "relabel", "sac", "steps")}
        total = med["collect"] + med["encoder"] + med["relabel"] + med["sac"]
        n_enc = r["counts"].get("encoder", 0)
        enc_rate = n_enc / med["encoder"] if n_enc and med["encoder"] else 0.0
        print(
            f"| {name} | {med['steps'] / med['collect']:.0f} | {enc_rate:.1f} | {r['counts']['sac'] / med['sac']:.1f} | "
            f"{med['collect'] / total:.0%} / {(med['encoder'] + med['relabel']) / total:.0%} / {med['sac'] / total:.0%} | {total:.1f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs=2, default=["configs/moss/cheetah_vel.yaml", "configs/oracle/cheetah_vel.yaml"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions of the SAC comparison")
    ap.add_argument("--updates", type=int, default=200, help="SAC updates per repetition")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-epochs", action="store_true", help="only the SAC comparison")
    ap.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (default cpu)")
    ap.add_argument("--cpu-baseline", type=float, nargs=2, metavar=("POINT", "CHEETAH"),
                    help="SAC updates/s of ours on a reference CPU at the two sizes: prints our ratio to them")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sac_comparison(args.reps, args.updates, device, args.cpu_baseline)
    if not args.skip_epochs:
        epoch_split(args.configs, args.epochs, args.threads, device)


if __name__ == "__main__":
    main()
