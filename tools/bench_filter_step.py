"""Cost of one filter likelihood step, exact against sampled gradients, on a trained run's own buffer.

Resumes a copy of the run (the run directory is not touched), then times `likelihood_step` with
`filter.grad_samples` 0 (exact) and each M given, alternated so machine noise hits all alike; the weights are
left unchanged between steps. Also times one relabelling of the full buffer. Prints medians and the ratios
to the exact step.

    python tools/bench_filter_step.py runs/filter_pr_ns --samples 8 16 32 --reps 15
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agents.algorithms.gridfilter import GridFilter
from agents.config import load_config
from agents.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a filter run directory (config.yaml, checkpoint.pt, buffer.pt)")
    ap.add_argument("--samples", type=int, nargs="+", default=[16])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("config.yaml", "checkpoint.pt", "buffer.pt", "metrics.jsonl"):
            shutil.copy(args.run / name, tmp)
        cfg = load_config(Path(tmp) / "config.yaml")
        if cfg.algorithm != "filter":
            raise SystemExit(f"{args.run}: algorithm {cfg.algorithm}, not filter")
        tr = Trainer(cfg, tmp, resume=True)
    learners = {
        m: GridFilter(tr.policy, cfg.model_copy(update={"filter": cfg.filter.model_copy(update={"grad_samples": m})}))
        for m in [0, *args.samples]
    }
    for lr in learners.values():
        lr.opt.step = lambda: None  # time the step, keep the weights
    rng = np.random.default_rng(0)
    times: dict[int, list[float]] = {m: [] for m in learners}
    for _ in range(args.reps):
        for m, lr in learners.items():
            t = time.perf_counter()
            lr.likelihood_step(tr.buffer, rng)
            times[m].append(time.perf_counter() - t)
    t = time.perf_counter()
    learners[0].relabel(tr.buffer)
    relabel = time.perf_counter() - t
    exact = statistics.median(times[0])
    print(f"{args.run}: {len(tr.buffer)} stored episodes, batch {cfg.filter.batch_size}, grid {cfg.filter.grid}, "
          f"decoder {cfg.filter.decoder}, {args.threads} thread(s), {args.reps} alternated repetitions")
    for m, v in times.items():
        med = statistics.median(v)
        label = "exact" if m == 0 else f"{m} samples"
        print(f"  likelihood step, {label:>10}: median {1000 * med:7.1f} ms   ratio to exact {med / exact:.2f}")
    print(f"  one relabelling of the full buffer: {relabel:.2f} s")


if __name__ == "__main__":
    main()
