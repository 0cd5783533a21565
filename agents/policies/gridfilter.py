"""Grid-filter policy (what serving needs): exact Bayes filtering of the task over a latent grid
(agents/latent_filter.py), SAC actor on (s, posterior mean and std of z)."""

from __future__ import annotations

import torch

from agents.parts.grid_filter import LatentGridFilter
from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, State


class FilterPolicy(AgentPolicy):
    """State = log q over the K grid points [n, K]; belief = (mean, std[, mode]) of z under q [n, 2 or 3 latent_dim]
    [, mean and std of the predicted reward at each of `probes` transitions, + 2 probes]."""

    algorithm = "filter"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        action_low: list[float],
        action_high: list[float],
        grid: int = 16,
        latent_dim: int = 2,
        hidden: int = 32,
        hazard: float = 0.02,
        mode: bool = False,
        min_sigma: float = 0.0,
        refine: int = 1,
        probes: int = 0,
        decoder: str = "mlp",
        isotropic: bool = False,
        actor_hidden: tuple[int, ...] = (256, 256),
    ) -> None:
        super().__init__(obs_dim, action_dim, action_low, action_high)
        self.cfg = dict(
            grid=grid, latent_dim=latent_dim, hidden=hidden, hazard=hazard, mode=mode, min_sigma=min_sigma,
            refine=refine, probes=probes, decoder=decoder, isotropic=isotropic, actor_hidden=list(actor_hidden),
        )  # fmt: skip
        self.filter = LatentGridFilter(
            obs_dim, action_dim, grid, latent_dim, hidden, hazard, mode, min_sigma, refine, probes, decoder, isotropic
        )
        self.actor = TanhGaussianActor(obs_dim + self.filter.belief_dim, action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return self.filter.belief_dim

    def init_state(self, n: int) -> State:
        return {"logq": self.filter.prior(n)}

    def update(self, state: State, s, a, r, s2) -> State:
        return {"logq": self.filter.step(state["logq"], s, self.normalize_action(a), r, s2)}

    def belief(self, state: State) -> torch.Tensor:
        return self.filter.belief(state["logq"])
