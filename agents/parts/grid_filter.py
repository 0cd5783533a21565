"""Exact Bayes filtering of the task over a fixed latent grid, with a learned reward likelihood.

The task latent z takes one of K = G^D fixed points of [-1, 1]^D. A reward decoder r_hat(s, a, s', z) (an
MLP) and one noise scale sigma give the likelihood p(r | s, a, s', z) = N(r; r_hat, sigma^2), and the
belief over the grid is updated by Bayes' rule, with a switch prior (the task may change at any step with
probability `hazard`, to any grid point):

    q_t(k) ∝ [(1 - hazard) q_{t-1}(k) + hazard / K] * p(r_t | s_t, a_t, s'_t, z_k),   q_0 uniform.

What the policy sees is the posterior mean and std of z, [.., 2D], and with `mode` also the most likely
grid point [.., 3D]: a mean and std cannot tell a ring of hypotheses (what one standing reading allows)
from a blob around its centre, the most likely point on the ring can. With `probes` M > 0 it also sees
the belief in reward space, [.., + 2M]: the posterior mean and std of the predicted reward at M fixed
transitions (drawn from the first stored data by the learner, `set_probes`). Latent coordinates mean
something only where the learned map from z to tasks is unfolded; a folded map (distant points standing
for one task, tools/filter_map.py) leaves the posterior with several modes and its mean between them,
where the predicted rewards of every mode agree. Only the likelihood is learned, by
maximising the exact predictive log-likelihood of each reward given the steps before it (an HMM's
marginal likelihood, `sequence`). The grid is fixed rather than learned: learned points snap to the
training tasks and place unseen test tasks worse (tools/filter_study.py, docs/results.md).

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
# points standing for one task, tools/filter_map.py). "translation": r_hat = f(phi [s, a, s'] - A z) +
# b([s, a, s']), phi and A linear, f concave, b an MLP (agents/nets.py TranslationReward): a task is a target
# point A z in a learned linear feature of the transition (a position, a velocity), grid points map to
# targets affinely and the reward has one peak per target, so distant points cannot stand for one task (a
# linear phi, because a non-linear one can itself fold; a concave f, because a free one grew two peaks:
# docs/results.md). It cannot express tasks that are not targets (a direction that flips the reward's sign).
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
        mode: bool = False,
        min_sigma: float = 0.0,
        refine: int = 1,
        probes: int = 0,
        decoder: str = "mlp",
        isotropic: bool = False,
    ) -> None:
        super().__init__()
        self.mode, self.min_sigma, self.probes, self.decoder = mode, float(min_sigma), probes, decoder
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
        if probes:  # [s, a in [-1, 1], s'] per probe, and whether the learner has set them
            self.register_buffer("probe_x", torch.zeros(probes, x_dim))
            self.register_buffer("probes_set", torch.tensor(False))
        self._features: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # (versions, z, [K, M]) last read

    def _apply(self, fn, *args, **kwargs):
        self._features = None  # a move or cast makes new tensors whose versions restart
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        state_dict.pop(prefix + "z", None)  # checkpoints before `refine` stored the grid
        if self.decoder == "translation":  # checkpoints before TranslationReward held its parts here
            for part in ("feature.", "latent_in.", "rest.", "base."):
                for key in [k for k in state_dict if k.startswith(prefix + part)]:
                    state_dict[prefix + "translation." + key[len(prefix) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def spacing(self) -> float:
        """Distance between neighbouring points of the training grid along an axis."""
        return grid_spacing(self.grid)

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

    def set_probes(self, x: torch.Tensor) -> None:
        """Fix the transitions [probes, 2 obs + act] (a in [-1, 1]) at which the reward belief is read."""
        with torch.no_grad():
            self.probe_x.copy_(x)
            self.probes_set.fill_(True)

    def reward_features(self, z: torch.Tensor) -> torch.Tensor:
        """r_hat at the probes for every point z [K, D]: [K, M]. Without gradients (acting, relabelling) the
        last grid's are reused until a weight, the probes or the points change."""
        if torch.is_grad_enabled():
            return self.mean_reward(self.probe_x, z).T
        versions = tuple(t._version for t in (*self.parameters(), self.probe_x))  # bumped by every in-place write
        c = self._features
        if c is None or c[0] != versions or c[1].shape != z.shape or not torch.equal(c[1], z):
            self._features = c = (versions, z.clone(), self.mean_reward(self.probe_x, z).T.contiguous())
        return c[2]

    @property
    def sigma(self) -> torch.Tensor:
        """The likelihood's noise scale: learned, floored at `min_sigma` (a floor keeps the posterior spread
        over neighbouring grid points, so its mean can place a task between them)."""
        return self.log_sigma.exp().clamp_min(self.min_sigma)

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
        return (3 if self.mode else 2) * self.latent_dim + 2 * self.probes

    def belief(self, logq: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior mean and std of z [..., 2D] from log q [..., K] over the points z [K, D] (default: the
        acting grid); with `mode`, then the most likely point [..., 3D] (the first of equals, so the uniform
        prior's is the grid's corner); with probes, then the mean and std of r_hat at each probe [..., + 2M]."""
        z = self.z if z is None else z
        q = logq.exp()
        mu = q @ z
        # centred second moment: E[z^2] - mu^2 cancels badly in float32 once q is concentrated
        var = (q.unsqueeze(-1) * (z - mu.unsqueeze(-2)) ** 2).sum(-2)
        parts = [mu, var.clamp_min(1e-12).sqrt()]
        if self.mode:
            parts.append(z[logq.argmax(-1)])
        if self.probes:
            phi = self.reward_features(z)
            mean = q @ phi
            parts += [mean, (q @ phi**2 - mean**2).clamp_min(1e-12).sqrt()]
        return torch.cat(parts, -1)


def grid_spacing(n: int) -> float:
    """Distance between neighbouring points of an n-point grid on [-1, 1] (`grid_points`)."""
    return 2.0 / (n - 1)


def grid_points(n: int, dim: int) -> torch.Tensor:
    """The n^dim points of a regular grid on [-1, 1]^dim [n^dim, dim], the last axis varying fastest."""
    axis = torch.linspace(-1, 1, n)
    return torch.stack(torch.meshgrid(*[axis] * dim, indexing="ij"), -1).reshape(-1, dim)


def spread_over_grid(w: torch.Tensor, grid: int, dim: int, width: float) -> torch.Tensor:
    """Weights w [..., grid^dim] on grid points, each point's weight shared out among its grid neighbours by
    a Gaussian of std `width` (z units) along every axis, normalised per point so totals are kept."""
    axis = torch.linspace(-1, 1, grid, device=w.device, dtype=w.dtype)
    h = torch.exp(-0.5 * ((axis[:, None] - axis[None]) / width) ** 2)
    h = h / h.sum(1, keepdim=True)  # row i: where point i's weight goes
    lead = w.shape[:-1]
    w = w.reshape(*lead, *[grid] * dim)
    for d in range(len(lead), len(lead) + dim):
        w = torch.movedim(torch.movedim(w, d, -1) @ h, -1, d)
    return w.reshape(*lead, grid**dim)
