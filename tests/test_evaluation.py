"""Adaptation delay and normalised score on constructed reward traces."""

from __future__ import annotations

import numpy as np
import pytest

from agents.evaluation import adaptation_delays, compare_to_reference, make_env, normalised_score
from agents.evaluation.rollout import EpisodeRecord
from agents.parts.buffer import Episode


def record(rewards: list[float], switches: list[int]) -> EpisodeRecord:
    n = len(rewards)
    ep = Episode(
        obs=np.zeros((n, 2), np.float32),
        action=np.zeros((n, 2), np.float32),
        reward=np.asarray(rewards, np.float32),
        next_obs=np.zeros((n, 2), np.float32),
        terminated=np.zeros(n, bool),
        task=np.zeros(n, np.int64),
        task_vector=np.zeros((n, 2), np.float32),
    )
    return EpisodeRecord(ep, ["T/test/0"] * n, [{"step": s, "old": "a", "new": "b"} for s in switches])


def test_delay_counts_steps_until_the_agent_stays_within_tolerance() -> None:
    oracle = record([-1.0] * 20, [5, 12])
    # segment 1 (steps 5..11): matches at step 5 (both start where the old task left them), falls behind at
    # 6-8, back from step 9 on -> delay 4 (a first crossing would say 0); segment 2 (12..19): never back -> 8
    agent = record([-1.0] * 6 + [-3.0] * 3 + [-1.05] * 3 + [-5.0] * 8, [5, 12])
    assert adaptation_delays([agent], [oracle], scale=1.0, tol=0.1) == [4, 8]


def test_delay_is_zero_when_the_agent_matches_the_oracle() -> None:
    oracle = record([-2.0] * 10, [3])
    assert adaptation_delays([record([-2.0] * 10, [3])], [oracle], scale=1.0) == [0]


def test_several_references_pool_into_their_mean_return_and_mean_per_step_reward() -> None:
    """Two oracle seeds at -1 and -3 a step: the score's oracle return is their mean, and an agent at -2.05
    a step has settled against their mean reward (delay 0) though it trails the better seed throughout."""
    a, b, rand = record([-1.0] * 10, [2]), record([-3.0] * 10, [2]), record([-5.0] * 10, [2])
    agent = record([-2.05] * 10, [2])
    pooled = compare_to_reference([agent], [[a], [b]], [rand])
    assert pooled["oracle_return"] == pytest.approx(-20.0) and pooled["oracle_returns"] == pytest.approx([-10.0, -30.0])
    assert pooled["normalised_score"] == pytest.approx((-20.5 + 50.0) / 30.0)
    assert pooled["adaptation_delay"] == {"switches": 1, "median": 0.0, "mean": 0.0}
    alone = compare_to_reference([agent], [[a]], [rand])
    assert "oracle_returns" not in alone and alone["oracle_return"] == pytest.approx(-10.0)
    assert alone["adaptation_delay"]["median"] == 8.0  # never within 10% of the -1 seed after the switch
    with pytest.raises(ValueError, match="at least one reference"):
        compare_to_reference([agent], [], [rand])


def test_normalised_score() -> None:
    assert normalised_score(-50.0, -100.0, 0.0) == 0.5
    assert normalised_score(0.0, -100.0, 0.0) == 1.0


def test_per_base_return_averages_each_base_tasks_returns() -> None:
    from agents.config import EnvConfig
    from agents.evaluation import per_base_return

    cfg = EnvConfig(id="CheetahMultiTask")
    env = make_env(cfg, "test")
    tasks = env.unwrapped.tasks("test")
    env.close()
    per_task = {t.id: float(i) for i, t in enumerate(tasks)}
    out = per_base_return(per_task, cfg, "test")
    assert set(out) == {t.base for t in tasks} and len(out) == 8
    for base, ret in out.items():
        assert ret == np.mean([i for i, t in enumerate(tasks) if t.base == base])
    assert per_base_return({t.id: 0.0 for t in tasks}, EnvConfig(id="PointRobot"), "test") is None
