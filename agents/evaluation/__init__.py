"""Evaluation through the inference contract: rollouts, protocols and their metrics."""

from agents.evaluation.metrics import (
    adaptation_delays,
    compare_to_reference,
    normalised_score,
    per_base_return,
    score_against,
    summarize,
)
from agents.evaluation.protocols import (
    context_episodes,
    evaluation_episodes,
    make_env,
    pearl_protocol_episodes,
    protocol_episodes,
    trial_episodes,
)
from agents.evaluation.rollout import EpisodeRecord, run_episodes

__all__ = [
    "EpisodeRecord",
    "adaptation_delays",
    "compare_to_reference",
    "context_episodes",
    "evaluation_episodes",
    "make_env",
    "normalised_score",
    "pearl_protocol_episodes",
    "per_base_return",
    "protocol_episodes",
    "run_episodes",
    "score_against",
    "summarize",
    "trial_episodes",
]
