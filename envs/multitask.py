"""Non-parametric multi-task families (MoSS): `CheetahMultiTaskEnv` and `AntMultiTaskEnv`.

Each task is a *base task* (run at a velocity, reach a position, flip, stand, jump, ...) plus one number,
its `spec` (target velocity, position, pitch rate, pitch or vertical speed). The specs of every base are
spread evenly over the base's range and shuffled into train/test by the seed, so every base appears in
both splits and test specs interpolate between train specs.

Task params: `{"spec": value}`. Task vector (float32, length `len(bases) + 1`): one-hot of the base in
`bases` order, followed by the spec in the base's own units.

Reward = task term + control term. The task term is a normalised error, at most 0 (0 = on target); the
control term is `-ctrl_cost_weight * ||a||^2` with `ctrl_cost_weight = 0.05` (overridable through the
gymnasium base kwargs). The base env's own reward terms are dropped from `info`, so
`reward == info["reward_task"] + info["reward_ctrl"]`.

Neither env terminates: every reward is <= 0, so ending an episode early would be a reward for falling
over (the Ant's `terminate_when_unhealthy` defaults to False here for that reason).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from envs.mujoco_base import MujocoMetaEnv
from envs.tasks import Task, TaskDistribution, TaskError, check_range, require_keys

# Seed stream of the shared spec pool (the per-split streams of TaskDistribution use 0, 1, 2).
_POOL_STREAM = 1_000_003

RewardFn = Callable[[float, float], float]
"""Task term of the reward from the base env's (x_velocity, y_velocity) [m/s] and the current state."""


class MultiTaskDistribution(TaskDistribution):
    """Base tasks with one `spec` each; specs spread evenly over each base's range.

    With `n` tasks in a split and `B` bases, each base gets `n // B` tasks (the remainder goes to bases
    picked by the seed). Per base, `n_train_b + n_test_b` specs are placed evenly on the closed range
    (`linspace`) and a seeded permutation deals them into train and test; each split's list is then
    shuffled. The pool depends on both split sizes (an even grid over the union), not only on one.
    There is no `ood` split.
    """

    family: ClassVar[str] = ""
    ranges: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.bases = tuple(cls.ranges)
        cls.task_dim = len(cls.bases) + 1

    def __init__(self, seed: int = 0, **overrides: int) -> None:
        super().__init__(seed, **overrides)
        self._base_index = {b: i for i, b in enumerate(self.bases)}
        self._pool: dict[str, list[tuple[str, float]]] | None = None

    def _spec_pool(self) -> dict[str, list[tuple[str, float]]]:
        """(base, spec) pairs of train and test, a deterministic function of seed and split sizes."""
        if self._pool is None:
            rng = np.random.default_rng([self.seed, _POOL_STREAM])
            n_bases = len(self.bases)
            counts: dict[str, np.ndarray] = {}
            for split in ("train", "test"):
                n = self.n_tasks.get(split, 0)
                c = np.full(n_bases, n // n_bases, dtype=np.int64)
                c[rng.permutation(n_bases)[: n % n_bases]] += 1
                counts[split] = c
            pool: dict[str, list[tuple[str, float]]] = {"train": [], "test": []}
            for i, base in enumerate(self.bases):
                lo, hi = self.ranges[base]
                n_tr, n_te = int(counts["train"][i]), int(counts["test"][i])
                m = n_tr + n_te
                if m == 0:
                    continue
                specs = np.linspace(lo, hi, m) if m > 1 else np.array([(lo + hi) / 2.0])
                perm = rng.permutation(m)
                pool["train"] += [(base, float(specs[j])) for j in perm[:n_tr]]
                pool["test"] += [(base, float(specs[j])) for j in perm[n_tr:]]
            self._pool = pool
        return self._pool

    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        if split not in ("train", "test"):
            raise TaskError(f"{self.family}: has no {split!r} split (no OOD range is defined)")
        pairs = self._spec_pool()[split]
        assert len(pairs) == n, (len(pairs), n)
        return [(pairs[j][0], {"spec": pairs[j][1]}) for j in rng.permutation(len(pairs))]

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, ("spec",))
        if why is not None:
            return why
        if split == "ood":
            return "this family has no ood range"
        lo, hi = self.ranges[base]
        return check_range(f"{base} spec", params["spec"], lo, hi)

    def task_vector(self, task: Task) -> np.ndarray:
        """One-hot of the base (len(bases)) followed by the spec: float32, shape (len(bases) + 1,)."""
        v = np.zeros(self.task_dim, dtype=np.float32)
        v[self._base_index[task.base]] = 1.0
        v[-1] = task.params["spec"]
        return v


class CheetahMultiTaskDistribution(MultiTaskDistribution):
    """8 base tasks of the half-cheetah; units: m/s, m, rad/s, rad, m/s."""

    family = "CheetahMultiTask"
    ranges = {
        "velocity_forward": (1.0, 5.0),  # v_x [m/s]
        "velocity_backward": (-5.0, -1.0),
        "goal_forward": (5.0, 25.0),  # x [m]
        "goal_backward": (-25.0, -5.0),
        "flip_forward": (2.0 * math.pi, 4.0 * math.pi),  # pitch rate qvel[2] [rad/s]
        "stand_front": (math.pi / 6.0, math.pi / 2.0),  # pitch qpos[2] [rad], > 0 = nose down
        "stand_back": (-math.pi / 2.0, -math.pi / 6.0),
        "jump": (1.5, 3.0),  # |v_z| [m/s]
    }
    n_tasks = {"train": 80, "test": 40, "ood": 0}


# Ant directions in the xy plane: right = +x, left = -x, up = +y, down = -y.
_ANT_DIRECTIONS: dict[str, tuple[float, float]] = {
    "right": (1.0, 0.0),
    "left": (-1.0, 0.0),
    "up": (0.0, 1.0),
    "down": (0.0, -1.0),
}


class AntMultiTaskDistribution(MultiTaskDistribution):
    """9 base tasks of the ant; `spec` is a magnitude (speed [m/s], distance [m], |v_z| [m/s]).

    The target of `velocity_<dir>` / `goal_<dir>` is `spec * direction` with right = +x, left = -x,
    up = +y, down = -y.
    """

    family = "AntMultiTask"
    ranges = {
        **{f"velocity_{d}": (1.0, 3.0) for d in ("left", "right", "up", "down")},
        **{f"goal_{d}": (5.0, 15.0) for d in ("left", "right", "up", "down")},
        "jump": (0.5, 2.0),
    }
    n_tasks = {"train": 90, "test": 45, "ood": 0}


class _MultiTaskMixin(MujocoMetaEnv):
    """Shared reset/step of the multi-task MuJoCo envs; subclasses build the per-base reward function."""

    # base-env reward terms replaced by ours (dropped from info)
    _DROP_INFO: ClassVar[tuple[str, ...]] = ()
    _reward_fn: RewardFn
    _task_info: dict[str, Any]

    def _make_reward_fn(self, base: str, spec: float) -> RewardFn:
        """The task term of base task `base` with target `spec` (each family env implements this)."""
        raise NotImplementedError

    def _apply_task(self, task: Task) -> None:
        self._reward_fn = self._make_reward_fn(task.base, float(task.params["spec"]))
        self._task_info = self.task_info()  # the task's part of every step's info, built once per task

    def task_reward(self, x_velocity: float = 0.0, y_velocity: float = 0.0) -> float:
        """Task term of the reward (<= 0) in the current state, given the torso's planar velocity [m/s]."""
        return float(self._reward_fn(x_velocity, y_velocity))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Base-env step with the task's reward; `info` adds the task info and `reward_task`, `reward_ctrl`."""
        obs, _, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        task = float(self._reward_fn(info["x_velocity"], info.get("y_velocity", 0.0)))
        ctrl = float(info["reward_ctrl"])  # -ctrl_cost_weight * ||a||^2, computed by the base env
        for k in self._DROP_INFO:
            info.pop(k, None)
        info.update(self._task_info)  # == self.task_info(task=task, ctrl=ctrl), with less per-step work
        info["task_vector"] = self._task_vector.copy()  # a fresh array per step (callers keep infos)
        info["reward_task"] = task
        info["reward_ctrl"] = ctrl
        return obs, task + ctrl, terminated, truncated, info


class CheetahMultiTaskEnv(_MultiTaskMixin, HalfCheetahEnv):
    """HalfCheetah-v5 with the 8 base tasks of `CheetahMultiTaskDistribution`.

    Task terms (s = spec): velocity `-|v_x - s|/|s|` (v_x from the base env's `x_velocity`), goal
    `-|qpos[0] - s|/|s|`, flip `-|qvel[2] - s|/|s|`, stand `-|qpos[2] - s|/|s|`, jump
    `-||qvel[1]| - s|/|s|`. Obs: 17 floats (x position excluded, as in the base env).
    """

    _DROP_INFO = ("reward_forward",)

    distribution_cls = CheetahMultiTaskDistribution
    default_base_kwargs: ClassVar[dict[str, Any]] = {"ctrl_cost_weight": 0.05}

    def _make_reward_fn(self, base: str, spec: float) -> RewardFn:
        data, inv = self.data, 1.0 / abs(spec)
        if base.startswith("velocity_"):
            return lambda vx, vy: -abs(vx - spec) * inv
        if base.startswith("goal_"):
            return lambda vx, vy: -abs(data.qpos[0] - spec) * inv
        if base == "flip_forward":
            return lambda vx, vy: -abs(data.qvel[2] - spec) * inv
        if base.startswith("stand_"):
            return lambda vx, vy: -abs(data.qpos[2] - spec) * inv
        if base == "jump":
            return lambda vx, vy: -abs(abs(data.qvel[1]) - spec) * inv
        raise TaskError(f"CheetahMultiTask: no reward for base task {base!r}")


class AntMultiTaskEnv(_MultiTaskMixin, AntEnv):
    """Ant-v5 (27-dim obs, no contact forces) with the 9 base tasks of `AntMultiTaskDistribution`.

    Task terms (s = spec, d = the base's unit direction): velocity `-||v_xy - s d||^2 / s^2` (v_xy from
    the base env's `x_velocity`, `y_velocity`), goal `-||qpos[0:2] - s d||^2 / s^2`, jump
    `-(|qvel[2]| - s)^2 / s^2` (qvel[0:3] is the free joint's linear velocity in the world frame).
    """

    _DROP_INFO = ("reward_forward", "reward_contact", "reward_survive")

    distribution_cls = AntMultiTaskDistribution
    default_base_kwargs: ClassVar[dict[str, Any]] = {
        "ctrl_cost_weight": 0.05,
        "include_cfrc_ext_in_observation": False,
        "terminate_when_unhealthy": False,
    }

    def _make_reward_fn(self, base: str, spec: float) -> RewardFn:
        data, inv2 = self.data, 1.0 / (spec * spec)
        kind, _, direction = base.partition("_")
        if kind == "velocity":
            tx, ty = (spec * c for c in _ANT_DIRECTIONS[direction])
            return lambda vx, vy: -((vx - tx) ** 2 + (vy - ty) ** 2) * inv2
        if kind == "goal":
            tx, ty = (spec * c for c in _ANT_DIRECTIONS[direction])
            return lambda vx, vy: -((data.qpos[0] - tx) ** 2 + (data.qpos[1] - ty) ** 2) * inv2
        if base == "jump":
            return lambda vx, vy: -((abs(data.qvel[2]) - spec) ** 2) * inv2
        raise TaskError(f"AntMultiTask: no reward for base task {base!r}")


__all__ = [
    "AntMultiTaskDistribution",
    "AntMultiTaskEnv",
    "CheetahMultiTaskDistribution",
    "CheetahMultiTaskEnv",
    "MultiTaskDistribution",
]
