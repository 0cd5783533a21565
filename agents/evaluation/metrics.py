"""Metrics of evaluation records: returns per task, success, normalised score, adaptation delay."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.config import EnvConfig
from agents.evaluation.protocols import make_env
from agents.evaluation.rollout import EpisodeRecord


def summarize(records: list[EpisodeRecord]) -> dict[str, Any]:
    """mean/std return, per-task mean returns (by the task the episode began on), success rate, switches."""
    rets = np.array([r.ret for r in records])
    per_task: dict[str, list[float]] = {}
    for r in records:
        per_task.setdefault(r.task_ids[0], []).append(r.ret)
    out: dict[str, Any] = {
        "episodes": len(records),
        "mean_return": float(rets.mean()),
        "std_return": float(rets.std()),
        "per_task_return": {k: float(np.mean(v)) for k, v in per_task.items()},
        "switches": int(sum(len(r.switches) for r in records)),
    }
    succ = [r.success for r in records if r.success is not None]
    if succ:
        out["success_rate"] = float(np.mean(succ))
    return out


def per_base_return(per_task: dict[str, float], env_cfg: EnvConfig, split: str) -> dict[str, float] | None:
    """Mean of the per-task returns of each base task of `split` (multi-task families; None when the
    family has one base): which base tasks an agent has learned."""
    env = make_env(env_cfg, split)
    try:
        base_of = {t.id: t.base for t in env.unwrapped.tasks(split)}
    finally:
        env.close()
    if len(set(base_of.values())) < 2:
        return None
    by_base: dict[str, list[float]] = {}
    for task_id, ret in per_task.items():
        by_base.setdefault(base_of[task_id], []).append(ret)
    return {b: float(np.mean(v)) for b, v in sorted(by_base.items())}


def adaptation_delays(
    agent: list[EpisodeRecord], oracle: list[EpisodeRecord] | list[np.ndarray], scale: float, tol: float = 0.1
) -> list[int]:
    """Per task switch: steps until the agent's per-step reward is back within `tol * scale` of the oracle's
    and stays there until the next switch (or the episode's end).

    `agent` and `oracle` are evaluations with the same seeds (same tasks, starts and switch times); `oracle`
    holds records or, per episode, the oracle's per-step rewards [L]. `scale` = |oracle - random| mean
    per-step reward, so 10% is measured in normalised-score units. Right after a switch both agents stand
    where the old task left them and earn similar rewards, so a first crossing would read as zero delay:
    the agent must *stay* within tolerance. A switch it never settles after counts as the full segment.
    """
    delays: list[int] = []
    for a, o in zip(agent, oracle, strict=True):
        ra, ro = a.episode.reward, (o.episode.reward if isinstance(o, EpisodeRecord) else o)
        L = min(len(ra), len(ro))
        times = [s["step"] for s in a.switches]
        for j, s in enumerate(times):
            end = min(times[j + 1] if j + 1 < len(times) else L, L)
            bad = np.flatnonzero(ra[s:end] < ro[s:end] - tol * scale)
            delays.append(int(bad[-1] + 1) if len(bad) else 0)
    return delays


def compare_to_reference(
    agent: list[EpisodeRecord], references: list[list[EpisodeRecord]], random: list[EpisodeRecord]
) -> dict[str, Any]:
    """oracle_return, random_return, normalised_score and adaptation_delay (switches, median, mean) of
    `agent` against one or more oracle evaluations and the random policy's, all with the same seeds.

    Several references (oracle seeds) pool into one: oracle_return is the mean of their mean returns (each
    is also listed in `oracle_returns`), and delays are measured against their mean per-step reward (over
    the shortest of each episode's runs), so one lucky or unlucky oracle seed does not set the scale.
    """
    if not references:
        raise ValueError("compare_to_reference needs at least one reference evaluation")
    ret = summarize(agent)["mean_return"]
    o_rets = [summarize(o)["mean_return"] for o in references]
    o_ret, r_ret = float(np.mean(o_rets)), summarize(random)["mean_return"]
    per_step = []
    for runs in zip(*references, strict=True):
        L = min(len(r.episode) for r in runs)
        per_step.append(np.mean([r.episode.reward[:L] for r in runs], axis=0))
    steps = sum(len(r.episode) for r in agent)
    delays = adaptation_delays(agent, per_step, abs(o_ret - r_ret) * len(agent) / max(steps, 1))
    out = score_against(ret, o_rets, r_ret)
    out["adaptation_delay"] = {
        "switches": len(delays),
        "median": float(np.median(delays)) if delays else None,
        "mean": float(np.mean(delays)) if delays else None,
    }
    return out


def score_against(ret: float, oracle_returns: list[float], random_ret: float) -> dict[str, Any]:
    """oracle_return (the mean of `oracle_returns`; each listed when there are several), random_return and
    the normalised score of return `ret`."""
    o_ret = float(np.mean(oracle_returns))
    out: dict[str, Any] = {"oracle_return": o_ret}
    if len(oracle_returns) > 1:
        out["oracle_returns"] = list(oracle_returns)
    out.update(random_return=random_ret, normalised_score=normalised_score(ret, random_ret, o_ret))
    return out


def normalised_score(ret: float, random_ret: float, oracle_ret: float) -> float:
    """(return - random) / (oracle - random)."""
    return float((ret - random_ret) / (oracle_ret - random_ret))
