"""Locomotion families: gymnasium API, reward formulas on constructed states, task sets and ranges."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.locomotion import (
    AntDirDistribution,
    AntGoalDistribution,
    AntGoalOODDistribution,
    CheetahDirDistribution,
    CheetahVelDistribution,
    CheetahVelOODDistribution,
    HumanoidDirDistribution,
    Interval,
    check_intervals,
    sample_union,
)
from envs.rewards import sparsify
from envs.tasks import TaskError

LOCOMOTION_IDS = [
    "CheetahVel",
    "CheetahDir",
    "AntDir",
    "AntGoal",
    "HumanoidDir",
    "CheetahVelOOD",
    "AntGoalOOD",
    "SparseCheetahVel",
    "SparseAntDir",
]
DENSE_IDS = [i for i in LOCOMOTION_IDS if not i.startswith("Sparse")]


def _constructed(env, qpos_update=None, qvel_update=None, seed=0):
    """Reset `env`, then set a known state: init_qpos/init_qvel with the given entries replaced."""
    u = env.unwrapped
    env.reset(seed=seed)
    qpos, qvel = u.init_qpos.copy(), u.init_qvel.copy()
    for i, v in (qpos_update or {}).items():
        qpos[i] = v
    for i, v in (qvel_update or {}).items():
        qvel[i] = v
    u.set_state(qpos, qvel)
    return u


def _clipped_contact_cost(u) -> float:
    return 5e-4 * float(np.sum(np.square(np.clip(u.data.cfrc_ext, -1.0, 1.0))))


# ---------------------------------------------------------------------------------------------
# gymnasium API
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", LOCOMOTION_IDS)
def test_check_env(env_id):
    env = envs.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize(
    "env_id, obs_dim, task_dim",
    [
        ("CheetahVel", 17, 1),
        ("CheetahDir", 17, 1),
        ("AntDir", 27, 2),
        ("AntGoal", 29, 2),
        ("AntGoalOOD", 29, 2),
        ("SparseAntDir", 27, 2),
        ("HumanoidDir", 270, 2),
    ],
)
def test_observation_and_task_dims(env_id, obs_dim, task_dim):
    env = envs.make(env_id)
    obs, info = env.reset(seed=0)
    assert obs.shape == (obs_dim,)
    assert info["task_vector"].shape == (task_dim,) and info["task_vector"].dtype == np.float32
    assert env.unwrapped.task_dim == task_dim
    assert info["task_id"] == f"{env_id}/train/0"


@pytest.mark.parametrize("env_id", DENSE_IDS)
def test_reward_terms_sum_to_reward(env_id):
    env = envs.make(env_id)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, reward, terminated, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        assert "reward_forward" not in info
        terms = [v for k, v in info.items() if k.startswith("reward_")]
        assert isinstance(reward, float)
        assert reward == pytest.approx(sum(terms), abs=1e-12)
        assert info["task_id"] == env.unwrapped.task.id
        if terminated:
            break


# ---------------------------------------------------------------------------------------------
# reward formulas on constructed states
# ---------------------------------------------------------------------------------------------
def test_cheetah_vel_reward_at_known_velocity():
    env = envs.make("CheetahVel")
    task = env.unwrapped.distribution.make_task(velocity=1.5)
    env.reset(seed=0, options={"task": task})
    u = _constructed(env, qvel_update={0: 2.0})
    action = np.full(6, 0.5, dtype=np.float32)
    x0 = float(u.data.qpos[0])
    _, reward, terminated, _, info = env.step(action)
    v = (float(u.data.qpos[0]) - x0) / u.dt
    assert reward == pytest.approx(-abs(v - 1.5) - 0.05 * 6 * 0.25, abs=1e-6)
    assert info["reward_ctrl"] == pytest.approx(-0.075)
    assert info["reward_task"] == pytest.approx(-abs(v - 1.5), abs=1e-9)
    assert 1.5 < v < 2.5  # the constructed state really moves at about 2 m/s
    assert not terminated


def test_cheetah_dir_backward_rewards_negative_velocity():
    env = envs.make("CheetahDir")
    backward = next(t for t in env.unwrapped.tasks() if t.params["direction"] == -1.0)
    env.reset(seed=0, options={"task": backward})
    u = _constructed(env, qvel_update={0: 2.0})
    action = np.full(6, -0.3, dtype=np.float32)
    x0 = float(u.data.qpos[0])
    _, reward, _, _, _ = env.step(action)
    v = (float(u.data.qpos[0]) - x0) / u.dt
    assert v > 1.0
    assert reward == pytest.approx(-v - 0.1 * 6 * 0.09, abs=1e-6)


def test_ant_dir_reward_along_direction():
    env = envs.make("AntDir")
    u = env.unwrapped
    backward = u.distribution.make_task(direction=math.pi)
    env.reset(seed=0, options={"task": backward})
    _constructed(env, qvel_update={0: -1.0, 1: 0.5})
    action = np.full(8, 0.2, dtype=np.float32)
    xy0 = u.data.body(1).xpos[:2].copy()
    _, reward, terminated, _, info = env.step(action)
    vx, vy = (u.data.body(1).xpos[:2] - xy0) / u.dt
    along = vx * math.cos(math.pi) + vy * math.sin(math.pi)
    assert along > 0.5  # moving in -x is progress for direction pi
    expected = along - 0.5 * 8 * 0.04 - _clipped_contact_cost(u) + 1.0
    assert reward == pytest.approx(expected, abs=1e-6)  # the base env's ctrl cost is float32
    assert info["reward_survive"] == 1.0 and not terminated


def test_ant_goal_l1_distance():
    env = envs.make("AntGoal")
    u = env.unwrapped
    task = u.distribution.make_task(angle=math.pi / 2, radius=2.0)  # goal (0, 2)
    env.reset(seed=0, options={"task": task})
    gx, gy = u.distribution.goal(task)
    assert (gx, gy) == pytest.approx((0.0, 2.0), abs=1e-12)
    np.testing.assert_allclose(u.task_vector, [0.0, 2.0], atol=1e-6)
    _constructed(env, qpos_update={0: gx + 0.5, 1: gy - 0.25})
    _, reward, _, _, info = env.step(np.zeros(8, dtype=np.float32))
    x, y = u.data.qpos[0], u.data.qpos[1]
    l1 = abs(x - gx) + abs(y - gy)
    assert l1 == pytest.approx(0.75, abs=0.05)
    assert info["reward_task"] == pytest.approx(-l1, abs=1e-12)
    assert reward == pytest.approx(-l1 - _clipped_contact_cost(u), abs=1e-9)
    assert "reward_survive" not in info  # AntGoal pays no healthy bonus


def test_ant_termination_defaults():
    """AntDir keeps gymnasium's unhealthy termination; AntGoal does not terminate (PEARL ant-goal)."""
    for env_id, should_terminate in [("AntDir", True), ("AntGoal", False)]:
        env = envs.make(env_id)
        _constructed(env, qpos_update={2: 1.5})  # torso above healthy_z_range (0.2, 1.0)
        _, reward, terminated, _, info = env.step(np.zeros(8, dtype=np.float32))
        assert terminated is should_terminate, env_id
        if env_id == "AntDir":  # gymnasium v5: no healthy bonus on the unhealthy (terminal) step
            assert info["reward_survive"] == 0.0
            assert reward == pytest.approx(info["reward_task"] + info["reward_ctrl"] + info["reward_contact"])


def test_cheetah_never_terminates_when_flipped():
    env = envs.make("CheetahVel")
    _constructed(env, qpos_update={1: -0.5, 2: math.pi})
    for _ in range(20):
        assert not env.step(env.action_space.sample())[2]


def test_humanoid_dir_reward():
    env = envs.make("HumanoidDir")
    u = env.unwrapped
    task = u.distribution.make_task(direction=math.pi / 2)
    env.reset(seed=0, options={"task": task})
    _constructed(env, qvel_update={1: 1.0})

    def com():
        return (u.model.body_mass[:, None] * u.data.xipos).sum(0)[:2] / u.model.body_mass.sum()

    action = np.full(17, 0.1, dtype=np.float32)
    c0 = com()
    _, reward, terminated, _, info = env.step(action)
    vx, vy = (com() - c0) / u.dt
    assert vy > 0.5
    contact = min(5e-7 * float(np.sum(np.square(u.data.cfrc_ext))), 10.0)
    expected = 1.25 * vy - 0.1 * float(np.sum(np.square(u.data.ctrl))) - contact + 5.0
    assert reward == pytest.approx(expected, abs=1e-6)
    assert info["reward_survive"] == 5.0 and not terminated


def test_sparse_cheetah_vel_matches_sparsified_dense():
    dense_env, sparse_env = envs.make("CheetahVel"), envs.make("SparseCheetahVel")
    for qv, nonzero in [(1.5, True), (0.2, False)]:
        rewards = []
        for env in (dense_env, sparse_env):
            task = env.unwrapped.distribution.make_task(velocity=1.5)
            env.reset(seed=0, options={"task": task})
            _constructed(env, qvel_update={0: qv})
            rewards.append(env.step(np.zeros(6, dtype=np.float32))[1:])
        (dense, *_), (sparse, _, _, info) = rewards
        assert info["reward_dense"] == dense
        assert sparse == sparsify(dense, -0.1)
        assert (sparse > 0) is nonzero
        if nonzero:
            assert sparse == pytest.approx((dense + 0.1) / 0.1)


def test_sparse_ant_dir_matches_sparsified_dense():
    dense_env, sparse_env = envs.make("AntDir"), envs.make("SparseAntDir")
    for qv, nonzero in [(4.0, True), (0.5, False)]:
        out = []
        for env in (dense_env, sparse_env):
            env.reset(seed=0, options={"task": env.unwrapped.distribution.make_task(direction=0.0)})
            _constructed(env, qvel_update={0: qv})
            out.append(env.step(np.zeros(8, dtype=np.float32)))
        dense, sparse, info = out[0][1], out[1][1], out[1][4]
        assert info["reward_dense"] == pytest.approx(dense, abs=1e-12)
        assert sparse == pytest.approx(sparsify(dense, 3.0), abs=1e-12)
        assert (sparse > 0) is nonzero
        if nonzero:
            assert sparse == pytest.approx((dense - 3.0) / 3.0)


# ---------------------------------------------------------------------------------------------
# tasks: reproducibility, switching, ranges
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dist_cls, counts",
    [
        (CheetahVelDistribution, (100, 30, 0)),
        (CheetahDirDistribution, (2, 2, 0)),
        (AntDirDistribution, (2, 2, 0)),
        (AntGoalDistribution, (150, 30, 0)),
        (HumanoidDirDistribution, (100, 30, 0)),
        (CheetahVelOODDistribution, (100, 30, 30)),
        (AntGoalOODDistribution, (150, 30, 30)),
    ],
)
def test_same_seed_same_tasks(dist_cls, counts):
    a, b, c = dist_cls(seed=3), dist_cls(seed=3), dist_cls(seed=4)
    for split, n in zip(("train", "test", "ood"), counts, strict=True):
        assert len(a.tasks(split)) == n
        assert a.tasks(split) == b.tasks(split)
        for t in a.tasks(split):
            a.validate(t)
    if counts[0] > 2:  # continuous families: another seed, other tasks; test differs from train
        assert a.tasks("train") != c.tasks("train")
        assert a.tasks("train")[0].params != a.tasks("test")[0].params


def test_discrete_directions_cover_both_values():
    assert [t.params["direction"] for t in CheetahDirDistribution().tasks("train")] == [1.0, -1.0]
    assert [t.params["direction"] for t in AntDirDistribution().tasks("test")] == [0.0, math.pi]
    np.testing.assert_allclose(
        AntDirDistribution().task_vector(AntDirDistribution().tasks()[1]), [-1, 0], atol=1e-6
    )


def test_reset_options_switch_task():
    env = envs.make("CheetahVel")
    u = env.unwrapped
    _, info = env.reset(seed=0, options={"task_index": 7})
    assert info["task_id"] == "CheetahVel/train/7"
    assert info["task_vector"][0] == np.float32(u.tasks()[7].params["velocity"])
    _, _, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    assert info["task_id"] == "CheetahVel/train/7"
    test_task = u.tasks("test")[3]
    _, info = env.reset(options={"task": test_task})
    assert info["task_id"] == "CheetahVel/test/3" and u._goal_velocity == test_task.params["velocity"]
    with pytest.raises(TaskError):
        env.reset(options={"task_index": 100})
    with pytest.raises(TaskError):  # a task of another family
        env.reset(options={"task": AntGoalDistribution().tasks()[0]})


def test_make_on_splits():
    u = envs.make("CheetahVelOOD", split="ood", seed=5).unwrapped
    assert u.task.split == "ood" and u.task in CheetahVelOODDistribution(seed=5).tasks("ood")
    with pytest.raises(TaskError, match="no tasks"):
        envs.make("CheetahVel", split="ood")


def test_pickle_rebuilds_same_env():
    u = envs.make("AntGoalOOD", split="ood", seed=2, task_index=4).unwrapped
    v = pickle.loads(pickle.dumps(u))
    assert (v.split, v.task, v.distribution.seed) == ("ood", u.task, 2)
    assert v.observation_space == u.observation_space and v._terminate_when_unhealthy is False


def test_cheetah_vel_ood_ranges_disjoint():
    d = CheetahVelOODDistribution(seed=0, n_train=2000, n_test=500, n_ood=2000)
    train = np.array([t.params["velocity"] for t in d.tasks("train") + d.tasks("test")])
    ood = np.array([t.params["velocity"] for t in d.tasks("ood")])
    assert train.min() >= 1.0 and train.max() <= 3.0
    assert np.all((ood < 1.0) | (ood > 3.0)) and ood.min() >= 0.0 and ood.max() <= 4.0
    frac_low = np.mean(ood < 1.0)
    assert 0.4 < frac_low < 0.6  # both OOD pieces (equal lengths) are sampled
    plain = np.array([t.params["velocity"] for t in CheetahVelDistribution(n_train=2000).tasks()])
    assert plain.min() < 0.05 and plain.max() > 2.95  # CheetahVel covers U(0, 3)


def test_ant_goal_radius_distributions():
    d = AntGoalDistribution(seed=0, n_train=4000)
    r = np.array([t.params["radius"] for t in d.tasks()])
    assert r.max() <= 3.0
    assert np.mean(r**2) == pytest.approx(4.5, rel=0.05)  # uniform on the disc: E[r^2] = R^2 / 2
    goals = np.stack([d.task_vector(t) for t in d.tasks()])
    np.testing.assert_allclose(np.hypot(goals[:, 0], goals[:, 1]), r, atol=1e-5)
    assert np.all(np.abs(goals.mean(0)) < 0.1)  # angles uniform

    o = AntGoalOODDistribution(seed=0, n_train=2000, n_test=500, n_ood=2000)
    tr = np.array([t.params["radius"] for t in o.tasks("train") + o.tasks("test")])
    ood = np.array([t.params["radius"] for t in o.tasks("ood")])
    assert tr.min() >= 1.0 and tr.max() <= 2.5
    assert np.all((ood < 1.0) | (ood > 2.5)) and ood.max() <= 3.5
    assert np.mean(ood < 1.0) == pytest.approx(1 / 7, abs=0.03)  # area weights: pi vs 6 pi


@pytest.mark.parametrize(
    "dist, param, inside, outside",
    [
        (CheetahVelOODDistribution(), "velocity", {"velocity": 2.0}, {"velocity": 0.5}),
        (CheetahVelOODDistribution(), "velocity", {"velocity": 1.0}, {"velocity": 3.5}),
        (AntGoalOODDistribution(), "radius", {"angle": 1.0, "radius": 2.5}, {"angle": 1.0, "radius": 0.5}),
        (AntGoalOODDistribution(), "radius", {"angle": 1.0, "radius": 1.0}, {"angle": 1.0, "radius": 3.0}),
    ],
)
def test_split_ranges_enforced(dist, param, inside, outside):
    """A train-range task is rejected as OOD and an OOD-range task as train, naming the parameter."""
    dist.make_task(split="train", **inside)
    dist.make_task(split="test", **inside)
    dist.make_task(split="ood", **outside)
    with pytest.raises(TaskError, match=param):
        dist.make_task(split="train", **outside)
    with pytest.raises(TaskError, match=param):
        dist.make_task(split="test", **outside)
    with pytest.raises(TaskError, match=param):
        dist.make_task(split="ood", **inside)


@pytest.mark.parametrize(
    "dist, bad, param",
    [
        (CheetahVelDistribution(), {"velocity": 3.2}, "velocity"),
        (CheetahVelDistribution(), {"velocity": -0.1}, "velocity"),
        (CheetahDirDistribution(), {"direction": 0.5}, "direction"),
        (AntDirDistribution(), {"direction": math.pi / 2}, "direction"),
        (HumanoidDirDistribution(), {"direction": 7.0}, "direction"),
        (AntGoalDistribution(), {"angle": 0.0, "radius": 3.1}, "radius"),
        (AntGoalDistribution(), {"angle": -1.0, "radius": 1.0}, "angle"),
        (AntGoalDistribution(), {"radius": 1.0}, "angle"),
    ],
)
def test_out_of_range_rejected(dist, bad, param):
    with pytest.raises(TaskError, match=param):
        dist.make_task(**bad)


def test_no_ood_split_for_plain_families():
    with pytest.raises(TaskError, match="ood"):
        CheetahVelDistribution().make_task(split="ood", velocity=1.0)


def test_intervals():
    half_open = Interval(0.0, 1.0, high_closed=False)
    assert 0.0 in half_open and 0.999 in half_open and 1.0 not in half_open
    assert check_intervals("v", 1.0, (half_open,)) == "v=1 not in [0, 1)"
    rng = np.random.default_rng(0)
    pieces = (Interval(0.0, 1.0), Interval(2.0, 4.0))
    xs = np.array([sample_union(rng, pieces) for _ in range(3000)])
    assert np.all((xs <= 1.0) | (xs >= 2.0))
    assert np.mean(xs <= 1.0) == pytest.approx(1 / 3, abs=0.04)  # uniform in length
