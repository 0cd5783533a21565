"""`MetaEnv`: what every task family adds to a gymnasium env.

A family env holds a `TaskDistribution`, a current task, `set_task(task)`, and puts the task's id, base
task, true task vector and reward terms into `info` on every `reset` and `step`. The task can be chosen
at reset with `options={"task": Task}` or `options={"task_index": i}` (index into the env's split).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.tasks import Task, TaskDistribution, TaskError


class MetaEnv:
    """Mixin for gymnasium envs; call `_init_meta` in `__init__` before the first reset."""

    distribution: TaskDistribution
    split: str
    _task: Task

    def _init_meta(self, distribution: TaskDistribution, split: str = "train", task_index: int = 0) -> None:
        self.distribution = distribution
        self.split = split
        tasks = distribution.tasks(split)
        if not tasks:
            raise TaskError(f"{distribution.family}: split {split!r} has no tasks")
        self.set_task(tasks[task_index % len(tasks)])

    # -- task ------------------------------------------------------------------------------------
    def set_task(self, task: Task) -> None:
        """Validate and switch to `task` (takes effect immediately, also mid-episode)."""
        self.distribution.validate(task)
        self._task = task
        self._task_vector = self.distribution.task_vector(task).astype(np.float32)
        self._info_base = {"task_id": task.id, "base_task": task.base}  # built once per task, not per step
        self._apply_task(task)

    def _apply_task(self, task: Task) -> None:
        """Hook for families whose task changes the model (rand-params); default: nothing."""

    @property
    def task(self) -> Task:
        return self._task

    @property
    def task_vector(self) -> np.ndarray:
        return self._task_vector

    @property
    def task_dim(self) -> int:
        return self.distribution.task_dim

    def tasks(self, split: str | None = None) -> list[Task]:
        return self.distribution.tasks(split or self.split)

    def _select_task(self, options: dict[str, Any] | None) -> None:
        if not options:
            return
        if "task" in options:
            self.set_task(options["task"])
        elif "task_index" in options:
            tasks = self.tasks()
            i = int(options["task_index"])
            if not 0 <= i < len(tasks):
                raise TaskError(f"task_index {i} out of range for {len(tasks)} {self.split} tasks")
            self.set_task(tasks[i])

    def task_info(self, **reward_terms: float) -> dict[str, Any]:
        """The `info` entries every family reports."""
        info: dict[str, Any] = {**self._info_base, "task_vector": self._task_vector.copy()}
        info.update({f"reward_{k}": float(v) for k, v in reward_terms.items()})
        return info
