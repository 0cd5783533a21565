"""Collectors: who runs the training episodes the trainer asks for.

The trainer draws every episode's (reset seed, task index) from its own RNG and hands the list to a
collector, which returns one whole `EpisodeRecord` per entry, in the same order; the trainer then fills its
buffer from them. Two collectors share that interface:

- `InProcessCollector` (the default): the trainer's own envs, stepped in lockstep batches of `len(envs)`
  with one policy call per step (`agents.evaluation.rollout.run_episodes`). It imports no Ray.
- `agents.training.distributed.RayCollector` (`runtime train --workers N`): N Ray actors, each with its own envs and
  a copy of the policy weights (broadcast once per round). Imported only when asked for.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from agents.evaluation.rollout import EpisodeRecord, run_episodes
from agents.policies import AgentPolicy

ResetKwargs = dict[str, Any]  # {"seed": int, "options": {"task_index": int}}


def draw_reset_kwargs(rng: np.random.Generator, n: int, n_tasks: int) -> list[ResetKwargs]:
    """n episodes' (reset seed, task index), each task uniform over the split's n_tasks."""
    return [
        {"seed": int(rng.integers(2**31)), "options": {"task_index": int(rng.integers(n_tasks))}} for _ in range(n)
    ]


class Collector(Protocol):
    def collect(self, policy: AgentPolicy | None, reset_kwargs: list[ResetKwargs]) -> list[EpisodeRecord]:
        """One whole episode per entry of `reset_kwargs`, in order; `policy=None` acts at random. Training
        collection acts stochastically with online belief updates."""
        ...

    def close(self) -> None: ...


class InProcessCollector:
    """Today's path: episodes in lockstep batches over the trainer's own envs."""

    def __init__(self, envs: list[gym.Env]) -> None:
        self.envs = envs

    def collect(self, policy: AgentPolicy | None, reset_kwargs: list[ResetKwargs]) -> list[EpisodeRecord]:
        records: list[EpisodeRecord] = []
        for start in range(0, len(reset_kwargs), len(self.envs)):
            kw = reset_kwargs[start : start + len(self.envs)]
            records += run_episodes(policy, self.envs[: len(kw)], kw, deterministic=False)
        return records

    def close(self) -> None:
        pass
