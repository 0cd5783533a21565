"""What every learner shares: the interface the trainer calls, and SAC batches from the episode buffer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.config import RunConfig
from agents.parts.buffer import EpisodeBuffer
from agents.parts.sac import SACConfigView
from agents.policies import AgentPolicy


class Learner:
    """An algorithm's learning half. The trainer calls `train_epoch` after each collection round."""

    policy: AgentPolicy
    cfg: RunConfig

    def encoder_frozen(self, buffer: EpisodeBuffer) -> bool:
        """Whether `train.encoder_until` env steps are stored: no encoder steps from then on."""
        until = self.cfg.train.encoder_until
        return until is not None and buffer.steps_added >= until

    def encoder_updates(self, buffer: EpisodeBuffer) -> int:
        """Encoder steps this epoch: `train.encoder_updates`, or 0 once the encoder is frozen."""
        return 0 if self.encoder_frozen(buffer) else self.cfg.train.encoder_updates

    def policy_updates(self, buffer: EpisodeBuffer) -> int:
        """SAC steps this epoch: `train.policy_updates`, or `train.policy_updates_frozen` once the encoder is
        frozen (the time the encoder no longer takes, spent on the policy)."""
        t = self.cfg.train
        frozen = t.policy_updates_frozen is not None and self.encoder_frozen(buffer)
        return t.policy_updates_frozen if frozen else t.policy_updates

    def train_epoch(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        raise NotImplementedError


def sac_view(cfg: RunConfig) -> SACConfigView:
    s = cfg.sac
    return SACConfigView(
        hidden=tuple(s.hidden),
        lr=s.lr,
        gamma=s.gamma,
        tau=s.tau,
        alpha=s.alpha,
        auto_alpha=s.auto_alpha,
        target_entropy=s.target_entropy,
        reward_scale=s.reward_scale,
        max_grad_norm=s.max_grad_norm,
    )


def sac_batch(
    buffer: EpisodeBuffer,
    policy: AgentPolicy,
    per_step_belief: torch.Tensor,
    n: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, ...]:
    """(x, a, r, x2, done) for SAC with x = (s_t, b_t), x2 = (s_{t+1}, b_{t+1}).

    per_step_belief [E, T+1, B]: the belief before step t at index t (index T: after the last step).
    """
    e, t = buffer.sample_steps(n, rng)
    x = torch.cat([buffer.obs[e, t], per_step_belief[e, t]], -1)
    x2 = torch.cat([buffer.next_obs[e, t], per_step_belief[e, t + 1]], -1)
    a = policy.normalize_action(buffer.action[e, t])
    return x, a, buffer.reward[e, t].unsqueeze(-1), x2, buffer.done[e, t].unsqueeze(-1)
