"""Trace a checkpoint's evaluation episodes: reward, action size and belief spread at chosen steps.

Answers "what does the agent do when its return is poor?" at a glance: on the point robot (reward = minus
the distance to the goal) a reward that stays flat while |action| is ~0 is an agent that has stopped
moving short of the goal.

    python tools/episode_trace.py runs/moss_pr_ns_b/policy.pt --episodes 6 --nonstationary none \
        --steps 0 5 10 20 50 99

Prints one line per episode (task vector, per-step reward and mean |action| over the next 5 steps at each
chosen step, the belief's mean std there where the policy has one) and a summary over all episodes: the
share of steps after `--steps`' second entry at which the agent barely moves (mean |action| below
`--still` of the action bound) while its reward is below `--far`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from agents.checkpoint import build_policy, load_checkpoint
from agents.config import RunConfig
from agents.evaluation import evaluation_episodes
from agents.evaluation.rollout import EpisodeRecord


def trace(record: EpisodeRecord, steps: list[int], action_bound: float, belief_std: slice | None) -> dict:
    """One episode's reward, |action| (mean over 5 steps, in units of the action bound) and belief std."""
    ep, L = record.episode, len(record.episode)
    at = [t for t in steps if t < L]
    row = {
        "task": np.round(ep.task_vector[0], 3).tolist(),
        "return": round(record.ret, 2),
        "reward": {t: round(float(ep.reward[t]), 3) for t in at},
        "action": {t: round(float(np.abs(ep.action[t : t + 5]).mean() / action_bound), 3) for t in at},
    }
    if belief_std is not None and record.beliefs is not None:
        row["belief_std"] = {t: round(float(record.beliefs[t + 1, belief_std].mean()), 3) for t in at}
    return row


def stuck_share(records: list[EpisodeRecord], after: int, action_bound: float, still: float, far: float) -> float:
    """Share of steps >= `after` where mean |action| < still * bound and reward < far."""
    hits = total = 0
    for r in records:
        a = np.abs(r.episode.action[after:]).mean(-1) / action_bound
        rew = r.episode.reward[after:]
        hits += int(((a < still) & (rew < far)).sum())
        total += len(rew)
    return hits / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--split", default="test")
    ap.add_argument("--nonstationary", default=None, help="periodic | hazard | none (default: as trained)")
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 5, 10, 20, 50, 99])
    ap.add_argument("--still", type=float, default=0.1, help="'barely moving': mean |action| below this share of the bound")
    ap.add_argument("--far", type=float, default=-0.3, help="'short of the goal': reward below this")
    ap.add_argument("--stochastic", action="store_true", help="sample actions instead of the mean")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    ckpt = load_checkpoint(args.checkpoint)
    policy = build_policy(ckpt)
    cfg = RunConfig.model_validate(ckpt.config)
    records = evaluation_episodes(
        policy, cfg.env, args.split, args.episodes, nonstationary=args.nonstationary,
        deterministic=not args.stochastic, record_beliefs=True,
    )
    bound = float(policy.action_high.abs().max())
    spec = getattr(policy, "cfg", {})
    mean_std = ckpt.algorithm == "filter" or (ckpt.algorithm == "moss" and spec.get("acts_on") == "belief")
    d = spec.get("latent_dim") if mean_std else None
    std = slice(d, 2 * d) if d else None  # MoSS's and the filter's belief vector is (mu, std[, probs])
    rows = [trace(r, args.steps, bound, std) for r in records]
    after = args.steps[1] if len(args.steps) > 1 else 0
    summary = {
        "episodes": len(records),
        "mean_return": round(float(np.mean([r.ret for r in records])), 2),
        f"stuck_share_after_{after}": round(stuck_share(records, after, bound, args.still, args.far), 3),
    }
    if args.json:
        print(json.dumps({"episodes": rows, "summary": summary}))
        return
    for row in rows:
        print(json.dumps(row))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
