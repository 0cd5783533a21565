"""Point-robot families: PointRobot (dense), SparsePointRobot and PointRobotWind.

A point in the plane moves by the clipped action each step: `position += clip(action, -0.1, 0.1)` (plus the
task's wind for PointRobotWind). The observation is the position, float32 of shape (2,); the dense reward is
`-||position - goal||` (plane units). Episodes are cut by gymnasium's TimeLimit (horizon 20 in the
registry); the envs never terminate on their own. numpy only, so they step in a few microseconds.

None of the point-robot families has an OOD range: their `ood` split is empty.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.base import MetaEnv
from envs.rewards import sparsify
from envs.tasks import Task, TaskDistribution, TaskError, check_range, require_keys

MAX_ACTION = 0.1
"""Per-axis bound of the action (the displacement per step, plane units)."""

_GOAL_KEYS = ("goal_x", "goal_y")
_WIND_KEYS = ("wind_x", "wind_y")


def _no_ood(family: str) -> str:
    return f"{family} has no OOD range (its ood split is empty)"


# ----------------------------------------------------------------------------------------------------------
# distributions
# ----------------------------------------------------------------------------------------------------------
class _UniformSquareDistribution(TaskDistribution):
    """Two parameters `keys`, each uniform in [low, high]; no OOD split. Task vector: the two, in order."""

    keys: ClassVar[tuple[str, str]]
    low: ClassVar[float]
    high: ClassVar[float]

    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        if split == "ood":
            raise TaskError(_no_ood(self.family))
        values = rng.uniform(self.low, self.high, size=(n, 2))
        return [("default", {self.keys[0]: float(x), self.keys[1]: float(y)}) for x, y in values]

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, self.keys)
        if why is not None:
            return why
        if split == "ood":
            return _no_ood(self.family)
        kx, ky = self.keys
        return check_range(kx, params[kx], self.low, self.high) or check_range(
            ky, params[ky], self.low, self.high
        )

    def task_vector(self, task: Task) -> np.ndarray:
        return np.array([task.params[k] for k in self.keys], dtype=np.float32)


class PointRobotDistribution(_UniformSquareDistribution):
    """Goals uniform in [-1, 1]^2; 80 train / 20 test, no OOD split. Task vector: (goal_x, goal_y)."""

    family = "PointRobot"
    task_dim = 2
    n_tasks = {"train": 80, "test": 20, "ood": 0}
    keys = _GOAL_KEYS
    low, high = -1.0, 1.0


class SparsePointRobotDistribution(TaskDistribution):
    """Goals evenly on the upper unit semicircle; 80 train / 20 test, no OOD split.

    The `n_train + n_test` goals sit at angles `linspace(0, pi, n_train + n_test)` (both ends included,
    as in PEARL's code) and are shuffled into the two splits by the seed, so the splits are disjoint and
    together cover the semicircle evenly. Task vector: (goal_x, goal_y).
    """

    family = "SparsePointRobot"
    task_dim = 2
    n_tasks = {"train": 80, "test": 20, "ood": 0}
    tolerance: ClassVar[float] = 1e-6
    """How far from the upper unit semicircle a goal may lie (radius and height, plane units)."""

    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        if split == "ood":
            raise TaskError(_no_ood(self.family))
        n_train, n_test = self.n_tasks["train"], self.n_tasks["test"]
        total = n_train + n_test
        angles = np.linspace(0.0, np.pi, total)
        # one permutation shared by both splits (not the per-split rng), so train and test partition the grid
        order = np.random.default_rng([self.seed, 0x5B0]).permutation(total)
        chosen = order[:n_train] if split == "train" else order[n_train:total]
        return [
            ("default", {"goal_x": float(np.cos(angles[i])), "goal_y": float(np.sin(angles[i]))})
            for i in chosen
        ]

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, _GOAL_KEYS)
        if why is not None:
            return why
        if split == "ood":
            return _no_ood(self.family)
        x, y = params["goal_x"], params["goal_y"]
        radius = math.hypot(x, y)
        if abs(radius - 1.0) > self.tolerance:
            return f"goal ({x:g}, {y:g}) has radius {radius:g}, expected 1 (the unit semicircle)"
        if y < -self.tolerance:
            return f"goal ({x:g}, {y:g}) has goal_y < 0, expected the upper semicircle"
        return None

    def task_vector(self, task: Task) -> np.ndarray:
        return np.array([task.params["goal_x"], task.params["goal_y"]], dtype=np.float32)


class PointRobotWindDistribution(_UniformSquareDistribution):
    """Per-task wind uniform in [-0.05, 0.05]^2 (plane units per step); 40 train / 10 test, no OOD split.

    Task vector: (wind_x, wind_y). The goal is (1, 0) for every task.
    """

    family = "PointRobotWind"
    task_dim = 2
    n_tasks = {"train": 40, "test": 10, "ood": 0}
    keys = _WIND_KEYS
    low, high = -0.05, 0.05


# ----------------------------------------------------------------------------------------------------------
# envs
# ----------------------------------------------------------------------------------------------------------
class _PointRobotBase(MetaEnv, gym.Env[np.ndarray, np.ndarray]):
    """Shared dynamics, spaces and rendering; subclasses set the distribution, goal/wind, start and reward.

    `family_kwargs` are split-size overrides for the distribution (`n_train`, `n_test`); any other name
    raises TaskError.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    distribution_cls: ClassVar[type[TaskDistribution]]
    render_size: ClassVar[int] = 128
    """Side of the rendered image (pixels); it shows the square [-2, 2]^2 of the plane."""
    render_extent: ClassVar[float] = 2.0

    def __init__(self, split: str = "train", task_seed: int = 0, task_index: int = 0, render_mode: str | None = None,
                 **family_kwargs: int) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"{type(self).__name__}: unsupported render_mode {render_mode!r} "
                f"(expected None or one of {self.metadata['render_modes']})"
            )
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32)
        # the state as python floats (plane units): cheaper than 2-element arrays in `step`
        self._goal_xy: tuple[float, float] = (0.0, 0.0)
        self._wind_xy: tuple[float, float] = (0.0, 0.0)
        self._x, self._y = 0.0, 0.0
        self._init_meta(self.distribution_cls(seed=task_seed, **family_kwargs), split, task_index)

    # -- what a family changes ------------------------------------------------------------------
    def _start(self) -> tuple[float, float]:
        """Start position (x, y); default the origin."""
        return 0.0, 0.0

    def reward_terms(self, position: np.ndarray | tuple[float, float]) -> tuple[float, dict[str, float]]:
        """(reward, named reward terms) at `position` (2,); default the dense `-||position - goal||`."""
        gx, gy = self._goal_xy
        dense = -math.hypot(float(position[0]) - gx, float(position[1]) - gy)
        return dense, {"dense": dense}

    # -- state -----------------------------------------------------------------------------------
    @property
    def goal(self) -> np.ndarray:
        """The current goal, float64 (2,)."""
        return np.array(self._goal_xy, dtype=np.float64)

    @property
    def wind(self) -> np.ndarray:
        """The displacement added to every step, float64 (2,) (zero except for PointRobotWind)."""
        return np.array(self._wind_xy, dtype=np.float64)

    @property
    def position(self) -> np.ndarray:
        """The current position, float64 (2,)."""
        return np.array((self._x, self._y), dtype=np.float64)

    def set_position(self, position: np.ndarray | tuple[float, float]) -> None:
        """Teleport the robot to `position` (2,), e.g. to evaluate the reward at a constructed state."""
        pos = np.asarray(position, dtype=np.float64)
        if pos.shape != (2,) or not np.all(np.isfinite(pos)):
            raise ValueError(f"{type(self).__name__}: position must be 2 finite numbers, got {position!r}")
        self._x, self._y = float(pos[0]), float(pos[1])

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the position; `options` may pick the task (`{"task": Task}` or `{"task_index": i}`)."""
        super().reset(seed=seed)
        self._select_task(options)
        self._x, self._y = self._start()
        return np.array((self._x, self._y), dtype=np.float32), self.task_info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move by the clipped action (+ wind); reward at the new position; never terminates."""
        # python floats: about 3x faster than numpy ops on 2-element arrays
        if isinstance(action, np.ndarray) and action.shape == (2,):
            ax, ay = action.tolist()
        else:  # lists, tuples, (1, 2) arrays; raises on the wrong number of elements
            ax, ay = np.asarray(action, dtype=np.float64).reshape(2).tolist()
        if not (math.isfinite(ax) and math.isfinite(ay)):
            raise ValueError(f"{type(self).__name__}: action must be finite, got {action!r}")
        x = self._x + min(max(ax, -MAX_ACTION), MAX_ACTION) + self._wind_xy[0]
        y = self._y + min(max(ay, -MAX_ACTION), MAX_ACTION) + self._wind_xy[1]
        self._x, self._y = x, y
        reward, terms = self.reward_terms((x, y))
        return np.array((x, y), dtype=np.float32), reward, False, False, self.task_info(**terms)

    def render(self) -> np.ndarray | None:
        """rgb_array: uint8 (size, size, 3) image of [-2, 2]^2 with the goal (green) and the robot (red)."""
        if self.render_mode != "rgb_array":
            return None
        size, ext = self.render_size, self.render_extent
        img = np.full((size, size, 3), 255, dtype=np.uint8)
        coords = (np.arange(size) + 0.5) / size * 2 * ext - ext  # pixel centres in plane units
        xs, ys = coords[None, :], -coords[:, None]  # row 0 is the top (largest y)
        on_axis = np.abs(coords) < ext / size
        img[on_axis, :] = 200  # x axis (rows where y = 0)
        img[:, on_axis] = 200  # y axis (columns where x = 0)
        goal_r = max(self._render_goal_radius(), 2 * ext / size)
        gx, gy = self._goal_xy
        img[(xs - gx) ** 2 + (ys - gy) ** 2 <= goal_r**2] = (60, 180, 75)
        robot_r = 3 * ext / size
        img[(xs - self._x) ** 2 + (ys - self._y) ** 2 <= robot_r**2] = (220, 40, 40)
        return img

    def _render_goal_radius(self) -> float:
        return 0.05


class PointRobotEnv(_PointRobotBase):
    """PointRobot: goal uniform in [-1, 1]^2, start uniform in [-1, 1]^2, dense reward `-||xy - goal||`.

    info: `task_id`, `base_task`, `task_vector`, `reward_dense`.
    """

    distribution_cls = PointRobotDistribution

    def _apply_task(self, task: Task) -> None:
        self._goal_xy = (task.params["goal_x"], task.params["goal_y"])

    def _start(self) -> tuple[float, float]:
        x, y = self.np_random.uniform(-1.0, 1.0, size=2).tolist()
        return x, y


class SparsePointRobotEnv(_PointRobotBase):
    """SparsePointRobot: goal on the upper unit semicircle, start at the origin, sparse reward.

    With the dense reward `r = -||xy - goal||` and radius `R = goal_radius`:
    - `sparse="focal"` (FOCAL++, default): `(r + R) / R` if `r >= -R` else 0 (`envs.rewards.sparsify(r, -R)`);
    - `sparse="pearl"` (PEARL): `1 + r` if `r >= -R` else 0;
    - `sparse="dense"`: `r` itself (what FOCAL's per-task behaviour policies learn under).
    The two sparse ones lie in [0, 1] and are 1 at the goal. R: FOCAL++'s text says 0.2 (the default), its Table D.2 0.06.
    info: `reward_dense`, `dense_reward` (= `reward_dense`, as `SparseReward` reports it) and, under the two
    sparse variants, `reward_sparse`.
    """

    distribution_cls = SparsePointRobotDistribution
    sparse_variants: ClassVar[tuple[str, ...]] = ("focal", "pearl", "dense")

    def __init__(
        self, split: str = "train", task_seed: int = 0, task_index: int = 0, render_mode: str | None = None,
        sparse: str = "focal", goal_radius: float = 0.2, **family_kwargs: int,
    ) -> None:
        if sparse not in self.sparse_variants:
            raise ValueError(
                f"SparsePointRobot: unknown sparse variant {sparse!r} (expected 'focal', 'pearl' or 'dense')"
            )
        if not (math.isfinite(goal_radius) and goal_radius > 0):
            raise ValueError(f"SparsePointRobot: goal_radius must be a positive number, got {goal_radius!r}")
        self.sparse = sparse
        self.goal_radius = float(goal_radius)
        super().__init__(split, task_seed, task_index, render_mode, **family_kwargs)

    def _apply_task(self, task: Task) -> None:
        self._goal_xy = (task.params["goal_x"], task.params["goal_y"])

    def reward_terms(self, position: np.ndarray | tuple[float, float]) -> tuple[float, dict[str, float]]:
        dense, _ = super().reward_terms(position)
        R = self.goal_radius
        if self.sparse == "focal":
            sparse = sparsify(dense, -R)
        elif self.sparse == "pearl":
            sparse = 1.0 + dense if dense >= -R else 0.0
        else:
            return dense, {"dense": dense}
        return sparse, {"dense": dense, "sparse": sparse}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["dense_reward"] = info["reward_dense"]
        return obs, reward, terminated, truncated, info

    def _render_goal_radius(self) -> float:
        return self.goal_radius


class PointRobotWindEnv(_PointRobotBase):
    """PointRobotWind: goal (1, 0) for every task, per-task wind added to every step, start at the origin.

    Dense reward `-||xy - goal||`. info: `task_id`, `base_task`, `task_vector`, `reward_dense`.
    """

    distribution_cls = PointRobotWindDistribution
    GOAL: ClassVar[tuple[float, float]] = (1.0, 0.0)

    def _apply_task(self, task: Task) -> None:
        self._goal_xy = self.GOAL
        self._wind_xy = (task.params["wind_x"], task.params["wind_y"])
