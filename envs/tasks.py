"""Tasks and task distributions.

A task is a small frozen pydantic model; a distribution knows one family's ranges and samples the
`train`, `test` and `ood` splits reproducibly from a seed. Every family's distribution subclasses
`TaskDistribution` and implements `_sample` (draw `n` (base, params) pairs for a split), `_check`
(are params inside the split's range) and `task_vector` (the oracle's input).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Split = Literal["train", "test", "ood"]
SPLITS: tuple[str, ...] = ("train", "test", "ood")


class TaskError(ValueError):
    """A task, family or parameter that a distribution refuses (the message names the problem)."""


class Task(BaseModel):
    """One task of a family: `base` names the base task (e.g. `velocity_forward`), `params` its numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    base: str
    params: dict[str, float]
    split: Split
    index: int

    @property
    def id(self) -> str:
        return f"{self.family}/{self.split}/{self.index}"


class TaskDistribution(ABC):
    """Reproducible train/test/ood task sets of one family.

    `tasks(split)` is a fixed list per (split, seed); `ood` is empty for families without an OOD range.
    Subclasses set `family`, `bases` (ordered base-task names), `task_dim` and `n_tasks`.
    """

    family: str = ""
    bases: tuple[str, ...] = ("default",)
    task_dim: int = 1
    n_tasks: dict[str, int] = {"train": 0, "test": 0, "ood": 0}

    def __init__(self, seed: int = 0, **overrides: int) -> None:
        self.seed = int(seed)
        self.n_tasks = dict(self.n_tasks)
        for k, v in overrides.items():
            if k.removeprefix("n_") not in SPLITS:
                raise TaskError(f"{self.family}: unknown override {k!r} (expected n_train, n_test, n_ood)")
            self.n_tasks[k.removeprefix("n_")] = int(v)
        self._cache: dict[str, list[Task]] = {}

    # -- what a family implements -------------------------------------------------------------
    @abstractmethod
    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        """Draw `n` (base, params) pairs for `split`."""

    @abstractmethod
    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        """Return why params are outside `split`'s range, or None when they are inside."""

    @abstractmethod
    def task_vector(self, task: Task) -> np.ndarray:
        """The true task parameters as a float32 vector of length `task_dim` (the oracle's input)."""

    # -- shared ----------------------------------------------------------------------------------
    def tasks(self, split: str = "train") -> list[Task]:
        """The fixed task list of `split` (same seed, same list)."""
        if split not in SPLITS:
            raise TaskError(f"{self.family}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        if split not in self._cache:
            n = self.n_tasks.get(split, 0)
            # one generator per split, so the train list does not depend on n_test and vice versa
            rng = np.random.default_rng([self.seed, SPLITS.index(split)])
            pairs = self._sample(split, n, rng) if n > 0 else []
            self._cache[split] = [
                Task(
                    family=self.family,
                    base=b,
                    params={k: float(v) for k, v in p.items()},
                    split=split,
                    index=i,
                )
                for i, (b, p) in enumerate(pairs)
            ]
        return self._cache[split]

    def sample(self, split: str, rng: np.random.Generator, exclude: Task | None = None) -> Task:
        """A task drawn uniformly from `split`'s list (not `exclude` when the list has another)."""
        pool = self.tasks(split)
        if not pool:
            raise TaskError(f"{self.family}: split {split!r} has no tasks")
        if exclude is not None and len(pool) > 1:
            pool = [t for t in pool if t != exclude]
        return pool[int(rng.integers(len(pool)))]

    def validate(self, task: Task) -> None:
        """Raise TaskError naming the problem if `task` does not belong to this family's `task.split` range."""
        if not isinstance(task, Task):
            raise TaskError(f"{self.family}: expected a Task, got {type(task).__name__}")
        if task.family != self.family:
            raise TaskError(f"task {task.id!r} is of family {task.family!r}, this env is {self.family!r}")
        if task.base not in self.bases:
            raise TaskError(
                f"{self.family}: unknown base task {task.base!r} (expected one of {list(self.bases)})"
            )
        for k, v in task.params.items():
            if not math.isfinite(v):
                raise TaskError(f"{self.family}: task parameter {k}={v} is not finite")
        why = self._check(task.split, task.base, task.params)
        if why is not None:
            raise TaskError(f"{self.family}: task {task.id!r} out of range: {why}")

    def make_task(
        self, base: str | None = None, split: str = "train", index: int = -1, **params: float
    ) -> Task:
        """Build and validate a task by hand (e.g. `dist.make_task(velocity=1.5)`)."""
        if split not in SPLITS:
            raise TaskError(f"{self.family}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        task = Task(family=self.family, base=base or self.bases[0], params=params, split=split, index=index)
        self.validate(task)
        return task


def check_range(name: str, value: float, low: float, high: float) -> str | None:
    """None if low <= value <= high, else a message naming the parameter and its range."""
    if low <= value <= high:
        return None
    return f"{name}={value:g} not in [{low:g}, {high:g}]"


def check_ranges(name: str, value: float, ranges: Sequence[tuple[float, float]]) -> str | None:
    """None if value lies in any of `ranges` (closed intervals)."""
    if any(lo <= value <= hi for lo, hi in ranges):
        return None
    rs = " or ".join(f"[{lo:g}, {hi:g}]" for lo, hi in ranges)
    return f"{name}={value:g} not in {rs}"


def require_keys(params: dict[str, float], keys: Sequence[str]) -> str | None:
    missing = [k for k in keys if k not in params]
    extra = [k for k in params if k not in keys]
    if missing or extra:
        return f"expected parameters {list(keys)}, got {sorted(params)}"
    return None
