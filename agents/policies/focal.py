"""FOCAL / FOCAL++ policy (what serving needs): a context encoder with a deterministic task representation,
and the actor on (s, z).

The task representation of a context is the softmax(score)-weighted mean of per-transition embeddings
(agents/parts/context_encoders.py; FOCAL's scores are all equal, so it is the plain mean). The state keeps its
running sufficient statistics, so `update` absorbs one transition at a time, batched over sessions, and
gives the same z as the whole context at once (`absorb`, which evaluation with offline contexts uses):

    m [n, 1]   the largest score seen (starts at -1e9: an empty context)
    w [n, 1]   sum_n exp(s_n - m)
    ez [n, D]  sum_n exp(s_n - m) e_n                     z = ez / w  (0 for an empty context)

    belief(state) = z  [n, D]
"""

from __future__ import annotations

import torch

from agents.parts.context_encoders import ContextEncoder
from agents.parts.nets import transition_features
from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, Spaces, State, settings_of

EMPTY = -1e9  # the running max score of an empty context (exp(EMPTY - s) underflows to 0)


class FOCALPolicy(AgentPolicy):
    algorithm = "focal"

    def __init__(self, spaces: Spaces, latent_dim: int = 5, encoder_hidden: tuple[int, ...] = (200, 200, 200), attention: str = "none",
                 attention_width: int = 64, attention_heads: int = 4, reduction: int = 16,
                 actor_hidden: tuple[int, ...] = (256, 256, 256)) -> None:
        super().__init__(spaces, settings_of(locals()))
        self.latent_dim = latent_dim
        x_dim = 2 * self.obs_dim + self.action_dim + 1
        self.encoder = ContextEncoder(x_dim, latent_dim, tuple(encoder_hidden), attention, attention_width, attention_heads, reduction)  # type: ignore[arg-type]
        self.actor = TanhGaussianActor(self.obs_dim + latent_dim, self.action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return self.latent_dim

    def embed(self, s, a, r, s2, encoder: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(e [..., D], score [..., 1]) per transition; `a` in env units; `encoder` defaults to the policy's
        (training passes its momentum key encoder, which has the same shape)."""
        enc = self.encoder if encoder is None else encoder
        return enc(transition_features(s, self.normalize_action(a), r, s2))

    def init_state(self, n: int) -> State:
        dev = self.device
        return {
            "m": torch.full((n, 1), EMPTY, device=dev),
            "w": torch.zeros(n, 1, device=dev),
            "ez": torch.zeros(n, self.latent_dim, device=dev),
        }

    def absorb(self, state: State, s, a, r, s2, mask: torch.Tensor | None = None) -> State:
        """Add a context of L transitions per session ([n, L, ...], `mask` [n, L] for padding)."""
        e, score = self.embed(s, a, r, s2)
        if mask is not None:
            score = score.masked_fill(~mask.unsqueeze(-1), EMPTY)
        m = torch.maximum(state["m"], score.amax(1))
        old = torch.exp(state["m"] - m)
        new = torch.exp(score - m.unsqueeze(1))  # [n, L, 1]
        if mask is not None:
            new = new * mask.unsqueeze(-1)
        return {"m": m, "w": state["w"] * old + new.sum(1), "ez": state["ez"] * old + (new * e).sum(1)}

    def update(self, state: State, s, a, r, s2) -> State:
        r = torch.as_tensor(r, dtype=torch.float32, device=s.device).reshape(-1, 1)
        return self.absorb(state, s.unsqueeze(1), a.unsqueeze(1), r, s2.unsqueeze(1))

    def belief(self, state: State) -> torch.Tensor:
        return state["ez"] / state["w"].clamp_min(1e-12)


class FOCALPPPolicy(FOCALPolicy):
    """FOCAL++ (the FOCAL++ paper): the same modules with an attention encoder, trained with momentum contrast."""

    algorithm = "focalpp"
