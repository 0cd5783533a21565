"""What every learner shares: the interface the trainer calls, generic saving of learner state, and SAC
batches from the episode buffer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.config import RunBase
from agents.parts.buffer import EpisodeBuffer
from agents.policies import AgentPolicy


class Learner:
    """An algorithm's learning half: the trainer calls `train_epoch` after each collection round.

    A learner lists what it must save to be resumed in `state_parts()` (name -> anything with
    `state_dict` / `load_state_dict`: modules, optimisers, SAC); saving and restoring are generic. The
    policy's own weights are saved with the policy, not here."""

    policy: AgentPolicy
    cfg: RunBase

    def epoch_updates(self, buffer: EpisodeBuffer) -> dict[str, int]:
        """Encoder and SAC steps one epoch takes (counted in the run's statistics): by default
        `train.encoder_updates` and `train.policy_updates`."""
        return {"encoder": self.cfg.train.encoder_updates, "sac": self.cfg.train.policy_updates}

    def train_epoch(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        raise NotImplementedError

    def state_parts(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.state_parts().items()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        parts = self.state_parts()
        missing = sorted(set(parts) - set(sd))
        if missing:
            raise ValueError(f"learner state lacks {missing} (saved by another algorithm or configuration?)")
        for name, part in parts.items():
            part.load_state_dict(sd[name])


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
