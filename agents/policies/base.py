"""The inference contract shared by training rollouts, `runtime eval`, `runtime replay` and the server.

    init_state(n) -> state                  prior belief state for n sessions
    update(state, s, a, r, s2) -> state     one transition per session, batched ([n, ...] tensors)
    belief(state) -> [n, belief_dim]        what the policy sees
    act(obs, belief, deterministic) -> a    batched, in the env's action units

A state is a dict of tensors whose first axis is the session; `select_state`/`put_state` gather and
scatter rows so the server can batch any subset of sessions. Actions cross this interface in env units;
policies normalise to [-1, 1] internally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Spaces:
    """An env's observation and action spaces as a policy needs them (actions in env units)."""

    obs_dim: int
    action_dim: int
    action_low: list[float]
    action_high: list[float]

    @classmethod
    def of(cls, env: Any) -> Spaces:
        """The spaces of a gymnasium env with a flat Box observation and a Box action."""
        act = env.action_space
        return cls(int(math.prod(env.observation_space.shape)), int(act.shape[0]), act.low.tolist(), act.high.tolist())


def settings_of(frame_locals: dict[str, Any]) -> dict[str, Any]:
    """A policy constructor's own settings from its `locals()` (read first thing in `__init__`): every
    argument but `self` and `spaces`, tuples as lists (what a checkpoint's spec stores)."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in frame_locals.items()
        if k not in ("self", "spaces", "__class__")
    }


class AgentPolicy(nn.Module):
    """Base of every served policy: spaces, action scaling, and the four contract calls.

    A subclass takes `(spaces, **its settings)` and passes `settings_of(locals())` up: its spec (what a
    checkpoint stores to rebuild it) is the spaces plus those settings."""

    algorithm: ClassVar[str] = ""
    #: True when the belief is the env's true task vector (the oracle), not inferred from transitions
    needs_task_vector: ClassVar[bool] = False

    def __init__(self, spaces: Spaces, settings: dict[str, Any]) -> None:
        super().__init__()
        self.spaces, self.cfg = spaces, settings
        self.obs_dim, self.action_dim = int(spaces.obs_dim), int(spaces.action_dim)
        for name, bound in (("action_low", spaces.action_low), ("action_high", spaces.action_high)):
            self.register_buffer(name, torch.as_tensor(bound, dtype=torch.float32).reshape(self.action_dim))
        self._set_action_affine()
        # the affine maps follow the bounds a state dict brings (derived, so not stored in checkpoints)
        self.register_load_state_dict_post_hook(_refresh_action_affine)

    # -- spec: what a checkpoint stores to rebuild this module ------------------------------------
    def spec(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this module: spaces plus the subclass's settings."""
        return {
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            **self.cfg,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> AgentPolicy:
        """The inverse of `spec` (fresh weights)."""
        spaces = Spaces(**{f.name: spec[f.name] for f in fields(Spaces)})
        settings = {k: tuple(v) if isinstance(v, list) and k.endswith("hidden") else v for k, v in spec.items() if k not in spaces.__dict__}
        return cls(spaces, **settings)

    @property
    def belief_dim(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the weights live: states, inputs and outputs of the contract calls live there too."""
        return self._norm_scale.device

    # -- action scaling ---------------------------------------------------------------------------
    def _set_action_affine(self) -> None:
        """Precompute both action maps as one multiply-add each, in float64, kept in the bounds' dtype and
        device. Plain attributes, not buffers (an attribute read skips nn.Module.__getattr__, which costs
        as much as a small op at batch 1): `_apply` (`.to()`, `.double()`) and `load_state_dict` redo them."""
        low, high = self.action_low.double(), self.action_high.double()
        span = high - low
        as_bounds = {"dtype": self.action_low.dtype, "device": self.action_low.device}
        self._norm_scale = (2 / span).to(**as_bounds)  # normalize: a * 2/span - (2 low/span + 1)
        self._norm_shift = (-2 * low / span - 1).to(**as_bounds)
        self._scale_half = (0.5 * span).to(**as_bounds)  # scale: a * span/2 + (low + high)/2
        self._scale_mid = (0.5 * (low + high)).to(**as_bounds)

    def _apply(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = super()._apply(fn, *args, **kwargs)
        self._set_action_affine()
        return out

    def normalize_action(self, a: torch.Tensor) -> torch.Tensor:
        """env units -> [-1, 1] (clipped): 2 (a - low) / (high - low) - 1, as one multiply-add."""
        return torch.addcmul(self._norm_shift, a, self._norm_scale).clamp_(-1, 1)

    def scale_action(self, a: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> env units: low + (a + 1) (high - low) / 2, as one multiply-add."""
        return torch.addcmul(self._scale_mid, a, self._scale_half)

    # -- the contract -----------------------------------------------------------------------------
    def init_state(self, n: int) -> State:
        raise NotImplementedError

    def update(self, state: State, s, a, r, s2) -> State:
        raise NotImplementedError

    def belief(self, state: State) -> torch.Tensor:
        raise NotImplementedError

    def policy_input(self, obs: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return torch.cat([obs, belief], -1)

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        a = self.actor.act(self.policy_input(obs, belief), deterministic)  # type: ignore[attr-defined]
        return self.scale_action(a)


def _refresh_action_affine(module: AgentPolicy, _incompatible_keys: Any) -> None:
    module._set_action_affine()


def select_state(state: State, idx: torch.Tensor | list[int]) -> State:
    """Rows `idx` of every tensor in `state`."""
    idx = torch.as_tensor(idx, dtype=torch.long, device=next(iter(state.values())).device)
    return {k: v.index_select(0, idx) for k, v in state.items()}


def put_state(state: State, idx: torch.Tensor | list[int], sub: State) -> None:
    """Write `sub`'s rows into `state` at `idx` (in place)."""
    idx = torch.as_tensor(idx, dtype=torch.long, device=next(iter(state.values())).device)
    for k, v in state.items():
        v.index_copy_(0, idx, sub[k])


@torch.no_grad()
def beliefs_along(
    policy: AgentPolicy, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor, lengths: torch.Tensor,
    return_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, State]:
    """Beliefs b_0 .. b_T [n, T+1, belief_dim] of n logged episodes (b_k: after k transitions), all batched
    through the inference contract. Inputs padded to T steps: obs/next_obs [n, T, O], action [n, T, A] in env
    units, reward [n, T]; lengths [n]. Past an episode's end its rows hold its last belief. With
    `return_state`, also the state after each episode's last transition. Inputs on any device; the beliefs
    and the state are on the policy's."""
    n, T = obs.shape[:2]
    dev = policy.device
    obs, action, reward, next_obs = (x.to(dev) for x in (obs, action, reward, next_obs))
    lengths = torch.as_tensor(lengths, device="cpu")
    state = policy.init_state(n)
    out = torch.empty(n, T + 1, policy.belief_dim, device=dev)
    out[:, 0] = policy.belief(state)
    for k in range(T):
        live = torch.nonzero(lengths > k).squeeze(1).to(dev)
        if len(live) == n:
            state = policy.update(state, obs[:, k], action[:, k], reward[:, k], next_obs[:, k])
        elif len(live):
            new = policy.update(select_state(state, live), obs[live, k], action[live, k], reward[live, k], next_obs[live, k])
            put_state(state, live, new)
        else:
            out[:, k + 1 :] = out[:, k : k + 1]
            break
        out[:, k + 1] = policy.belief(state)
    return (out, state) if return_state else out


def cat_states(states: list[State]) -> State:
    return {k: torch.cat([s[k] for s in states], 0) for k in states[0]}
