"""Where a grid filter's latent points sit in task space, and whether the map has folded.

For goal-reaching tasks whose observation is the position (the point robot: reward = minus the distance
to the goal), the task a latent point z stands for can be read off the learned reward decoder: the
position p that maximises r_hat(s = p, a = 0, s' = p, z), searched on a square lattice. Drawn for every
point of the training grid, with lines joining grid neighbours, a well-learned map is an even, unfolded
sheet over the task range; a folded one crosses itself, and a task under a fold is confused with a
distant one (the posterior stays broad and the agent stops short).

Per checkpoint (one JSON line): `folded`, the share of grid cells whose image is turned over against
the majority's orientation (0 for an unfolded sheet); `collapsed`, the share whose corners land on one
line or point (positions are searched on a lattice, so neighbours closer than its step coincide);
`affine_r2`, how much of the implied tasks an
affine function of the grid coordinates explains (1 for an evenly spread sheet); the implied tasks'
extent per axis. With `--episodes N`, what the map does to the agent: over N evaluation episodes without
switches (training tasks, reset seeds 10000...), the median distance from the last position to the goal
(`end_error`) and the median posterior std of z after the last step (`final_std`).

    python tools/studies/gridfilter_map.py runs/gridfilter_s0/policy.pt runs/gridfilter_s3/policy.pt --plot map.png
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from agents.checkpoint import CheckpointError, build_policy, load_checkpoint
from agents.config import parse_config
from agents.evaluation import evaluation_episodes
from agents.parts.grid_filter import LatentGridFilter, grid_points


@torch.no_grad()
def implied_tasks(f: LatentGridFilter, lo: float, hi: float, lattice: int, grid: int | None = None) -> np.ndarray:
    """[G, G, 2]: for each point of a G x G grid (default: the training grid), the position on a lattice^2
    lattice of [lo, hi]^2 where the decoder predicts the highest reward for standing still."""
    if f.latent_dim != 2 or f.x_dim != 3 * 2:
        raise ValueError("the map needs a 2-D latent and a 2-D observation (a position) with a 2-D action")
    xs = torch.linspace(lo, hi, lattice)
    p = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    grid = grid or f.grid
    z = grid_points(grid, 2)
    pred = f.mean_reward(torch.cat([p, torch.zeros_like(p), p], -1), z)  # [P, K]
    return p[pred.argmax(0)].numpy().reshape(grid, grid, 2)


def map_stats(g: np.ndarray) -> dict[str, float]:
    """Fold share, affine R^2 and extent of implied tasks g [G, G, 2] (see the module docstring)."""
    e1, e2 = g[1:, :-1] - g[:-1, :-1], g[:-1, 1:] - g[:-1, :-1]
    area = np.sign(e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0])  # 0: the cell's corners coincide or line up
    majority = np.sign(area.sum()) or 1.0
    n = g.shape[0]
    coords = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    x = np.c_[coords, np.ones(len(coords))]
    y = g.reshape(-1, 2)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - ((x @ w - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0).clip(1e-12)
    return {
        "folded": round(float((area == -majority).mean()), 3),
        "collapsed": round(float((area == 0).mean()), 3),
        "affine_r2": round(float(r2.mean()), 3),
        "extent": [round(float(v), 2) for v in np.ptp(y, 0)],
    }


def outcome(policy, ckpt, episodes: int) -> dict[str, float]:
    """Median final distance to the goal and final posterior std of z over no-switch training-task episodes."""
    cfg = parse_config(ckpt.config, str(ckpt.path), stored=True)
    records = evaluation_episodes(policy, cfg.env, "train", episodes, nonstationary="none", record_beliefs=True)
    d = policy.filter.latent_dim
    end = [np.linalg.norm(r.episode.next_obs[-1] - r.episode.task_vector[-1]) for r in records]
    std = [r.beliefs[-1, d : 2 * d].mean() for r in records]
    return {"end_error": round(float(np.median(end)), 3), "final_std": round(float(np.median(std)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="gridfilter checkpoints (policy.pt or checkpoint.pt)")
    ap.add_argument("--box", type=float, nargs=2, default=[-1.3, 1.3], help="position range searched, per axis")
    ap.add_argument("--lattice", type=int, default=105, help="positions per axis searched")
    ap.add_argument("--grid", type=int, help="points per axis read (default: each checkpoint's training grid)")
    ap.add_argument("--episodes", type=int, default=0, help="also run this many no-switch episodes (see above)")
    ap.add_argument("--plot", help="PNG: one panel per checkpoint")
    ap.add_argument("--titles", nargs="+", help="panel titles (default: the checkpoint paths)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.titles and len(args.titles) != len(args.checkpoints):
        ap.error(f"--titles: {len(args.titles)} given for {len(args.checkpoints)} checkpoints")
    maps = []
    for path in args.checkpoints:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            ap.error(str(e))
        if ckpt.algorithm != "gridfilter":
            ap.error(f"{path}: a {ckpt.algorithm!r} checkpoint; the map is read from a grid filter's reward decoder")
        policy = build_policy(ckpt)
        g = implied_tasks(policy.filter, *args.box, args.lattice, args.grid)
        maps.append(g)
        row = {"checkpoint": path, **map_stats(g), **(outcome(policy, ckpt, args.episodes) if args.episodes else {})}
        print(json.dumps(row), flush=True)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        titles = args.titles or args.checkpoints
        fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.4), squeeze=False)
        for ax, g, title in zip(axes[0], maps, titles, strict=True):
            for i in range(g.shape[0]):
                ax.plot(g[i, :, 0], g[i, :, 1], "-", color="tab:blue", lw=0.7)
                ax.plot(g[:, i, 0], g[:, i, 1], "-", color="tab:red", lw=0.7)
            s = map_stats(g)
            ax.set_title(f"{title}\nfolded {s['folded']:.2f}, affine R2 {s['affine_r2']:.2f}", fontsize=8)
            ax.set_xlim(*args.box)
            ax.set_ylim(*args.box)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
