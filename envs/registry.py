"""Every task family, registered with gymnasium, and `make` (the one way the rest of the code builds envs).

Ids are the task family names (e.g. `CheetahVel`, `ML1-push`). `make` adds the wrappers a run asks
for (non-stationary switching, a longer horizon) and raises a clear error on an unknown id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from envs.tasks import TaskError


@dataclass(frozen=True)
class FamilySpec:
    id: str
    entry_point: str
    max_episode_steps: int
    kwargs: dict[str, Any] = field(default_factory=dict)


FAMILIES: dict[str, FamilySpec] = {
    s.id: s
    for s in [
        FamilySpec("PointRobot", "envs.point_robot:PointRobotEnv", 20),
        FamilySpec("SparsePointRobot", "envs.point_robot:SparsePointRobotEnv", 20),
        FamilySpec("PointRobotWind", "envs.point_robot:PointRobotWindEnv", 20),
        FamilySpec("CheetahVel", "envs.locomotion:CheetahVelEnv", 200),
        FamilySpec("CheetahDir", "envs.locomotion:CheetahDirEnv", 200),
        FamilySpec("AntDir", "envs.locomotion:AntDirEnv", 200),
        FamilySpec("AntGoal", "envs.locomotion:AntGoalEnv", 200),
        FamilySpec("HumanoidDir", "envs.locomotion:HumanoidDirEnv", 200),
        FamilySpec("CheetahVelOOD", "envs.locomotion:CheetahVelOODEnv", 200),
        FamilySpec("AntGoalOOD", "envs.locomotion:AntGoalOODEnv", 200),
        FamilySpec("SparseCheetahVel", "envs.locomotion:SparseCheetahVelEnv", 200),
        FamilySpec("SparseAntDir", "envs.locomotion:SparseAntDirEnv", 200),
        FamilySpec("WalkerRandParams", "envs.rand_params:WalkerRandParamsEnv", 200),
        FamilySpec("HopperRandParams", "envs.rand_params:HopperRandParamsEnv", 200),
        FamilySpec("CheetahMultiTask", "envs.multitask:CheetahMultiTaskEnv", 200),
        FamilySpec("AntMultiTask", "envs.multitask:AntMultiTaskEnv", 200),
        FamilySpec("ML1-reach", "envs.metaworld_ml1:ML1Env", 200, {"env_name": "reach-v3"}),
        FamilySpec("ML1-push", "envs.metaworld_ml1:ML1Env", 200, {"env_name": "push-v3"}),
        FamilySpec("ML1-pick-place", "envs.metaworld_ml1:ML1Env", 200, {"env_name": "pick-place-v3"}),
    ]
}


def register_all() -> None:
    """Register every family with gymnasium (idempotent)."""
    for spec in FAMILIES.values():
        if spec.id not in gym.registry:
            gym.register(
                id=spec.id,
                entry_point=spec.entry_point,
                max_episode_steps=spec.max_episode_steps,
                kwargs=dict(spec.kwargs),
            )


def make(
    env_id: str,
    split: str = "train",
    seed: int = 0,
    nonstationary: str | None = None,
    max_episode_steps: int | None = None,
    nonstationary_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> gym.Env:
    """Build family `env_id` on `split` with task seed `seed`.

    `nonstationary` ("periodic" or "hazard") wraps it in `NonStationary`; `max_episode_steps` overrides
    the family's horizon. Extra kwargs go to the env constructor.
    """
    if env_id not in FAMILIES:
        raise TaskError(f"unknown env id {env_id!r}; known ids: {', '.join(FAMILIES)}")
    register_all()
    env = gym.make(env_id, split=split, task_seed=seed, max_episode_steps=max_episode_steps, **kwargs)
    if nonstationary is not None:
        from envs.wrappers import NonStationary

        env = NonStationary(env, mode=nonstationary, **(nonstationary_kwargs or {}))
    return env
