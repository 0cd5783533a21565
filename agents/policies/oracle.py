"""Oracle policy: SAC on (s, true task vector). Its belief is given, not inferred."""

from __future__ import annotations

import torch

from agents.parts.sac_nets import TanhGaussianActor
from agents.policies.base import AgentPolicy, Spaces, State, settings_of


class OraclePolicy(AgentPolicy):
    """The state holds the true task vector [n, task_dim], set with `set_task_vector`; transitions change nothing."""

    algorithm = "oracle"
    needs_task_vector = True

    def __init__(self, spaces: Spaces, task_dim: int = 1, actor_hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__(spaces, settings_of(locals()))
        self.task_dim = task_dim
        self.actor = TanhGaussianActor(self.obs_dim + task_dim, self.action_dim, actor_hidden)

    @property
    def belief_dim(self) -> int:
        return self.task_dim

    def init_state(self, n: int) -> State:
        return {"task": torch.zeros(n, self.task_dim, device=self.device)}

    def update(self, state: State, s, a, r, s2) -> State:
        return state

    def set_task_vector(self, state: State, task_vector: torch.Tensor) -> State:
        return {"task": task_vector.reshape(-1, self.task_dim).to(self.device, torch.float32)}

    def belief(self, state: State) -> torch.Tensor:
        return state["task"]
