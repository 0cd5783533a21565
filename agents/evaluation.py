"""Zero-shot evaluation through the inference contract: returns per task, success, switches.

Episode i of an evaluation runs task i mod n_tasks with reset seed `seed + i`, so two agents evaluated
with the same arguments see the same tasks, start states and switch schedules (what the normalised score
and the adaptation delay compare).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import envs
from agents.config import EnvConfig
from agents.policies import AgentPolicy
from agents.rollout import EpisodeRecord, run_episodes


def make_env(env_cfg: EnvConfig, split: str, nonstationary: str | None = None, **overrides: Any):
    ns = nonstationary if nonstationary is not None else env_cfg.nonstationary
    if ns == "none":
        ns = None
    return envs.make(
        env_cfg.id,
        split=split,
        seed=env_cfg.task_seed,
        nonstationary=ns,
        max_episode_steps=overrides.get("max_episode_steps", env_cfg.max_episode_steps),
        nonstationary_kwargs=env_cfg.nonstationary_kwargs() if ns else None,
        **env_cfg.kwargs,
    )


def evaluation_episodes(
    policy: AgentPolicy | None,
    env_cfg: EnvConfig,
    split: str = "test",
    episodes: int = 20,
    seed: int = 10_000,
    nonstationary: str | None = None,
    parallel: int = 16,
    deterministic: bool = True,
    record_beliefs: bool = False,
) -> list[EpisodeRecord]:
    """Run `episodes` episodes (task i mod n) in batches of `parallel` envs; `policy=None` is the random policy."""
    probe = make_env(env_cfg, split, nonstationary)
    n_tasks = len(probe.unwrapped.tasks(split))
    probe.close()
    pool = [make_env(env_cfg, split, nonstationary) for _ in range(min(parallel, episodes))]
    records: list[EpisodeRecord] = []
    for start in range(0, episodes, len(pool)):
        idx = list(range(start, min(start + len(pool), episodes)))
        kw = [{"seed": seed + i, "options": {"task_index": i % n_tasks}} for i in idx]
        records += run_episodes(policy, pool[: len(idx)], kw, deterministic, record_beliefs)
    for e in pool:
        e.close()
    return records


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


def adaptation_delays(
    agent: list[EpisodeRecord], oracle: list[EpisodeRecord], scale: float, tol: float = 0.1
) -> list[int]:
    """Per task switch: steps until the agent's per-step reward is back within `tol * scale` of the oracle's
    and stays there until the next switch (or the episode's end).

    `agent` and `oracle` are evaluations with the same seeds (same tasks, starts and switch times);
    `scale` = |oracle - random| mean per-step reward, so 10% is measured in normalised-score units. Right
    after a switch both agents stand where the old task left them and earn similar rewards, so a first
    crossing would read as zero delay: the agent must *stay* within tolerance. A switch it never settles
    after counts as the full segment.
    """
    delays: list[int] = []
    for a, o in zip(agent, oracle, strict=True):
        ra, ro = a.episode.reward, o.episode.reward
        L = min(len(ra), len(ro))
        times = [s["step"] for s in a.switches]
        for j, s in enumerate(times):
            end = min(times[j + 1] if j + 1 < len(times) else L, L)
            bad = np.flatnonzero(ra[s:end] < ro[s:end] - tol * scale)
            delays.append(int(bad[-1] + 1) if len(bad) else 0)
    return delays


def normalised_score(ret: float, random_ret: float, oracle_ret: float) -> float:
    """(return - random) / (oracle - random)."""
    return float((ret - random_ret) / (oracle_ret - random_ret))
