"""MoSS ("Meta-Reinforcement Learning Based on Self-Supervised Task Representation Learning", AAAI 2023):
context-based meta-RL with a Gaussian-mixture VAE belief and a Bayes-adaptive SAC policy.

Each epoch, after the trainer has collected episodes on training tasks with online belief updates:
  1. `encoder_updates` steps on the encoder objective over sequences of `time_steps` transitions
        L_enc = -ELBO (next-step state/reward reconstruction, component and categorical KL to the
        recurrent prior) + lambda_con * InfoNCE(Euclidean) between same-task embeddings;
     the encoder gets no RL gradient.
  2. relabel: the current encoder recomputes the hidden state and belief of every stored step
     (one batched GRU pass from the episode start, exactly what online inference computes).
  3. `policy_updates` SAC steps on (s, sg(belief)).
Design choices the paper leaves open: the recurrent prior is detached (it is a target the
posterior may not drag), and `encoder.prior_drift` can widen it by a random-walk step (0, the default, is the
paper's prior; see EncoderConfig); windows start from the stored hidden state of their first step (the paper's
retain_hidden), so training sees the same beliefs as inference; the decoder predicts s' - s.
One deliberate departure, measured: the paper's likelihood term decodes only c_t. On the point robot
that lets the belief get away with holding the last reward (r_t ~ r_{t-1} for small steps): decoding c_t
from q(z | c_<=t) the encoder copied r_t (KL 6.7 nats/step, linear-probe R^2 of the goal < 0.1); decoding
it from q(z | c_<t) it held r_{t-1} (reconstruction error 0.012, probe R^2 ~0.1). With decode="segment"
(the default) the belief at t reconstructs `decode_samples` transitions drawn from the same episode under
the same task as step t: it must hold the task itself, and a switch still starts a new segment, so the
belief remains free to change within an episode. decode="next" keeps the paper's next-step term.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from agents.algorithms.learner import Learner, sac_batch
from agents.config import MoSSRun
from agents.device import host_to
from agents.parts.buffer import EpisodeBuffer
from agents.parts.contrastive import info_nce
from agents.parts.latent import (
    mixture_kl_terms,
    standard_prior,
)
from agents.parts.nets import MLP
from agents.parts.sac import SAC
from agents.policies import MoSSPolicy

RELABEL_CHUNK = 512


class MoSS(Learner):
    def __init__(self, policy: MoSSPolicy, cfg: MoSSRun) -> None:
        self.policy, self.cfg = policy, cfg
        enc = cfg.encoder
        o, a, d = policy.obs_dim, policy.action_dim, enc.latent_dim
        self.state_decoder = MLP(o + a + d, enc.decoder_hidden, o).to(policy.device)
        self.reward_decoder = MLP(o + a + d, enc.decoder_hidden, 1).to(policy.device)
        self.vae_params = [
            *policy.encoder.parameters(),
            *policy.head.parameters(),
            *self.state_decoder.parameters(),
            *self.reward_decoder.parameters(),
        ]
        self.vae_opt = torch.optim.Adam(self.vae_params, lr=enc.lr)
        self.sac = SAC(policy.actor, o + policy.belief_dim, a, cfg.sac)

    def state_parts(self) -> dict[str, Any]:
        return {"state_decoder": self.state_decoder, "reward_decoder": self.reward_decoder, "vae_opt": self.vae_opt, "sac": self.sac}

    # -- 1. encoder -------------------------------------------------------------------------------------
    def _windows(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Window starts; with the contrastive loss on, rows 2i and 2i+1 share a training task. The batch is
        always `batch_size` windows: with fewer training tasks than pairs (CheetahDir has two) tasks repeat,
        and the labelled InfoNCE takes repeats as positives, never as negatives."""
        n = self.cfg.encoder.batch_size
        by_task = buffer.episodes_by_task()
        if not (self.cfg.encoder.contrastive and len(by_task) >= 2 and n >= 4):
            e, t0 = buffer.sample_windows(n, self.cfg.encoder.time_steps, rng)
            return e, t0, False
        tasks = list(by_task)
        chosen = rng.choice(len(tasks), size=n // 2, replace=n // 2 > len(tasks))
        eps = []
        for c in chosen:
            pool = by_task[tasks[c]]
            eps.extend(rng.choice(pool, size=2, replace=len(pool) < 2))
        e, t0 = buffer.sample_windows(len(eps), self.cfg.encoder.time_steps, rng, episodes=np.asarray(eps))
        return e, t0, True

    def encoder_loss(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        enc, W, pol = self.cfg.encoder, self.cfg.encoder.time_steps, self.policy
        e, t0, paired = self._windows(buffer, rng)
        s, a = buffer.window("obs", e, t0, W), pol.normalize_action(buffer.window("action", e, t0, W))
        r, s2 = buffer.window("reward", e, t0, W), buffer.window("next_obs", e, t0, W)
        mask = buffer.window_mask(e, t0, W).float()
        h0 = buffer.derived["hidden"][e, t0]
        h = pol.encoder.sequence(s, a, r, s2, h0)  # [B, W, H]
        post = pol.head(h)  # q(. | c_<=t)
        before = pol.head(torch.cat([h0.unsqueeze(1), h[:, :-1]], 1))  # q(. | c_<t): what the policy acts on at t
        at_start = (t0.unsqueeze(1) + torch.arange(W, device=t0.device)) == 0
        prior = before.detach().widened(enc.prior_drift).where(at_start, standard_prior(before))

        rec = self.reconstruction(buffer, e, t0, post if enc.decode == "segment" else before, rng)
        kl_z, kl_y = mixture_kl_terms(post, prior)
        denom = mask.sum().clamp(min=1)
        rec_m, kl_z_m, kl_y_m = ((x * mask).sum() / denom for x in (rec, kl_z, kl_y))
        loss = rec_m + enc.alpha_z * kl_z_m + enc.alpha_y * kl_y_m

        metrics = {"rec": rec_m.detach(), "kl_z": kl_z_m.detach(), "kl_y": kl_y_m.detach()}
        if paired:
            # query: the last valid step of each window; key: a random valid step of its partner window.
            # Labels are the per-step task, so a pair split by a task switch is not a false positive.
            B = len(e)
            rows = torch.arange(B, device=e.device)
            last = (mask.sum(1).long() - 1).clamp(min=0)
            rand = torch.minimum((host_to(rng.random(B), e.device) * mask.sum(1)).long(), last)
            mu, _ = post.selected()  # [B, W, D]
            task = buffer.window("task", e, t0, W)
            partner = rows ^ 1
            q_label, k_label = task[rows, last], task[partner, rand[partner]]
            con = info_nce(mu[rows, last], mu[partner, rand[partner]], "euclidean", q_label, k_label)
            loss = loss + enc.contrastive_weight * con
            metrics["contrastive"] = con.detach()
        metrics["encoder_loss"] = loss.detach()
        return loss, metrics

    def encoder_step(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        """One optimiser step on the encoder objective; returns its metrics."""
        loss, metrics = self.encoder_loss(buffer, rng)
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.encoder.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.vae_params, self.cfg.encoder.max_grad_norm)
        self.vae_opt.step()
        return metrics

    def reconstruction(self, buffer: EpisodeBuffer, e, t0, q, rng: np.random.Generator) -> torch.Tensor:
        """Expected decoder error [B, W] of the belief q at every window step (one z sample per component).

        decode="segment": the belief at t must explain `decode_samples` transitions drawn from the same
        episode *under the same task as step t* (so it must hold the task, not the last reward, and a
        switch starts a new segment). decode="next": it predicts c_t only (q is then the belief before c_t).
        """
        enc, pol = self.cfg.encoder, self.policy
        B, W = q.logits.shape[:2]
        t_abs = (t0.unsqueeze(1) + torch.arange(W, device=t0.device)).clamp(max=buffer.horizon - 1)  # [B, W]
        if enc.decode == "segment":
            M = enc.decode_samples
            L = buffer.length[e].view(B, 1, 1)
            j = torch.minimum((host_to(rng.random((B, W, M)), e.device) * L).long(), L - 1)  # float rounding
            ee = e.view(B, 1, 1).expand(B, W, M)
            weight = (buffer.task[ee, j] == buffer.task[e.unsqueeze(1), t_abs].unsqueeze(-1)).float()
        else:
            j, ee = t_abs.unsqueeze(-1), e.view(B, 1, 1).expand(B, W, 1)
            weight = torch.ones(B, W, 1, device=e.device)
        s, s2 = buffer.obs[ee, j], buffer.next_obs[ee, j]  # [B, W, M, O]
        a, r = pol.normalize_action(buffer.action[ee, j]), buffer.reward[ee, j]
        z = q.mu + q.logstd.exp() * torch.randn_like(q.mu)  # [B, W, K, D]
        K, M = z.shape[-2], s.shape[2]
        sa = torch.cat([s, a], -1).unsqueeze(-2).expand(*s.shape[:-1], K, -1)
        dec_in = torch.cat([sa, z.unsqueeze(2).expand(-1, -1, M, -1, -1)], -1)  # [B, W, M, K, O+A+D]
        err_k = enc.reward_weight * (self.reward_decoder(dec_in).squeeze(-1) - r.unsqueeze(-1)) ** 2  # [B, W, M, K]
        if enc.state_weight:  # 0 for families whose tasks differ in reward only: skip the state decoder
            err_k = err_k + enc.state_weight * ((self.state_decoder(dec_in) - (s2 - s).unsqueeze(-2)) ** 2).sum(-1)
        err = (q.probs.unsqueeze(2) * err_k).sum(-1)  # [B, W, M]
        return (err * weight).sum(-1) / weight.sum(-1).clamp(min=1)

    # -- 2. relabel ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def relabel(self, buffer: EpisodeBuffer) -> None:
        """derived['hidden'] [E, T+1, H] and derived['belief'] [E, T+1, B] from the current encoder."""
        pol, n, T = self.policy, len(buffer), buffer.horizon
        if "hidden" not in buffer.derived:
            buffer.derived["hidden"] = torch.zeros(buffer.capacity, T + 1, pol.encoder.hidden_dim, device=buffer.device)
            buffer.derived["belief"] = torch.zeros(buffer.capacity, T + 1, pol.belief_dim, device=buffer.device)
        for i in range(0, n, RELABEL_CHUNK):
            sl = slice(i, min(i + RELABEL_CHUNK, n))
            h = pol.encoder.sequence(
                buffer.obs[sl], pol.normalize_action(buffer.action[sl]), buffer.reward[sl], buffer.next_obs[sl]
            )
            h = torch.cat([torch.zeros_like(h[:, :1]), h], 1)
            buffer.derived["hidden"][sl] = h
            buffer.derived["belief"][sl] = pol.beliefs_from_hidden(h)

    # -- the epoch ------------------------------------------------------------------------------------------
    def train_epoch(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        n_encoder = self.cfg.train.encoder_updates
        if "hidden" not in buffer.derived or n_encoder > 0:
            self.relabel(buffer)  # windows start from up-to-date stored hidden states
        for _ in range(n_encoder):
            metrics = self.encoder_step(buffer, rng)
        t1 = time.perf_counter()
        self.relabel(buffer)
        t2 = time.perf_counter()
        for _ in range(self.cfg.train.policy_updates):
            batch = sac_batch(buffer, self.policy, buffer.derived["belief"], self.cfg.sac.batch_size, rng)
            metrics.update(self.sac.update(*batch))
        metrics.update(time_encoder_s=t1 - t0, time_relabel_s=t2 - t1, time_sac_s=time.perf_counter() - t2)
        return metrics
