"""Networks shared by every algorithm: the MLP and the GRU transition encoder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def linear(m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`m(x)` without the module call (and without nn.Module.__getattr__ for its parameters): the same op."""
    p = m._parameters
    return F.linear(x, p["weight"], p["bias"])


def sequential_forward(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`layers(x)` for a stack of nn.Linear / nn.ReLU (other modules are called as usual), without the
    per-module call overhead: F.linear on each Linear's own weights, and the ReLU in place on the tensor
    the previous layer just made (never on the caller's `x`). The same numbers as `layers(x)`, and the same
    gradients (a Linear's backward needs its input, not its output). At batch 1 the module calls cost as
    much as the arithmetic; serving runs through here."""
    fresh = False  # whether x was made here (so it may be overwritten); another module may return its input
    for m in layers:
        t = type(m)
        if t is nn.Linear:
            x, fresh = linear(m, x), True
        elif t is nn.ReLU:
            x, fresh = (torch.relu_(x) if fresh else torch.relu(x)), True
        else:
            x, fresh = m(x), False
    return x


class MLP(nn.Sequential):
    """Fully connected net: in_dim -> hidden... -> out_dim, ReLU between layers, linear output."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int) -> None:
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, out_dim))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sequential_forward(self, x)


class ConcaveProfile(nn.Module):
    """A concave function of u [..., in_dim] -> [..., 1]: c - sum_i softplus(v_i) relu(w_i . u + b_i), a sum of
    convex hinges with non-negative weights, negated (an input-convex net of one layer). Its maximisers form
    one convex set, so a reward modelled as f(feature - target) has one peak per target. `isotropic` (2-D u):
    hinge directions start evenly spread over the unit circle with offsets 0, a round cone
    -mean_i relu(theta_i . u) ~ -||u|| / pi, instead of random ones that can start it as a ridge."""

    def __init__(self, in_dim: int, hidden: int, isotropic: bool = False) -> None:
        super().__init__()
        self.hinges = nn.Linear(in_dim, hidden)
        if isotropic:
            if in_dim != 2:
                raise ValueError(f"an isotropic start needs a 2-D latent, got {in_dim}")
            angle = torch.arange(hidden, dtype=torch.float32) * (2 * math.pi / hidden)
            with torch.no_grad():
                self.hinges.weight.copy_(torch.stack([angle.cos(), angle.sin()], -1))
                self.hinges.bias.zero_()
        self.raw_weight = nn.Parameter(torch.full((hidden,), math.log(math.expm1(1.0 / hidden))))  # softplus = 1/hidden
        self.offset = nn.Parameter(torch.zeros(1))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.offset - torch.relu(self.hinges(u)) @ F.softplus(self.raw_weight).unsqueeze(-1)


class TranslationReward(nn.Module):
    """A reward decoder under which a task is a target point: r_hat = f(phi x - A z) + b(x) for a transition
    x [..., X] and latents z broadcastable to [..., K, D], giving [..., K]. phi and A are linear (a non-linear
    phi can fold distinct transitions onto one feature, and distant latents onto one task), f is a
    ConcaveProfile (one peak per target), b an MLP of the transition alone. A starts as the identity, so z
    starts in phi's units. It cannot express tasks that are not targets (a direction that flips the sign)."""

    def __init__(self, x_dim: int, latent_dim: int, hidden: int, isotropic: bool = False) -> None:
        super().__init__()
        self.feature = nn.Linear(x_dim, latent_dim)
        self.latent_in = nn.Linear(latent_dim, latent_dim, bias=False)
        nn.init.eye_(self.latent_in.weight)
        self.rest = ConcaveProfile(latent_dim, hidden, isotropic)
        self.base = MLP(x_dim, (hidden,), 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        u = self.feature(x).unsqueeze(-2) - self.latent_in(z)
        return self.rest(u).squeeze(-1) + self.base(x)


def transition_features(s: torch.Tensor, a: torch.Tensor, r: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Concatenate a transition (s, a, r, s') along the last axis; r has shape [..., 1] or [...]."""
    if r.dim() == s.dim() - 1:
        r = r.unsqueeze(-1)
    return torch.cat([s, a, r, s2 - s], dim=-1)


class GRUEncoder(nn.Module):
    """Embeds transitions (s, a, r, s') by one Linear+ReLU layer and runs a GRU over them.

    `step` advances one transition per row ([n, ...] -> hidden [n, H]); `sequence` runs [B, T, ...] from
    h0 [B, H] and returns every hidden state [B, T, H]. Both use the same weights and give the same numbers.
    """

    def __init__(self, obs_dim: int, action_dim: int, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.embed = nn.Sequential(nn.Linear(2 * obs_dim + action_dim + 1, embed_dim), nn.ReLU())
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)

    def sequence(self, s, a, r, s2, h0: torch.Tensor | None = None) -> torch.Tensor:
        x = sequential_forward(self.embed, transition_features(s, a, r, s2))
        h0 = None if h0 is None else h0.unsqueeze(0).contiguous()
        out, _ = self.gru(x, h0)
        return out

    def step(self, h: torch.Tensor, s, a, r, s2) -> torch.Tensor:
        x = sequential_forward(self.embed, transition_features(s, a, r, s2))
        # the GRU cell on nn.GRU's own weights: the same numbers as `sequence`, ~2x cheaper at batch 1
        p = self.gru._parameters
        return torch.gru_cell(x, h, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
