"""ML1 adapter: reset/step, hidden goal, set_task, success, horizon, seeded goals, bad tasks."""

from __future__ import annotations

import metaworld
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.metaworld_ml1 import ML1Distribution, ML1Env
from envs.tasks import Task, TaskError

ENV_NAME = "reach-v3"
MW_TERMS = (
    "near_object",
    "grasp_success",
    "grasp_reward",
    "in_place_reward",
    "obj_to_target",
    "unscaled_reward",
)


@pytest.fixture(scope="module")
def env():  # noqa: ANN201
    e = envs.make("ML1-reach")  # TimeLimit 200 from the registry
    yield e
    e.close()


def test_reset_step_hidden_goal(env) -> None:  # noqa: ANN001
    u = env.unwrapped
    assert env.observation_space.shape == (39,) and env.observation_space.dtype == np.float64
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float64 and env.observation_space.contains(obs)
    assert u.metaworld_env._partially_observable
    np.testing.assert_array_equal(obs[-3:], 0.0)
    assert info["task_id"] == "ML1-reach/train/0" and info["base_task"] == ENV_NAME
    assert info["success"] == 0.0
    np.testing.assert_allclose(info["task_vector"], u.goal.astype(np.float32))
    for _ in range(5):
        obs, r, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        np.testing.assert_array_equal(obs[-3:], 0.0)
        assert isinstance(r, float) and not terminated and not truncated
        assert info["success"] in (0.0, 1.0)
        assert all(isinstance(info[k], float) for k in MW_TERMS)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_check_env(env) -> None:  # noqa: ANN001
    check_env(env.unwrapped, skip_render_check=True)


def test_reset_seed_deterministic(env) -> None:  # noqa: ANN001
    a, _ = env.reset(seed=3)
    env.step(np.ones(4, dtype=np.float32))
    b, _ = env.reset(seed=3)
    np.testing.assert_array_equal(a, b)


def test_set_task_changes_goal(env) -> None:  # noqa: ANN001
    u = env.unwrapped
    tasks = u.tasks()
    assert len(tasks) == 50
    goals = {}
    for i in (0, 7):
        _, info = env.reset(options={"task_index": i})
        goal = np.array([tasks[i].params[k] for k in ("goal_x", "goal_y", "goal_z")])
        np.testing.assert_allclose(u.metaworld_env._target_pos, goal)
        np.testing.assert_allclose(info["task_vector"], goal.astype(np.float32))
        assert info["task_id"] == tasks[i].id
        goals[i] = goal
    assert np.linalg.norm(goals[0] - goals[7]) > 1e-3
    # mid-episode: the goal moves at once
    u.set_task(tasks[0])
    np.testing.assert_allclose(u.metaworld_env._target_pos, goals[0])


def test_success_reported(env) -> None:  # noqa: ANN001
    """A scripted reach to the (hidden) goal succeeds; random actions do not report success."""
    obs, _ = env.reset(options={"task_index": 3})
    goal = env.unwrapped.goal
    successes = []
    for _ in range(120):
        a = np.zeros(4, dtype=np.float32)
        a[:3] = np.clip((goal - obs[:3]) * 10.0, -1.0, 1.0)
        obs, _, _, _, info = env.step(a)
        successes.append(info["success"])
    assert successes[0] == 0.0 and max(successes) == 1.0
    assert info["obj_to_target"] < 0.05


def test_truncation_then_reset(env) -> None:  # noqa: ANN001
    env.reset()
    truncated_at = [t for t in range(1, 201) if env.step(env.action_space.sample())[3]]
    assert truncated_at == [200]
    obs, _ = env.reset()
    assert env.observation_space.contains(obs)
    assert env.step(env.action_space.sample())[3] is False
    # past Meta-World's own 500-step limit: no exception (our horizon governs)
    u = env.unwrapped
    u.reset()
    for _ in range(520):
        u.step(u.action_space.sample())


def test_direct_construction_horizon() -> None:
    e = ML1Env(ENV_NAME, max_path_length=30)
    e.reset()
    flags = [e.step(e.action_space.sample())[3] for _ in range(30)]
    assert flags == [False] * 29 + [True]
    assert envs.make("ML1-reach", max_episode_steps=250).spec.max_episode_steps == 250


def test_same_seed_same_goals_and_splits_differ(env) -> None:  # noqa: ANN001
    dist = env.unwrapped.distribution
    # independent path: a fresh Meta-World benchmark with the same seed, goals read off its env
    ml1 = metaworld.ML1(ENV_NAME, seed=0)
    raw = ml1.train_classes[ENV_NAME]()
    for split, mw_tasks in (("train", ml1.train_tasks), ("test", ml1.test_tasks)):
        ours = dist.tasks(split)
        for i in (0, 1, 49):
            raw.set_task(mw_tasks[i])
            raw.reset()
            params = ours[i].params
            np.testing.assert_allclose(
                [params["goal_x"], params["goal_y"], params["goal_z"]], raw._target_pos
            )
    raw.close()
    train, test = dist.goals("train"), dist.goals("test")
    assert train.shape == test.shape == (50, 3)
    assert np.min(np.linalg.norm(train[:, None] - test[None], axis=-1)) > 1e-6  # disjoint
    other = ML1Distribution(ENV_NAME, seed=1)
    assert not np.allclose(other.goals("train"), train)


def test_bad_tasks(env) -> None:  # noqa: ANN001
    dist = env.unwrapped.distribution
    good = dist.tasks("train")[0].params
    with pytest.raises(TaskError, match="is not one of Meta-World's 50 train goals"):
        dist.make_task(goal_x=0.5, goal_y=0.5, goal_z=0.5)
    with pytest.raises(TaskError, match="is not one of Meta-World's 50 test goals"):
        dist.make_task(split="test", **good)  # a train goal is not a test task
    with pytest.raises(TaskError, match="expected parameters"):
        dist.make_task(goal_x=good["goal_x"], goal_y=good["goal_y"])
    with pytest.raises(TaskError, match="unknown base task"):
        dist.make_task("push-v3", **good)
    with pytest.raises(TaskError, match="no 'ood' split"):
        env.unwrapped.set_task(Task(family="ML1-reach", base=ENV_NAME, params=good, split="ood", index=0))
    with pytest.raises(TaskError, match="unknown Meta-World env"):
        ML1Distribution("reach-v9")
    # a hand-made task with a known goal maps to that Meta-World task
    hand = dist.make_task(**dist.tasks("train")[5].params)
    assert dist.metaworld_task(hand) is dist.metaworld_tasks("train")[5]
