"""Cost of one FOCAL gradient step, broken down, beside a bare SAC update at the same sizes.

On a synthetic offline buffer with the point robot's shapes (obs 2, action 2, horizon 20, 80 tasks of 25
episodes each), one FOCAL step (`agents.algorithms.focal.FOCAL`: the encoder step on meta_batch contexts,
then SAC on (s, z) for the meta-batch) is timed in parts:
  encoder    the distance-metric (or contrastive) step of the context encoder;
  critic     SAC's twin-Q step (`SAC.critic_loss`, backward, Adam) on the step's (s, z) batch;
  actor      the rest of `SAC.update` (actor + temperature + Polyak), measured as update - critic;
  batching   drawing and assembling the SAC batch (index draws, gathers, z repeated per row);
and a bare SAC update (`SAC.update` on an (s, z) batch of the same size, drawn once) is timed interleaved in
the same process. Medians over `--reps` repetitions of `--steps` steps each; one torch thread.

    python tools/bench_focal.py                                  # FOCAL's sizes (3 x 256 SAC, 3 x 200 encoder)
    python tools/bench_focal.py --sac-hidden 128 128 --encoder-hidden 128 128 --per-task 16 --context 32
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from agents.algorithms.focal import FOCAL
from agents.config import parse_config
from agents.parts.buffer import EpisodeBuffer
from agents.policies import FOCALPolicy, Spaces


def synthetic_buffer(n_tasks: int, per_task: int, horizon: int, gen: torch.Generator) -> EpisodeBuffer:
    E = n_tasks * per_task
    buf = EpisodeBuffer(E, horizon, 2, 2, 2)
    obs = torch.randn(E, horizon, 2, generator=gen)
    act = (torch.rand(E, horizon, 2, generator=gen) - 0.5) * 0.2
    buf.extend(
        obs.numpy(), act.numpy(), torch.rand(E, horizon, generator=gen).numpy(), (obs + act).numpy(),
        np.zeros((E, horizon), np.float32), np.full(E, horizon), np.repeat(np.arange(n_tasks), per_task),
        torch.randn(E, 2, generator=gen).numpy(),
    )
    return buf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sac-hidden", type=int, nargs="+", default=[256, 256, 256])
    ap.add_argument("--encoder-hidden", type=int, nargs="+", default=[200, 200, 200])
    ap.add_argument("--meta-batch", type=int, default=16)
    ap.add_argument("--per-task", type=int, default=256, help="SAC transitions per task (batch = meta_batch x this)")
    ap.add_argument("--context", type=int, default=1024, help="encoder transitions per task")
    ap.add_argument("--metric-weight", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = parse_config({
        "algorithm": "focal", "env": {"id": "PointRobot"}, "offline": {"dataset": "unused.npz"},
        "focal": {"encoder_hidden": args.encoder_hidden, "meta_batch": args.meta_batch, "context_size": args.context,
                  "metric_weight": args.metric_weight},
        "sac": {"hidden": args.sac_hidden, "batch_size": args.meta_batch * args.per_task, "gamma": 0.9, "reward_scale": 100.0},
        "train": {"device": "cpu"},
    })
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    policy = FOCALPolicy(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), latent_dim=cfg.focal.latent_dim,
                         encoder_hidden=tuple(cfg.focal.encoder_hidden), actor_hidden=tuple(cfg.sac.hidden))
    learner = FOCAL(policy, cfg)
    buffer = synthetic_buffer(80, 25, 20, gen)
    steps = buffer.task_steps()
    keys = list(steps.groups)
    rng = np.random.default_rng(0)
    sac = learner.sac
    bare = learner.rl_batch(buffer, steps, keys[: args.meta_batch], torch.zeros(args.meta_batch, policy.latent_dim), rng)

    def time_of(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return (time.perf_counter() - t0) / args.steps * 1e3

    def one_rep(tasks: list[int]) -> dict[str, float]:
        t_enc = time_of(lambda: learner.encoder_step(buffer, steps, tasks, rng))
        z, _ = learner.encoder_step(buffer, steps, tasks, rng)
        t_batch = time_of(lambda: learner.rl_batch(buffer, steps, tasks, z, rng))
        batch = learner.rl_batch(buffer, steps, tasks, z, rng)

        def critic_only() -> None:
            loss, _ = sac.critic_loss(*batch)
            sac.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            sac.critic_opt.step()

        t_critic = time_of(critic_only)
        t_update = time_of(lambda: sac.update(*batch))
        return {
            "encoder": t_enc, "batching": t_batch, "critic": t_critic, "actor": t_update - t_critic,
            "FOCAL step": t_enc + t_batch + t_update, "bare SAC update": time_of(lambda: sac.update(*bare)),
        }

    reps = [one_rep([keys[j] for j in rng.choice(len(keys), size=args.meta_batch, replace=False)]) for _ in range(args.reps + 1)]
    parts = {k: [r[k] for r in reps[1:]] for k in reps[0]}  # the first is a warm-up
    med = {k: statistics.median(v) for k, v in parts.items()}
    print(
        f"SAC {args.sac_hidden}, batch {args.meta_batch} x {args.per_task}; encoder {args.encoder_hidden}, context "
        f"{args.meta_batch} x {args.context}; one torch thread; medians of {args.reps} x {args.steps} steps\n"
    )
    print("| part | ms per step | share of the FOCAL step |")
    print("|---|---:|---:|")
    for k in ("encoder", "batching", "critic", "actor", "FOCAL step", "bare SAC update"):
        print(f"| {k} | {med[k]:.2f} | {med[k] / med['FOCAL step']:.2f} |")
    ratio = med["FOCAL step"] / med["bare SAC update"]
    print(f"\nFOCAL step / bare SAC update = {ratio:.2f} (target <= 2) -> {'met' if ratio <= 2 else 'missed'}")
    print(f"100,000 steps at this rate: {med['FOCAL step'] * 1e5 / 3.6e6:.1f} h")


if __name__ == "__main__":
    main()
