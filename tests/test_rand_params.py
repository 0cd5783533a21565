"""Rand-params families: the scales reach the MuJoCo model, change the dynamics, and never compound."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.rand_params import (
    FIELDS,
    HopperRandParamsDistribution,
    WalkerRandParamsDistribution,
    param_keys,
)
from envs.tasks import TaskError

CASES = [
    ("WalkerRandParams", "Walker2d-v5", WalkerRandParamsDistribution, 65),
    ("HopperRandParams", "Hopper-v5", HopperRandParamsDistribution, 41),
]
BASES = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}


def _stock_model_arrays(base_id: str) -> dict[str, np.ndarray]:
    """The unmodified v5 model arrays, from a fresh gymnasium env (independent of our saved copy)."""
    model = gym.make(base_id).unwrapped.model
    return {field: getattr(model, field).copy() for field in BASES}


def _rollout(env, task, n: int = 15) -> np.ndarray:
    obs, _ = env.reset(seed=7, options={"task": task})
    actions = np.random.default_rng(0).uniform(-1, 1, size=(n, *env.action_space.shape))
    out = [obs]
    for a in actions:
        out.append(env.step(a)[0])
    return np.stack(out)


@pytest.mark.parametrize("env_id, base_id, dist_cls, dim", CASES)
def test_check_env_and_counts(env_id, base_id, dist_cls, dim):
    env = envs.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    u = env.unwrapped
    assert len(u.tasks("train")) == 40 and len(u.tasks("test")) == 10 and u.tasks("ood") == []
    assert u.task_dim == dim == dist_cls.task_dim == dist_cls().task_dim
    _, info = env.reset(seed=0)
    assert info["task_vector"].shape == (dim,) and info["task_vector"].dtype == np.float32


@pytest.mark.parametrize("env_id, base_id, dist_cls, dim", CASES)
def test_scaling_reaches_model_exactly(env_id, base_id, dist_cls, dim):
    stock = _stock_model_arrays(base_id)
    env = envs.make(env_id)
    u = env.unwrapped
    task = u.tasks("train")[3]
    env.reset(seed=0, options={"task": task})
    start = 0
    for field, prefix, base in FIELDS:
        assert BASES[field] == base
        arr = getattr(u.model, field)
        exps = np.array(
            [task.params[k] for k in param_keys(u.distribution.shapes) if k.startswith(prefix + "_")]
        )
        expected = stock[field] * base ** exps.reshape(arr.shape)
        np.testing.assert_array_equal(arr, expected)
        # task_vector layout: the same exponents, in FIELDS order, row-major
        np.testing.assert_array_equal(u.task_vector[start : start + exps.size], exps.astype(np.float32))
        start += exps.size
        if field == "body_mass":  # something non-trivial actually changed
            assert not np.allclose(arr[1:], stock[field][1:])
    assert start == dim


@pytest.mark.parametrize("env_id, base_id, dist_cls, dim", CASES)
def test_switching_back_restores_exactly(env_id, base_id, dist_cls, dim):
    env = envs.make(env_id)
    u = env.unwrapped
    a, b = u.tasks("train")[0], u.tasks("train")[1]
    u.set_task(a)
    first = {f: getattr(u.model, f).copy() for f in BASES}
    for _ in range(3):
        u.set_task(b)
        u.set_task(a)
    env.reset(seed=1)
    for _ in range(5):
        env.step(env.action_space.sample())
    for f in BASES:
        np.testing.assert_array_equal(getattr(u.model, f), first[f])


@pytest.mark.parametrize("env_id, base_id, dist_cls, dim", CASES)
def test_tasks_change_dynamics(env_id, base_id, dist_cls, dim):
    env = envs.make(env_id)
    tasks = env.unwrapped.tasks("train")
    traj_a = _rollout(env, tasks[0])
    traj_b = _rollout(env, tasks[1])
    traj_a2 = _rollout(env, tasks[0])
    np.testing.assert_array_equal(traj_a[0], traj_b[0])  # same initial state
    assert np.abs(traj_a[1:] - traj_b[1:]).max() > 1e-3  # different next states
    np.testing.assert_array_equal(traj_a, traj_a2)  # deterministic per task


@pytest.mark.parametrize("env_id, base_id, dist_cls, dim", CASES)
def test_unit_scale_task_equals_base_env(env_id, base_id, dist_cls, dim):
    """All exponents 0: observations, rewards and terminations are exactly the stock v5 env's."""
    env, base = envs.make(env_id), gym.make(base_id)
    u = env.unwrapped
    unit = u.distribution.make_task(**dict.fromkeys(u.distribution.keys, 0.0))
    env.reset(seed=3, options={"task": unit})
    for f in BASES:
        np.testing.assert_array_equal(getattr(u.model, f), getattr(base.unwrapped.model, f))
    o1, _ = env.reset(seed=3)
    o2, _ = base.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    for a in np.random.default_rng(1).uniform(-1, 1, size=(20, *env.action_space.shape)):
        s1, s2 = env.step(a), base.step(a)
        np.testing.assert_array_equal(s1[0], s2[0])
        assert s1[1] == s2[1] and s1[2] == s2[2]
        info = s1[4]
        assert s1[1] == pytest.approx(info["reward_forward"] + info["reward_ctrl"] + info["reward_survive"])
        if s1[2]:
            break


@pytest.mark.parametrize("dist_cls", [WalkerRandParamsDistribution, HopperRandParamsDistribution])
def test_same_seed_same_tasks(dist_cls):
    a, b, c = dist_cls(seed=11), dist_cls(seed=11), dist_cls(seed=12)
    assert a.tasks("train") == b.tasks("train") and a.tasks("test") == b.tasks("test")
    assert a.tasks("train") != c.tasks("train")
    exps = np.stack([a.task_vector(t) for t in a.tasks("train")])
    assert exps.min() >= -3.0 and exps.max() <= 3.0
    assert exps.min() < -2.5 and exps.max() > 2.5  # spread over U(-3, 3)


def test_param_keys_layout():
    keys = param_keys(HopperRandParamsDistribution.default_shapes)
    assert keys[:6] == ["mass_0", "mass_1", "mass_2", "mass_3", "mass_4", "inertia_0_0"]
    assert keys[20:26] == ["damping_0", "damping_1", "damping_2", "damping_3", "damping_4", "damping_5"]
    assert keys[-1] == "friction_4_2" and len(set(keys)) == 41


@pytest.mark.parametrize("dist_cls", [WalkerRandParamsDistribution, HopperRandParamsDistribution])
def test_out_of_range_exponent_rejected(dist_cls):
    d = dist_cls()
    params = dict(d.tasks("train")[0].params)
    params["damping_2"] = 3.5
    with pytest.raises(TaskError, match="damping_2"):
        d.make_task(**params)
    params["damping_2"] = -3.0
    d.make_task(**params)  # the boundary is inside
    del params["mass_0"]
    with pytest.raises(TaskError, match="mass_0"):
        d.make_task(**params)
    with pytest.raises(TaskError, match="ood"):
        d.make_task(split="ood", **d.tasks("train")[0].params)
