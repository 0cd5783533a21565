"""Point-robot families: API conformance, reward formulas on constructed states, task sets, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.point_robot import (
    PointRobotDistribution,
    PointRobotEnv,
    PointRobotWindDistribution,
    PointRobotWindEnv,
    SparsePointRobotDistribution,
    SparsePointRobotEnv,
)
from envs.tasks import Task, TaskError

IDS = ["PointRobot", "SparsePointRobot", "PointRobotWind"]
DISTRIBUTIONS = {
    "PointRobot": PointRobotDistribution,
    "SparsePointRobot": SparsePointRobotDistribution,
    "PointRobotWind": PointRobotWindDistribution,
}
SIZES = {"PointRobot": (80, 20), "SparsePointRobot": (80, 20), "PointRobotWind": (40, 10)}


@pytest.mark.filterwarnings("ignore::UserWarning")  # infinite observation bounds, non-unit action box
@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str) -> None:
    env = envs.make(env_id)
    check_env(env.unwrapped)
    assert env.spec is not None and env.spec.max_episode_steps == 20


@pytest.mark.parametrize("env_id", IDS)
def test_episode_is_20_steps_and_observation_is_position(env_id: str) -> None:
    env = envs.make(env_id)
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (2,)
    assert info["task_id"] == f"{env_id}/train/0"
    for t in range(20):
        prev = obs
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, -1.0], dtype=np.float32))
        assert not terminated
        assert truncated == (t == 19)
        wind = env.unwrapped.wind
        np.testing.assert_allclose(obs - prev, np.array([0.1, -0.1]) + wind, atol=1e-6)  # clipped to 0.1
        assert "reward_dense" in info


def test_start_positions() -> None:
    starts = np.array([envs.make("PointRobot").reset(seed=s)[0] for s in range(200)])
    assert np.all(np.abs(starts) <= 1.0) and starts.min() < -0.8 and starts.max() > 0.8
    assert len({tuple(s) for s in starts}) == 200
    np.testing.assert_array_equal(
        envs.make("PointRobot").reset(seed=7)[0], envs.make("PointRobot").reset(seed=7)[0]
    )
    for env_id in ("SparsePointRobot", "PointRobotWind"):
        np.testing.assert_array_equal(envs.make(env_id).reset(seed=5)[0], np.zeros(2, np.float32))


# -- rewards on constructed states ------------------------------------------------------------------------
def _step_at(env: PointRobotEnv, position: tuple[float, float]) -> tuple[float, dict]:
    env.reset(seed=0)
    env.set_position(position)
    _, reward, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    return float(reward), info


def test_dense_reward_is_negative_distance() -> None:
    env = PointRobotEnv(task_index=4)
    gx, gy = env.goal
    reward, info = _step_at(env, (gx + 0.3, gy - 0.4))
    assert reward == pytest.approx(-0.5)
    assert info["reward_dense"] == pytest.approx(-0.5)
    assert _step_at(env, (gx, gy))[0] == pytest.approx(0.0)
    np.testing.assert_allclose(info["task_vector"], [gx, gy], rtol=1e-6)


@pytest.mark.parametrize(
    ("offset", "focal", "pearl"),
    [
        (0.0, 1.0, 1.0),  # at the goal
        (0.05, 0.75, 0.95),  # inside R = 0.2: focal (r + R)/R, pearl 1 + r
        (0.15, 0.25, 0.85),
        (0.25, 0.0, 0.0),  # outside: both 0
        (1.5, 0.0, 0.0),
    ],
)
def test_sparse_reward_variants(offset: float, focal: float, pearl: float) -> None:
    for variant, expected in (("focal", focal), ("pearl", pearl)):
        env = SparsePointRobotEnv(task_index=2, sparse=variant)
        gx, gy = env.goal
        reward, info = _step_at(env, (gx, gy + offset))
        assert reward == pytest.approx(expected, abs=1e-9), variant
        assert info["reward_sparse"] == pytest.approx(expected, abs=1e-9)
        assert info["reward_dense"] == pytest.approx(-offset) and info["dense_reward"] == pytest.approx(
            -offset
        )


def test_sparse_goal_radius_is_config() -> None:
    env = SparsePointRobotEnv(goal_radius=0.06)
    gx, gy = env.goal
    assert _step_at(env, (gx + 0.03, gy))[0] == pytest.approx(0.5)  # (-0.03 + 0.06) / 0.06
    assert _step_at(env, (gx + 0.1, gy))[0] == 0.0  # inside 0.2, outside 0.06
    default = envs.make("SparsePointRobot").unwrapped
    assert default.goal_radius == 0.2 and default.sparse == "focal"
    with pytest.raises(ValueError, match="sparse variant 'shaped'"):
        SparsePointRobotEnv(sparse="shaped")
    # the dense variant (what per-task behaviour agents learn under) pays -d everywhere
    dense = SparsePointRobotEnv(sparse="dense")
    dx, dy = dense.goal
    reward, info = _step_at(dense, (dx + 0.5, dy))
    assert reward == pytest.approx(-0.5) and "reward_sparse" not in info
    with pytest.raises(ValueError, match="goal_radius"):
        SparsePointRobotEnv(goal_radius=-0.1)


def test_wind_displaces_every_step() -> None:
    env = PointRobotWindEnv(task_index=3)
    wx, wy = env.wind
    assert (wx, wy) != (0.0, 0.0) and max(abs(wx), abs(wy)) <= 0.05
    np.testing.assert_array_equal(env.goal, [1.0, 0.0])
    env.reset(seed=0)
    env.set_position((0.5, 0.5))
    obs, reward, *_ = env.step(np.array([0.05, -0.2], dtype=np.float32))
    x, y = 0.5 + 0.05 + wx, 0.5 - 0.1 + wy
    np.testing.assert_allclose(obs, [x, y], rtol=1e-6)
    assert reward == pytest.approx(-math.hypot(x - 1.0, y))
    # all winds of a split differ, and the goal is the same for every task
    winds = {tuple(env.distribution.task_vector(t)) for t in env.tasks("train")}
    assert len(winds) == 40


def test_bad_action_raises() -> None:
    env = PointRobotEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError):
        env.step(np.zeros(3))


def test_render_rgb_array() -> None:
    env = envs.make("SparsePointRobot", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert np.any(np.all(img == (220, 40, 40), axis=-1)) and np.any(np.all(img == (60, 180, 75), axis=-1))
    with pytest.raises(ValueError, match="render_mode 'human'"):
        PointRobotEnv(render_mode="human")


# -- task sets --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_task_sets(env_id: str) -> None:
    dist = DISTRIBUTIONS[env_id](seed=11)
    train, test = dist.tasks("train"), dist.tasks("test")
    assert (len(train), len(test)) == SIZES[env_id]
    assert dist.tasks("ood") == []
    vecs_train = {tuple(dist.task_vector(t)) for t in train}
    vecs_test = {tuple(dist.task_vector(t)) for t in test}
    assert len(vecs_train) == len(train) and len(vecs_test) == len(test)
    assert not vecs_train & vecs_test
    assert all(dist.task_vector(t).dtype == np.float32 and dist.task_vector(t).shape == (2,) for t in train)
    for t in train + test:
        dist.validate(t)  # every sampled task is inside its own range
    # same seed, same tasks; another seed, other tasks
    assert DISTRIBUTIONS[env_id](seed=11).tasks("train") == train
    assert DISTRIBUTIONS[env_id](seed=12).tasks("train") != train
    env = envs.make(env_id, seed=11, split="test")
    assert env.unwrapped.tasks() == test


def test_point_robot_goal_range() -> None:
    goals = np.array(
        [PointRobotDistribution(seed=0).task_vector(t) for t in PointRobotDistribution(0).tasks()]
    )
    assert np.all(np.abs(goals) <= 1.0) and goals.min() < -0.8 and goals.max() > 0.8


def test_sparse_goals_cover_the_semicircle_evenly() -> None:
    dist = SparsePointRobotDistribution(seed=4)
    tasks = dist.tasks("train") + dist.tasks("test")
    goals = np.array([dist.task_vector(t) for t in tasks], dtype=np.float64)
    np.testing.assert_allclose(np.hypot(goals[:, 0], goals[:, 1]), 1.0, atol=1e-6)
    angles = np.sort(np.arctan2(goals[:, 1], goals[:, 0]))
    np.testing.assert_allclose(angles, np.linspace(0, np.pi, 100), atol=1e-6)
    # shuffled: the test goals are not one contiguous arc
    test_angles = np.sort([math.atan2(t.params["goal_y"], t.params["goal_x"]) for t in dist.tasks("test")])
    assert test_angles[-1] - test_angles[0] > np.pi / 2
    other = SparsePointRobotDistribution(seed=5)
    assert {t.params["goal_x"] for t in other.tasks("test")} != {
        t.params["goal_x"] for t in dist.tasks("test")
    }


def test_overrides_change_split_sizes() -> None:
    env = envs.make("SparsePointRobot", n_train=8, n_test=2)
    assert len(env.unwrapped.tasks("train")) == 8 and len(env.unwrapped.tasks("test")) == 2
    with pytest.raises(TaskError, match="unknown override"):
        PointRobotEnv(n_val=3)


def test_task_selection_at_reset() -> None:
    env = envs.make("PointRobot")
    _, info = env.reset(seed=0, options={"task_index": 5})
    assert info["task_id"] == "PointRobot/train/5"
    task = env.unwrapped.distribution.make_task(goal_x=0.5, goal_y=-0.5)
    _, info = env.reset(options={"task": task})
    np.testing.assert_allclose(info["task_vector"], [0.5, -0.5])
    _, reward, *_ = env.step(np.zeros(2))
    assert reward == pytest.approx(-float(np.linalg.norm(env.unwrapped.position - [0.5, -0.5])))


# -- bad input --------------------------------------------------------------------------------------------
def test_task_of_another_family_raises() -> None:
    env = PointRobotEnv()
    wind_task = PointRobotWindEnv().task
    with pytest.raises(TaskError, match="family 'PointRobotWind'"):
        env.set_task(wind_task)
    with pytest.raises(TaskError, match="family"):
        env.reset(options={"task": wind_task})


@pytest.mark.parametrize(
    ("dist_cls", "params", "problem"),
    [
        (PointRobotDistribution, {"goal_x": 1.5, "goal_y": 0.0}, "goal_x=1.5 not in"),
        (PointRobotDistribution, {"goal_x": 0.0, "goal_y": -2.0}, "goal_y=-2 not in"),
        (PointRobotDistribution, {"goal_x": 0.0}, "expected parameters"),
        (SparsePointRobotDistribution, {"goal_x": 0.5, "goal_y": 0.5}, "radius"),
        (SparsePointRobotDistribution, {"goal_x": 0.6, "goal_y": -0.8}, "upper semicircle"),
        (PointRobotWindDistribution, {"wind_x": 0.06, "wind_y": 0.0}, "wind_x=0.06 not in"),
        (PointRobotWindDistribution, {"goal_x": 0.0, "goal_y": 0.0}, "expected parameters"),
        (PointRobotDistribution, {"goal_x": math.nan, "goal_y": 0.0}, "not finite"),
    ],
)
def test_out_of_range_params_raise(dist_cls: type, params: dict, problem: str) -> None:
    dist = dist_cls(seed=0)
    with pytest.raises(TaskError, match=problem):
        dist.make_task(**params)
    task = Task(family=dist.family, base="default", params=params, split="train", index=-1)
    env_cls = {PointRobotDistribution: PointRobotEnv, SparsePointRobotDistribution: SparsePointRobotEnv}.get(
        dist_cls, PointRobotWindEnv
    )
    with pytest.raises(TaskError, match=problem):
        env_cls().set_task(task)


def test_sparse_goal_on_semicircle_accepted() -> None:
    task = SparsePointRobotDistribution().make_task(goal_x=math.cos(1.0), goal_y=math.sin(1.0))
    env = SparsePointRobotEnv()
    env.set_task(task)
    np.testing.assert_allclose(env.goal, [math.cos(1.0), math.sin(1.0)])


def test_unknown_base_raises() -> None:
    with pytest.raises(TaskError, match="unknown base task 'velocity'"):
        PointRobotDistribution().make_task(base="velocity", goal_x=0.0, goal_y=0.0)


def test_unknown_split_raises() -> None:
    with pytest.raises(TaskError, match="unknown split 'validation'"):
        PointRobotEnv(split="validation")
    with pytest.raises(TaskError, match="unknown split 'dev'"):
        envs.make("PointRobotWind", split="dev")
    with pytest.raises(TaskError, match="unknown split"):
        SparsePointRobotDistribution().tasks("valid")


def test_ood_split_is_empty_and_refused() -> None:
    with pytest.raises(TaskError, match="has no tasks"):
        PointRobotEnv(split="ood")
    with pytest.raises(TaskError, match="no OOD range"):
        PointRobotDistribution().make_task(split="ood", goal_x=0.0, goal_y=0.0)
    with pytest.raises(TaskError, match="no OOD range"):
        PointRobotWindDistribution(n_ood=3).tasks("ood")


def test_unknown_env_id_raises() -> None:
    with pytest.raises(TaskError, match="unknown env id 'PointRobott'"):
        envs.make("PointRobott")


def test_task_index_out_of_range_raises() -> None:
    env = envs.make("PointRobotWind")
    with pytest.raises(TaskError, match="task_index 40 out of range"):
        env.reset(options={"task_index": 40})
