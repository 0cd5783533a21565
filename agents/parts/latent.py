"""Gaussian and Gaussian-mixture latent heads, their KL terms, the belief vector, and the product of Gaussians.

Shapes: K mixture components, D latent dims; leading dims [...] are free (batch, time).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LOGSTD_MIN, LOGSTD_MAX = -6.0, 2.0


class Mixture(NamedTuple):
    """A posterior q(y) q(z|y): logits [..., K], mu [..., K, D], logstd [..., K, D]."""

    logits: torch.Tensor
    mu: torch.Tensor
    logstd: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    def detach(self) -> Mixture:
        return Mixture(self.logits.detach(), self.mu.detach(), self.logstd.detach())

    def where(self, mask: torch.Tensor, other: Mixture) -> Mixture:
        """Take `other` where mask [...] is True."""
        m = mask.unsqueeze(-1)
        return Mixture(
            torch.where(m, other.logits, self.logits),
            torch.where(m.unsqueeze(-1), other.mu, self.mu),
            torch.where(m.unsqueeze(-1), other.logstd, self.logstd),
        )

    def widened(self, std: float) -> Mixture:
        """Each component's variance plus std^2 (a random-walk step of that size on z)."""
        if not std:
            return self
        return Mixture(self.logits, self.mu, 0.5 * torch.log((2 * self.logstd).exp() + std**2))

    def selected(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The most likely component's (mu, std), each [..., D]."""
        k = self.logits.argmax(-1, keepdim=True)  # [..., 1]
        idx = k.unsqueeze(-1).expand(*k.shape, self.mu.shape[-1])
        mu = self.mu.gather(-2, idx).squeeze(-2)
        std = self.logstd.gather(-2, idx).squeeze(-2).exp()
        return mu, std


def standard_prior(like: Mixture) -> Mixture:
    """Uniform over K and N(0, I) per component, shaped like `like`."""
    return Mixture(torch.zeros_like(like.logits), torch.zeros_like(like.mu), torch.zeros_like(like.logstd))


class MixtureHead(nn.Module):
    """h [..., H] -> Mixture with K components of D dims (logits, mu and logstd all linear in h)."""

    def __init__(self, hidden_dim: int, n_components: int, latent_dim: int) -> None:
        super().__init__()
        self.k, self.d = n_components, latent_dim
        self.logits = nn.Linear(hidden_dim, n_components)
        self.gauss = nn.Linear(hidden_dim, 2 * n_components * latent_dim)

    def forward(self, h: torch.Tensor) -> Mixture:
        g = self.gauss(h).view(*h.shape[:-1], self.k, 2, self.d)
        logstd = g[..., 1, :].clamp(LOGSTD_MIN, LOGSTD_MAX)
        return Mixture(self.logits(h), g[..., 0, :], logstd)


def gaussian_kl(mu1, logstd1, mu2, logstd2) -> torch.Tensor:
    """KL(N(mu1, s1^2) || N(mu2, s2^2)) summed over the last axis (diagonal Gaussians)."""
    var1, var2 = (2 * logstd1).exp(), (2 * logstd2).exp()
    kl = logstd2 - logstd1 + (var1 + (mu1 - mu2) ** 2) / (2 * var2) - 0.5
    return kl.sum(-1)


def categorical_kl(logits_q: torch.Tensor, logits_p: torch.Tensor) -> torch.Tensor:
    """KL(Cat(q) || Cat(p)) over the last axis."""
    logq, logp = F.log_softmax(logits_q, -1), F.log_softmax(logits_p, -1)
    return (logq.exp() * (logq - logp)).sum(-1)


def mixture_kl_terms(q: Mixture, p: Mixture) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_k q(y=k) KL(q(z|k) || p(z|k)), KL(q(y) || p(y))), each [...]."""
    kl_z = (q.probs * gaussian_kl(q.mu, q.logstd, p.mu, p.logstd)).sum(-1)
    return kl_z, categorical_kl(q.logits, p.logits)


def belief_vector(m: Mixture, include_probs: bool) -> torch.Tensor:
    """What the policy sees: (mu_k*, std_k*[, q(y)]) of the most likely component, [..., 2D(+K)]."""
    mu, std = m.selected()
    parts = [mu, std] + ([m.probs] if include_probs else [])
    return torch.cat(parts, -1)


def belief_dim(latent_dim: int, n_components: int, include_probs: bool) -> int:
    return 2 * latent_dim + (n_components if include_probs else 0)


LOG2PI = math.log(2 * math.pi)


# -- diagonal Gaussians and their product (PEARL's posterior) ---------------------------------------------
class Gaussian(NamedTuple):
    """A diagonal Gaussian N(mu, diag(std^2)): mu [..., D], std [..., D]."""

    mu: torch.Tensor
    std: torch.Tensor

    def detach(self) -> Gaussian:
        return Gaussian(self.mu.detach(), self.std.detach())

    def rsample(self) -> torch.Tensor:
        return self.mu + self.std * torch.randn_like(self.mu)


def kl_to_standard(g: Gaussian) -> torch.Tensor:
    """KL(N(mu, std^2) || N(0, I)) summed over the last axis."""
    zero = torch.zeros_like(g.mu)
    return gaussian_kl(g.mu, g.std.log(), zero, zero)


def product_stats(
    mu: torch.Tensor, var: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sufficient statistics of the product of the factors N(mu_n, var_n) along axis -2 ([..., N, D]):
    (sum_n 1/var_n, sum_n mu_n/var_n), each [..., D]; `mask` [..., N] drops factors (padding)."""
    prec = var.reciprocal()
    if mask is not None:
        prec = prec * mask.unsqueeze(-1).to(prec.dtype)
    return prec.sum(-2), (prec * mu).sum(-2)


def product_posterior(precision: torch.Tensor, weighted_mean: torch.Tensor) -> Gaussian:
    """The Gaussian with these sufficient statistics: var = 1/precision, mu = var * weighted_mean.

    For PEARL's posterior the prior N(0, I) is one factor: precision = 1 + sum_n 1/var_n and
    weighted_mean = 0 + sum_n mu_n/var_n.
    """
    return Gaussian(weighted_mean / precision, precision.rsqrt())
