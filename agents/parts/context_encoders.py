"""Permutation-invariant context encoders for FOCAL and FOCAL++ (the FOCAL++ paper, section 3.2).

Every encoder maps each transition c_n = (s, a, r, s') of a context to an embedding e_n [D] and a score
s_n (a scalar); the task representation is the softmax(score)-weighted mean

    z = sum_n w_n e_n,   w = softmax_n(s_n)          (w_n = 1/N when every score is equal: FOCAL's mean)

Embeddings are squashed by tanh into (-1, 1)^D (where FOCAL's effective separation rate is defined):
unbounded, the distance metric loss's inverse-power term pushes tasks apart without limit (|z| reached
10-50 in 4,000 updates on PointRobotWind) and the actor and critic, which read z, never settle. z has
running sufficient statistics (the running max score, sum_n exp(s_n - max) and the weighted sum
of embeddings) and is served one transition at a time (agents/policies/focal.py).

Variants (`attention`):
  none       FOCAL: an MLP per transition, equal scores (the plain mean).
  batch      residual batch-wise channel attention: a squeeze-and-excitation bottleneck (width / reduction)
             scores each transition of a task's batch; the scoring head starts at zero, so training starts
             from the plain mean (the residual path) and learns which transitions to weigh up (in sparse
             reward tasks, those with reward).
  sequence   residual sequence-wise self-attention (eq. 6) over the transition's C features: each feature
             becomes a token (value x learned embedding + position embedding), Y = LN(X + MHA(X)), mean over
             tokens. Departure: the paper's reshape to (TB) x 1 x C gives a one-token sequence, where
             self-attention reduces to a linear map; attending across the feature tokens is what "the
             correlation within the transition dimensions" needs. No dropout (the paper's 0.1): served
             and evaluated modules run in one mode, so the encoder must be deterministic.
  series     sequence attention, then batch attention on its output.
  parallel   both branches on the input; the embedding reads their sum, the scores the batch branch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from agents.parts.nets import MLP

Attention = Literal["none", "batch", "sequence", "series", "parallel"]
ATTENTIONS: tuple[str, ...] = ("none", "batch", "sequence", "series", "parallel")


class SequenceAttention(nn.Module):
    """Residual self-attention across a transition's C features: [..., C] -> [..., width]."""

    def __init__(self, in_dim: int, width: int, heads: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(in_dim, width) * width**-0.5)
        self.position = nn.Parameter(torch.randn(in_dim, width) * 0.02)
        self.mha = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        tokens = x.reshape(-1, x.shape[-1], 1) * self.value + self.position  # [M, C, width]
        y = self.norm(tokens + self.mha(tokens, tokens, tokens, need_weights=False)[0])
        return y.mean(1).reshape(*lead, -1)


class BatchScore(nn.Module):
    """Squeeze-and-excitation style scorer: [..., width] -> [..., 1]; starts at 0 (uniform weights)."""

    def __init__(self, width: int, reduction: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, max(width // reduction, 1)), nn.ReLU(), nn.Linear(max(width // reduction, 1), 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class ContextEncoder(nn.Module):
    """Per-transition embedding and score: features [..., C] -> (e [..., D], score [..., 1])."""

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        hidden: tuple[int, ...] = (200, 200, 200),
        attention: Attention = "none",
        width: int = 64,
        heads: int = 4,
        reduction: int = 16,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; expected one of {', '.join(ATTENTIONS)}")
        self.attention = attention
        self.uses_scores = attention in ("batch", "series", "parallel")
        self.uses_sequence = attention in ("sequence", "series", "parallel")
        if attention == "none":
            self.embed = MLP(in_dim, hidden, latent_dim)
            return
        self.features = MLP(in_dim, hidden[:-1], width) if attention in ("batch", "parallel") else None
        self.sequence = SequenceAttention(in_dim, width, heads) if self.uses_sequence else None
        self.embed = MLP(width, hidden[-1:], latent_dim)
        self.score = BatchScore(width, reduction) if self.uses_scores else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e, score = self._forward(x)
        return torch.tanh(e), score

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.attention
        if a == "none":
            e = self.embed(x)
            return e, e.new_zeros(*e.shape[:-1], 1)
        if a == "batch":
            h = torch.relu(self.features(x))
            return self.embed(h), self.score(h)
        if a == "sequence":
            h = self.sequence(x)
            return self.embed(h), h.new_zeros(*h.shape[:-1], 1)
        if a == "series":
            h = self.sequence(x)
            return self.embed(h), self.score(h)
        hb = torch.relu(self.features(x))  # parallel
        return self.embed(hb + self.sequence(x)), self.score(hb)


def pooled(e: torch.Tensor, score: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Task representations z [T, D] and weights w [T, N] (rows sum to 1 over unmasked transitions) from
    e [T, N, D] and score [T, N, 1]; `mask` [T, N] drops padding. A row with no transition gives z = 0."""
    s = score.squeeze(-1)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = torch.softmax(s, dim=1).nan_to_num(0.0)
    return (w.unsqueeze(-1) * e).sum(1), w
