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


def info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    similarity: Similarity | str = euclidean,
    labels_q: torch.Tensor | None = None,
    labels_k: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE: -(1/N) sum_i log( sum_{j in P(i)} exp(sim(q_i, k_j)) / sum_j exp(sim(q_i, k_j)) ).

    Without labels P(i) = {i} (row i's positive is k_i, every other row a negative). With task labels
    ([N], [M]) P(i) = {j : labels_k[j] == labels_q[i]}, so two rows of the same task are never negatives
    of each other; rows without any positive are skipped.
    """
    sim = SIMILARITIES[similarity] if isinstance(similarity, str) else similarity
    logits = sim(q, k)
    if labels_q is None:
        return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))
    pos = labels_q.unsqueeze(1) == labels_k.unsqueeze(0)  # [N, M]
    has = pos.any(1)
    log_num = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), 1)
    loss = torch.logsumexp(logits, 1) - log_num
    return loss[has].mean() if has.any() else logits.sum() * 0.0


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, parameter by parameter (tau = 1 - momentum)."""
    for pt, ps in zip(target.parameters(), source.parameters(), strict=True):
        pt.lerp_(ps, tau)
