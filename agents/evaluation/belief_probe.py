"""What an agent's belief knows about the task, by steps since the task last switched.

The task is read from the belief with the checkpoint's task readout (fitted on training-task episodes
only; agents/parts/readout.py), on test-split episodes of the checkpoint's env (its own switch schedule).
For every transition t of an episode, k = the number of transitions seen under the current task (1 at the
transition where a switch took effect); the report takes the belief after transition t (b_{t+1}) at
k in REPORT_STEPS, separately after a switch and from the episode start (where the belief starts from the
prior). Direction tasks (a one-number task of +-1: CheetahDir, AntDir) report the share read with the
right sign; other tasks R^2 over the instances at that k and the median error (task units); multi-task
families the base-task accuracy. With a reference (the oracle) on the same episodes (same reset seeds,
hence the same switch schedule), the mean reward gap reference - agent at the same k. For a MoSS mixture
on a multi-task family, also the cluster purity of the most likely component at each episode's end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.config import EnvConfig
from agents.evaluation.embedding import cluster_purity
from agents.evaluation.protocols import evaluation_episodes, make_env
from agents.evaluation.rollout import padded
from agents.parts.readout import TaskReadout
from agents.policies import AgentPolicy, MoSSPolicy, beliefs_along

REPORT_STEPS = (1, 2, 5, 10, 20, 50)


def steps_under_task(task_ids: list[str]) -> np.ndarray:
    """[L] transitions seen under the current task, counting transition t itself (1 at a switch)."""
    k = np.ones(len(task_ids), np.int64)
    for t in range(1, len(task_ids)):
        k[t] = 1 if task_ids[t] != task_ids[t - 1] else k[t - 1] + 1
    return k


def is_direction_family(env: Any) -> bool:
    """True when every training task of `env` is a one-number direction of +-1 (CheetahDir, AntDir)."""
    dist = env.unwrapped.distribution
    return {tuple(dist.task_vector(t).tolist()) for t in env.unwrapped.tasks("train")} <= {(1.0,), (-1.0,)}


def probe(
    policy: AgentPolicy,
    readout: TaskReadout,
    env_cfg: EnvConfig,
    episodes: int = 40,
    seed: int = 20_000,
    split: str = "test",
    random_actions: bool = False,
    reference: AgentPolicy | None = None,
) -> dict[str, Any]:
    """The report (module docstring) as a dict; `random_actions`: act at random (the belief then says what
    the encoder can read when the behaviour is not the agent's own)."""
    recs = evaluation_episodes(None if random_actions else policy, env_cfg, split, episodes, seed)
    ref = evaluation_episodes(reference, env_cfg, split, episodes, seed) if reference is not None else None
    env = make_env(env_cfg, split)
    try:
        dist = env.unwrapped.distribution
        vector_of = {t.id: dist.task_vector(t) for t in env.unwrapped.tasks(split)}
        direction = is_direction_family(env)
    finally:
        env.close()
    with torch.no_grad():
        b, final = beliefs_along(policy, *padded(recs), return_state=True)
        est = readout(b).numpy()
    kind = "base_task" if readout.kind == "base_task" else ("direction" if direction else "vector")
    rows: dict[str, dict[int, list]] = {"switch": {k: [] for k in REPORT_STEPS}, "start": {k: [] for k in REPORT_STEPS}}
    for j, r in enumerate(recs):
        k = steps_under_task(r.task_ids)
        seg_start_is_switch = np.arange(len(k)) - k + 1 > 0  # the segment began at a switch, not at reset
        for t in np.flatnonzero(np.isin(k, REPORT_STEPS)):
            truth = vector_of[r.task_ids[t]]
            gap = float(ref[j].episode.reward[t] - r.episode.reward[t]) if ref is not None and t < len(ref[j].episode) else None
            rows["switch" if seg_start_is_switch[t] else "start"][int(k[t])].append((est[j, t + 1], truth, gap))
    out: dict[str, Any] = {"episodes": episodes, "split": split, "kind": kind, "random_actions": random_actions,
                           "switches": int(sum(len(r.switches) for r in recs))}
    for where, by_k in rows.items():
        out[f"after_{where}"] = {str(k): _score(kind, v, readout) for k, v in by_k.items() if v}
    if isinstance(policy, MoSSPolicy) and policy.head.k > 1 and len(dist.bases) > 1:
        # a mixture belief: does its most likely component at the episode's end name the base task?
        with torch.no_grad():
            comp = policy.posterior(final).logits.argmax(-1).numpy()
        base = [r.episode.task_vector[-1][: len(dist.bases)].argmax() for r in recs]
        out["components"] = {"used": len(set(comp.tolist())), "of": policy.head.k, "purity": round(cluster_purity(comp, base), 4)}
    return out


def _score(kind: str, items: list, readout: TaskReadout) -> dict[str, Any]:
    est = np.stack([x[0] for x in items])
    truth = np.stack([x[1] for x in items]).astype(np.float64)
    row: dict[str, Any] = {"n": len(items)}
    if kind == "direction":
        row["direction_accuracy"] = round(float(np.mean(np.sign(est[:, 0]) == np.sign(truth[:, 0]))), 4)
    elif kind == "base_task":
        bases = readout.out_dim
        row["base_accuracy"] = round(float(np.mean(est.argmax(1) == truth[:, :bases].argmax(1))), 4)
    else:
        err = est - truth
        sst = ((truth - truth.mean(0)) ** 2).sum(0)
        r2 = [1 - float((e**2).sum()) / float(s) for e, s in zip(err.T, sst, strict=True) if s > 0]
        row["r2"] = round(float(np.mean(r2)), 4) if r2 else None
        row["median_error"] = round(float(np.median(np.linalg.norm(err, axis=1))), 4)
    gaps = [x[2] for x in items if x[2] is not None]
    if gaps:
        row["reward_gap"] = round(float(np.mean(gaps)), 4)
    return row

