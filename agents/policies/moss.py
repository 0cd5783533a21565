"""MoSS policy (what serving needs): GRU encoder, Gaussian-mixture head, SAC actor on (s, belief)."""

from __future__ import annotations

import torch

from agents.parts.latent import LOGSTD_MAX, LOGSTD_MIN, Mixture, MixtureHead, belief_dim, belief_vector
from agents.parts.nets import GRUEncoder, linear
from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, Spaces, State, settings_of


class MoSSPolicy(AgentPolicy):
    """Belief = (mu, std) of the most likely mixture component (+ the K probabilities if `include_probs`)."""

    algorithm = "moss"

    def __init__(self, spaces: Spaces, latent_dim: int = 5, n_components: int = 1, embed_dim: int = 32, hidden_dim: int = 64,
                 actor_hidden: tuple[int, ...] = (256, 256), include_probs: bool = False) -> None:
        super().__init__(spaces, settings_of(locals()))
        self.include_probs = include_probs
        self.encoder = GRUEncoder(self.obs_dim, self.action_dim, embed_dim, hidden_dim)
        self.head = MixtureHead(hidden_dim, n_components, latent_dim)
        self._belief_dim = belief_dim(latent_dim, n_components, include_probs)
        self.actor = TanhGaussianActor(self.obs_dim + self._belief_dim, self.action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return self._belief_dim

    def init_state(self, n: int) -> State:
        return {"h": torch.zeros(n, self.encoder.hidden_dim, device=self.device)}

    def update(self, state: State, s, a, r, s2) -> State:
        return {"h": self.encoder.step(state["h"], s, self.normalize_action(a), r, s2)}

    def posterior(self, state: State) -> Mixture:
        return self.head(state["h"])

    def belief(self, state: State) -> torch.Tensor:
        return self.beliefs_from_hidden(state["h"])

    def beliefs_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Beliefs for hidden states h [..., H]: what `belief` serves, and what training relabels its
        buffer with."""
        head = self.head
        if head.k == 1 and not self.include_probs:
            # one component: it is always the selected one, and the Gaussian layer's output is already laid
            # out as (mu, logstd); the same numbers as belief_vector(head(h)) in 4 tensor ops instead of ~15
            out = linear(head.gauss, h)
            out[..., head.d :].clamp_(LOGSTD_MIN, LOGSTD_MAX).exp_()
            return out
        return belief_vector(head(h), self.include_probs)
