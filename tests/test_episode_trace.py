"""tools/episode_trace.py: per-episode traces and the share of 'stopped short of the goal' steps."""

import importlib.util
from pathlib import Path

import numpy as np

from agents.evaluation.rollout import EpisodeRecord
from agents.parts.buffer import Episode

SPEC = importlib.util.spec_from_file_location(
    "episode_trace", Path(__file__).resolve().parents[1] / "tools" / "episode_trace.py"
)
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def record(rewards: list[float], actions: list[float]) -> EpisodeRecord:
    n = len(rewards)
    ep = Episode(
        obs=np.zeros((n, 2), np.float32),
        action=np.repeat(np.asarray(actions, np.float32)[:, None], 2, 1),
        reward=np.asarray(rewards, np.float32),
        next_obs=np.zeros((n, 2), np.float32),
        terminated=np.zeros(n, bool),
        task=np.zeros(n, np.int64),
        task_vector=np.full((n, 2), 0.5, np.float32),
    )
    beliefs = np.tile(np.array([0.0, 0.0, 0.2, 0.4], np.float32), (n + 1, 1))  # (mu, std), latent_dim 2
    return EpisodeRecord(ep, ["T/test/0"] * n, beliefs=beliefs)


def test_stuck_share_counts_still_steps_short_of_the_goal_after_the_given_step() -> None:
    # 10 steps, bound 0.1: moving at full speed for 4, then still at reward -1 for 4, then still at the goal
    still_far = record([-1.0] * 8 + [0.0] * 2, [0.1] * 4 + [0.001] * 6)
    assert tool.stuck_share([still_far], 0, 0.1, still=0.1, far=-0.3) == 0.4
    assert tool.stuck_share([still_far], 6, 0.1, still=0.1, far=-0.3) == 0.5  # steps 6, 7 of 6..9
    moving = record([-1.0] * 10, [0.1] * 10)
    assert tool.stuck_share([still_far, moving], 0, 0.1, still=0.1, far=-0.3) == 0.2


def test_trace_reads_reward_action_and_belief_std_at_the_steps() -> None:
    row = tool.trace(record([-1.0, -0.9, -0.8], [0.1, 0.05, 0.0]), [0, 2, 7], 0.1, slice(2, 4))
    assert row["task"] == [0.5, 0.5] and row["return"] == -2.7
    assert row["reward"] == {0: -1.0, 2: -0.8}  # step 7 is past the episode's end
    assert row["action"] == {0: 0.5, 2: 0.0}  # mean |action| over the next 5 steps, in bound units
    assert row["belief_std"] == {0: 0.3, 2: 0.3}
