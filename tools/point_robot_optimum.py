"""The best return a point robot can get when it knows its task: the ceiling for any agent on that split.

A controller given the true goal and wind steps each time to the reachable point nearest the goal:
action = clip(goal - position - wind, -0.1, 0.1). The reachable set of a step is a box around
position + wind and the reward is a function of the distance to the goal after the step, so
nearest-first is the best plan (a nearer point can reach everything a farther one can, and
sooner). One episode per task of the split (reset seed SEED + i, as `runtime eval`); prints mean, min
and max return per family. PointRobot's start is random, so its figure depends on the seeds.

    .venv/bin/python tools/point_robot_optimum.py [--families PointRobotWind SparsePointRobot] [--split test]
"""

from __future__ import annotations

import argparse

import numpy as np

import envs
from envs.point_robot import MAX_ACTION


def optimum(family: str, split: str, seed: int) -> list[float]:
    """Returns of the task-knowing nearest-first controller, one episode per task of `split`."""
    env = envs.make(family, split=split, seed=0)
    base = env.unwrapped
    returns = []
    for i in range(len(base.tasks(split))):
        obs, _ = env.reset(seed=seed + i, options={"task_index": i})
        total, done = 0.0, False
        while not done:
            step = np.clip(base.goal - base.position - base.wind, -MAX_ACTION, MAX_ACTION)
            obs, r, term, trunc, _ = env.step(step.astype(np.float32))
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return returns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["PointRobotWind", "SparsePointRobot", "PointRobot"])
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=10_000, help="reset seed of episode 0")
    args = ap.parse_args()
    print("| family | split | tasks | optimum: mean return | min | max |\n|---|---|---:|---:|---:|---:|")
    for fam in args.families:
        r = optimum(fam, args.split, args.seed)
        print(f"| {fam} | {args.split} | {len(r)} | {np.mean(r):.2f} | {min(r):.2f} | {max(r):.2f} |")


if __name__ == "__main__":
    main()
