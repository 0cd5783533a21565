"""The algorithm registry agrees with the config models and the served policies, name by name."""

from __future__ import annotations

from typing import get_args

from agents.algorithms import ALGORITHMS
from agents.config import OFFLINE, RUN_MODELS, SECTIONS
from agents.policies import POLICIES


def test_every_algorithm_is_declared_alike_everywhere() -> None:
    names = set(ALGORITHMS)
    assert names == set(SECTIONS) == set(POLICIES)
    assert {n for m in RUN_MODELS for n in get_args(m.model_fields["algorithm"].annotation)} == names
    for name, algo in ALGORITHMS.items():
        assert algo.policy is POLICIES[name] and algo.policy.algorithm == name
        assert name in get_args(algo.config.model_fields["algorithm"].annotation)
        assert algo.offline == ("offline" in algo.config.model_fields) == (name in OFFLINE)
        section = SECTIONS[name]
        assert section is None or section in algo.config.model_fields
