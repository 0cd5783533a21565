"""The offline ceiling of FOCAL's table: SAC given the true task vector, trained on the same offline data.

FOCAL and FOCAL++ learn two things from a dataset: a task representation from contexts and an offline SAC
on it. This study removes the first. The oracle policy (SAC on (s, task vector)) is trained by the oracle's
learner on the dataset's episodes with the SAC settings of a FOCAL config (same nets, discount, reward
scale, entropy weight, batch and gradient steps), then evaluated deterministically on the test tasks, given
each test task's true vector. If it stays well below the optimum too, offline SAC on this data is what
limits the table, not the representation.

    .venv/bin/python tools/studies/offline_oracle.py --config configs/focal/sparse_point_robot.yaml \
        --dataset datasets/sparse_point_robot/train.npz [--steps 4000] [--seed 0] [--set env.kwargs.sparse=pearl]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from agents.algorithms import build_agent
from agents.config import OracleRun, TrainConfig, load_config
from agents.evaluation import evaluation_episodes, summarize
from agents.evaluation.protocols import env_pool
from agents.policies import Spaces
from agents.training.datasets import OfflineDataset
from runtime.cli import key_values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a FOCAL / FOCAL++ config: its env and SAC settings")
    ap.add_argument("--dataset", required=True, help="the offline training data (runtime collect)")
    ap.add_argument("--steps", type=int, default=4000, help="SAC gradient steps")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--episodes", type=int, default=100, help="test episodes per evaluation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="set_", action="append", default=[], help="KEY=VALUE config override")
    args = ap.parse_args()
    cfg = load_config(args.config, **key_values(args.set_, "--set", "sac.batch_size=256"))
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = OfflineDataset.load(args.dataset)
    with env_pool(cfg.env, "test", "none", 1) as (pool, _):
        spaces = Spaces.of(pool[0])
        task_dim = int(pool[0].unwrapped.task_dim)
    run = OracleRun(algorithm="oracle", env=cfg.env, seed=args.seed, sac=cfg.sac, train=TrainConfig(policy_updates=args.eval_every))
    policy, learner = build_agent(run, spaces, task_dim)
    buffer = data.to_buffer()
    print(f"{args.dataset}: {len(data)} episodes; SAC {cfg.sac.hidden}, gamma {cfg.sac.gamma}, reward scale "
          f"{cfg.sac.reward_scale}, batch {cfg.sac.batch_size}, seed {args.seed}", flush=True)
    t0 = time.perf_counter()
    for step in range(args.eval_every, args.steps + 1, args.eval_every):
        learner.train_epoch(buffer, rng)
        ret = summarize(evaluation_episodes(policy, cfg.env, "test", args.episodes, nonstationary="none"))["mean_return"]
        print(f"step {step}: test return {ret:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
