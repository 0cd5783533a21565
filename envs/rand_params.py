"""Walker2d / Hopper with randomised dynamics (the PEARL "rand-params" families).

A task scales the MuJoCo model per element (as the ProMP/PEARL `rand_param_envs` did, on the full arrays):

| model field     | scale              | param keys                          |
|-----------------|--------------------|-------------------------------------|
| `body_mass`     | 1.5 ** e, e~U(-3,3) | `mass_{body}`                       |
| `body_inertia`  | 1.5 ** e           | `inertia_{body}_{axis}`              |
| `dof_damping`   | 1.3 ** e           | `damping_{dof}`                      |
| `geom_friction` | 1.5 ** e           | `friction_{geom}_{k}` (k: slide, spin, roll) |

The params are the log-scale exponents e; `task_vector` is all of them (float32) in the order of the table,
each field flattened row-major: Walker2d 8 + 24 + 9 + 24 = 65 dims, Hopper 5 + 15 + 6 + 15 = 41 dims. Some
elements have no effect (the world body's zero mass/inertia, the root joints' zero damping, spin/roll
friction under condim 3) but are kept so that the distribution matches the reference code.

The scaled values are written in place into `env.unwrapped.model` as `default * scale`, from the
defaults saved at construction, so switching tasks never compounds; derived model constants
(`body_subtreemass`, `*_invweight0`) are not recomputed (as in the reference code). Reward, termination and
observation are the base env's. 40 train / 10 test tasks, no OOD split.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from envs.locomotion import StepResult
from envs.mujoco_base import MujocoMetaEnv
from envs.tasks import Task, TaskDistribution, check_range, require_keys

# (model field, param prefix, scale base), in task-vector order
FIELDS: tuple[tuple[str, str, float], ...] = (
    ("body_mass", "mass", 1.5),
    ("body_inertia", "inertia", 1.5),
    ("dof_damping", "damping", 1.3),
    ("geom_friction", "friction", 1.5),
)
LOG_SCALE_LIMIT = 3.0

Shapes = dict[str, tuple[int, ...]]


def param_keys(shapes: Shapes) -> list[str]:
    """Flat param names in task-vector order, e.g. `mass_0`, `inertia_0_0`, ..., `friction_4_2`."""
    keys: list[str] = []
    for field, prefix, _ in FIELDS:
        for idx in np.ndindex(*shapes[field]):
            keys.append(prefix + "".join(f"_{i}" for i in idx))
    return keys


class RandParamsDistribution(TaskDistribution):
    """Log-scale exponents e ~ U(-3, 3) per model element; `shapes` gives each field's array shape."""

    n_tasks = {"train": 40, "test": 10, "ood": 0}
    default_shapes: ClassVar[Shapes] = {}

    def __init__(self, seed: int = 0, shapes: Shapes | None = None, **overrides: int) -> None:
        super().__init__(seed, **overrides)
        self.shapes: Shapes = {f: tuple(s) for f, s in (shapes or self.default_shapes).items()}
        self.keys = param_keys(self.shapes)
        self.task_dim = len(self.keys)

    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        exps = rng.uniform(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT, size=(n, self.task_dim))
        return [(self.bases[0], dict(zip(self.keys, row.tolist(), strict=True))) for row in exps]

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, self.keys)
        if why is not None:
            return why
        if split == "ood":
            return f"{self.family} has no 'ood' range"
        for k in self.keys:
            why = check_range(k, params[k], -LOG_SCALE_LIMIT, LOG_SCALE_LIMIT)
            if why is not None:
                return why
        return None

    def exponents(self, task: Task) -> dict[str, np.ndarray]:
        """The exponents per model field as float64 arrays of the field's shape."""
        flat = np.array([task.params[k] for k in self.keys], dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        start = 0
        for field, _, _ in FIELDS:
            shape = self.shapes[field]
            size = int(np.prod(shape))
            out[field] = flat[start : start + size].reshape(shape)
            start += size
        return out

    def scales(self, task: Task) -> dict[str, np.ndarray]:
        """The multipliers per model field (base ** exponent), float64 arrays of the field's shape."""
        exps = self.exponents(task)
        return {field: np.power(base, exps[field]) for field, _, base in FIELDS}

    def task_vector(self, task: Task) -> np.ndarray:
        return np.array([task.params[k] for k in self.keys], dtype=np.float32)


class WalkerRandParamsDistribution(RandParamsDistribution):
    """Walker2d-v5's model shapes (8 bodies, 9 dofs, 8 geoms): 65 exponents."""

    family = "WalkerRandParams"
    default_shapes = {"body_mass": (8,), "body_inertia": (8, 3), "dof_damping": (9,), "geom_friction": (8, 3)}
    task_dim = 65


class HopperRandParamsDistribution(RandParamsDistribution):
    """Hopper-v5's model shapes (5 bodies, 6 dofs, 5 geoms): 41 exponents."""

    family = "HopperRandParams"
    default_shapes = {"body_mass": (5,), "body_inertia": (5, 3), "dof_damping": (6,), "geom_friction": (5, 3)}
    task_dim = 41


class _RandParamsMixin(MujocoMetaEnv):
    """Saves the default model arrays and writes `default * scale` for each task."""

    distribution: RandParamsDistribution
    default_params: dict[str, np.ndarray]

    def _on_model_loaded(self) -> None:
        self.default_params = {field: getattr(self.model, field).copy() for field, _, _ in FIELDS}

    def _make_distribution(self, task_seed: int) -> TaskDistribution:
        shapes = {field: tuple(arr.shape) for field, arr in self.default_params.items()}
        return self.distribution_cls(seed=task_seed, shapes=shapes)  # type: ignore[call-arg]

    def _apply_task(self, task: Task) -> None:
        for field, scale in self.distribution.scales(task).items():
            np.multiply(self.default_params[field], scale, out=getattr(self.model, field))

    def step(self, action: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        info.update(
            self.task_info(),
            reward_forward=float(info["reward_forward"]),
            reward_ctrl=float(info["reward_ctrl"]),
            reward_survive=float(info["reward_survive"]),
        )
        return obs, float(reward), terminated, truncated, info


class WalkerRandParamsEnv(_RandParamsMixin, Walker2dEnv):
    """Walker2d-v5 with per-task body mass, inertia, joint damping and friction; the base reward."""

    distribution_cls = WalkerRandParamsDistribution


class HopperRandParamsEnv(_RandParamsMixin, HopperEnv):
    """Hopper-v5 with per-task body mass, inertia, joint damping and friction; the base reward."""

    distribution_cls = HopperRandParamsDistribution
