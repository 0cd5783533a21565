"""Zero-shot return by task parameter, for families whose task is one number (CheetahVel, CheetahVelOOD).

Each checkpoint plays one deterministic episode on every task of each split (reset seeds as `runtime eval`),
the first episode on the task, its belief updated online. Prints per checkpoint and split the mean return and
the normalised score against `--reference` (the oracle given the true task) and the random policy, and
plots return against the task parameter with the training range shaded.

    python tools/task_returns.py runs/moss_ood/policy.pt runs/pearl_ood/policy.pt \
        --reference runs/oracle_ood/policy.pt --splits test ood --out docs/img/cheetah_vel_ood_returns.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from agents.checkpoint import build_policy, load_checkpoint  # noqa: E402
from agents.config import EnvConfig  # noqa: E402
from agents.evaluation import compare_to_reference, evaluation_episodes, make_env, summarize  # noqa: E402


def label(path: Path) -> str:
    """A run's directory name, or a bundled file's stem."""
    return path.parent.name if path.name == "policy.pt" else path.stem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--reference", type=Path, required=True, help="the oracle checkpoint of the same env")
    ap.add_argument("--splits", nargs="+", default=["test", "ood"])
    ap.add_argument("--out", type=Path, default=None, help="PNG: return against the task parameter")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ref_ck = load_checkpoint(args.reference)
    env_cfg = EnvConfig.model_validate(ref_ck.config["env"])
    ckpts = {label(p): load_checkpoint(p) for p in args.checkpoints}
    for name, ck in ckpts.items():
        if ck.config["env"]["id"] != env_cfg.id:
            raise SystemExit(f"{name}: trained on {ck.config['env']['id']!r}, the reference on {env_cfg.id!r}")
    env = make_env(env_cfg, "train")
    dist = env.unwrapped.distribution
    env.close()

    rows, points = [], {}
    with torch.no_grad():
        for split in args.splits:
            n = len(dist.tasks(split))
            ref = evaluation_episodes(build_policy(ref_ck), env_cfg, split, n)
            rand = evaluation_episodes(None, env_cfg, split, n)
            for name, recs in [(f"{label(args.reference)} (reference)", ref)] + [
                (name, evaluation_episodes(build_policy(ck), env_cfg, split, n)) for name, ck in ckpts.items()
            ]:
                score = compare_to_reference(recs, [ref], rand)["normalised_score"]
                rows.append(f"| {name} | {split} | {n} | {summarize(recs)['mean_return']:.1f} | {score:.2f} |")
                x = [float(r.episode.task_vector[0][0]) for r in recs]
                points.setdefault(name, []).append((split, x, [r.ret for r in recs]))
            points.setdefault("random", []).append((split, [float(r.episode.task_vector[0][0]) for r in rand], [r.ret for r in rand]))
    print("| checkpoint | split | tasks | mean return | normalised score |\n|---|---|---:|---:|---:|")
    print("\n".join(rows))
    if args.out:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for iv in getattr(dist, "ranges", {}).get("train", ()):
            ax.axvspan(iv.low, iv.high, color="0.9", zorder=0)
        markers = {split: m for split, m in zip(args.splits, "os^v", strict=False)}
        for i, (name, series) in enumerate(points.items()):
            color = "0.5" if name == "random" else f"C{i}"
            for split, x, y in series:
                ax.scatter(x, y, s=18, color=color, marker=markers[split], label=f"{name}, {split}")
        ax.set_xlabel(f"task parameter ({getattr(dist, 'param', 'task')}); training range shaded")
        ax.set_ylabel("return (first episode, zero-shot)")
        ax.set_title(f"{env_cfg.id}: return by task")
        ax.legend(fontsize=7, ncol=2, loc="lower left")
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
