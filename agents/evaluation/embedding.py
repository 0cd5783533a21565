"""Quality of task embeddings: a linear probe to the true task, and FOCAL's RMS distance and separation rate.

Shapes: N embeddings (one per episode, e.g. an episode's final belief mean) of D dims, `z` [N, D];
`y` [N, V] the true task vectors; `labels` [N] the task ids (any hashable values; equal = same task).

The pairwise metrics follow FOCAL (Li, Yang and Luo 2020, appendix) as FOCAL++ (Li et al. 2021,
section 4.3) reports them. Both use the unordered pairs {i, j}, i < j, of embeddings whose labels differ
(pairs of the same task are left out), with Euclidean distances d_ij = ||z_i - z_j||_2:

  * RMS = sqrt(mean over those pairs of d_ij^2)  (root mean square distance between different tasks);
  * ESR = (number of those pairs with d_ij > sqrt(2 D / 3)) / (number of those pairs).

sqrt(2D/3) is what FOCAL calls the expected distance of two points drawn uniformly from (-1, 1)^D; strictly
it is the root of the expected *squared* distance (each coordinate difference has variance 2/3), a little
above the expected distance. Both metrics depend on the embedding's scale: FOCAL's threshold presumes
embeddings of roughly unit range per dimension, and nothing here rescales them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def linear_probe_r2(z: np.ndarray, y: np.ndarray) -> list[float]:
    """R^2 of the least-squares affine map z -> y, per target dimension (in-sample).

    z [N, D], y [N, V] (or [N]) -> V values: 1 - SS_res / SS_tot of column v of y predicted from
    [z, 1]. A constant target column (SS_tot = 0) gives nan. With N close to D + 1 the fit is optimistic
    (in-sample; use many more episodes than dimensions).
    """
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(len(y), -1)
    if len(z) != len(y):
        raise ValueError(f"z has {len(z)} rows, y {len(y)}")
    x1 = np.c_[z, np.ones(len(z))]
    w, *_ = np.linalg.lstsq(x1, y, rcond=None)
    pred = x1 @ w
    den = ((y - y.mean(0)) ** 2).sum(0)
    r2 = np.where(den > 0, 1 - ((pred - y) ** 2).sum(0) / np.maximum(den, 1e-12), np.nan)
    return [float(v) for v in r2]


def cluster_purity(components: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray) -> float:
    """Share of items whose label is the majority label of their cluster (1.0: every cluster holds one
    label; one cluster for everything gives the largest label's share)."""
    comps, labs = np.asarray(components), np.asarray(labels)
    if len(comps) != len(labs) or len(comps) == 0:
        raise ValueError(f"need equal, non-zero numbers of components ({len(comps)}) and labels ({len(labs)})")
    total = 0
    for k in np.unique(comps):
        _, counts = np.unique(labs[comps == k], return_counts=True)
        total += int(counts.max())
    return total / len(labs)


def different_task_distances(z: np.ndarray, labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Euclidean distances ||z_i - z_j|| of every unordered pair i < j with labels[i] != labels[j].

    z [N, D], labels [N] -> [P], P = number of such pairs (in row-major order of (i, j)).
    """
    z = np.asarray(z, dtype=np.float64)
    z = z.reshape(len(z), -1)
    lab = np.asarray(labels)
    if len(lab) != len(z):
        raise ValueError(f"z has {len(z)} rows, labels {len(lab)}")
    i, j = np.triu_indices(len(z), k=1)
    keep = lab[i] != lab[j]
    i, j = i[keep], j[keep]
    return np.linalg.norm(z[i] - z[j], axis=1)


def rms_distance(z: np.ndarray, labels: Sequence[Any] | np.ndarray) -> float:
    """sqrt(mean of ||z_i - z_j||^2 over the pairs i < j of different tasks); z [N, D], labels [N].

    nan when there is no such pair (fewer than two tasks).
    """
    d = different_task_distances(z, labels)
    return float(np.sqrt(np.mean(d**2))) if len(d) else math.nan


def separation_threshold(latent_dim: int) -> float:
    """sqrt(2 l / 3): FOCAL's distance of two uniform random points in (-1, 1)^l (the root of their mean
    squared distance)."""
    return math.sqrt(2 * latent_dim / 3)


def effective_separation_rate(
    z: np.ndarray, labels: Sequence[Any] | np.ndarray, threshold: float | None = None
) -> float:
    """FOCAL's ESR: the share of pairs i < j of different tasks with ||z_i - z_j|| > threshold.

    z [N, D], labels [N]; threshold defaults to sqrt(2 D / 3) (`separation_threshold`). nan when there is
    no pair of different tasks.
    """
    z = np.asarray(z, dtype=np.float64)
    z = z.reshape(len(z), -1)
    d = different_task_distances(z, labels)
    if not len(d):
        return math.nan
    t = separation_threshold(z.shape[1]) if threshold is None else threshold
    return float(np.mean(d > t))


def standardised(z: np.ndarray) -> np.ndarray:
    """z [N, D] with each dim centred and scaled to the variance of U(-1, 1) (1/3): the scale FOCAL's ESR
    threshold presumes, so ESR compares embeddings of different scales (constant dims stay 0)."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    sd = z.std(0)
    return (z - z.mean(0)) / np.where(sd > 0, sd * math.sqrt(3.0), 1.0)


def embedding_report(z: np.ndarray, y: np.ndarray, labels: Sequence[Any] | np.ndarray) -> dict[str, Any]:
    """All three metrics of embeddings z [N, D] against task vectors y [N, V] and task labels [N]:
    {"probe_r2": [V], "probe_r2_mean", "rms", "esr", "esr_standardised", "esr_threshold", "latent_dim", "n",
    "tasks"}; `esr_standardised` is ESR of `standardised(z)` (scale-free)."""
    r2 = linear_probe_r2(z, y)
    z = np.asarray(z, dtype=np.float64)
    z = z.reshape(len(z), -1)
    finite = [v for v in r2 if not math.isnan(v)]
    return {
        "probe_r2": r2,
        "probe_r2_mean": float(np.mean(finite)) if finite else math.nan,
        "rms": rms_distance(z, labels),
        "esr": effective_separation_rate(z, labels),
        "esr_standardised": effective_separation_rate(standardised(z), labels),
        "esr_threshold": separation_threshold(z.shape[1]),
        "latent_dim": int(z.shape[1]),
        "n": len(z),
        "tasks": len(set(np.asarray(labels).tolist())),
    }
