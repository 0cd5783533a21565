"""tools/studies/point_robot_optimum.py's Trilaterator: exact goal inference from PointRobot's distance rewards."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import envs
from agents.evaluation.rollout import run_episodes

pytestmark = pytest.mark.slow  # a study of tools/studies/: not in the default tier

SPEC = importlib.util.spec_from_file_location(
    "point_robot_optimum", Path(__file__).resolve().parents[1] / "tools" / "studies" / "point_robot_optimum.py"
)
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def test_trilaterator_solves_the_goal_from_three_readings_and_again_after_a_switch() -> None:
    env = envs.make(
        "PointRobot", split="test", nonstationary="periodic", nonstationary_kwargs={"interval": 10, "p": 1.0}, max_episode_steps=30
    )
    (rec,) = run_episodes(tool.Trilaterator(), [env], [{"seed": 3, "options": {"task_index": 2}}], True, True)
    goals = rec.episode.task_vector  # the goal in force at each step [T, 2]
    b = rec.beliefs  # belief before each step and after the last [T + 1, 5]
    assert len(rec.switches) == 2
    for start in (0, *[s["step"] for s in rec.switches]):
        # after the switch's own step and two exploratory ones, the goal is solved exactly
        solved = start + 3
        assert b[solved, 2] == 1 and np.allclose(b[solved, :2], goals[solved], atol=1e-4)
        assert b[start + 1, 2] == 0 or start == 0  # a switch is noticed: the old goal is dropped
    # once solved, every step gets at least a full step (0.1) nearer the goal, or onto it
    r = rec.episode.reward
    last = rec.switches[-1]["step"] + 3
    assert all(r[t] - r[t - 1] >= 0.1 - 1e-4 or r[t] > -1e-4 for t in range(last + 1, len(r)))
