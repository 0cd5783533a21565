"""Acting cost of a grid-filter checkpoint at several acting-grid refinements (`--policy-set refine=R`).

One acting step = `update` (Bayes' rule over the acting grid) + `belief` + `act`, for a batch of 1 and of
`--batch` sessions, `--steps` steps per repetition, repetitions alternated over R so machine noise hits all
alike; prints the median microseconds per step.

    python tools/bench_filter_acting.py runtime/assets/filter_point_robot_ns.pt --refine 1 2 3 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from agents.checkpoint import build_policy, load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--refine", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint)
    if ck.algorithm != "filter":
        raise SystemExit(f"{args.checkpoint}: a {ck.algorithm} checkpoint; refine is a grid filter's setting")
    policies = {r: build_policy(ck, {"refine": r}) for r in args.refine}
    times: dict[tuple[int, int], list[float]] = {(r, b): [] for r in args.refine for b in (1, args.batch)}
    with torch.no_grad():
        for _ in range(args.reps):
            for (r, b), v in times.items():
                p = policies[r]
                state = p.init_state(b)
                s, a, rew = torch.zeros(b, p.obs_dim), torch.zeros(b, p.action_dim), torch.zeros(b)
                t = time.perf_counter()
                for _ in range(args.steps):
                    state = p.update(state, s, a, rew, s)
                    p.act(s, p.belief(state))
                v.append((time.perf_counter() - t) / args.steps * 1e6)
    print(f"{args.checkpoint}: {args.threads} thread(s), {args.reps} alternated repetitions of {args.steps} steps")
    for (r, b), v in times.items():
        print(f"  refine {r} ({policies[r].filter.k} acting points), batch {b:>3}: median {statistics.median(v):8.0f} us per step")


if __name__ == "__main__":
    main()
