"""SAC networks: the tanh-Gaussian actor (served) and the twin Q critic (training only).

Actions here live in the normalised box [-1, 1]^A; policies scale them to the env's bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from agents.parts.nets import MLP, sequential_forward

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
HALF_LOG_2PI, LOG_2 = 0.5 * math.log(2 * math.pi), math.log(2.0)


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
        """Reparameterised sample and its log-probability [..., 1] (tanh-corrected: log(1 - tanh(u)^2)
        written as 2 (log 2 - u - softplus(-2u)), which stays finite for large |u|)."""
        mu, log_std = self(x)
        eps = torch.randn_like(mu)
        u = mu + log_std.exp() * eps
        logp = -0.5 * eps.square() - log_std - (HALF_LOG_2PI + 2 * LOG_2) + 2 * (u + nn.functional.softplus(-2 * u))
        return torch.tanh(u), logp.sum(-1, keepdim=True)

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
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return torch.tanh(mu + log_std.exp() * noise)


class TwinQ(nn.Module):
    """Two independent Q(x, a) MLPs evaluated as one ensemble: each layer is one batched matmul for both
    (weights [2, in, out]). forward returns both estimates stacked, [2, ..., 1] (`q1, q2 = critic(x, a)`).

    Each member starts exactly as an `MLP(in_dim + action_dim, hidden, 1)` would (drawn in turn, q1 then
    q2), and a state dict in that two-MLP layout (`q1.0.weight`, ...) still loads."""

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        members = [[m for m in MLP(in_dim + action_dim, hidden, 1) if isinstance(m, nn.Linear)] for _ in range(2)]
        self.weights = nn.ParameterList(nn.Parameter(torch.stack([m[i].weight.T for m in members]).contiguous()) for i in range(len(members[0])))
        self.biases = nn.ParameterList(nn.Parameter(torch.stack([m[i].bias for m in members]).unsqueeze(1).contiguous()) for i in range(len(members[0])))

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        xa = torch.cat([x, a], -1)
        lead = xa.shape[:-1]
        h = xa.reshape(1, -1, xa.shape[-1]).expand(2, -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, torch.relu(h) if i else h, w)
        return h.reshape(2, *lead, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        old = prefix + "q1.0.weight"
        if old in state_dict:  # the two-MLP layout: Linear i sits at index 2 i of each Sequential
            for i in range(len(self.weights)):
                w = [state_dict.pop(f"{prefix}q{k}.{2 * i}.weight") for k in (1, 2)]
                b = [state_dict.pop(f"{prefix}q{k}.{2 * i}.bias") for k in (1, 2)]
                state_dict[f"{prefix}weights.{i}"] = torch.stack([x.T for x in w]).contiguous()
                state_dict[f"{prefix}biases.{i}"] = torch.stack(b).unsqueeze(1).contiguous()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
