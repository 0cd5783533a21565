"""The belief in task units: a small MLP from a policy's belief to the task.

kind "vector": the task vector [..., task_dim] (goal position, target velocity, direction, ...), in the
env's own units. kind "base_task" (multi-task families): probabilities over the base tasks [..., K].
Inputs and vector outputs are standardised with the statistics of the data it was fitted on (buffers,
stored with the weights). Fitted on training-task episodes (agents/evaluation/readout.py) and stored in
checkpoints beside the policy; serving, `runtime eval` and `runtime replay` report what it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from agents.parts.nets import MLP

Kind = Literal["vector", "base_task"]


class TaskReadout(nn.Module):
    """belief [..., B] -> task estimate [..., D] (vector) or base-task probabilities [..., K] (base_task)."""

    def __init__(self, belief_dim: int, out_dim: int, kind: Kind = "vector", hidden: Sequence[int] = (64, 64),
                 names: Sequence[str] | None = None) -> None:
        super().__init__()
        if kind not in ("vector", "base_task"):
            raise ValueError(f"readout kind must be 'vector' or 'base_task', got {kind!r}")
        self.kind, self.hidden = kind, tuple(int(h) for h in hidden)
        self.belief_dim, self.out_dim = int(belief_dim), int(out_dim)
        self.names = list(names) if names is not None else None
        self.net = MLP(self.belief_dim, self.hidden, self.out_dim)
        self.register_buffer("in_mean", torch.zeros(self.belief_dim))
        self.register_buffer("in_std", torch.ones(self.belief_dim))
        self.register_buffer("out_mean", torch.zeros(self.out_dim))
        self.register_buffer("out_std", torch.ones(self.out_dim))

    def raw(self, belief: torch.Tensor) -> torch.Tensor:
        """Standardised output (vector) or logits (base_task): what fitting regresses."""
        return self.net((belief - self.in_mean) / self.in_std)

    def forward(self, belief: torch.Tensor) -> torch.Tensor:
        y = self.raw(belief)
        if self.kind == "base_task":
            return y.softmax(-1)
        return y * self.out_std + self.out_mean

    def spec(self) -> dict[str, Any]:
        return {"belief_dim": self.belief_dim, "out_dim": self.out_dim, "kind": self.kind, "hidden": list(self.hidden), "names": self.names}

    def record(self, quality: dict[str, Any]) -> dict[str, Any]:
        """What a checkpoint stores: spec, weights (CPU tensors) and the fit's quality figures."""
        return {"spec": self.spec(), "state": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}, "quality": dict(quality)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TaskReadout:
        m = cls(**record["spec"])
        m.load_state_dict(record["state"])
        return m.requires_grad_(False).eval()
