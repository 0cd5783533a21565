"""Fitting the task readout (agents/parts/readout.py): the belief in task units, on training tasks only.

The beliefs come from logged training-task episodes run through the policy's own inference contract
(`beliefs_along`: what serving computes), paired with the task that produced each transition: b_{t+1}
(after transition t) with the task vector of step t. A quarter of the episodes is held out; the quality
figures are measured on them: R^2 and RMSE (task units) per task dimension, or base-task accuracy.
The beliefs are computed on the policy's device; the readout is fitted on the CPU (it is small, and a
seed then gives the same readout whichever device trained the policy's weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from agents.config import EnvConfig
from agents.device import host_to
from agents.evaluation.protocols import evaluation_episodes, make_env
from agents.evaluation.rollout import TRANSITION, padded
from agents.parts.buffer import EpisodeBuffer
from agents.parts.readout import TaskReadout
from agents.policies import AgentPolicy, beliefs_along

EPISODES = 192  # episodes a readout is fitted on (HELD_OUT more are held out)
HELD_OUT = 0.25
FIT_STEPS = 1500
BATCH = 512


def fit_readout(
    policy: AgentPolicy,
    obs: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    next_obs: torch.Tensor,
    lengths: torch.Tensor,
    task_vector: torch.Tensor,
    bases: Sequence[str] = ("default",),
    seed: int = 0,
    steps: int = FIT_STEPS,
) -> tuple[TaskReadout, dict[str, Any]]:
    """A readout fitted on n padded episodes ([n, T, ...], env units; task_vector [n, T, D]) and its quality
    on the held-out ones. With several `bases` (a multi-task family, whose task vector starts with a one-hot
    of the base) it reads base-task probabilities. Inputs on any device. Leaves the global RNG as it found it."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        b = beliefs_along(policy, obs, action, reward, next_obs, lengths)[:, 1:].cpu()  # after each step
        with torch.device("cpu"):  # the fit: on the CPU, whatever the policy's or the default device
            readout, quality = _fit(b, task_vector.cpu(), torch.as_tensor(lengths).cpu(), bases, seed, steps)
    return readout, quality


def _fit(
    b: torch.Tensor, task_vector: torch.Tensor, lengths: torch.Tensor, bases: Sequence[str], seed: int, steps: int
) -> tuple[TaskReadout, dict[str, Any]]:
    """`fit_readout` from the beliefs b [n, T, B] after each step."""
    g = torch.Generator().manual_seed(seed)
    n, T = b.shape[:2]
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    perm = torch.randperm(n, generator=g)
    n_held = int(round(HELD_OUT * n)) if n >= 4 else 0
    fit, held = perm[n_held:], perm[:n_held]
    multi = len(bases) > 1
    kind = "base_task" if multi else "vector"
    target = task_vector[..., : len(bases)].argmax(-1) if multi else task_vector
    x, y = b[fit][mask[fit]], target[fit][mask[fit]]
    readout = TaskReadout(b.shape[-1], len(bases) if multi else task_vector.shape[-1], kind,
                          names=list(bases) if multi else None)
    readout.in_mean.copy_(x.mean(0))
    readout.in_std.copy_(x.std(0).clamp(min=1e-6) if len(x) > 1 else torch.ones(x.shape[1]))
    if not multi:
        readout.out_mean.copy_(y.mean(0))
        readout.out_std.copy_(y.std(0).clamp(min=1e-6) if len(y) > 1 else torch.ones(y.shape[1]))
    opt = torch.optim.Adam(readout.net.parameters(), lr=1e-3)
    for _ in range(steps):
        j = torch.randint(len(x), (min(BATCH, len(x)),), generator=g)
        out = readout.raw(x[j])
        if multi:
            loss = F.cross_entropy(out, y[j])
        else:
            loss = ((out - (y[j] - readout.out_mean) / readout.out_std) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    readout.requires_grad_(False).eval()
    quality: dict[str, Any] = {"episodes": len(fit), "held_out": n_held, "transitions": len(x)}
    if n_held:
        with torch.no_grad():
            quality.update(_quality(readout, b[held][mask[held]], target[held][mask[held]]))
    return readout, quality


def _quality(readout: TaskReadout, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    pred = readout(x)
    if readout.kind == "base_task":
        return {"accuracy": round(float((pred.argmax(-1) == y).float().mean()), 4)}
    err = pred - y
    sst = ((y - y.mean(0)) ** 2).sum(0)
    r2 = [round(float(1 - e / s), 4) if s > 0 else None for e, s in zip((err**2).sum(0), sst, strict=True)]
    known = [v for v in r2 if v is not None]
    return {
        "r2": round(float(np.mean(known)), 4) if known else None,
        "r2_per_dim": r2,
        "rmse": [round(float(v), 4) for v in err.pow(2).mean(0).sqrt()],
    }


def fit_readout_on_buffer(
    policy: AgentPolicy, buffer: EpisodeBuffer, bases: Sequence[str], episodes: int = EPISODES, seed: int = 0
) -> tuple[TaskReadout, dict[str, Any]]:
    """Fitted on up to `episodes` / (1 - HELD_OUT) episodes of a training buffer, drawn with `seed`."""
    n = min(len(buffer), int(round(episodes / (1 - HELD_OUT))))
    chosen = np.sort(np.random.default_rng(seed).choice(len(buffer), n, replace=False))
    idx = host_to(chosen, buffer.device)
    L = int(buffer.lengths_host[chosen].max())
    return fit_readout(
        policy, buffer.obs[idx, :L], buffer.action[idx, :L], buffer.reward[idx, :L], buffer.next_obs[idx, :L],
        buffer.length[idx], buffer.task_vector[idx, :L], bases, seed,
    )


def fit_readout_on_rollouts(
    policy: AgentPolicy, env_cfg: EnvConfig, episodes: int = EPISODES, seed: int = 0, parallel: int = 16
) -> tuple[TaskReadout, dict[str, Any]]:
    """Fitted on fresh training-task episodes of the policy's own stochastic actions (for a checkpoint
    that has no buffer beside it)."""
    n = int(round(episodes / (1 - HELD_OUT)))
    env = make_env(env_cfg, "train")
    bases = tuple(env.unwrapped.distribution.bases)
    env.close()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        records = evaluation_episodes(policy, env_cfg, "train", n, seed, parallel=parallel, deterministic=False)
    s, a, r, s2, tv, lengths = padded(records, (*TRANSITION, "task_vector"))
    return fit_readout(policy, s, a, r, s2, lengths, tv, bases, seed)
