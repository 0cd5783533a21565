"""InfoNCE with pluggable similarities, and the momentum (EMA) update of key encoders."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def euclidean(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """sim(q_i, k_j) = -||q_i - k_j||^2 for q [N, D], k [M, D] -> [N, M]."""
    return -torch.cdist(q, k).pow(2)


SIMILARITIES: dict[str, Similarity] = {"euclidean": euclidean}


def info_nce(q: torch.Tensor, k: torch.Tensor, similarity: Similarity | str = euclidean) -> torch.Tensor:
    """-(1/N) sum_i log softmax_j(sim(q_i, k_j))[i]: row i's positive is k_i, the other rows are negatives."""
    sim = SIMILARITIES[similarity] if isinstance(similarity, str) else similarity
    logits = sim(q, k)
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, parameter by parameter (tau = 1 - momentum)."""
    for pt, ps in zip(target.parameters(), source.parameters(), strict=True):
        pt.lerp_(ps, tau)
