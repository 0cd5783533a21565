"""Collection throughput: in-process vs N Ray rollout workers, side by side in one run.

Per env (a MoSS policy built from its config, random init: throughput does not depend on the weights), the
two collectors run alternating rounds of `train.episodes_per_epoch` stochastic episodes with the same
(seed, task) draws, after one warm-up round each; reported are medians over the rounds. Then the weight
broadcast alone: `ray.put` of the policy's state dict, and `ray.put` + every actor's `load_state_dict`
(one actor call each), beside a no-op actor call for the round-trip floor.

    python tools/bench_collect.py --envs PointRobot CheetahVel --rounds 5 --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import ray
import torch

from agents.config import load_config
from agents.evaluation import make_env
from agents.training.collect import InProcessCollector
from agents.training.distributed import RayCollector, connect, weights_of
from agents.training.trainer import build_agent

CONFIGS = {"PointRobot": "configs/moss/point_robot.yaml", "CheetahVel": "configs/moss/cheetah_vel.yaml"}


def ms(xs: list[float]) -> str:
    return f"{1e3 * statistics.median(xs):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--broadcasts", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    connect(None, args.workers)
    rows, bcast = [], []
    for name in args.envs:
        cfg = load_config(CONFIGS[name])
        n = cfg.train.episodes_per_epoch
        env0 = make_env(cfg.env, "train")
        n_tasks = len(env0.unwrapped.tasks("train"))
        torch.manual_seed(0)
        policy, _ = build_agent(cfg, env0)
        local = InProcessCollector([make_env(cfg.env, "train") for _ in range(n)])
        remote = RayCollector(cfg.env, cfg.algorithm, policy.spec(), args.workers)
        rng = np.random.default_rng(0)
        rates: dict[str, list[float]] = {"in-process": [], "ray": []}
        steps = 0
        for r in range(args.rounds + 1):  # round 0 warms both up
            kw = [
                {"seed": int(rng.integers(2**31)), "options": {"task_index": int(rng.integers(n_tasks))}}
                for _ in range(n)
            ]
            for label, c in (("in-process", local), ("ray", remote)):
                t0 = time.perf_counter()
                recs = c.collect(policy, kw)
                dt = time.perf_counter() - t0
                steps = sum(len(x.episode) for x in recs)
                if r:
                    rates[label].append(steps / dt)
        rows.append((name, n, steps, statistics.median(rates["in-process"]), statistics.median(rates["ray"])))
        # the broadcast alone
        w = weights_of(policy)
        mb = sum(v.nbytes for v in w.values()) / 2**20
        put, put_load, noop = [], [], []
        for _ in range(args.broadcasts):
            t0 = time.perf_counter()
            ref = ray.put(weights_of(policy))
            t1 = time.perf_counter()
            ray.get([a.load.remote(ref) for a in remote.actors])
            t2 = time.perf_counter()
            ray.get([a.ready.remote() for a in remote.actors])
            t3 = time.perf_counter()
            put.append(t1 - t0)
            put_load.append(t2 - t0)
            noop.append(t3 - t2)
        bcast.append((name, sum(v.size for v in w.values()), mb, ms(put), ms(put_load), ms(noop)))
        remote.close()
    ray.shutdown()
    load = os.getloadavg()
    print(
        f"{args.rounds} alternating rounds per collector after 1 warm-up, medians; {args.workers} Ray workers; "
        f"torch threads 1; load average at the end {load[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        "| env (MoSS, random init) | episodes/round | env steps/round | in-process steps/s | Ray steps/s | Ray / in-process |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, steps, a, b in rows:
        print(f"| {name} | {n} | {steps} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
    print(f"\nWeight broadcast, medians of {args.broadcasts}:\n")
    print(
        f"| env | parameters | MiB | ray.put ms | put + {args.workers} actors load_state_dict ms | no-op actor call ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, p, mb, a, b, c in bcast:
        print(f"| {name} | {p:,} | {mb:.2f} | {a} | {b} | {c} |")


if __name__ == "__main__":
    main()
