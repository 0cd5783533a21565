"""Per-task behaviour datasets (FOCAL's recipe): one SAC agent per task, recorded along its training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from agents.config import CollectConfig, EnvConfig, PerTaskBehaviourConfig
from agents.training.behaviour import per_task_dataset

# three goals at angles 0, pi/2, pi of the unit semicircle: two training tasks, one test task
ENV = EnvConfig(id="SparsePointRobot", kwargs={"n_train": 2, "n_test": 1})


def settings(checkpoints: list[int], episodes: int = 6) -> PerTaskBehaviourConfig:
    return PerTaskBehaviourConfig(
        learn_env_kwargs={"sparse": "dense"},
        checkpoints=checkpoints,
        episodes_per_checkpoint=episodes,
        episodes_per_epoch=5,
        initial_steps=100,
        sac={"hidden": [32, 32], "gamma": 0.9, "alpha": 0.05, "batch_size": 64, "lr": 1e-3},
    )


def test_each_task_gets_its_own_agent_that_learns_its_own_goal() -> None:
    torch.set_num_threads(1)
    ds = per_task_dataset(ENV, "train", settings([0, 1200], episodes=8), seed=0)
    assert ds.meta["levels"] == ["sac_0", "sac_1200"] and ds.meta["behaviour"] == "per-task SAC"
    assert ds.meta["horizon"] == 20 and len(ds) == 2 * 2 * 8
    for task in (0, 1):
        for level in (0, 1):
            assert ((ds.task == task) & (ds.level == level)).sum() == 8
    # the episodes carry the dataset env's reward (FOCAL's sparse one, in [0, 1]), not the dense one learned on
    assert ds.reward.min() >= 0.0 and ds.reward.max() <= 1.0
    goals = {t: ds.task_vector[ds.task == t][0] for t in (0, 1)}
    assert np.linalg.norm(goals[0] - goals[1]) > 1.0  # two different goals of the semicircle
    for task, other in ((0, 1), (1, 0)):
        end = ds.next_obs[(ds.task == task) & (ds.level == 1), -1]  # where the trained agent's episodes end
        start = ds.next_obs[(ds.task == task) & (ds.level == 0), -1]  # and the untrained one's
        own = np.linalg.norm(end - goals[task], axis=1).mean()
        assert own < 0.5 < np.linalg.norm(end - goals[other], axis=1).mean()
        assert own < np.linalg.norm(start - goals[task], axis=1).mean()
    # the trained level scores more than the random one
    rets = ds.reward.sum(1)
    assert rets[ds.level == 1].mean() > rets[ds.level == 0].mean() + 1.0


def test_the_same_seed_gives_the_same_dataset() -> None:
    torch.set_num_threads(1)
    a = per_task_dataset(ENV, "test", settings([0, 200], episodes=3), seed=3)
    b = per_task_dataset(ENV, "test", settings([0, 200], episodes=3), seed=3)
    c = per_task_dataset(ENV, "test", settings([0, 200], episodes=3), seed=4)
    for k in ("obs", "action", "reward", "next_obs", "task", "level"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.action, c.action)


def test_collect_configs_take_one_recipe(tmp_path: Path) -> None:
    base = {"env": {"id": "PointRobotWind"}, "out": str(tmp_path)}
    per_task = {"checkpoints": [0, 100], "episodes_per_checkpoint": 2}
    assert CollectConfig(**base, per_task=per_task).per_task.checkpoints == [0, 100]
    with pytest.raises(ValidationError, match="exactly one"):
        CollectConfig(**base)
    with pytest.raises(ValidationError, match="exactly one"):
        CollectConfig(**base, per_task=per_task, levels={"a": {"noise": 0, "episodes_per_task": 1}})
    with pytest.raises(ValidationError, match="policy"):
        CollectConfig(**base, per_task=per_task, policy="oracle.pt")
    with pytest.raises(ValidationError, match="distinct"):
        PerTaskBehaviourConfig(checkpoints=[100, 100], episodes_per_checkpoint=1)
