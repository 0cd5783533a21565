"""Reward transforms shared by the sparse families and the `SparseReward` wrapper."""

from __future__ import annotations


def sparsify(reward: float, threshold: float) -> float:
    """FOCAL++ sparsification: (reward - threshold) / |threshold| if reward > threshold, else 0.

    With threshold = -R this is the FOCAL++ sparse point robot, (r + R) / R inside radius R.
    """
    if threshold == 0:
        raise ValueError("sparsify: threshold must be non-zero")
    return (reward - threshold) / abs(threshold) if reward > threshold else 0.0
