"""PEARL (Rakelly et al. 2019), with a pluggable auxiliary contrastive loss: TCL (the TCL-PEARL paper) or CoCOA (the CoCOA paper).

`algorithm` picks the auxiliary loss: pearl = none, tcl = trajectory contrastive loss (Wasserstein-2
similarity), cocoa = CoCOA's (Bhattacharyya similarity + KL on the queries). Everything else is shared.

Each SAC step (`train.policy_updates` per epoch, after the trainer has collected episodes with online
belief updates), on a meta-batch of `meta_batch` training tasks T_i:
  1. context c_i of task i:
       pearl:     `context_size` transitions drawn from the stored steps of task i;
       tcl/cocoa: the same (Algorithm 2's line 13 L_A computed as PEARL does), the crops of step 4 serving
                  the contrastive loss only. Feeding the RL loss the query crop instead left TCL and CoCOA
                  0.19 below PEARL under PEARL's protocol on PointRobot (docs/benchmarks.md).
     With `vary_context` each task keeps a uniform 0..all of its context, so the
     policy also learns from the early, wide beliefs it meets online from the first step of an episode.
     q(z | c_i) = N(0, I) * prod_n N(mu(c_n), var(c_n)): the product of Gaussians that the served policy
     keeps as running sums (`PEARLPolicy.absorb`, the very same code).
  2. z_i = the belief (mu_i, std_i) (Bayes-adaptive, the default) or a reparameterised draw z_i ~ q(z | c_i)
     (`sample_z`, the paper), broadcast to sac.batch_size / meta_batch transitions of task i:
     x = (s, z_i), x2 = (s', sg(z_i)).
  3. L = L_critic(x) + beta * mean_i KL(q(z|c_i) || N(0, I))   [+ aux_weight * L_aux (+ cocoa's query KL)],
     back-propagated once: the critic and the encoder step together, the actor and temperature on sg(z)
     (the CoCOA paper, eqs. 3.6-3.8). The shared `SAC.update` does this when given the encoder's loss and
     optimiser; there is no second SAC.
  4. aux: the keys are the EMA key encoder's posteriors of a second crop of each query's trajectory;
     InfoNCE over the batch, every other trajectory's key a negative (the TCL-PEARL paper, Algorithm 1; the CoCOA paper,
     eq. 4.3); then key <- m * key + (1 - m) * query (Algorithm 2, line 16; eq. 4.4).
Choices the papers leave open, stated: the KL is the mean over the meta-batch's tasks (PEARL sums over
tasks: its kl_lambda 0.1 with 16 tasks is kl_beta 1.6 here); SAC is SAC v2 (twin Q, no V net); the
contrastive batch may hold `aux_batch - meta_batch` more trajectories (queries and negatives, no RL
loss); tasks are the per-step labels, so a context never mixes tasks even on non-stationary data, while a
crop's task is the one its trajectory began on.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.algorithms.learner import Learner
from agents.config import PearlRun
from agents.device import host_to
from agents.parts.buffer import EpisodeBuffer, TaskSteps
from agents.parts.contrastive import ema_update, info_nce
from agents.parts.latent import Gaussian, kl_to_standard, product_posterior, product_stats
from agents.parts.sac import SAC
from agents.policies import PEARLPolicy


@dataclass(frozen=True)
class AuxLoss:
    similarity: str  # a key of agents.parts.contrastive.SIMILARITIES
    kl_on_queries: bool  # CoCOA section 4.5


@dataclass
class UpdateBatch:
    """One SAC step's inputs (x carries the encoder's gradient) and the encoder's own terms."""

    x: torch.Tensor
    a: torch.Tensor
    r: torch.Tensor
    x2: torch.Tensor
    done: torch.Tensor
    q: Gaussian  # q(z | c_i) per task [T, D]
    kl: torch.Tensor  # mean_i KL(q(z|c_i) || N(0, I)), before kl_beta
    aux: torch.Tensor  # the weighted auxiliary loss (0 for pearl)
    metrics: dict[str, float]


AUX_LOSSES: dict[str, AuxLoss | None] = {
    "pearl": None,
    "tcl": AuxLoss("wasserstein2", kl_on_queries=False),
    "cocoa": AuxLoss("bhattacharyya", kl_on_queries=True),
}


class PEARL(Learner):
    def __init__(self, policy: PEARLPolicy, cfg: PearlRun) -> None:
        self.policy, self.cfg = policy, cfg
        self.aux = AUX_LOSSES[cfg.algorithm]
        self.encoder_opt = torch.optim.Adam(policy.encoder.parameters(), lr=cfg.pearl.encoder_lr)
        self.sac = SAC(
            policy.actor, policy.obs_dim + policy.latent_input_dim, policy.action_dim, cfg.sac
        )
        # the key encoder of TCL/CoCOA: an EMA copy of the query encoder (= the policy's encoder)
        self.key_encoder = copy.deepcopy(policy.encoder).requires_grad_(False) if self.aux else None

    # -- 1. meta-batch and contexts -------------------------------------------------------------------------
    def crops(
        self, buffer: EpisodeBuffer, rng: np.random.Generator
    ) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]:
        """tcl/cocoa: (tasks, episodes [Q], query starts [Q], key starts [Q]).

        Row i < len(tasks) is one trajectory that began on tasks[i]; further rows (up to aux_batch) are
        other trajectories. Every row is a different trajectory, so a query's negatives (the other rows'
        keys) never come from its own; query and key are two crops of the same trajectory.
        """
        p = self.cfg.pearl
        by_task = buffer.episodes_by_task()
        keys = list(by_task)
        tasks = [keys[j] for j in rng.choice(len(keys), size=min(p.meta_batch, len(keys)), replace=False)]
        eps = [int(rng.choice(by_task[k])) for k in tasks]
        extra = max(0, (p.aux_batch or p.meta_batch) - len(eps))
        if extra:
            rest = np.setdiff1d(np.arange(len(buffer)), eps)
            eps += rng.choice(rest, size=min(extra, len(rest)), replace=False).tolist()
        e, t_q = buffer.sample_windows(len(eps), p.window, rng, episodes=np.asarray(eps))
        _, t_k = buffer.sample_windows(len(eps), p.window, rng, episodes=np.asarray(eps))
        return tasks, e, t_q, t_k

    def _crop(self, buffer: EpisodeBuffer, e, t0) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        W = self.cfg.pearl.window
        data = tuple(buffer.window(k, e, t0, W) for k in ("obs", "action", "reward", "next_obs"))
        return data, buffer.window_mask(e, t0, W)

    def _keep(self, n_rows: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        """[n_rows, size] mask keeping a prefix of each context: all of it, or a uniform 0..size (vary_context)."""
        dev = self.policy.device
        if not self.cfg.pearl.vary_context:
            return torch.ones(n_rows, size, dtype=torch.bool, device=dev)
        n = host_to(rng.integers(0, size + 1, size=n_rows), dev)
        return torch.arange(size, device=dev).unsqueeze(0) < n.unsqueeze(1)

    def _posterior(self, mu: torch.Tensor, var: torch.Tensor, mask: torch.Tensor) -> Gaussian:
        prec, pmu = product_stats(mu, var, mask)
        return product_posterior(1.0 + prec, pmu)  # the prior N(0, I) is one factor

    def _task_context(
        self, buffer: EpisodeBuffer, steps: TaskSteps, tasks: list[int], rng: np.random.Generator
    ) -> Gaussian:
        """PEARL's context: q(z | c_i) [T, D] of `context_size` stored steps of each task, with gradient."""
        p = self.cfg.pearl
        e, t = steps.sample(tasks, p.context_size, rng)  # [T, C]
        mu, var = self.policy.factors(
            buffer.obs[e, t], buffer.action[e, t], buffer.reward[e, t], buffer.next_obs[e, t]
        )
        return self._posterior(mu, var, self._keep(len(tasks), p.context_size, rng))

    def contexts(
        self, buffer: EpisodeBuffer, steps: TaskSteps, rng: np.random.Generator
    ) -> tuple[list[int], Gaussian, torch.Tensor, dict[str, float]]:
        """(tasks, q(z | c_i) per task [T, D] with gradient, the auxiliary loss (0 for pearl), metrics)."""
        pol, p = self.policy, self.cfg.pearl
        if self.aux is None:
            keys = list(steps.groups)
            tasks = [keys[j] for j in rng.choice(len(keys), size=min(p.meta_batch, len(keys)), replace=False)]
            return tasks, self._task_context(buffer, steps, tasks, rng), torch.zeros((), device=pol.device), {}

        tasks, e, t_q, t_k = self.crops(buffer, rng)
        (s, a, r, s2), mask_q = self._crop(buffer, e, t_q)
        mu, var = pol.factors(s, a, r, s2)  # the query encoder (the policy's own), [Q, W, D]
        queries = self._posterior(mu, var, mask_q)
        q = self._task_context(buffer, steps, tasks, rng)
        with torch.no_grad():
            (s, a, r, s2), mask_k = self._crop(buffer, e, t_k)
            keys_ = self._posterior(*pol.factors(s, a, r, s2, encoder=self.key_encoder), mask_k)
        con = info_nce(queries, keys_, self.aux.similarity, temperature=p.temperature)
        aux = p.aux_weight * con
        metrics = {"contrastive": con.detach()}
        if self.aux.kl_on_queries:
            kl_q = kl_to_standard(queries).mean()
            aux = aux + p.kl_beta * kl_q
            metrics["kl_queries"] = kl_q.detach()
        return tasks, q, aux, metrics

    # -- 2.-3. the joint critic/encoder step -------------------------------------------------------------------
    def batch(self, buffer: EpisodeBuffer, steps: TaskSteps, rng: np.random.Generator) -> UpdateBatch:
        """One update's inputs and encoder terms, not yet back-propagated (`update` steps on them)."""
        pol = self.policy
        tasks, q, aux, metrics = self.contexts(buffer, steps, rng)
        kl = kl_to_standard(q).mean()
        T = len(tasks)
        b = max(1, self.cfg.sac.batch_size // T)
        e, t = steps.sample(tasks, b, rng)  # [T, b]
        e, t = e.flatten(), t.flatten()
        z = pol.latent(q.mu, q.std, sample=True).repeat_interleave(b, 0)  # [T * b, Z], row-major like e, t
        return UpdateBatch(
            x=torch.cat([buffer.obs[e, t], z], -1),
            a=pol.normalize_action(buffer.action[e, t]),
            r=buffer.reward[e, t].unsqueeze(-1),
            x2=torch.cat([buffer.next_obs[e, t], z.detach()], -1),
            done=buffer.done[e, t].unsqueeze(-1),
            q=q,
            kl=kl,
            aux=aux,
            metrics=metrics,
        )

    def update(self, buffer: EpisodeBuffer, steps: TaskSteps, rng: np.random.Generator) -> dict[str, float]:
        p = self.cfg.pearl
        bt = self.batch(buffer, steps, rng)
        metrics = bt.metrics
        encoder_loss = p.kl_beta * bt.kl + bt.aux
        metrics.update(
            self.sac.update(
                bt.x, bt.a, bt.r, bt.x2, bt.done, encoder_loss=encoder_loss, encoder_opt=self.encoder_opt
            )
        )
        if self.key_encoder is not None:
            ema_update(self.key_encoder, self.policy.encoder, 1.0 - p.momentum)
        metrics.update(kl=bt.kl.detach(), z_std=bt.q.std.mean().detach())
        return metrics

    # -- the epoch ------------------------------------------------------------------------------------------
    def train_epoch(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        t0 = time.perf_counter()
        steps = buffer.task_steps()
        metrics: dict[str, float] = {}
        for _ in range(self.cfg.train.policy_updates):
            metrics = self.update(buffer, steps, rng)
        metrics["time_sac_s"] = time.perf_counter() - t0
        return metrics

    def state_parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {"sac": self.sac, "encoder_opt": self.encoder_opt}
        if self.key_encoder is not None:
            parts["key_encoder"] = self.key_encoder
        return parts

    def epoch_updates(self, buffer: EpisodeBuffer) -> dict[str, int]:
        return {"encoder": self.cfg.train.policy_updates, "sac": self.cfg.train.policy_updates}  # one encoder step per SAC step
