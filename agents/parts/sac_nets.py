"""SAC networks: the tanh-Gaussian actor (served) and the twin Q critic (training only).

Actions here live in the normalised box [-1, 1]^A; policies scale them to the env's bounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from agents.parts.nets import MLP, sequential_forward

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class TanhGaussianActor(nn.Module):
    """pi(a | x) = tanh(N(mu(x), std(x))), x [..., in_dim] -> a [..., A] in [-1, 1]."""

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = MLP(in_dim, hidden, 2 * action_dim)
        self.action_dim = action_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.net(x).chunk(2, -1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample and its log-probability [..., 1] (tanh-corrected)."""
        mu, log_std = self(x)
        std = log_std.exp()
        u = mu + std * torch.randn_like(mu)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)
        logp = logp - (2 * (torch.log(torch.tensor(2.0)) - u - nn.functional.softplus(-2 * u))).sum(-1)
        return a, logp.unsqueeze(-1)

    def act(
        self, x: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """An action in [-1, 1]: tanh(mu) when deterministic, else tanh(mu + std * noise). The same numbers
        as going through `forward`, with fewer tensor ops (no module calls; the deterministic path never
        touches log_std): at batch 1 each op costs more than its arithmetic."""
        out = sequential_forward(self.net, x)
        if deterministic:
            return torch.tanh(out[..., : self.action_dim])
        mu, log_std = out.chunk(2, -1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return torch.tanh(mu + log_std.exp() * noise)


class TwinQ(nn.Module):
    """Two independent Q(x, a) nets; forward returns both [..., 1]."""

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.q1 = MLP(in_dim + action_dim, hidden, 1)
        self.q2 = MLP(in_dim + action_dim, hidden, 1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa = torch.cat([x, a], -1)
        return self.q1(xa), self.q2(xa)
