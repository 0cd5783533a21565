"""What does a trained agent's belief know about the task? A probe fitted on training tasks, read on test tasks.

Collects `--episodes` training-task and `--held-out` test-task episodes with the checkpoint's own
stochastic policy (and, on the same test tasks, random-action episodes, where the agent's position says
nothing about the task), recomputes the belief after every step with the checkpoint's encoder, fits a 2x128
MLP from the belief to the true task vector on the training-task rows only (so it cannot memorise the test
tasks), and reports on each held-out set: the median error of the task it reads, by steps since the last
switch, and its R^2 at steps at least `--settle` after a switch. For a MoSS checkpoint the GRU state is read
the same way, and with a mixture of several components the cluster purity of the most likely component at
each episode's end (multi-task families, whose task vector starts with a one-hot of the base task).

    python tools/studies/belief_probe.py runs/moss_pr_ns/policy.pt --episodes 800 --held-out 200
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from agents.algorithms import build_agent
from agents.checkpoint import build_policy, load_checkpoint
from agents.config import parse_config
from agents.evaluation import make_env
from agents.evaluation.embedding import cluster_purity
from agents.parts.buffer import EpisodeBuffer
from agents.parts.nets import MLP
from agents.policies import Spaces
from agents.training.collect import InProcessCollector, draw_reset_kwargs

REPORT_STEPS = (0, 1, 2, 5, 10, 20, 50)


def collect(env_cfg, policy, n: int, seed: int, split: str) -> EpisodeBuffer:
    """n episodes of `split` (uniform tasks; stochastic actions, random ones with policy None) in a buffer."""
    envs = [make_env(env_cfg, split) for _ in range(min(n, 16))]
    try:
        e0 = envs[0]
        kw = draw_reset_kwargs(np.random.default_rng(seed), n, len(e0.unwrapped.tasks(split)))
        buf = EpisodeBuffer(n, int(e0.spec.max_episode_steps), e0.observation_space.shape[0], e0.action_space.shape[0], e0.unwrapped.task_dim)
        for r in InProcessCollector(envs).collect(policy, kw):
            buf.add(r.episode)
        return buf
    finally:
        for e in envs:
            e.close()


def steps_since_switch(task: torch.Tensor) -> torch.Tensor:
    """[E, T] steps since the task last changed (0 at the first step of a segment)."""
    t = torch.arange(task.shape[1]).expand_as(task)
    starts = torch.ones_like(task, dtype=torch.bool)
    starts[:, 1:] = task[:, 1:] != task[:, :-1]
    return t - torch.where(starts, t, torch.zeros_like(t)).cummax(1).values


def fit_probe(x: torch.Tensor, y: torch.Tensor, steps: int = 2000, seed: int = 0) -> MLP:
    """A 2x128 MLP fitted to y from x (Adam, batches of 512): what a policy network could read from x."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = MLP(x.shape[1], (128, 128), y.shape[1])
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        j = torch.randint(len(x), (512,), generator=g)
        loss = ((net(x[j]) - y[j]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def report(probe: MLP, x: torch.Tensor, buf: EpisodeBuffer, settle: int) -> dict:
    """Median |probe(x) - task| at REPORT_STEPS steps since a switch, and R^2 at steps >= settle."""
    n = len(buf)
    mask, y = buf.mask[:n], buf.task_vector[:n]
    since = steps_since_switch(buf.task[:n])[mask]
    with torch.no_grad():
        pred = probe(x[mask])
    err = (pred - y[mask]).norm(dim=-1)
    ok = since >= settle
    r2 = 1 - ((pred - y[mask])[ok] ** 2).sum(0) / ((y[mask][ok] - y[mask][ok].mean(0)) ** 2).sum(0)
    by_step = {k: round(float(err[since == k].median()), 3) for k in REPORT_STEPS if bool((since == k).any())}
    return {"r2": round(float(r2.mean()), 3), "median_error_by_steps_since_switch": by_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a moss or gridfilter checkpoint (policy.pt or checkpoint.pt)")
    ap.add_argument("--episodes", type=int, default=800, help="training-task episodes the probe is fitted on")
    ap.add_argument("--held-out", type=int, default=200, help="test-task episodes it is read on")
    ap.add_argument("--settle", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.algorithm not in ("moss", "gridfilter"):
        ap.error(f"{args.checkpoint}: a {ckpt.algorithm} checkpoint; the probe reads a moss or gridfilter belief")
    cfg = parse_config(ckpt.config, args.checkpoint, stored=True)
    env = make_env(cfg.env, "train")
    _, learner = build_agent(cfg, Spaces.of(env), int(env.unwrapped.task_dim))
    learner.policy.load_state_dict(ckpt.policy_state)
    acting = build_policy(ckpt)
    torch.manual_seed(args.seed)  # the policy's sampled actions: the same data on every run
    bufs = {
        "train": collect(cfg.env, acting, args.episodes, args.seed, "train"),
        "test": collect(cfg.env, acting, args.held_out, args.seed + 1, "test"),
        "test, random actions": collect(cfg.env, None, args.held_out, args.seed + 2, "test"),
    }
    with torch.no_grad():
        for buf in bufs.values():
            learner.relabel(buf)
    train = bufs["train"]
    for name in [n for n in ("belief", "hidden") if n in train.derived]:  # after each step: derived[:, 1:]
        x_tr = train.derived[name][: len(train), 1:]
        probe = fit_probe(x_tr[train.mask[: len(train)]], train.task_vector[: len(train)][train.mask[: len(train)]], seed=args.seed)
        for split in ("test", "test, random actions"):
            buf = bufs[split]
            row = {"checkpoint": args.checkpoint, "read": name, "episodes": split, **report(probe, buf.derived[name][: len(buf), 1:], buf, args.settle)}
            print(json.dumps(row), flush=True)
    if ckpt.algorithm == "moss" and cfg.encoder.n_components > 1:
        buf = bufs["test"]
        rows, last = torch.arange(len(buf)), (buf.length[: len(buf)] - 1).clamp(min=0)
        with torch.no_grad():
            comp = learner.policy.head(buf.derived["hidden"][rows, last + 1]).logits.argmax(-1).numpy()
        base = buf.task_vector[rows, last, :-1].argmax(-1).numpy()
        print(json.dumps({"checkpoint": args.checkpoint, "purity": round(cluster_purity(comp, base), 3), "components_used": len(set(comp.tolist()))}))


if __name__ == "__main__":
    main()
