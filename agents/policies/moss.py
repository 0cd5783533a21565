"""MoSS policy (what serving needs): GRU encoder, Gaussian-mixture head, SAC actor on (s, belief)."""

from __future__ import annotations

import torch

from agents.parts.latent import LOGSTD_MAX, LOGSTD_MIN, Mixture, MixtureHead, belief_dim, belief_vector
from agents.parts.nets import GRUEncoder, linear
from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, State


class MoSSPolicy(AgentPolicy):
    """Belief = (mu, std) of the most likely mixture component (+ the K probabilities if `include_probs`)."""

    algorithm = "moss"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        action_low: list[float],
        action_high: list[float],
        latent_dim: int = 5,
        n_components: int = 1,
        embed_dim: int = 32,
        hidden_dim: int = 64,
        actor_hidden: tuple[int, ...] = (256, 256),
        include_probs: bool = False,
        head_hidden: tuple[int, ...] = (),
        acts_on: str = "belief",
        embed_hidden: tuple[int, ...] = (),
        normalize: bool = False,
        cell: str = "gru",
    ) -> None:
        super().__init__(obs_dim, action_dim, action_low, action_high)
        self.cfg = dict(
            latent_dim=latent_dim,
            n_components=n_components,
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            actor_hidden=list(actor_hidden),
            include_probs=include_probs,
            head_hidden=list(head_hidden),
            acts_on=acts_on,
            embed_hidden=list(embed_hidden),
            normalize=normalize,
            cell=cell,
        )
        if acts_on not in ("belief", "hidden"):
            raise ValueError(f"acts_on must be 'belief' or 'hidden', not {acts_on!r}")
        self.include_probs = include_probs
        self.acts_on = acts_on
        self.encoder = GRUEncoder(obs_dim, action_dim, embed_dim, hidden_dim, embed_hidden, normalize, cell)
        self.head = MixtureHead(hidden_dim, n_components, latent_dim, head_hidden)
        # acts_on="hidden" (an ablation, not MoSS): the actor and critics read the GRU state itself, the
        # latent serves the encoder's objectives only
        self._belief_dim = (
            hidden_dim if acts_on == "hidden" else belief_dim(latent_dim, n_components, include_probs)
        )
        self.actor = TanhGaussianActor(obs_dim + self._belief_dim, action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return self._belief_dim

    def init_state(self, n: int) -> State:
        return {"h": torch.zeros(n, self.encoder.hidden_dim)}

    def update(self, state: State, s, a, r, s2) -> State:
        return {"h": self.encoder.step(state["h"], s, self.normalize_action(a), r, s2)}

    def posterior(self, state: State) -> Mixture:
        return self.head(state["h"])

    def belief(self, state: State) -> torch.Tensor:
        return self.beliefs_from_hidden(state["h"])

    def beliefs_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Beliefs for hidden states h [..., H]: what `belief` serves, and what training relabels its
        buffer with."""
        if self.acts_on == "hidden":
            return h
        head = self.head
        if head.k == 1 and not self.include_probs:
            # one component: it is always the selected one, and the Gaussian layer's output is already laid
            # out as (mu, logstd); the same numbers as belief_vector(head(h)) in 4 tensor ops instead of ~15
            out = linear(head.gauss, head.features(h))
            out[..., head.d :].clamp_(LOGSTD_MIN, LOGSTD_MAX).exp_()
            return out
        return belief_vector(head(h), self.include_probs)
