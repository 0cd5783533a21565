"""A policy that computes on an accelerator behind the contract of a CPU one (`runtime serve --device`).

The server keeps its sessions' states in host tensors and builds every input from numpy; `HostStates`
moves each call's states and inputs to the policy's device and its results back, so nothing in the
server changes. Serving on the CPU (the default) does not go through it.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.policies.base import AgentPolicy, State


def _to_device(state: State, device: torch.device) -> State:
    return {k: v.to(device, non_blocking=True) for k, v in state.items()}  # host to device: queued


def _to_host(state: State) -> State:
    return {k: v.cpu() for k, v in state.items()}  # device to host: waits, so the values are there


class HostStates:
    """`policy` (on its device) with states, inputs and outputs on the CPU; every other attribute (spaces,
    sizes, spec, flags) is the policy's own."""

    device = torch.device("cpu")  # where the contract's tensors live

    def __init__(self, policy: AgentPolicy) -> None:
        self.policy = policy
        self.compute_device = policy.device

    def __getattr__(self, name: str) -> Any:
        if name == "policy":  # not yet set (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.policy, name)

    def eval(self) -> HostStates:
        self.policy.eval()
        return self

    def init_state(self, n: int) -> State:
        return _to_host(self.policy.init_state(n))

    def update(self, state: State, s, a, r, s2) -> State:
        dev = self.compute_device
        new = self.policy.update(_to_device(state, dev), *(x.to(dev, non_blocking=True) for x in (s, a, r, s2)))
        return _to_host(new)

    def set_task_vector(self, state: State, task_vector: torch.Tensor) -> State:
        dev = self.compute_device
        return _to_host(self.policy.set_task_vector(_to_device(state, dev), task_vector.to(dev)))  # type: ignore[attr-defined]

    def belief(self, state: State) -> torch.Tensor:
        return self.policy.belief(_to_device(state, self.compute_device)).cpu()

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        dev = self.compute_device
        return self.policy.act(obs.to(dev, non_blocking=True), belief.to(dev, non_blocking=True), deterministic).cpu()
