"""Oracle policy: SAC on (s, true task vector). Its belief is given, not inferred."""

from __future__ import annotations

import torch

from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, State


class OraclePolicy(AgentPolicy):
    """The state holds the true task vector [n, task_dim], set with `set_task_vector`; transitions change nothing."""

    algorithm = "oracle"
    needs_task_vector = True

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        action_low: list[float],
        action_high: list[float],
        task_dim: int = 1,
        actor_hidden: tuple[int, ...] = (256, 256),
    ) -> None:
        super().__init__(obs_dim, action_dim, action_low, action_high)
        self.task_dim = task_dim
        self.cfg = dict(task_dim=task_dim, actor_hidden=list(actor_hidden))
        self.actor = TanhGaussianActor(obs_dim + task_dim, action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return self.task_dim

    def init_state(self, n: int) -> State:
        return {"task": torch.zeros(n, self.task_dim)}

    def update(self, state: State, s, a, r, s2) -> State:
        return state

    def set_task_vector(self, state: State, task_vector: torch.Tensor) -> State:
        return {"task": task_vector.reshape(-1, self.task_dim).to(torch.float32)}

    def belief(self, state: State) -> torch.Tensor:
        return state["task"]
