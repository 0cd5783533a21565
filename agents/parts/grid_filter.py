"""Exact Bayes filtering of the task over a fixed latent grid, with a learned reward likelihood.

The task latent z takes one of K = G^D fixed points of [-1, 1]^D. A reward decoder r_hat(s, a, s', z) (an
MLP) and one noise scale sigma give the likelihood p(r | s, a, s', z) = N(r; r_hat, sigma^2), and the
belief over the grid is updated by Bayes' rule, with a switch prior (the task may change at any step with
probability `hazard`, to any grid point):

    q_t(k) ∝ [(1 - hazard) q_{t-1}(k) + hazard / K] * p(r_t | s_t, a_t, s'_t, z_k),   q_0 uniform.

What the policy sees is the posterior mean and std of z, [.., 2D]. Latent coordinates mean something
only where the learned map from z to tasks is unfolded (the translation decoder below cannot fold it).
Only the likelihood is learned, by maximising the exact predictive log-likelihood of each reward given
the steps before it (an HMM's marginal likelihood, `sequence`). The grid is fixed rather than learned:
learned points snap to the training tasks and place unseen test tasks worse.

With `refine` > 1, acting (`step`, what collection, evaluation and serving run) filters on a finer grid,
`refine - 1` extra points between neighbouring points of the training grid: the decoder is a function of
continuous z, so the finer grid places a task between the points it was trained on (an unseen test task)
instead of snapping it to the nearest one. Learning and the buffer's beliefs stay on the training grid
(`train_z`), where the cost of a likelihood step is set.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from agents.parts.nets import MLP, TranslationReward

# "mlp": r_hat = MLP([s, a, s'], z), any map from grid points to tasks, one that folds included (distant
# points standing for one task). "translation": r_hat = f(phi [s, a, s'] - A z) + b([s, a, s']), phi and A
# linear, f concave, b an MLP (agents/parts/nets.py TranslationReward): a task is a target point A z in a
# learned linear feature of the transition (a position, a velocity), grid points map to targets affinely
# and the reward has one peak per target, so distant points cannot stand for one task. It cannot express
# tasks that are not targets (a direction that flips the reward's sign).
DECODERS = ("mlp", "translation")


class LatentGridFilter(nn.Module):
    """Bayes filter over `grid`^`latent_dim` fixed points; state = log q [n, K]."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        grid: int,
        latent_dim: int,
        hidden: int,
        hazard: float,
        refine: int = 1,
        decoder: str = "mlp",
        isotropic: bool = False,
    ) -> None:
        super().__init__()
        self.decoder = decoder
        if grid < 2 or not 0 < hazard < 1 or refine < 1:
            raise ValueError(f"need grid >= 2, 0 < hazard < 1 and refine >= 1, got grid={grid}, hazard={hazard}, refine={refine}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if isotropic and decoder != "translation":
            raise ValueError("isotropic starts the translation decoder's concave profile: set decoder='translation'")
        # both grids follow from (grid, refine), so checkpoints hold neither and refine can change at load
        self.register_buffer("z", grid_points((grid - 1) * refine + 1, latent_dim), persistent=False)  # acting
        self.register_buffer("train_z", grid_points(grid, latent_dim), persistent=False)
        self.grid, self.refine, self.k, self.latent_dim, self.hazard = grid, refine, self.z.shape[0], latent_dim, float(hazard)
        self.x_dim = x_dim = 2 * obs_dim + action_dim  # a transition [s, a, s']
        if decoder == "mlp":
            # the first layer split in two: W [s, a, s'] once per step plus W_z z once per grid point
            self.transition_in = nn.Linear(x_dim, hidden)
            self.latent_in = nn.Linear(latent_dim, hidden, bias=False)
            self.rest = MLP(hidden, (hidden,), 1)
        else:  # translation: r_hat = f(phi x - A z) + b(x)
            self.translation = TranslationReward(x_dim, latent_dim, hidden, isotropic)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.3)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        state_dict.pop(prefix + "z", None)  # checkpoints before `refine` stored the grid
        if self.decoder == "translation":  # checkpoints before TranslationReward held its parts here
            for part in ("feature.", "latent_in.", "rest.", "base."):
                for key in [k for k in state_dict if k.startswith(prefix + part)]:
                    state_dict[prefix + "translation." + key[len(prefix) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def log_likelihood(
        self, s: torch.Tensor, a: torch.Tensor, r: torch.Tensor, s2: torch.Tensor, z: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(r | s, a, s', z_k) [..., K] for s, a, s2 [..., dim] and r [...] or [..., 1]; a in [-1, 1];
        z [K, D]: the points (default: the acting grid)."""
        if r.dim() == s.dim():
            r = r.squeeze(-1)
        r = r.to(s.dtype)
        z = self.z if z is None else z.to(self.z)
        pred = self.mean_reward(torch.cat([s, a, s2], -1), z)
        sigma = self.sigma
        z = (r.unsqueeze(-1) - pred) / sigma
        return -0.5 * z**2 - sigma.log() - 0.5 * math.log(2 * math.pi)

    def mean_reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The decoder: r_hat [..., K] for transitions x = [s, a, s'] [..., 2 obs + act] at the points z [K, D]."""
        if self.decoder == "translation":
            return self.translation(x, z)
        h = self.transition_in(x).unsqueeze(-2) + self.latent_in(z)
        return self.rest(torch.relu(h)).squeeze(-1)

    @property
    def sigma(self) -> torch.Tensor:
        """The likelihood's learned noise scale (reward units)."""
        return self.log_sigma.exp()

    def prior(self, n: int, k: int | None = None) -> torch.Tensor:
        """log q_0 [n, K]: uniform over K points (default: the acting grid's)."""
        k = self.k if k is None else k
        return torch.full((n, k), -math.log(k), device=self.z.device)

    def predict(self, logq: torch.Tensor) -> torch.Tensor:
        """The belief before the next step's reward: the posterior mixed with the switch prior."""
        k = logq.shape[-1]
        return torch.logaddexp(logq + math.log(1 - self.hazard), torch.full_like(logq, math.log(self.hazard / k)))

    def step(self, logq: torch.Tensor, s: torch.Tensor, a: torch.Tensor, r: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """log q_t [n, K] from log q_{t-1} and one transition per row (r [n])."""
        joint = self.predict(logq) + self.log_likelihood(s, a, r, s2)
        return joint - torch.logsumexp(joint, -1, keepdim=True)

    def sequence(
        self, s: torch.Tensor, a: torch.Tensor, r: torch.Tensor, s2: torch.Tensor, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Over [E, T] sequences from the prior: log p(r_t | steps < t) [E, T] and log q_t after step t [E, T, K],
        over the points z [K, D] (default: the acting grid; learning passes the training grid)."""
        return self.recursion(self.log_likelihood(s, a, r, s2, z))

    def recursion(self, ll: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`sequence` from its log-likelihoods ll [E, T, K]."""
        logq = self.prior(ll.shape[0], ll.shape[-1])
        pred, post = [], []
        for t in range(ll.shape[1]):
            joint = self.predict(logq) + ll[:, t]
            pred.append(torch.logsumexp(joint, -1))
            logq = joint - pred[-1].unsqueeze(-1)
            post.append(logq)
        return torch.stack(pred, 1), torch.stack(post, 1)

    @property
    def belief_dim(self) -> int:
        return 2 * self.latent_dim

    def belief(self, logq: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior mean and std of z [..., 2D] from log q [..., K] over the points z [K, D] (default: the
        acting grid)."""
        z = self.z if z is None else z
        q = logq.exp()
        mu = q @ z
        # centred second moment: E[z^2] - mu^2 cancels badly in float32 once q is concentrated
        var = (q.unsqueeze(-1) * (z - mu.unsqueeze(-2)) ** 2).sum(-2)
        return torch.cat([mu, var.clamp_min(1e-12).sqrt()], -1)


def grid_points(n: int, dim: int) -> torch.Tensor:
    """The n^dim points of a regular grid on [-1, 1]^dim [n^dim, dim], the last axis varying fastest."""
    axis = torch.linspace(-1, 1, n)
    return torch.stack(torch.meshgrid(*[axis] * dim, indexing="ij"), -1).reshape(-1, dim)
