"""Embedding metrics on hand-computed cases: linear probe R^2, FOCAL's RMS distance and separation rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.evaluation.embedding import (
    cluster_purity,
    different_task_distances,
    effective_separation_rate,
    embedding_report,
    linear_probe_r2,
    rms_distance,
    separation_threshold,
)

# four 2-D embeddings of two tasks; the pairs of different tasks are (0,1), (0,3), (1,2), (2,3)
Z = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])
LABELS = ["a", "b", "a", "b"]


def test_pairs_of_different_tasks_only() -> None:
    # (0,1): 5, (0,3): 1, (1,2): sqrt(9 + 9), (2,3): sqrt(2); same-task pairs (0,2) and (1,3) are left out
    np.testing.assert_allclose(different_task_distances(Z, LABELS), [5.0, 1.0, math.sqrt(18), math.sqrt(2)])


def test_rms_distance_hand_value() -> None:
    assert rms_distance(Z, LABELS) == pytest.approx(math.sqrt((25 + 1 + 18 + 2) / 4))


def test_effective_separation_rate_hand_value() -> None:
    assert separation_threshold(2) == pytest.approx(math.sqrt(4 / 3))  # 1.1547
    # distances 5, 1, 4.243, 1.414: three of four exceed sqrt(4/3)
    assert effective_separation_rate(Z, LABELS) == 0.75
    assert effective_separation_rate(Z, LABELS, threshold=2.0) == 0.5
    assert separation_threshold(6) == pytest.approx(2.0)


def test_pair_metrics_need_two_tasks() -> None:
    assert math.isnan(rms_distance(Z, ["a"] * 4))
    assert math.isnan(effective_separation_rate(Z, ["a"] * 4))


def test_uniform_random_embeddings_sit_at_the_threshold() -> None:
    # FOCAL's threshold is the root mean square distance of uniform points in (-1, 1)^l
    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, (400, 5))
    assert rms_distance(z, np.arange(400)) == pytest.approx(separation_threshold(5), rel=0.03)
    assert 0.3 < effective_separation_rate(z, np.arange(400)) < 0.6


def test_linear_probe_r2_hand_values() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    # y1 = 2x + 1 exactly: 1; y2 = [1, 0, 0, 1] is symmetric about the mean of x: slope 0, R^2 0;
    # y3 = [0, 1, 1, 3]: slope cov/var = 4.5/5 = 0.9, R^2 = 0.9 * 4.5 / 4.75; y4 constant: nan
    y = np.c_[2 * x[:, 0] + 1, [1.0, 0, 0, 1], [0.0, 1, 1, 3], [7.0] * 4]
    r2 = linear_probe_r2(x, y)
    assert r2[0] == pytest.approx(1.0)
    assert r2[1] == pytest.approx(0.0, abs=1e-12)
    assert r2[2] == pytest.approx(0.9 * 4.5 / 4.75)
    assert math.isnan(r2[3])
    assert linear_probe_r2(x, 2 * x[:, 0]) == [pytest.approx(1.0)]  # a 1-D target


def test_embedding_report_collects_everything() -> None:
    y = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    rep = embedding_report(Z, y, LABELS)
    assert rep["rms"] == pytest.approx(math.sqrt(11.5))
    assert rep["esr"] == 0.75
    assert rep["latent_dim"] == 2 and rep["n"] == 4 and rep["tasks"] == 2
    assert rep["probe_r2_mean"] == pytest.approx(np.mean(linear_probe_r2(Z, y)))


def test_standardised_esr_does_not_depend_on_the_scale() -> None:
    from agents.evaluation.embedding import embedding_report, standardised

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 3))
    labels = np.arange(40) // 4
    a = embedding_report(z, z[:, :1], labels)
    b = embedding_report(100 * z + 5, z[:, :1], labels)
    assert a["esr_standardised"] == b["esr_standardised"] and b["esr"] > a["esr"]
    s = standardised(z)
    np.testing.assert_allclose(s.var(0), np.full(3, 1 / 3))


def test_cluster_purity_hand_values() -> None:
    # cluster 0 holds a, a, b (majority 2), cluster 1 holds b (1): 3 of 4
    assert cluster_purity([0, 0, 0, 1], ["a", "a", "b", "b"]) == pytest.approx(0.75)
    # one cluster for everything: the largest label's share; one cluster per label: 1
    assert cluster_purity([5, 5, 5, 5], ["a", "b", "c", "c"]) == pytest.approx(0.5)
    assert cluster_purity([2, 1, 2, 1], ["x", "y", "x", "y"]) == 1.0
    with pytest.raises(ValueError):
        cluster_purity([0, 1], ["a"])
