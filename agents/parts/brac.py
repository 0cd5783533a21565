"""Behaviour regularisation (BRAC, Wu et al. 2019) with the KL divergence estimated by its dual.

KL(pi || b) = sup_g  E_{a~pi}[g(x, a)] - E_{a~b}[exp(g(x, a) - 1)]      (f-divergence dual, f(u) = u log u)

and the optimum is g* = 1 + log(pi / b). A discriminator g (an MLP on (x, a)) is trained to maximise the
bound on policy actions a ~ pi(.|x) and dataset actions a ~ b(.|x); the actor then pays
`strength * (E_pi[g(x, a_pi)] - E_b[exp(g - 1)])`, whose gradient reaches the actor through a_pi only
("policy regularisation"; FOCAL's point-robot settings use strength 0, its MuJoCo ones 500 and 1e6).
"""

from __future__ import annotations

import torch
from torch import nn

from agents.parts.nets import MLP


class KLDual(nn.Module):
    """The dual discriminator g(x, a): [B, X], [B, A] -> [B, 1]; g is clipped to (-20, 20) for stability."""

    def __init__(self, in_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        self.net = MLP(in_dim + action_dim, hidden, 1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, a], -1)).clamp(-20.0, 20.0)

    def estimate(self, x: torch.Tensor, a_pi: torch.Tensor, a_data: torch.Tensor) -> torch.Tensor:
        """The dual's KL(pi || b) estimate (a lower bound, tight at g*): a scalar."""
        return self(x, a_pi).mean() - torch.exp(self(x, a_data) - 1.0).mean()


class BehaviourRegulariser:
    """Trains the dual and hands the actor its divergence penalty."""

    def __init__(
        self, in_dim: int, action_dim: int, strength: float, lr: float = 1e-4, hidden=(256, 256), device: str | torch.device = "cpu"
    ) -> None:
        self.strength = float(strength)
        self.dual = KLDual(in_dim, action_dim, tuple(hidden)).to(device)
        self.opt = torch.optim.Adam(self.dual.parameters(), lr=lr)

    def update(self, x: torch.Tensor, a_pi: torch.Tensor, a_data: torch.Tensor) -> torch.Tensor:
        """One ascent step on the bound (inputs detached); returns the current KL estimate (0-d, detached)."""
        kl = self.dual.estimate(x.detach(), a_pi.detach(), a_data.detach())
        self.opt.zero_grad(set_to_none=True)
        (-kl).backward()
        self.opt.step()
        return kl.detach()

    def penalty(self, x: torch.Tensor, a_pi: torch.Tensor) -> torch.Tensor:
        """strength * g(x, a_pi) [B, 1]: the part of the estimate the actor can move (x detached)."""
        return self.strength * self.dual(x.detach(), a_pi)

    def state_dict(self) -> dict:
        return {"dual": self.dual.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.dual.load_state_dict(sd["dual"])
        self.opt.load_state_dict(sd["opt"])
