"""CheetahMultiTask and AntMultiTask: API, splits, task vectors, per-base rewards, bad input."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.multitask import (
    AntMultiTaskDistribution,
    AntMultiTaskEnv,
    CheetahMultiTaskDistribution,
    CheetahMultiTaskEnv,
)
from envs.tasks import Task, TaskError

IDS = ["CheetahMultiTask", "AntMultiTask"]
DISTS = {"CheetahMultiTask": CheetahMultiTaskDistribution, "AntMultiTask": AntMultiTaskDistribution}
SIZES = {"CheetahMultiTask": (80, 40), "AntMultiTask": (90, 45)}


@pytest.fixture(scope="module")
def cheetah() -> CheetahMultiTaskEnv:
    env = envs.make("CheetahMultiTask").unwrapped
    env.reset(seed=0)
    return env


@pytest.fixture(scope="module")
def ant() -> AntMultiTaskEnv:
    env = envs.make("AntMultiTask").unwrapped
    env.reset(seed=0)
    return env


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str) -> None:
    env = envs.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == ((17,) if env_id == "CheetahMultiTask" else (27,))
    assert info["task_id"] == f"{env_id}/train/0"


@pytest.mark.parametrize("env_id", IDS)
def test_splits_even_grid_every_base_in_both(env_id: str) -> None:
    dist = DISTS[env_id](seed=3)
    n_train, n_test = SIZES[env_id]
    train, test = dist.tasks("train"), dist.tasks("test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert dist.tasks("ood") == []
    n_bases = len(dist.bases)
    for base in dist.bases:
        tr = sorted(t.params["spec"] for t in train if t.base == base)
        te = sorted(t.params["spec"] for t in test if t.base == base)
        assert len(tr) == n_train // n_bases and len(te) == n_test // n_bases, base
        assert not set(tr) & set(te), base
        lo, hi = dist.ranges[base]
        np.testing.assert_allclose(sorted(tr + te), np.linspace(lo, hi, len(tr) + len(te)))
    assert [t.index for t in train] == list(range(n_train))
    # the split lists are shuffled, not grouped by base
    assert len({t.base for t in train[:n_bases]}) > 1


@pytest.mark.parametrize("env_id", IDS)
def test_seeded(env_id: str) -> None:
    a, b, c = DISTS[env_id](seed=0), DISTS[env_id](seed=0), DISTS[env_id](seed=1)
    assert a.tasks("train") == b.tasks("train") and a.tasks("test") == b.tasks("test")
    pairs = {(t.base, t.params["spec"]) for t in a.tasks("train")}
    assert pairs != {(t.base, t.params["spec"]) for t in c.tasks("train")}


@pytest.mark.parametrize("env_id", IDS)
def test_task_vector_one_hot(env_id: str) -> None:
    env = envs.make(env_id, split="test", seed=2)
    dist = env.unwrapped.distribution
    n_bases = len(dist.bases)
    assert env.unwrapped.task_dim == n_bases + 1
    for task in dist.tasks("test"):
        v = dist.task_vector(task)
        assert v.dtype == np.float32 and v.shape == (n_bases + 1,)
        expected = np.zeros(n_bases, dtype=np.float32)
        expected[dist.bases.index(task.base)] = 1.0
        np.testing.assert_array_equal(v[:n_bases], expected)
        assert v[-1] == np.float32(task.params["spec"])
    task = dist.tasks("test")[7]
    _, info = env.reset(seed=0, options={"task_index": 7})
    assert info["task_id"] == task.id and info["base_task"] == task.base
    np.testing.assert_array_equal(info["task_vector"], dist.task_vector(task))
    _, _, _, _, info = env.step(env.action_space.sample())
    np.testing.assert_array_equal(info["task_vector"], dist.task_vector(task))


PI = math.pi
# base, spec, {qpos index: value}, {qvel index: value}, x_velocity, expected task reward
CHEETAH_CASES = [
    ("velocity_forward", 2.0, {}, {}, 3.0, -0.5),
    ("velocity_backward", -4.0, {}, {}, -1.0, -0.75),
    ("goal_forward", 10.0, {0: 7.0}, {}, 0.0, -0.3),
    ("goal_backward", -20.0, {0: -25.0}, {}, 0.0, -0.25),
    ("flip_forward", 3 * PI, {}, {2: 1.5 * PI}, 0.0, -0.5),
    ("stand_front", PI / 3, {2: PI / 6}, {}, 0.0, -0.5),
    ("stand_back", -PI / 2, {2: 0.0}, {}, 0.0, -1.0),
    ("jump", 2.0, {}, {1: -3.0}, 0.0, -0.5),
    ("jump", 2.0, {}, {1: 2.0}, 0.0, 0.0),
]


@pytest.mark.parametrize(("base", "spec", "qpos", "qvel", "vx", "expected"), CHEETAH_CASES)
def test_cheetah_task_reward(cheetah, base, spec, qpos, qvel, vx, expected) -> None:  # noqa: ANN001
    cheetah.set_task(cheetah.distribution.make_task(base, spec=spec))
    q, v = np.zeros(cheetah.model.nq), np.zeros(cheetah.model.nv)
    for i, x in qpos.items():
        q[i] = x
    for i, x in qvel.items():
        v[i] = x
    cheetah.set_state(q, v)
    assert cheetah.task_reward(x_velocity=vx) == pytest.approx(expected, abs=1e-12)


# base, spec, qpos xy, qvel z, (v_x, v_y), expected task reward
ANT_CASES = [
    ("velocity_right", 2.0, (0.0, 0.0), 0.0, (1.0, 1.0), -0.5),
    ("velocity_left", 2.0, (0.0, 0.0), 0.0, (-2.0, 0.0), 0.0),
    ("velocity_up", 1.0, (0.0, 0.0), 0.0, (0.0, 3.0), -4.0),
    ("velocity_down", 3.0, (0.0, 0.0), 0.0, (0.0, -1.5), -0.25),
    ("goal_right", 10.0, (5.0, 0.0), 0.0, (0.0, 0.0), -0.25),
    ("goal_left", 10.0, (-10.0, 5.0), 0.0, (0.0, 0.0), -0.25),
    ("goal_up", 5.0, (0.0, 5.0), 0.0, (3.0, 0.0), 0.0),
    ("goal_down", 5.0, (0.0, 0.0), 0.0, (0.0, 0.0), -1.0),
    ("jump", 1.0, (0.0, 0.0), -1.5, (0.0, 0.0), -0.25),
]


@pytest.mark.parametrize(("base", "spec", "xy", "vz", "vxy", "expected"), ANT_CASES)
def test_ant_task_reward(ant, base, spec, xy, vz, vxy, expected) -> None:  # noqa: ANN001
    ant.set_task(ant.distribution.make_task(base, spec=spec))
    q, v = ant.init_qpos.copy(), np.zeros(ant.model.nv)
    q[0:2] = xy
    v[2] = vz
    ant.set_state(q, v)
    assert ant.task_reward(*vxy) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("env_id", IDS)
def test_step_reward_is_task_plus_ctrl(env_id: str) -> None:
    env = envs.make(env_id)
    env.reset(seed=1)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    for task in u.tasks()[:12]:  # covers several bases
        u.set_task(task)  # mid-episode switch takes effect at once
        a = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        _, r, terminated, _, info = env.step(a)
        assert not terminated
        assert info["base_task"] == task.base
        assert info["reward_ctrl"] == pytest.approx(-0.05 * float(np.sum(a.astype(np.float64) ** 2)))
        assert info["reward_task"] == pytest.approx(
            u.task_reward(info["x_velocity"], info.get("y_velocity", 0.0))
        )
        assert info["reward_task"] <= 0.0
        assert r == pytest.approx(info["reward_task"] + info["reward_ctrl"])
        assert "reward_forward" not in info and "reward_survive" not in info
        if task.base.startswith("velocity_") and env_id == "CheetahMultiTask":
            s = task.params["spec"]
            assert info["reward_task"] == pytest.approx(-abs(info["x_velocity"] - s) / abs(s))


def test_ant_never_terminates_when_fallen(ant) -> None:  # noqa: ANN001
    q = ant.init_qpos.copy()
    q[2] = 0.1  # below the base env's healthy range (0.2, 1.0)
    ant.set_state(q, np.zeros(ant.model.nv))
    assert not ant.is_healthy
    _, _, terminated, truncated, _ = ant.step(np.zeros(8, dtype=np.float32))
    assert not terminated and not truncated


@pytest.mark.parametrize("env_id", IDS)
def test_bad_input_raises_task_error(env_id: str) -> None:
    env = envs.make(env_id).unwrapped
    dist = env.distribution
    base = dist.bases[0]
    lo, hi = dist.ranges[base]
    with pytest.raises(TaskError, match=rf"{base} spec={hi + 2:g} not in \[{lo:g}, {hi:g}\]"):
        dist.make_task(base, spec=hi + 2)
    with pytest.raises(TaskError, match="unknown base task 'velocity'"):
        dist.make_task("velocity", spec=lo)
    with pytest.raises(TaskError, match="expected parameters"):
        dist.make_task(base, velocity=lo)
    with pytest.raises(TaskError, match="expected parameters"):
        dist.make_task(base, spec=lo, extra=1.0)
    with pytest.raises(TaskError, match="no ood range"):
        dist.make_task(base, split="ood", spec=lo)
    bad = Task(family=dist.family, base=base, params={"spec": hi + 2}, split="train", index=0)
    with pytest.raises(TaskError, match="out of range"):
        env.set_task(bad)
    with pytest.raises(TaskError, match="out of range"):
        env.reset(options={"task": bad})
    other = "AntMultiTask" if env_id == "CheetahMultiTask" else "CheetahMultiTask"
    with pytest.raises(TaskError, match=f"of family '{other}'"):
        env.set_task(DISTS[other]().tasks("train")[0])
    with pytest.raises(TaskError, match="task_index 999 out of range"):
        env.reset(options={"task_index": 999})
    with pytest.raises(TaskError, match="split 'ood' has no tasks"):
        envs.make(env_id, split="ood")
    with pytest.raises(TaskError, match="unknown split"):
        envs.make(env_id, split="validation")


def test_sign_conventions(cheetah) -> None:  # noqa: ANN001
    """Positive pitch (stand_front) puts the cheetah's nose below its tail."""
    q = np.zeros(cheetah.model.nq)
    q[2] = PI / 3
    cheetah.set_state(q, np.zeros(cheetah.model.nv))
    head_z = cheetah.data.geom("head").xpos[2]
    tail_z = cheetah.data.body("bthigh").xpos[2]
    assert head_z < tail_z


def test_pickle_round_trip() -> None:
    env = CheetahMultiTaskEnv(split="test", task_seed=4, task_index=3)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.task == env.task and clone.split == "test"
    assert clone._ctrl_cost_weight == 0.05
