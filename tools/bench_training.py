"""Training throughput of MoSS beside the oracle, measured side by side in one process.

Both trainers are built from their configs and run alternating epochs (collect + updates) so machine noise
hits both alike. Reports per algorithm: env steps/s of collection, encoder and SAC updates/s, and the share of
wall time spent collecting, in encoder updates (+ belief relabelling) and in SAC updates.

    python tools/bench_training.py --configs configs/moss/cheetah_vel.yaml configs/oracle/cheetah_vel.yaml --epochs 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from agents.config import load_config
from agents.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs=2, default=["configs/moss/cheetah_vel.yaml", "configs/oracle/cheetah_vel.yaml"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trainers = {}
    for path in args.configs:
        cfg = load_config(path, **{"train.threads": args.threads})
        tr = Trainer(cfg, tempfile.mkdtemp(prefix="bench_train_"))
        tr.collect(cfg.train.initial_episodes, random=True)
        trainers[f"{cfg.algorithm} ({path})"] = tr
    rows = {name: {"collect": [], "encoder": [], "relabel": [], "sac": [], "steps": [], "enc_n": 0, "sac_n": 0} for name in trainers}
    for _ in range(args.epochs):
        for name, tr in trainers.items():
            r = rows[name]
            s0 = tr.step
            t0 = time.perf_counter()
            tr.collect(tr.cfg.train.episodes_per_epoch, random=False)
            r["collect"].append(time.perf_counter() - t0)
            r["steps"].append(tr.step - s0)
            m = tr.learner.train_epoch(tr.buffer, tr.rng)
            for k in ("encoder", "relabel", "sac"):
                r[k].append(m.get(f"time_{k}_s", 0.0))
            r["enc_n"] = tr.cfg.train.encoder_updates if tr.cfg.algorithm == "moss" else 0
            r["sac_n"] = tr.cfg.train.policy_updates
    print(f"{args.epochs} alternating epochs per algorithm, medians per epoch, torch threads = {args.threads}\n")
    print("| algorithm | env steps/s (collect) | encoder updates/s | SAC updates/s | time: collect / encoder+relabel / SAC | epoch wall s |")
    print("|---|---:|---:|---:|---|---:|")
    for name, r in rows.items():
        med = {k: statistics.median(r[k]) for k in ("collect", "encoder", "relabel", "sac", "steps")}
        total = med["collect"] + med["encoder"] + med["relabel"] + med["sac"]
        enc_rate = r["enc_n"] / med["encoder"] if r["enc_n"] and med["encoder"] else 0.0
        print(
            f"| {name} | {med['steps'] / med['collect']:.0f} | {enc_rate:.1f} | {r['sac_n'] / med['sac']:.1f} | "
            f"{med['collect'] / total:.0%} / {(med['encoder'] + med['relabel']) / total:.0%} / {med['sac'] / total:.0%} | {total:.1f} |"
        )


if __name__ == "__main__":
    main()
