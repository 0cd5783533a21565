"""MoSS encoder alone, on fixed data: what do the belief and the GRU state know about the task?

Collects episodes once (a trained policy's stochastic actions, or random ones with no `--policy`), then for
each variant trains a fresh MoSS encoder (no SAC) on that buffer for `--updates` steps, and every `--every`
updates reports, on held-out test-task episodes of the same policy and on random-action episodes (where the
agent's position says nothing about the task): the R^2 of a linear map and of a 2x128 MLP (fitted on 3/4 of
the rows, scored on the rest) from the belief (what the policy sees) and from the GRU state to the true task
vector, at steps at least `--settle` steps after the last task switch; for mixtures also the cluster purity
of the argmax component at each episode's end (task vectors that start with a one-hot base task).

    python tools/encoder_study.py --config configs/moss/point_robot_ns.yaml --policy runs/moss_pr_ns_b/policy.pt \
        --set "" --set encoder.alpha_z=0.01 --updates 1500 --every 500

Each `--set` is one variant: dotted keys as in `runtime train --set`, several joined with ','; `--set ""` is
the config as it is (the default when no --set is given). `--trained` first probes `--policy`'s own encoder
on the same data, so a trained run and fresh encoders are read the same way.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np
import torch
import yaml

from agents.checkpoint import build_policy, load_checkpoint
from agents.config import RunConfig, load_config
from agents.evaluation import make_env
from agents.evaluation.embedding import cluster_purity, linear_probe_r2
from agents.parts.buffer import EpisodeBuffer
from agents.parts.nets import MLP
from agents.training.collect import InProcessCollector, draw_reset_kwargs
from agents.training.trainer import build_agent


def variant_config(path: str, spec: str) -> RunConfig:
    """The config at `path` with the variant's overrides ("a.b=1,c.d=[2]"; values read as YAML)."""
    # a comma starts a new pair only when a `key=` follows, so list values like [256,256] stay whole
    items = re.split(r",(?=\s*[\w.]+=)", spec)
    pairs = (item.split("=", 1) for item in items if item.strip())
    return load_config(path, **{k.strip(): yaml.safe_load(v) for k, v in pairs})


def collect(cfg: RunConfig, policy_path: str | None, n: int, seed: int, split: str) -> EpisodeBuffer:
    """n episodes of `split` (uniform tasks, stochastic actions; random ones without a policy) in a buffer."""
    envs = [make_env(cfg.env, split) for _ in range(16)]
    try:
        e0 = envs[0]
        policy = build_policy(load_checkpoint(policy_path)) if policy_path else None
        kw = draw_reset_kwargs(np.random.default_rng(seed), n, len(e0.unwrapped.tasks(split)))
        buf = EpisodeBuffer(
            n, int(e0.spec.max_episode_steps), e0.observation_space.shape[0], e0.action_space.shape[0], e0.unwrapped.task_dim
        )
        for r in InProcessCollector(envs).collect(policy, kw):
            buf.add(r.episode)
        return buf
    finally:
        for e in envs:
            e.close()


def steps_since_switch(task: torch.Tensor) -> torch.Tensor:
    """[E, T] steps since the task last changed (0 at the first step of a segment)."""
    T = task.shape[1]
    t = torch.arange(T).expand_as(task)
    starts = torch.ones_like(task, dtype=torch.bool)
    starts[:, 1:] = task[:, 1:] != task[:, :-1]
    return t - torch.where(starts, t, torch.zeros_like(t)).cummax(1).values


def fit_mlp_probe(
    x: torch.Tensor, y: torch.Tensor, steps: int = 2000, seed: int = 0, g: torch.Generator | None = None
) -> MLP:
    """A 2x128 MLP fitted to y from x (Adam, batches of 512 drawn with `g`, default seeded by `seed`): what
    a policy network could read from x."""
    g = g if g is not None else torch.Generator().manual_seed(seed)
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


def mlp_probe_r2(x: torch.Tensor, y: torch.Tensor, steps: int = 2000, seed: int = 0) -> float:
    """Held-out R^2 (mean over target dims) of `fit_mlp_probe` fitted on 3/4 of the rows, scored on the rest."""
    g = torch.Generator().manual_seed(seed)  # one stream for the split and the batches (recorded numbers)
    idx = torch.randperm(len(x), generator=g)
    tr, te = idx[: len(x) * 3 // 4], idx[len(x) * 3 // 4 :]
    net = fit_mlp_probe(x[tr], y[tr], steps, seed, g)
    with torch.no_grad():
        err = ((net(x[te]) - y[te]) ** 2).sum(0)
    return float((1 - err / ((y[te] - y[te].mean(0)) ** 2).sum(0)).mean())


def probe(learner, buf: EpisodeBuffer, settle: int) -> dict[str, float]:
    """Linear and MLP probe R^2 of the belief (what the policy sees) and of the GRU hidden state."""
    with torch.no_grad():
        buf.derived.clear()  # a variant may change the belief's width
        learner.relabel(buf)
    since = steps_since_switch(buf.task)
    ok = buf.mask.bool() & (since >= settle)
    y = buf.task_vector[ok]
    out = {}
    if learner.cfg.encoder.n_components > 1:
        # multi-task families: the task vector starts with a one-hot of the base task; purity of the argmax
        # component at each episode's last step, and how many components are used there
        last = (buf.length - 1).clamp(min=0)
        rows = torch.arange(len(buf))
        h = buf.derived["hidden"][rows, last + 1]
        comp = learner.policy.head(h).logits.argmax(-1).numpy()
        base = buf.task_vector[rows, last, :-1].argmax(-1).numpy()
        out["purity"] = round(cluster_purity(comp, base), 3)
        out["components_used"] = int(len(set(comp.tolist())))
        # which components each base task's episodes end in: row b = counts over the K components
        K = learner.cfg.encoder.n_components
        out["components_by_base"] = [np.bincount(comp[base == b], minlength=K).tolist() for b in range(int(base.max()) + 1)]
    for name in ("belief", "hidden"):
        x = buf.derived[name][:, 1:][ok]  # after step t
        out[f"{name}_linear"] = round(float(np.mean(linear_probe_r2(x.numpy(), y.numpy()))), 3)
        out[f"{name}_mlp"] = round(mlp_probe_r2(x, y), 3)
    return out


def append_json(path: str | None, row: dict) -> None:
    """One JSON line appended to `path` (nothing without one)."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--policy", help="checkpoint whose policy collects (stochastic); default random actions")
    ap.add_argument("--episodes", type=int, default=800)
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--updates", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--settle", type=int, default=5)
    ap.add_argument("--set", action="append", default=[], dest="variants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="append one JSON line per variant here")
    ap.add_argument("--trained", action="store_true", help="first probe --policy's own trained encoder, as it is")
    args = ap.parse_args()
    if args.trained and not args.policy:
        ap.error("--trained probes the encoder of --policy; give one")
    torch.set_num_threads(1)
    base = load_config(args.config)
    torch.manual_seed(args.seed)  # the policy's sampled actions: the same data on every run
    train_buf = collect(base, args.policy, args.episodes, args.seed, "train")
    test_buf = collect(base, args.policy, args.held_out, args.seed + 1, "test")
    # on random-action episodes the position says nothing about the goal: R^2 there is inference alone
    rand_buf = collect(base, None, args.held_out, args.seed + 2, "test")
    print(f"data: {args.episodes} train / {args.held_out} held-out episodes ({'policy' if args.policy else 'random'})", flush=True)
    if args.trained:
        ckpt = load_checkpoint(args.policy)
        _, learner = build_agent(RunConfig.model_validate(ckpt.config), make_env(base.env, "train"))
        learner.policy.load_state_dict(ckpt.policy_state)
        pr = {"policy": probe(learner, test_buf, args.settle), "random": probe(learner, rand_buf, args.settle)}
        print(f"[trained {args.policy}] {json.dumps(pr)}", flush=True)
        append_json(args.json, {"variant": f"trained {args.policy}", "curve": [pr]})
    # with --trained and no --set, only the trained encoder is probed
    for spec in args.variants or ([] if args.trained else [""]):
        cfg = variant_config(args.config, spec)
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        _, learner = build_agent(cfg, make_env(cfg.env, "train"))
        train_buf.derived.clear()  # a variant may change the belief's width
        if learner.policy.encoder.normalize:
            learner.update_normalizer(train_buf)  # fixed data: the statistics are set once
        learner.relabel(train_buf)
        curve, t0 = [], time.perf_counter()
        for u in range(1, args.updates + 1):
            m = learner.encoder_step(train_buf, rng)
            if u % args.every == 0:
                learner.relabel(train_buf)  # windows start from current hidden states, as in training
                pr = {"policy": probe(learner, test_buf, args.settle), "random": probe(learner, rand_buf, args.settle)}
                curve.append({"update": u, **pr})
                print(f"[{spec or 'base'}] update {u}: {json.dumps(pr)}  " + " ".join(f"{k} {v:.3g}" for k, v in m.items()), flush=True)
        row = {"variant": spec or "base", "curve": curve, "wall_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        append_json(args.json, row)


if __name__ == "__main__":
    main()
