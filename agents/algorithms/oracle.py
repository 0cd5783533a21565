"""Oracle: SAC on (s, true task vector), the ceiling every agent is measured against."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from agents.algorithms.learner import Learner, sac_batch
from agents.config import OracleRun
from agents.parts.buffer import EpisodeBuffer
from agents.parts.sac import SAC
from agents.policies import OraclePolicy


class Oracle(Learner):
    def __init__(self, policy: OraclePolicy, cfg: OracleRun) -> None:
        self.policy, self.cfg = policy, cfg
        self.sac = SAC(policy.actor, policy.obs_dim + policy.task_dim, policy.action_dim, cfg.sac)

    def train_epoch(self, buffer: EpisodeBuffer, rng: np.random.Generator) -> dict[str, float]:
        # belief before step t = the task vector in force at t; after the last step, the last one
        tv = buffer.task_vector
        per_step = torch.cat([tv, tv[:, -1:]], 1)
        last = (buffer.length - 1).clamp(min=0)
        rows = torch.arange(tv.shape[0], device=tv.device)
        per_step[rows, last + 1] = tv[rows, last]
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(self.cfg.train.policy_updates):
            metrics = self.sac.update(*sac_batch(buffer, self.policy, per_step, self.cfg.sac.batch_size, rng))
        metrics["time_sac_s"] = time.perf_counter() - t0
        return metrics

    def state_parts(self) -> dict[str, Any]:
        return {"sac": self.sac}

    def epoch_updates(self, buffer: EpisodeBuffer) -> dict[str, int]:
        return {"encoder": 0, "sac": self.cfg.train.policy_updates}
