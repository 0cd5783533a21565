"""Exact Bayes filtering over a latent grid: can a learned model localise the task within a few steps?

MoSS's belief is amortised: a GRU reads the transitions and a head outputs a Gaussian. On the
non-stationary point robot it stays imprecise (docs/results.md, section 1). This study trains the other
extreme on the same data: a *filter* whose belief is computed by Bayes' rule over a fixed latent grid, with
only the reward likelihood learned (agents/latent_filter.py; the `filter` algorithm trains SAC on it). The
filter alone is trained here, by the exact predictive log-likelihood of the rewards of whole training
episodes, on data collected once.

Reported every `--every` updates, on held-out *test-task* episodes: the median error of the task vector
read from the belief by a 2x128 MLP fitted on *training-task* episodes only (so the probe cannot memorise
the test tasks), by steps since the last switch, and that probe's R^2 at steps >= `--settle`. `--trained`
first reads a checkpoint's own belief (and a MoSS checkpoint's GRU state) with the same probe; for a filter
checkpoint, `--refine R [R ...]` also reads the belief it would act on with `refine` R (a grid refined
between the training points; `runtime eval --policy-set refine=R`), and `--updates 0` skips the fresh filter.

    python tools/filter_study.py --config configs/moss/point_robot_ns.yaml --policy runs/moss_pr_ns_b/policy.pt \
        --trained --updates 1500 --every 500
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from encoder_study import append_json, collect, fit_mlp_probe, steps_since_switch
from torch import nn

from agents.algorithms.gridfilter import stored_beliefs
from agents.checkpoint import build_policy, load_checkpoint
from agents.config import RunConfig, load_config, parse_config
from agents.evaluation import make_env
from agents.training.trainer import build_agent

REPORT_STEPS = (0, 1, 2, 3, 5, 10, 20)


def error_by_step(probe: nn.Module, x: torch.Tensor, y: torch.Tensor, since: torch.Tensor, settle: int) -> dict:
    """Median |probe(x) - y| at each of REPORT_STEPS steps since a switch, and R^2 at steps >= settle."""
    with torch.no_grad():
        pred = probe(x)
    err = (pred - y).norm(dim=-1)
    ok = since >= settle
    r2 = 1 - ((pred - y)[ok] ** 2).sum(0) / ((y[ok] - y[ok].mean(0)) ** 2).sum(0)
    return {"median_error": {k: round(float(err[since == k].median()), 3) for k in REPORT_STEPS}, "r2": round(float(r2.mean()), 3)}


def read(train_x, train_buf, test_x, test_buf, settle) -> dict:
    """Fit the probe on training-task rows, report it on test-task rows (beliefs after each step)."""
    m_tr, m_te = train_buf.mask[: len(train_buf)], test_buf.mask[: len(test_buf)]
    probe = fit_mlp_probe(train_x[m_tr], train_buf.task_vector[: len(train_buf)][m_tr])
    since = steps_since_switch(test_buf.task[: len(test_buf)])[m_te]
    return error_by_step(probe, test_x[m_te], test_buf.task_vector[: len(test_buf)][m_te], since, settle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the env (and, with --trained, nothing else) is read from it")
    ap.add_argument("--policy", help="checkpoint whose policy collects (stochastic); default random actions")
    ap.add_argument("--episodes", type=int, default=800)
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--updates", type=int, default=1500)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32, help="whole episodes per update")
    ap.add_argument("--grid", type=int, default=16, help="points per latent axis (K = grid^latent_dim)")
    ap.add_argument("--latent-dim", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--hazard", type=float, default=0.02, help="prior probability of a switch per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--settle", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="where the filter trains (torch device); data and probes stay on the CPU")
    ap.add_argument("--json", help="append one JSON line per report here")
    ap.add_argument("--trained", action="store_true", help="first read --policy's own belief (MoSS: and GRU state) with the same probe")
    ap.add_argument("--refine", type=int, nargs="+", default=[], help="with --trained and a filter checkpoint: also read the belief on acting grids refined R times")
    args = ap.parse_args()
    if args.trained and not args.policy:
        ap.error("--trained reads the encoder of --policy; give one")
    if args.refine and not args.trained:
        ap.error("--refine reads a trained filter's belief: give --trained")
    if any(r < 1 for r in args.refine):
        ap.error(f"--refine needs values >= 1, got {args.refine}")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    torch.manual_seed(args.seed)
    train_buf = collect(cfg, args.policy, args.episodes, args.seed, "train")
    test_buf = collect(cfg, args.policy, args.held_out, args.seed + 1, "test")
    print(f"data: {args.episodes} train / {args.held_out} test-task episodes ({'policy' if args.policy else 'random'})", flush=True)
    if args.trained:
        ckpt = load_checkpoint(args.policy)
        _, learner = build_agent(RunConfig.model_validate(ckpt.config), make_env(cfg.env, "train"))
        learner.policy.load_state_dict(ckpt.policy_state)
        with torch.no_grad():
            learner.relabel(train_buf)
            learner.relabel(test_buf)
        # derived[...][:, 1:] is the state after each step; a filter checkpoint has a belief and no GRU state
        for name in [n for n in ("belief", "hidden") if n in test_buf.derived]:
            row = {"model": f"trained {args.policy}: {name}",
                   **read(train_buf.derived[name][: len(train_buf), 1:], train_buf, test_buf.derived[name][: len(test_buf), 1:], test_buf, args.settle)}
            print(json.dumps(row), flush=True)
            append_json(args.json, row)
        if args.refine and ckpt.algorithm != "filter":
            raise SystemExit(f"--refine reads a filter checkpoint's acting grid; {args.policy} is {ckpt.algorithm}")
        for refine in args.refine:
            pol = build_policy(ckpt, {"refine": refine})
            b_tr, b_te = (stored_beliefs(pol, buf, torch.arange(len(buf)), pol.filter.z) for buf in (train_buf, test_buf))
            row = {"model": f"trained {args.policy}: belief on the acting grid, refine {refine}", **read(b_tr, train_buf, b_te, test_buf, args.settle)}
            print(json.dumps(row), flush=True)
            append_json(args.json, row)

    # the filter learner itself (agents/filter.py), SAC unused: its likelihood steps and its re-filtering
    fcfg = parse_config({
        **cfg.model_dump(mode="json"),
        "algorithm": "filter",
        "filter": {"grid": args.grid, "latent_dim": args.latent_dim, "hidden": args.hidden, "hazard": args.hazard, "lr": args.lr, "batch_size": args.batch},
    })
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    policy, learner = build_agent(fcfg, make_env(cfg.env, "train"))
    policy.to(args.device)  # before the first step: the optimiser holds these same parameters
    t0 = time.perf_counter()
    for u in range(1, args.updates + 1):
        m = learner.likelihood_step(train_buf, rng)
        if u % args.every == 0:
            wall = time.perf_counter() - t0
            learner.relabel(train_buf)
            learner.relabel(test_buf)
            b_tr, b_te = (buf.derived["belief"][: len(buf), 1:].contiguous() for buf in (train_buf, test_buf))
            row = {"model": f"filter grid {args.grid}^{args.latent_dim} hidden {args.hidden}", "update": u,
                   "nll": round(m["filter_nll"], 3), "sigma": round(m["filter_sigma"], 4), "train_wall_s": round(wall, 1),
                   **read(b_tr, train_buf, b_te, test_buf, args.settle)}
            print(json.dumps(row), flush=True)
            append_json(args.json, row)
            t0 = time.perf_counter() - wall

if __name__ == "__main__":
    main()
