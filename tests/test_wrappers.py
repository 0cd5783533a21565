"""NonStationary and SparseReward wrappers."""

from __future__ import annotations

from itertools import pairwise

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.rewards import sparsify
from envs.wrappers import NonStationary, SparseReward

ZERO = np.zeros(2, dtype=np.float32)


def _run(env: gym.Env, steps: int, seed: int | None = 0) -> list[dict]:
    """Reset (with `seed`) and step `steps` times; the switch dicts seen in info."""
    env.reset(seed=seed)
    seen = []
    for _ in range(steps):
        *_, info = env.step(ZERO)
        if "task_switch" in info:
            seen.append(info["task_switch"])
    return seen


def _ns(mode: str = "periodic", steps: int = 200, **kw) -> NonStationary:
    return envs.make("PointRobot", nonstationary=mode, max_episode_steps=steps, nonstationary_kwargs=kw)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mode", ["periodic", "hazard"])
def test_check_env_nonstationary(mode: str) -> None:
    check_env(_ns(mode, interval=3, p=1.0))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_check_env_sparse_reward() -> None:
    check_env(SparseReward(envs.make("PointRobot"), threshold=-0.5))


def test_periodic_p1_switches_at_every_multiple() -> None:
    env = _ns(interval=7, p=1.0, steps=50)
    switches = _run(env, 50)
    assert [s["step"] for s in switches] == [7, 14, 21, 28, 35, 42, 49]
    assert env.switches == switches
    for prev, cur in pairwise(switches):
        assert cur["old"] == prev["new"] and cur["old"] != cur["new"]
    assert switches[0]["old"] == "PointRobot/train/0"
    assert all(s["new"].startswith("PointRobot/train/") for s in switches)


def test_switch_takes_effect_from_its_step() -> None:
    env = _ns(interval=5, p=1.0, steps=20)
    env.reset(seed=1)
    ids = []
    for _ in range(11):
        *_, info = env.step(ZERO)
        ids.append(info["task_id"])
    assert len(set(ids[:5])) == 1 and ids[5] != ids[4] and len(set(ids[5:10])) == 1 and ids[10] != ids[9]
    # the reward of the switch step is the new task's: goal from the info's task vector
    env.reset(seed=2)
    for _ in range(5):
        env.step(ZERO)
    obs, reward, _, _, info = env.step(ZERO)
    assert "task_switch" in info
    assert reward == pytest.approx(-float(np.linalg.norm(obs - info["task_vector"])), abs=1e-6)
    np.testing.assert_allclose(env.unwrapped.goal, info["task_vector"], rtol=1e-6)


def test_p0_never_switches() -> None:
    for mode in ("periodic", "hazard"):
        env = _ns(mode, interval=1, p=0.0)
        assert _run(env, 200) == []
        assert env.unwrapped.task.id == "PointRobot/train/0"


def test_periodic_switches_only_on_the_grid_and_sometimes() -> None:
    env = _ns(interval=10, p=0.5, steps=1000)
    switches = _run(env, 1000, seed=3)
    assert all(s["step"] % 10 == 0 and s["step"] > 0 for s in switches)
    assert 20 <= len(switches) <= 80  # 99 draws at p = 0.5


def test_same_seed_same_schedule() -> None:
    for mode in ("periodic", "hazard"):
        a = _run(_ns(mode, interval=4, p=0.5, steps=200), 200, seed=42)
        b = _run(_ns(mode, interval=4, p=0.5, steps=200), 200, seed=42)
        c = _run(_ns(mode, interval=4, p=0.5, steps=200), 200, seed=43)
        assert a == b and len(a) > 5
        assert a != c


def test_constructor_seed_and_continued_generator() -> None:
    a = _ns(interval=2, p=0.5, seed=9)
    b = _ns(interval=2, p=0.5, seed=9)
    first_a, first_b = _run(a, 100, seed=None), _run(b, 100, seed=None)
    assert first_a == first_b
    # a reset without a seed continues the generator: the next episode's schedule is a new one
    second_a = _run(a, 100, seed=None)
    assert [s["step"] for s in second_a] != [s["step"] for s in first_a]


def test_hazard_respects_min_dwell() -> None:
    env = _ns("hazard", interval=100, p=0.5, min_dwell=8, steps=2000)
    switches = _run(env, 2000, seed=5)
    steps = [s["step"] for s in switches]
    assert steps[0] >= 8
    assert all(b - a >= 8 for a, b in pairwise(steps))
    # unpredictable: not all on one grid; and some switch soon after the dwell
    assert len({s % 8 for s in steps}) > 1
    assert any(b - a <= 10 for a, b in pairwise(steps))


def test_hazard_p1_switches_right_after_each_dwell() -> None:
    env = _ns("hazard", interval=6, p=1.0, steps=40)
    assert [s["step"] for s in _run(env, 40)] == [6, 12, 18, 24, 30, 36]
    env = _ns("hazard", interval=100, p=1.0, min_dwell=3, steps=12)
    assert [s["step"] for s in _run(env, 12)] == [3, 6, 9]


def test_switches_reset_per_episode() -> None:
    env = _ns(interval=5, p=1.0, steps=12)
    assert len(_run(env, 12)) == 2
    env.reset(seed=0)
    assert env.switches == [] and env.steps == 0
    env.step(ZERO)
    assert env.steps == 1


def test_switch_stays_in_split() -> None:
    env = envs.make(
        "PointRobotWind",
        split="test",
        nonstationary="periodic",
        max_episode_steps=100,
        nonstationary_kwargs={"interval": 1, "p": 1.0},
    )
    switches = _run(env, 100)
    assert len(switches) == 99
    assert all(s["new"].startswith("PointRobotWind/test/") for s in switches)
    assert len({s["new"] for s in switches}) == 10  # draws across the whole split


def test_single_task_split_never_switches() -> None:
    env = envs.make(
        "PointRobot",
        n_train=1,
        nonstationary="periodic",
        max_episode_steps=30,
        nonstationary_kwargs={"interval": 2, "p": 1.0},
    )
    assert _run(env, 30) == []


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"mode": "sometimes"}, "mode 'sometimes'"),
        ({"interval": 0}, "interval must be a positive integer, got 0"),
        ({"interval": 2.5}, "interval must be a positive integer, got 2.5"),
        ({"p": 1.5}, "p must be a probability in \\[0, 1\\], got 1.5"),
        ({"p": -0.1}, "got -0.1"),
        ({"mode": "hazard", "min_dwell": 0}, "min_dwell must be a positive integer or None, got 0"),
    ],
)
def test_nonstationary_bad_arguments(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        NonStationary(envs.make("PointRobot"), **kwargs)


def test_nonstationary_needs_a_family_env() -> None:
    with pytest.raises(TypeError, match="MetaEnv"):
        NonStationary(gym.make("CartPole-v1"))


def test_sparse_reward_wrapper() -> None:
    env = SparseReward(envs.make("PointRobot"), threshold=-0.3)
    env.reset(seed=0)
    u = env.unwrapped
    gx, gy = u.goal
    for offset, expected in ((0.0, 1.0), (0.15, 0.5), (0.3, 0.0), (0.9, 0.0)):
        u.set_position((gx - offset, gy))
        _, reward, _, _, info = env.step(ZERO)
        assert reward == pytest.approx(expected, abs=1e-9)
        assert info["dense_reward"] == pytest.approx(-offset)
        assert reward == sparsify(info["dense_reward"], -0.3)
    for bad in (0, 0.0, float("nan"), "x"):
        with pytest.raises(ValueError, match="threshold"):
            SparseReward(envs.make("PointRobot"), threshold=bad)
