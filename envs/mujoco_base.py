"""`MujocoMetaEnv`: the constructor and reset every MuJoCo task family shares."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import utils

from envs.base import MetaEnv
from envs.tasks import TaskDistribution


class MujocoMetaEnv(MetaEnv):
    """Constructor and reset shared by the MuJoCo families; list it before the gymnasium base class.

    Subclasses set `distribution_cls` and `default_base_kwargs` (defaults layered under the caller's
    `base_kwargs`) and implement `step`. Pickling/deepcopy rebuilds the env from its constructor arguments
    (so the task is the `task_index`-th of the split again, not a task set later).
    """

    distribution_cls: ClassVar[type[TaskDistribution]]
    default_base_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, split: str = "train", task_seed: int = 0, task_index: int = 0, render_mode: str | None = None,
                 **base_kwargs: Any) -> None:
        super().__init__(render_mode=render_mode, **{**self.default_base_kwargs, **base_kwargs})
        # the base class recorded its own arguments; pickling/copying must rebuild *this* env
        utils.EzPickle.__init__(
            self,
            split=split,
            task_seed=task_seed,
            task_index=task_index,
            render_mode=render_mode,
            **base_kwargs,
        )
        self._on_model_loaded()
        self._init_meta(self._make_distribution(task_seed), split, task_index)

    def _on_model_loaded(self) -> None:
        """Hook run after the MuJoCo model exists and before the first task is applied."""

    def _make_distribution(self, task_seed: int) -> TaskDistribution:
        return self.distribution_cls(seed=task_seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Switch task if `options` holds `task` or `task_index`, then reset the base env."""
        self._select_task(options)
        obs, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        info.update(self.task_info())
        return obs, info
