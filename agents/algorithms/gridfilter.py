"""Grid filter: SAC on a belief computed by exact Bayes filtering over a latent grid (ours, not in the papers).

Each epoch, as in MoSS's loop (collect, then encoder updates, then SAC on the relabelled belief):
  1. `train.encoder_updates` likelihood steps: whole stored episodes are filtered from the uniform prior
     and the reward decoder and sigma follow the gradient of the predictive log-likelihood
     sum_t log p(r_t | steps < t) (agents/parts/grid_filter.py); no task labels, no KL, no contrastive
     term. With the mlp decoder the learned map from grid points to tasks can fold (distant points standing
     for one task); the translation decoder (`gridfilter.decoder`) is built so that it cannot.
     `gridfilter.grad_samples` estimates the step's gradient from a few grid points per step (`sampled_surrogate`);
  2. every stored episode is re-filtered with the new likelihood, so the beliefs SAC reads are current
     (with `gridfilter.relabel_every: N`, all of them every N epochs and the new ones in between);
     learning and re-filtering run on the training grid, acting on the (possibly refined) acting grid;
  3. `train.policy_updates` SAC steps on (s, belief) with the same SAC parts as MoSS and the oracle.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import numpy as np
import torch

from agents.algorithms.learner import Learner, sac_batch
from agents.config import GridFilterRun
from agents.device import host_to
from agents.parts.buffer import EpisodeBuffer
from agents.parts.sac import SAC
from agents.policies.gridfilter import GridFilterPolicy

RELABEL_CHUNK = 64  # episodes filtered at once when relabelling: [64, T, K, hidden] floats at a time


class GridFilter(Learner):
    def __init__(self, policy: GridFilterPolicy, cfg: GridFilterRun) -> None:
        self.policy, self.cfg = policy, cfg
        self.opt = torch.optim.Adam(policy.filter.parameters(), lr=cfg.gridfilter.lr)
        self.sac = SAC(policy.actor, policy.obs_dim + policy.belief_dim, policy.action_dim, cfg.sac)
        self._version = 0  # likelihood steps taken: beliefs computed under an older version are stale
        # per buffer: the likelihood version of its last full relabel, buffer.n_added at the last relabel,
        # and the relabels since the full one that skipped a moved likelihood
        self._labelled: weakref.WeakKeyDictionary[EpisodeBuffer, tuple[int, int, int]] = weakref.WeakKeyDictionary()

    def state_parts(self) -> dict[str, Any]:
        return {"filter_opt": self.opt, "sac": self.sac}

    def likelihood_step(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        """One Adam step on -mean_t log p(r_t | steps < t) over `gridfilter.batch_size` whole stored episodes."""
        idx = host_to(rng.integers(len(buffer), size=self.cfg.gridfilter.batch_size), buffer.device)
        f, z = self.policy.filter, self.policy.filter.train_z
        samples = self.cfg.gridfilter.grad_samples
        with torch.set_grad_enabled(not samples):  # sampled: the full grid only to weigh the points
            ll = episode_likelihoods(self.policy, buffer, idx, z)
        mask = buffer.mask[idx].to(ll.device)
        if not samples:
            loss = nll = -f.recursion(ll)[0][mask].mean()
        else:
            # d nll / d ll = -(each step's smoothed posterior over the grid) / steps: the exact gradient is
            # that weighting of d ll / d theta, estimated from `samples` points per step drawn by it
            leaf = ll.detach().requires_grad_()
            nll = -f.recursion(leaf)[0][mask].mean()
            (weight,) = torch.autograd.grad(nll, leaf)
            loss = sampled_surrogate(self.policy, buffer, idx, z, -weight, samples)
        self._version += 1
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"filter_nll": nll.detach(), "filter_sigma": f.sigma.detach()}

    @torch.no_grad()
    def relabel(self, buffer: EpisodeBuffer) -> None:
        """derived['belief'] [E, T+1, 2D]: the belief before step t at index t (0: the prior's). Every stored
        episode, or only those added since the last relabel when the likelihood has not changed since (or has,
        fewer than `gridfilter.relabel_every` calls ago)."""
        pol, n = self.policy, len(buffer)
        if "belief" not in buffer.derived:
            buffer.derived["belief"] = torch.zeros(buffer.capacity, buffer.horizon + 1, pol.belief_dim, device=buffer.device)
            self._labelled.pop(buffer, None)
        version, upto, skipped = self._labelled.get(buffer, (-1, 0, 0))
        moved = version != self._version and (version < 0 or skipped + 1 >= self.cfg.gridfilter.relabel_every)
        if moved:
            rows, version, skipped = torch.arange(n, device=buffer.device), self._version, 0
        else:  # only the new episodes; a moved likelihood is caught up on every `relabel_every`-th call
            new = min(buffer.n_added - upto, n)
            rows = torch.arange(buffer.n_added - new, buffer.n_added, device=buffer.device) % buffer.capacity
            skipped += version != self._version
        out, z = buffer.derived["belief"], pol.filter.train_z
        out[rows, 0] = pol.filter.belief(pol.filter.prior(1, len(z)), z).to(out.device)
        out[rows, 1:] = stored_beliefs(pol, buffer, rows, z)
        self._labelled[buffer] = (version, buffer.n_added, skipped)

    def train_epoch(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(self.cfg.train.encoder_updates):
            metrics = self.likelihood_step(buffer, rng)
        t1 = time.perf_counter()
        self.relabel(buffer)  # new episodes have no belief yet, and the likelihood may have changed
        t2 = time.perf_counter()
        belief = buffer.derived["belief"]
        for _ in range(self.cfg.train.policy_updates):
            metrics.update(self.sac.update(*sac_batch(buffer, self.policy, belief, self.cfg.sac.batch_size, rng)))
        metrics.update(time_encoder_s=t1 - t0, time_relabel_s=t2 - t1, time_sac_s=time.perf_counter() - t2)
        return metrics


def episode_likelihoods(policy: GridFilterPolicy, buffer: EpisodeBuffer, idx, z: torch.Tensor) -> torch.Tensor:
    """log p(r_t | s_t, a_t, s'_t, z_k) [E, T, K] of stored episodes `idx` on the points z [K, D], on the
    policy's device (the buffer's tensors are moved there if it lives elsewhere); z [E, T, M, D]: M points
    per step, [E, T, M]."""
    s, a, r, s2 = (v.to(z.device) for v in (buffer.obs[idx], buffer.action[idx], buffer.reward[idx], buffer.next_obs[idx]))
    return policy.filter.log_likelihood(s, policy.normalize_action(a), r, s2, z)


def sampled_surrogate(
    policy: GridFilterPolicy, buffer: EpisodeBuffer, idx, z: torch.Tensor, w: torch.Tensor, samples: int
) -> torch.Tensor:
    """An unbiased estimate of sum_{e,t,k} w[e,t,k] log p(r_t | .., z_k) (w [E, T, K] >= 0, no gradient)
    whose gradient costs `samples` decoder passes per step instead of K: per step, points drawn in proportion
    to w, each standing for W / samples of the step's total weight W. The weights of a trained filter's
    gradient (smoothed posteriors) sit on few grid points, so few draws carry it (`gridfilter.grad_samples`)."""
    total = w.sum(-1)  # [E, T]
    live = total > 0  # masked steps carry no weight
    k = torch.zeros(*total.shape, samples, dtype=torch.long, device=w.device)
    k[live] = torch.multinomial(w[live], samples, replacement=True)
    ll = episode_likelihoods(policy, buffer, idx, z[k])  # [E, T, samples]
    return -(total.unsqueeze(-1) * ll).mean(-1).sum()


def filter_episodes(policy: GridFilterPolicy, buffer: EpisodeBuffer, idx, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence` over stored episodes `idx` on the points z [K, D]: log p(r_t | steps < t) [E, T] and
    log q_t [E, T, K]."""
    return policy.filter.recursion(episode_likelihoods(policy, buffer, idx, z))


@torch.no_grad()
def stored_beliefs(policy: GridFilterPolicy, buffer: EpisodeBuffer, rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The belief after each step of stored episodes `rows`, filtered on the points z [K, D] from the prior,
    [len(rows), T, belief_dim] on the buffer's device; RELABEL_CHUNK episodes at a time."""
    out = [
        policy.filter.belief(filter_episodes(policy, buffer, rows[i : i + RELABEL_CHUNK], z)[1], z).to(buffer.device)
        for i in range(0, len(rows), RELABEL_CHUNK)
    ]
    return torch.cat(out) if out else torch.zeros(0, buffer.horizon, policy.belief_dim, device=buffer.device)
