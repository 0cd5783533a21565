"""Grid-filter checkpoints evaluated at several acting-grid refinements, without retraining.

For each checkpoint, each `--refine` R and each reset seed: the normalised score and the adaptation delay
against `--reference` (an oracle), exactly as `runtime eval --checkpoint X --reference O --policy-set
refine=R --seed S --episodes N --json` computes them (the oracle's and the random policy's episodes are
run once per seed and shared). One JSON line per row to `--json`; `--plot` draws the median delay by
checkpoint and R (the mean over seeds as the bar, each seed as a dot).

    python tools/refine_sweep.py runs/filter_pr_ns_s{1,2}/policy.pt --refine 1 2 3 \\
        --reference runs/oracle_pr_ns/policy.pt --seeds 10000 20000 --plot docs/img/point_robot_ns_refine.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig
from agents.evaluation import compare_to_reference, evaluation_episodes, summarize


def sweep(checkpoints: list[str], refines: list[int], reference: str, seeds: list[int], split: str, episodes: int) -> list[dict]:
    """One row per (checkpoint, R, seed): score, median / mean delay, return."""
    rows = []
    env_cfg = EnvConfig.model_validate(load_checkpoint(checkpoints[0]).config["env"])
    oracle_policy = build_policy(load_checkpoint(reference))
    for seed in seeds:
        args = dict(split=split, episodes=episodes, seed=seed, nonstationary=None)
        oracle, rand = evaluation_episodes(oracle_policy, env_cfg, **args), evaluation_episodes(None, env_cfg, **args)
        for path in checkpoints:
            ck = load_checkpoint(path)
            if ck.algorithm != "filter":
                raise SystemExit(f"{path}: a {ck.algorithm} checkpoint; refine is a grid filter's setting")
            if EnvConfig.model_validate(ck.config["env"]) != env_cfg:
                raise SystemExit(f"{path}: trained on another env than {checkpoints[0]}; sweep one env at a time")
            for refine in refines:
                recs = evaluation_episodes(build_policy(ck, {"refine": refine}), env_cfg, **args)
                c = compare_to_reference(recs, oracle, rand)
                row = {"checkpoint": path, "refine": refine, "split": split, "seed": seed, "episodes": episodes,
                       "mean_return": round(summarize(recs)["mean_return"], 2), "score": round(c["normalised_score"], 4),
                       "delay_median": c["adaptation_delay"]["median"], "delay_mean": round(c["adaptation_delay"]["mean"], 2),
                       "switches": c["adaptation_delay"]["switches"]}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ckpts = list(dict.fromkeys(r["checkpoint"] for r in rows))
    refines = sorted({r["refine"] for r in rows})
    width = 0.8 / len(refines)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(ckpts), 3.6))
    for j, refine in enumerate(refines):
        for i, ck in enumerate(ckpts):
            d = [r["delay_median"] for r in rows if r["checkpoint"] == ck and r["refine"] == refine]
            x = i + (j - (len(refines) - 1) / 2) * width
            ax.bar(x, np.mean(d), width, color=f"C{j}", label=f"refine {refine}" if i == 0 else None)
            ax.scatter([x] * len(d), d, color="k", s=8, zorder=3)
    ax.axhline(10, color="gray", ls="--", lw=1, label="target")
    ax.set_xticks(range(len(ckpts)), [Path(c).parent.name or c for c in ckpts], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("median adaptation delay (steps)")
    ax.set_title(f"{rows[0]['split']} tasks, {rows[0]['episodes']} episodes per reset seed (dots)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="grid-filter checkpoints (policy.pt) of one env")
    ap.add_argument("--reference", required=True, help="oracle checkpoint of the same env")
    ap.add_argument("--refine", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[10_000], help="reset seed of episode 0, one evaluation each")
    ap.add_argument("--split", default="test")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="append one JSON line per row here")
    ap.add_argument("--plot", help="PNG of the median delays")
    args = ap.parse_args()
    if any(r < 1 for r in args.refine):
        ap.error(f"--refine needs values >= 1, got {args.refine}")
    torch.set_num_threads(args.threads)
    rows = sweep(args.checkpoints, args.refine, args.reference, args.seeds, args.split, args.episodes)
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    if args.plot:
        plot(rows, Path(args.plot))


if __name__ == "__main__":
    main()
