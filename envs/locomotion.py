"""MuJoCo locomotion task families (PEARL set, MoSS OOD ranges, FOCAL++ sparse variants).

Each env subclasses gymnasium's MuJoCo v5 env (`HalfCheetahEnv`, `AntEnv`, `HumanoidEnv`) plus `MetaEnv`;
the base env simulates and computes its cost terms, this layer only replaces the task-dependent term.

| family           | params (units)                    | task_vector          | train/test/ood | reward                               |
|------------------|-----------------------------------|----------------------|----------------|--------------------------------------|
| CheetahVel       | velocity (m/s) U(0, 3)            | [velocity]           | 100/30/0       | -abs(v_x - velocity) - 0.05 sum(a^2)  |
| CheetahDir       | direction in {+1, -1}             | [direction]          | 2/2/0          | direction * v_x - 0.1 sum(a^2)        |
| AntDir           | direction (rad) in {0, pi}        | [cos, sin]           | 2/2/0          | v_xy . (cos, sin) - ctrl - contact + healthy |
| AntGoal          | angle (rad) U(0, 2pi), radius (m) | [goal_x, goal_y]     | 150/30/0       | -L1(xy - goal) - ctrl - contact      |
| HumanoidDir      | direction (rad) U(0, 2pi)         | [cos, sin]           | 100/30/0       | 1.25 v_com . (cos, sin) - ctrl - contact + healthy |
| CheetahVelOOD    | velocity: train/test U(1, 3), ood U([0, 1) u (3, 4]) | [velocity] | 100/30/30 | as CheetahVel          |
| AntGoalOOD       | radius: train/test [1, 2.5], ood [0, 1) u (2.5, 3.5] | [goal_x, goal_y] | 150/30/30 | as AntGoal   |
| SparseCheetahVel | as CheetahVel                     | [velocity]           | 100/30/0       | sparsify(CheetahVel reward, -0.1)    |
| SparseAntDir     | as AntDir                         | [cos, sin]           | 2/2/0          | sparsify(AntDir reward, 3)           |

Counts that the papers leave open are our choice: CheetahDir/AntDir 2/2 (the two directions, as PEARL);
HumanoidDir 100/30 (PEARL); 30 OOD tasks for the OOD families. Goal radii are uniform by area (AntGoal:
radius = 3 sqrt(U(0, 1)); the OOD families likewise on each annulus, the OOD union weighted by area).
The discrete direction families cycle through their values, so every split holds each direction.

Defaults differing from the gymnasium base env (all overridable through constructor kwargs):
CheetahVel `ctrl_cost_weight=0.05`; Ant/Humanoid `include_cfrc_ext_in_observation=False` (PEARL-era obs,
Ant 27-dim); AntGoal keeps x, y in the observation (`exclude_current_positions_from_observation=False`,
29-dim; the goal is a position) and does not terminate when unhealthy (`terminate_when_unhealthy=False`,
as PEARL's ant-goal: with an always-negative reward, termination would reward falling over). AntDir and
HumanoidDir keep gymnasium's termination; HalfCheetah never terminates. The healthy bonus is gymnasium v5's
(paid only while healthy).

`info` on every step carries the base env's entries (`x_velocity`, ...), `task_id`, `base_task`,
`task_vector`, and the reward terms `reward_task` (the task-dependent term), `reward_ctrl` and, for Ant
and Humanoid, `reward_contact`, `reward_survive` (AntDir/HumanoidDir only): they sum to the dense reward.
The sparse families add `reward_dense` and return `sparsify(dense, R)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv

from envs.mujoco_base import MujocoMetaEnv
from envs.rewards import sparsify
from envs.tasks import Task, TaskDistribution, require_keys

TWO_PI = 2.0 * math.pi

StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


# ------------------------------------------------------------------------------------------------
# ranges
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A real interval whose ends may be open, so that train and OOD ranges can be exactly disjoint."""

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = True

    def __contains__(self, x: float) -> bool:
        above = self.low < x or (self.low_closed and x == self.low)
        below = x < self.high or (self.high_closed and x == self.high)
        return above and below

    def __str__(self) -> str:
        lb = "[" if self.low_closed else "("
        rb = "]" if self.high_closed else ")"
        return f"{lb}{self.low:g}, {self.high:g}{rb}"


def check_intervals(name: str, value: float, intervals: Sequence[Interval]) -> str | None:
    """None if `value` lies in one of `intervals`, else a message naming the parameter and the ranges."""
    if any(value in iv for iv in intervals):
        return None
    return f"{name}={value:g} not in {' or '.join(str(iv) for iv in intervals)}"


def sample_union(rng: np.random.Generator, intervals: Sequence[Interval], power: int = 1) -> float:
    """One draw from the union of `intervals`, uniform in measure x**power / power.

    power=1: uniform in length (a velocity); power=2: uniform in area for a radius (a disc or annuli).
    Open ends are respected by redrawing the (measure-zero) boundary values.
    """
    lo = np.array([iv.low for iv in intervals], dtype=np.float64) ** power
    hi = np.array([iv.high for iv in intervals], dtype=np.float64) ** power
    weights = hi - lo
    while True:
        k = int(rng.choice(len(intervals), p=weights / weights.sum()))
        x = float((lo[k] + weights[k] * rng.random()) ** (1.0 / power))
        if x in intervals[k]:
            return x


# ------------------------------------------------------------------------------------------------
# task distributions
# ------------------------------------------------------------------------------------------------
class _RangeDistribution(TaskDistribution):
    """One continuous parameter `param` drawn per split from a union of intervals (`ranges[split]`)."""

    param: ClassVar[str] = "velocity"
    power: ClassVar[int] = 1
    ranges: ClassVar[dict[str, tuple[Interval, ...]]] = {}

    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        intervals = self.ranges[split]
        return [(self.bases[0], {self.param: sample_union(rng, intervals, self.power)}) for _ in range(n)]

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, [self.param])
        if why is not None:
            return why
        if split not in self.ranges:
            return f"{self.family} has no {split!r} range"
        return check_intervals(self.param, params[self.param], self.ranges[split])


class CheetahVelDistribution(_RangeDistribution):
    """Goal velocity (m/s) U(0, 3); task_vector = [velocity]."""

    family = "CheetahVel"
    task_dim = 1
    n_tasks = {"train": 100, "test": 30, "ood": 0}
    param = "velocity"
    ranges = {"train": (Interval(0.0, 3.0),), "test": (Interval(0.0, 3.0),)}

    def task_vector(self, task: Task) -> np.ndarray:
        return np.array([task.params["velocity"]], dtype=np.float32)


class CheetahVelOODDistribution(CheetahVelDistribution):
    """Train/test velocity U(1, 3); OOD velocity uniform on [0, 1) u (3, 4]."""

    family = "CheetahVelOOD"
    n_tasks = {"train": 100, "test": 30, "ood": 30}
    ranges = {
        "train": (Interval(1.0, 3.0),),
        "test": (Interval(1.0, 3.0),),
        "ood": (Interval(0.0, 1.0, high_closed=False), Interval(3.0, 4.0, low_closed=False)),
    }


class SparseCheetahVelDistribution(CheetahVelDistribution):
    """CheetahVel's tasks under the SparseCheetahVel family name."""

    family = "SparseCheetahVel"


class _DiscreteDirectionDistribution(TaskDistribution):
    """`direction` cycles through `values` (so every split of >= 2 tasks holds each direction)."""

    values: ClassVar[tuple[float, ...]] = ()
    value_names: ClassVar[str] = ""
    n_tasks = {"train": 2, "test": 2, "ood": 0}

    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        return [(self.bases[0], {"direction": self.values[i % len(self.values)]}) for i in range(n)]

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, ["direction"])
        if why is not None:
            return why
        if split == "ood":
            return f"{self.family} has no 'ood' range"
        if params["direction"] not in self.values:
            return f"direction={params['direction']:g} not in {self.value_names}"
        return None


class CheetahDirDistribution(_DiscreteDirectionDistribution):
    """direction in {+1, -1} (forward/backward); task_vector = [direction]."""

    family = "CheetahDir"
    task_dim = 1
    values = (1.0, -1.0)
    value_names = "{1, -1}"

    def task_vector(self, task: Task) -> np.ndarray:
        return np.array([task.params["direction"]], dtype=np.float32)


class AntDirDistribution(_DiscreteDirectionDistribution):
    """direction (rad) in {0, pi}; task_vector = [cos, sin] of it."""

    family = "AntDir"
    task_dim = 2
    values = (0.0, math.pi)
    value_names = "{0, pi}"

    def task_vector(self, task: Task) -> np.ndarray:
        a = task.params["direction"]
        return np.array([math.cos(a), math.sin(a)], dtype=np.float32)


class SparseAntDirDistribution(AntDirDistribution):
    """AntDir's tasks under the SparseAntDir family name."""

    family = "SparseAntDir"


class HumanoidDirDistribution(_RangeDistribution):
    """direction (rad) U(0, 2pi); task_vector = [cos, sin] of it."""

    family = "HumanoidDir"
    task_dim = 2
    n_tasks = {"train": 100, "test": 30, "ood": 0}
    param = "direction"
    ranges = {
        "train": (Interval(0.0, TWO_PI, high_closed=False),),
        "test": (Interval(0.0, TWO_PI, high_closed=False),),
    }

    def task_vector(self, task: Task) -> np.ndarray:
        a = task.params["direction"]
        return np.array([math.cos(a), math.sin(a)], dtype=np.float32)


class AntGoalDistribution(TaskDistribution):
    """Goal at `radius` (m) and `angle` (rad): angle U(0, 2pi), radius uniform by area on `radius_ranges`.

    task_vector = [goal_x, goal_y] (m).
    """

    family = "AntGoal"
    task_dim = 2
    n_tasks = {"train": 150, "test": 30, "ood": 0}
    angle_range: ClassVar[Interval] = Interval(0.0, TWO_PI, high_closed=False)
    radius_ranges: ClassVar[dict[str, tuple[Interval, ...]]] = {
        "train": (Interval(0.0, 3.0),),
        "test": (Interval(0.0, 3.0),),
    }

    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        radii = self.radius_ranges[split]
        out = []
        for _ in range(n):
            angle = sample_union(rng, (self.angle_range,))
            out.append((self.bases[0], {"angle": angle, "radius": sample_union(rng, radii, power=2)}))
        return out

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, ["angle", "radius"])
        if why is not None:
            return why
        if split not in self.radius_ranges:
            return f"{self.family} has no {split!r} range"
        return check_intervals("angle", params["angle"], (self.angle_range,)) or check_intervals(
            "radius", params["radius"], self.radius_ranges[split]
        )

    @staticmethod
    def goal(task: Task) -> tuple[float, float]:
        """The goal position (x, y) in metres."""
        a, r = task.params["angle"], task.params["radius"]
        return r * math.cos(a), r * math.sin(a)

    def task_vector(self, task: Task) -> np.ndarray:
        return np.array(self.goal(task), dtype=np.float32)


class AntGoalOODDistribution(AntGoalDistribution):
    """Train/test radius in [1, 2.5]; OOD radius in [0, 1) u (2.5, 3.5] (uniform by area)."""

    family = "AntGoalOOD"
    n_tasks = {"train": 150, "test": 30, "ood": 30}
    radius_ranges = {
        "train": (Interval(1.0, 2.5),),
        "test": (Interval(1.0, 2.5),),
        "ood": (Interval(0.0, 1.0, high_closed=False), Interval(2.5, 3.5, low_closed=False)),
    }


# ------------------------------------------------------------------------------------------------
# envs
# ------------------------------------------------------------------------------------------------
class CheetahVelEnv(MujocoMetaEnv, HalfCheetahEnv):
    """HalfCheetah running at a goal velocity: r = -|v_x - v_goal| - 0.05 |a|^2 (v in m/s)."""

    distribution_cls = CheetahVelDistribution
    default_base_kwargs = {"ctrl_cost_weight": 0.05}

    def _apply_task(self, task: Task) -> None:
        self._goal_velocity = float(task.params["velocity"])

    def step(self, action: np.ndarray) -> StepResult:
        obs, _, terminated, truncated, info = super().step(action)
        task_term = -abs(float(info["x_velocity"]) - self._goal_velocity)
        ctrl = float(info["reward_ctrl"])
        del info["reward_forward"]
        info.update(self.task_info(), reward_task=task_term, reward_ctrl=ctrl)
        return obs, task_term + ctrl, terminated, truncated, info


class CheetahVelOODEnv(CheetahVelEnv):
    """CheetahVel with train velocities in [1, 3] and OOD velocities in [0, 1) u (3, 4]."""

    distribution_cls = CheetahVelOODDistribution


class _SparseReward:
    """Mixin, before a dense family: the FOCAL++ sparse reward sparsify(dense, threshold), the dense one
    kept in info["reward_dense"]."""

    threshold: ClassVar[float]

    def step(self, action: np.ndarray) -> StepResult:
        obs, dense, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        info["reward_dense"] = dense
        return obs, sparsify(dense, self.threshold), terminated, truncated, info


class SparseCheetahVelEnv(_SparseReward, CheetahVelEnv):
    """CheetahVel with the FOCAL++ sparse reward: sparsify(dense, R), R = -0.1."""

    distribution_cls = SparseCheetahVelDistribution
    threshold: ClassVar[float] = -0.1


class CheetahDirEnv(MujocoMetaEnv, HalfCheetahEnv):
    """HalfCheetah running forward (+1) or backward (-1): r = direction * v_x - ctrl."""

    distribution_cls = CheetahDirDistribution

    def _apply_task(self, task: Task) -> None:
        self._direction = float(task.params["direction"])

    def step(self, action: np.ndarray) -> StepResult:
        obs, _, terminated, truncated, info = super().step(action)
        task_term = self._forward_reward_weight * self._direction * float(info["x_velocity"])
        ctrl = float(info["reward_ctrl"])
        del info["reward_forward"]
        info.update(self.task_info(), reward_task=task_term, reward_ctrl=ctrl)
        return obs, task_term + ctrl, terminated, truncated, info


class _DirectionalRunEnv(MujocoMetaEnv):
    """Run along an angle: r = w * v_xy . (cos, sin)(direction) - ctrl - contact + healthy (Ant, Humanoid)."""

    def _apply_task(self, task: Task) -> None:
        a = task.params["direction"]
        self._dir_xy = (math.cos(a), math.sin(a))

    def step(self, action: np.ndarray) -> StepResult:
        obs, _, terminated, truncated, info = super().step(action)
        cx, cy = self._dir_xy
        task_term = self._forward_reward_weight * (
            float(info["x_velocity"]) * cx + float(info["y_velocity"]) * cy
        )
        ctrl, contact, survive = (
            float(info["reward_ctrl"]),
            float(info["reward_contact"]),
            float(info["reward_survive"]),
        )
        del info["reward_forward"]
        info.update(
            self.task_info(),
            reward_task=task_term,
            reward_ctrl=ctrl,
            reward_contact=contact,
            reward_survive=survive,
        )
        return obs, task_term + ctrl + contact + survive, terminated, truncated, info


class AntDirEnv(_DirectionalRunEnv, AntEnv):
    """Ant running along an angle: r = v_xy . (cos, sin)(direction) - ctrl - contact + healthy."""

    distribution_cls = AntDirDistribution
    default_base_kwargs = {"include_cfrc_ext_in_observation": False}


class SparseAntDirEnv(_SparseReward, AntDirEnv):
    """AntDir with the FOCAL++ sparse reward: sparsify(dense, R), R = 3."""

    distribution_cls = SparseAntDirDistribution
    threshold: ClassVar[float] = 3.0


class AntGoalEnv(MujocoMetaEnv, AntEnv):
    """Ant walking to a goal position: r = -(|x - gx| + |y - gy|) - ctrl - contact (positions in m)."""

    distribution_cls = AntGoalDistribution
    default_base_kwargs = {
        "include_cfrc_ext_in_observation": False,
        "exclude_current_positions_from_observation": False,
        "terminate_when_unhealthy": False,
    }

    def _apply_task(self, task: Task) -> None:
        self._goal = AntGoalDistribution.goal(task)

    def step(self, action: np.ndarray) -> StepResult:
        obs, _, terminated, truncated, info = super().step(action)
        gx, gy = self._goal
        task_term = -(abs(float(info["x_position"]) - gx) + abs(float(info["y_position"]) - gy))
        ctrl, contact = float(info["reward_ctrl"]), float(info["reward_contact"])
        del info["reward_forward"], info["reward_survive"]
        info.update(self.task_info(), reward_task=task_term, reward_ctrl=ctrl, reward_contact=contact)
        return obs, task_term + ctrl + contact, terminated, truncated, info


class AntGoalOODEnv(AntGoalEnv):
    """AntGoal with train goal radii in [1, 2.5] and OOD radii in [0, 1) u (2.5, 3.5]."""

    distribution_cls = AntGoalOODDistribution


class HumanoidDirEnv(_DirectionalRunEnv, HumanoidEnv):
    """Humanoid running along an angle: r = 1.25 v_com . (cos, sin)(direction) - ctrl - contact + healthy."""

    distribution_cls = HumanoidDirDistribution
    default_base_kwargs = {"include_cfrc_ext_in_observation": False}
