"""The best return a point robot can get when it knows its task: the ceiling for any agent on that split.

A controller given the true goal and wind steps each time to the reachable point nearest the goal:
action = clip(goal - position - wind, -0.1, 0.1). The reachable set of a step is a box around
position + wind and the reward is a function of the distance to the goal after the step, so
nearest-first is the best plan (a nearer point can reach everything a farther one can, and
sooner). One episode per task of the split (reset seed SEED + i, as `runtime eval`); prints mean, min
and max return per family. PointRobot's start is random, so its figure depends on the seeds.

    .venv/bin/python tools/studies/point_robot_optimum.py [--families PointRobotWind SparsePointRobot] [--split test]

With `--nonstationary-oracle CKPT` it also runs the best an agent can do that must *infer* PointRobot's
goal from its dense rewards (distances): `Trilaterator` keeps the readings since the last detected switch,
solves the goal exactly from three non-collinear ones (differences of squared distances are linear in
the goal), heads straight for it, and starts over when a reading disagrees with the solved goal (a
switch). It is evaluated by `runtime eval`'s code on the checkpoint's env config (same tasks, seeds and
switch schedules) against that oracle and the random policy: normalised score and adaptation delay of
perfect inference, the ceiling of every meta-learner on that setting.

    .venv/bin/python tools/studies/point_robot_optimum.py --families --nonstationary-oracle runs/oracle_pr_ns/policy.pt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import envs
from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig
from agents.evaluation import compare_to_reference, evaluation_episodes, summarize
from agents.policies.base import AgentPolicy, Spaces, State
from envs.point_robot import MAX_ACTION

TOL = 1e-4  # plane units: the env is deterministic, so a solved goal explains later readings to float error


class Trilaterator(AgentPolicy):
    """Infers a 2-D goal from distance readings and walks to it (PointRobot: reward = -||position - goal||).

    State per row (float64): the last 3 readings, newest last (positions `p` [n, 3, 2], distances `d` [n, 3]),
    how many of them are from the current segment (`k` [n], at most 3), and the solved goal (`goal` [n, 2],
    NaN while unknown). Belief: (goal x, y, known, exploration direction x, y). Unknown goal: step towards
    the origin (the goal prior's mean) after the first reading, at right angles to the last step after the
    second, so the three are not collinear. Every call is batched over the rows.
    """

    algorithm = "trilaterator"

    def __init__(self) -> None:
        super().__init__(Spaces(2, 2, [-MAX_ACTION] * 2, [MAX_ACTION] * 2), {})

    @property
    def belief_dim(self) -> int:
        return 5

    def init_state(self, n: int) -> State:
        f64 = torch.float64
        nan = torch.full((n, 2), float("nan"), dtype=f64)
        return {"p": torch.zeros(n, 3, 2, dtype=f64), "d": torch.zeros(n, 3, dtype=f64), "k": torch.zeros(n, dtype=torch.long), "goal": nan}

    def update(self, state: State, s, a, r, s2) -> State:
        pos, dist, goal = s2.double(), -r.double(), state["goal"]
        known = ~goal.isnan().any(-1)
        explained = known & ((pos - goal).norm(dim=-1) - dist).abs().lt(TOL)  # the goal still holds
        k = torch.where(known & ~explained, 0, state["k"])  # a switch: start over from this reading
        keep = explained.view(-1, 1, 1)
        p = torch.where(keep, state["p"], torch.cat([state["p"][:, 1:], pos[:, None]], 1))
        d = torch.where(keep[..., 0], state["d"], torch.cat([state["d"][:, 1:], dist[:, None]], 1))
        k = torch.where(explained, k, (k + 1).clamp(max=3))
        solved = torch.where((k >= 3)[:, None], self.solve(p, d), float("nan"))
        return {"p": p, "d": d, "k": k, "goal": torch.where(explained[:, None], goal, solved)}

    @staticmethod
    def solve(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Goals [n, 2] from 3 readings per row: 2 (p_i - p_2) . g = |p_i|^2 - |p_2|^2 - d_i^2 + d_2^2
        (i = 0, 1); NaN where the positions are (nearly) collinear."""
        A = 2 * (p[:, :2] - p[:, 2:])
        b = (p[:, :2] ** 2).sum(-1) - (p[:, 2:] ** 2).sum(-1) - d[:, :2] ** 2 + d[:, 2:] ** 2
        ok = torch.linalg.det(A).abs() > 1e-6
        g = torch.linalg.solve(torch.where(ok[:, None, None], A, torch.eye(2, dtype=A.dtype)), b)
        return torch.where(ok[:, None], g, float("nan"))

    def belief(self, state: State) -> torch.Tensor:
        known = ~state["goal"].isnan().any(-1)
        last, step = state["p"][:, 2], state["p"][:, 2] - state["p"][:, 1]
        explore = torch.where(
            ((state["k"] >= 2) & ~known)[:, None],
            torch.stack([-step[:, 1], step[:, 0]], -1),  # at right angles to the last step
            -last,  # towards the prior mean (the origin)
        )
        explore = explore / explore.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        return torch.cat([state["goal"].nan_to_num(), known[:, None].double(), explore], -1).float()

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        known = belief[:, 2:3] > 0
        to_goal = (belief[:, :2] - obs).clamp(-MAX_ACTION, MAX_ACTION)
        return torch.where(known, to_goal, MAX_ACTION * belief[:, 3:5])


def inference_ceiling(oracle_path: str, episodes: int) -> dict:
    """`Trilaterator` against the oracle checkpoint on its own (non-stationary) env config."""
    ck = load_checkpoint(oracle_path)
    env_cfg = EnvConfig.model_validate(ck.config["env"])
    if env_cfg.id != "PointRobot":
        raise SystemExit(f"{oracle_path}: trilateration needs PointRobot's distance reward, not {env_cfg.id}")
    ev = dict(split="test", episodes=episodes, seed=10_000, nonstationary=None)
    with torch.no_grad():
        tri = evaluation_episodes(Trilaterator(), env_cfg, **ev)
        oracle = evaluation_episodes(build_policy(ck), env_cfg, **ev)
        rand = evaluation_episodes(None, env_cfg, **ev)
    return {"mean_return": summarize(tri)["mean_return"], "switches": summarize(tri)["switches"], **compare_to_reference(tri, [oracle], rand)}


def optimum(family: str, split: str, seed: int, **env_kwargs) -> list[float]:
    """Returns of the task-knowing nearest-first controller, one episode per task of `split`."""
    env = envs.make(family, split=split, seed=0, **env_kwargs)
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
    ap.add_argument("--families", nargs="*", default=["PointRobotWind", "SparsePointRobot", "PointRobot"])
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=10_000, help="reset seed of episode 0")
    ap.add_argument("--nonstationary-oracle", help="oracle checkpoint of a (non-stationary) PointRobot config")
    ap.add_argument("--episodes", type=int, default=64, help="with --nonstationary-oracle (runtime eval's count)")
    args = ap.parse_args()
    if args.nonstationary_oracle:
        out = inference_ceiling(args.nonstationary_oracle, args.episodes)
        print(f"perfect inference (Trilaterator), {args.episodes} test episodes of {args.nonstationary_oracle}'s config:")
        print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in out.items()))
    if not args.families:
        return
    print("| family | split | tasks | optimum: mean return | min | max |\n|---|---|---:|---:|---:|---:|")
    for fam in args.families:
        # SparsePointRobot under both reward conventions (FOCAL's 1 - d/R and PEARL's 1 - d inside R)
        for kw in [{"sparse": "focal"}, {"sparse": "pearl"}] if fam == "SparsePointRobot" else [{}]:
            r = optimum(fam, args.split, args.seed, **kw)
            name = f"{fam} ({kw['sparse']})" if kw else fam
            print(f"| {name} | {args.split} | {len(r)} | {np.mean(r):.2f} | {min(r):.2f} | {max(r):.2f} |")


if __name__ == "__main__":
    main()
