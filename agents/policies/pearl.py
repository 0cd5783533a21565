"""PEARL policy (what serving needs): per-transition MLP encoder, product-of-Gaussians posterior, SAC actor.

Each transition c_n = (s, a, r, s') is encoded to a Gaussian factor N(mu_n, diag(var_n)); the posterior
over the task latent z (D dims) is the product of the prior N(0, I) and every factor seen so far:

    precision = 1 + sum_n 1/var_n,   mu = (sum_n mu_n/var_n) / precision,   std = precision^(-1/2).

The state holds the two running sums (`prec` [n, D], starting at 1, and `pmu` [n, D], starting at 0), so
`update` is exact one transition at a time, batched over sessions, and the same numbers as the product
over a whole context batch (`absorb`, which training uses).

    belief(state) = (posterior mean, posterior std)  [n, 2D]

What the actor sees besides s (`latent`):
  - sample_z=False (default, Bayes-adaptive like MoSS): the belief itself, (mu, std); serving is
    deterministic given the belief.
  - sample_z=True (PEARL's posterior sampling): a latent z of D dims. `act` uses z = mu when deterministic
    and draws z ~ N(mu, std) per call otherwise; PEARL's protocol (hold one z per episode) is
    `agents.evaluation.pearl_protocol_episodes`, which passes a point belief (z, 0).

TCL-PEARL and CoCOA serve exactly the same modules; they are subclasses only so that checkpoints, `hello`
and reports name the agent that was trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agents.parts.latent import Gaussian, product_posterior, product_stats
from agents.parts.nets import MLP, transition_features
from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, Spaces, State, settings_of

VAR_MIN = 1e-4  # floor of a factor's variance (bounds one transition's precision at 1e4)


class PEARLPolicy(AgentPolicy):
    algorithm = "pearl"

    def __init__(self, spaces: Spaces, latent_dim: int = 5, encoder_hidden: tuple[int, ...] = (200, 200),
                 actor_hidden: tuple[int, ...] = (256, 256), sample_z: bool = False) -> None:
        super().__init__(spaces, settings_of(locals()))
        self.latent_dim, self.sample_z = latent_dim, sample_z
        self.encoder = MLP(2 * self.obs_dim + self.action_dim + 1, encoder_hidden, 2 * latent_dim)
        self.latent_input_dim = latent_dim if sample_z else 2 * latent_dim
        self.actor = TanhGaussianActor(self.obs_dim + self.latent_input_dim, self.action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return 2 * self.latent_dim

    # -- encoder and posterior ----------------------------------------------------------------------------
    def factors(
        self, s, a, r, s2, encoder: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-transition factors (mu_n, var_n), each [..., D]; `a` in env units. `encoder` defaults to
        the policy's (training passes its EMA key encoder, which has the same shape)."""
        out = (self.encoder if encoder is None else encoder)(
            transition_features(s, self.normalize_action(a), r, s2)
        )
        mu, raw = out.split(self.latent_dim, -1)
        return mu, F.softplus(raw) + VAR_MIN

    def init_state(self, n: int) -> State:
        return {"prec": torch.ones(n, self.latent_dim, device=self.device), "pmu": torch.zeros(n, self.latent_dim, device=self.device)}

    def absorb(self, state: State, s, a, r, s2, mask: torch.Tensor | None = None, encoder=None) -> State:
        """Multiply in a context of L transitions per session ([n, L, ...], `mask` [n, L] for padding)."""
        prec, pmu = product_stats(*self.factors(s, a, r, s2, encoder), mask)
        return {"prec": state["prec"] + prec, "pmu": state["pmu"] + pmu}

    def update(self, state: State, s, a, r, s2) -> State:
        r = torch.as_tensor(r, dtype=torch.float32, device=s.device).reshape(-1, 1)
        return self.absorb(state, s.unsqueeze(1), a.unsqueeze(1), r, s2.unsqueeze(1))

    def posterior(self, state: State) -> Gaussian:
        return product_posterior(state["prec"], state["pmu"])

    def belief(self, state: State) -> torch.Tensor:
        g = self.posterior(state)
        return torch.cat([g.mu, g.std], -1)

    # -- acting -------------------------------------------------------------------------------------------
    def latent(self, mu: torch.Tensor, std: torch.Tensor, sample: bool) -> torch.Tensor:
        """What the actor (and the critic) see besides s: (mu, std), or z (mu, or a reparameterised draw)."""
        if not self.sample_z:
            return torch.cat([mu, std], -1)
        return mu + std * torch.randn_like(mu) if sample else mu

    def policy_input(self, obs: torch.Tensor, belief: torch.Tensor, sample: bool = False) -> torch.Tensor:
        mu, std = belief.split(self.latent_dim, -1)
        return torch.cat([obs, self.latent(mu, std, sample)], -1)

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        a = self.actor.act(self.policy_input(obs, belief, sample=not deterministic), deterministic)
        return self.scale_action(a)


class TCLPolicy(PEARLPolicy):
    """TCL-PEARL (the TCL-PEARL paper): PEARL's policy, trained with the trajectory contrastive loss."""

    algorithm = "tcl"


class CoCOAPolicy(PEARLPolicy):
    """CoCOA (the CoCOA paper): PEARL's policy, trained with the Bhattacharyya contrastive loss."""

    algorithm = "cocoa"
