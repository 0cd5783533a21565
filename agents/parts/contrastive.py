"""InfoNCE with pluggable similarities, and the momentum (EMA) update of key encoders.

A similarity maps a batch of N queries and M keys to logits [N, M]. Point embeddings are tensors [N, D]
(`euclidean`, `dot`); probabilistic embeddings are diagonal Gaussians, `Gaussian(mu, std)` with mu, std [N, D]
(`wasserstein2` for TCL, `bhattacharyya` for CoCOA). `info_nce` is the one InfoNCE for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agents.parts.latent import Gaussian

Similarity = Callable[[Any, Any], torch.Tensor]


def euclidean(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """sim(q_i, k_j) = -||q_i - k_j||^2 for q [N, D], k [M, D] -> [N, M]."""
    return -torch.cdist(q, k).pow(2)


def dot(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """sim(q_i, k_j) = q_i . k_j for q [N, D], k [M, D] -> [N, M] (FOCAL++'s matrix-form contrast, eq. 9)."""
    return q @ k.T


def wasserstein2(q: Gaussian, k: Gaussian) -> torch.Tensor:
    """Negative squared 2-Wasserstein distance between diagonal Gaussians (TCL, the TCL-PEARL paper eq. 7):
    sim(q_i, k_j) = -( ||mu_qi - mu_kj||^2 + ||sigma_qi - sigma_kj||^2 ) -> [N, M]."""
    return -(_pairwise_sq(q.mu, k.mu) + _pairwise_sq(q.std, k.std))


def _pairwise_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 by broadcasting (exact, and smooth at zero distance), [N, M]."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)


def bhattacharyya(q: Gaussian, k: Gaussian) -> torch.Tensor:
    """CoCOA's similarity (the CoCOA paper eq. 4.2), the Mahalanobis part of the Bhattacharyya distance:
    sim(q_i, k_j) = -(mu_qi - mu_kj)^T Sigma_ij^{-1} (mu_qi - mu_kj), Sigma_ij = (Sigma_qi + Sigma_kj) / 2 -> [N, M]."""
    var = 0.5 * (q.std.pow(2).unsqueeze(1) + k.std.pow(2).unsqueeze(0))  # [N, M, D]
    diff = q.mu.unsqueeze(1) - k.mu.unsqueeze(0)
    return -(diff.pow(2) / var).sum(-1)


SIMILARITIES: dict[str, Similarity] = {
    "euclidean": euclidean,
    "dot": dot,
    "wasserstein2": wasserstein2,
    "bhattacharyya": bhattacharyya,
}


def info_nce(
    q: Any,
    k: Any,
    similarity: Similarity | str = euclidean,
    labels_q: torch.Tensor | None = None,
    labels_k: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """InfoNCE: -(1/N) sum_i log( sum_{j in P(i)} exp(s_ij) / sum_j exp(s_ij) ), s_ij = sim(q_i, k_j) / temperature.

    q and k are whatever `similarity` takes (tensors [N, D] / [M, D], or `Gaussian`s). Without labels
    P(i) = {i} (row i's positive is k_i, every other row a negative). With task labels ([N], [M])
    P(i) = {j : labels_k[j] == labels_q[i]}, so two rows of the same task are never negatives of each
    other; rows without any positive are skipped.
    """
    sim = SIMILARITIES[similarity] if isinstance(similarity, str) else similarity
    logits = sim(q, k)
    if temperature != 1.0:
        logits = logits / temperature
    if labels_q is None:
        return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))
    pos = labels_q.unsqueeze(1) == labels_k.unsqueeze(0)  # [N, M]
    has = pos.any(1)
    log_num = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), 1)
    loss = torch.logsumexp(logits, 1) - log_num
    return loss[has].mean() if has.any() else logits.sum() * 0.0


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, parameter by parameter (tau = 1 - momentum)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
