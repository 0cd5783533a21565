"""FOCAL (Li et al. 2020) and FOCAL++ (the FOCAL++ paper): offline meta-RL on fixed per-task datasets.

Each update, on a meta-batch of `meta_batch` training tasks T_i drawn from the dataset:
  1. context c_i: `context_size` transitions of task i; z_i = E(c_i), the softmax(score)-weighted mean of
     per-transition embeddings (agents/parts/context_encoders.py; FOCAL: the plain mean). Deterministic.
  2. the encoder's own loss (task representation decoupled from control: no RL gradient reaches it):
       FOCAL    distance metric loss (DML) between task representations of sub-contexts: each c_i is cut
                in `METRIC_SPLITS` parts; with m = mean_d (z_a - z_b)^2, same task -> sqrt(m + 1e-3),
                different tasks -> 1 / (m + 0.1)  (`metric_weight`);
       FOCAL++  matrix-form momentum contrast (eqs. 8-9): queries z_i^q = E^q(c_i), keys z_i^k = E^k(c'_i)
                of a second context of the same task from the momentum key encoder, logits
                z^q (z^k)^T / T, target the identity (`contrastive_weight`); E^k <- m E^k + (1 - m) E^q.
  3. BRAC on x = (s, sg(z_i)) for sac.batch_size / meta_batch transitions of each task: SAC's critic and
     actor (the shared `SAC.update`), the actor also paying `brac_strength` x the dual KL estimate to the
     dataset's actions (agents/parts/brac.py; FOCAL's point-robot settings use strength 0).
There is no environment interaction: the trainer counts gradient steps as its "steps".
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from agents.algorithms.learner import Learner
from agents.config import FocalRun
from agents.device import host_to
from agents.parts.brac import BehaviourRegulariser
from agents.parts.buffer import EpisodeBuffer, TaskSteps
from agents.parts.context_encoders import pooled
from agents.parts.contrastive import ema_update, info_nce
from agents.parts.sac import SAC
from agents.policies import FOCALPolicy

METRIC_SPLITS = 4  # sub-contexts per task for the distance metric loss
POSITIVE_EPS, NEGATIVE_EPS = 1e-3, 0.1  # FOCAL's constants in its distance metric loss


def distance_metric_loss(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """FOCAL's DML over every pair of rows of z [N, D] with task `labels` [N], with m = mean_d (z_i - z_j)^2:
    mean_{same task, i != j} sqrt(m + 1e-3) + mean_{different tasks} 1 / (m + 0.1), FOCAL's own form
    (its positive pairs pay a distance, not a squared one). The pairs are picked where `labels` lives:
    labels on the host cost the device no sync."""
    m = (z.unsqueeze(1) - z.unsqueeze(0)).pow(2).mean(-1).flatten()
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    off = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = (same & off).flatten(), (~same).flatten()
    loss = z.sum() * 0.0
    if pos.any():  # m[mask] through the mask's indices, in the same order
        loss = loss + (m[host_to(pos.nonzero().squeeze(1), m.device)] + POSITIVE_EPS).sqrt().mean()
    if neg.any():
        loss = loss + (1.0 / (m[host_to(neg.nonzero().squeeze(1), m.device)] + NEGATIVE_EPS)).mean()
    return loss


class FOCAL(Learner):
    def __init__(self, policy: FOCALPolicy, cfg: FocalRun) -> None:
        self.policy, self.cfg = policy, cfg
        f = cfg.focal
        self.encoder_opt = torch.optim.Adam(policy.encoder.parameters(), lr=f.encoder_lr)
        in_dim = policy.obs_dim + policy.latent_dim
        self.sac = SAC(policy.actor, in_dim, policy.action_dim, cfg.sac)
        self.key_encoder = copy.deepcopy(policy.encoder).requires_grad_(False) if f.contrastive_weight > 0 else None
        self.brac = (
            BehaviourRegulariser(in_dim, policy.action_dim, f.brac_strength, f.dual_lr, tuple(cfg.sac.hidden), policy.device)
            if f.brac_strength > 0
            else None
        )

    # -- 1. contexts -------------------------------------------------------------------------------------------
    def context(self, buffer: EpisodeBuffer, steps: TaskSteps, tasks: list[int], n: int, rng, encoder=None):
        """(e [T, n, D], score [T, n, 1]) of n transitions of each task."""
        e, t = steps.sample(tasks, n, rng)
        return self.policy.embed(
            buffer.obs[e, t], buffer.action[e, t], buffer.reward[e, t], buffer.next_obs[e, t], encoder=encoder
        )

    # -- 2. the encoder step -----------------------------------------------------------------------------------
    def encoder_step(self, buffer: EpisodeBuffer, steps: TaskSteps, tasks: list[int], rng) -> tuple[torch.Tensor, dict[str, float]]:
        f = self.cfg.focal
        T, N = len(tasks), f.context_size
        e, score = self.context(buffer, steps, tasks, N, rng)
        z, _ = pooled(e, score)  # [T, D]
        labels = torch.as_tensor(tasks, device="cpu")
        loss, metrics = z.sum() * 0.0, {}
        if f.metric_weight > 0:
            k = METRIC_SPLITS if N >= METRIC_SPLITS else 1
            sub, _ = pooled(e[:, : N // k * k].reshape(T * k, N // k, -1), score[:, : N // k * k].reshape(T * k, N // k, 1))
            dml = distance_metric_loss(sub, labels.repeat_interleave(k))
            loss = loss + f.metric_weight * dml
            metrics["dml"] = dml.detach()
        if self.key_encoder is not None:
            with torch.no_grad():
                z_k, _ = pooled(*self.context(buffer, steps, tasks, N, rng, encoder=self.key_encoder))
            dev_labels = host_to(labels, z.device)
            con = info_nce(z, z_k, "dot", dev_labels, dev_labels, temperature=f.temperature)
            loss = loss + f.contrastive_weight * con
            metrics["contrastive"] = con.detach()
        self.encoder_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.encoder_opt.step()
        if self.key_encoder is not None:
            ema_update(self.key_encoder, self.policy.encoder, 1.0 - f.momentum)
        metrics["encoder_loss"] = loss.detach()
        return z.detach(), metrics

    # -- 3. BRAC -----------------------------------------------------------------------------------------------
    def rl_batch(self, buffer: EpisodeBuffer, steps: TaskSteps, tasks: list[int], z: torch.Tensor, rng) -> tuple[torch.Tensor, ...]:
        """SAC's (x, a, r, x2, done) with x = (s, z_i): sac.batch_size / meta_batch transitions of each task."""
        b = max(1, self.cfg.sac.batch_size // len(tasks))
        e, t = steps.sample(tasks, b, rng)
        e, t = e.flatten(), t.flatten()
        zz = z.repeat_interleave(b, 0)  # [T * b, D], row-major like e, t
        x = torch.cat([buffer.obs[e, t], zz], -1)
        x2 = torch.cat([buffer.next_obs[e, t], zz], -1)
        a = self.policy.normalize_action(buffer.action[e, t])
        return x, a, buffer.reward[e, t].unsqueeze(-1), x2, buffer.done[e, t].unsqueeze(-1)

    def rl_step(self, buffer: EpisodeBuffer, steps: TaskSteps, tasks: list[int], z: torch.Tensor, rng) -> dict[str, float]:
        pol = self.policy
        x, a, r, x2, done = self.rl_batch(buffer, steps, tasks, z, rng)
        metrics: dict[str, float] = {}
        penalty = None
        if self.brac is not None:
            with torch.no_grad():
                a_pi, _ = pol.actor.sample(x)
            metrics["kl_behaviour"] = self.brac.update(x, a_pi, a)
            penalty = self.brac.penalty
        metrics.update(self.sac.update(x, a, r, x2, done, actor_penalty=penalty))
        return metrics

    # -- the epoch ------------------------------------------------------------------------------------------
    def train_epoch(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        steps = buffer.task_steps()
        keys = list(steps.groups)
        f = self.cfg.focal
        metrics: dict[str, float] = {}
        t_enc = t_rl = 0.0
        for _ in range(self.cfg.train.policy_updates):
            tasks = [keys[j] for j in rng.choice(len(keys), size=min(f.meta_batch, len(keys)), replace=False)]
            t0 = time.perf_counter()
            z, m_enc = self.encoder_step(buffer, steps, tasks, rng)
            t1 = time.perf_counter()
            metrics = {**m_enc, **self.rl_step(buffer, steps, tasks, z, rng)}
            t_enc, t_rl = t_enc + t1 - t0, t_rl + time.perf_counter() - t1
        metrics.update(time_encoder_s=t_enc, time_sac_s=t_rl)
        return metrics

    def state_parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {"sac": self.sac, "encoder_opt": self.encoder_opt}
        if self.key_encoder is not None:
            parts["key_encoder"] = self.key_encoder
        if self.brac is not None:
            parts["brac"] = self.brac
        return parts

    def epoch_updates(self, buffer: EpisodeBuffer) -> dict[str, int]:
        return {"encoder": self.cfg.train.policy_updates, "sac": self.cfg.train.policy_updates}  # one encoder step per SAC step
