"""Grid-filter policy (what serving needs): exact Bayes filtering of the task over a latent grid
(agents/parts/grid_filter.py), SAC actor on (s, posterior mean and std of z)."""

from __future__ import annotations

import torch

from agents.parts.grid_filter import LatentGridFilter
from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, Spaces, State, settings_of


class GridFilterPolicy(AgentPolicy):
    """State = log q over the K grid points [n, K]; belief = (mean, std) of z under q [n, 2 latent_dim]."""

    algorithm = "gridfilter"

    def __init__(self, spaces: Spaces, grid: int = 16, latent_dim: int = 2, hidden: int = 32, hazard: float = 0.02, refine: int = 1,
                 decoder: str = "mlp", isotropic: bool = False, actor_hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__(spaces, settings_of(locals()))
        self.filter = LatentGridFilter(self.obs_dim, self.action_dim, grid, latent_dim, hidden, hazard, refine, decoder, isotropic)
        self.actor = TanhGaussianActor(self.obs_dim + self.filter.belief_dim, self.action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return self.filter.belief_dim

    def init_state(self, n: int) -> State:
        return {"logq": self.filter.prior(n)}

    def update(self, state: State, s, a, r, s2) -> State:
        return {"logq": self.filter.step(state["logq"], s, self.normalize_action(a), r, s2)}

    def belief(self, state: State) -> torch.Tensor:
        return self.filter.belief(state["logq"])
