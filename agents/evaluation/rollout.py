"""Batched rollouts through the inference contract: N envs stepped in lockstep, one policy call per step.

Used by training collection, `runtime eval` and the benchmarks, so they all act the same way the server does.
Envs step on the CPU; the policy may live on another device (`policy.device`): each step's observations,
actions and rewards go there in one copy per field, and the actions come back in one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.device import host_to
from agents.parts.buffer import Episode
from agents.policies import AgentPolicy, State, put_state, select_state


@dataclass
class EpisodeRecord:
    episode: Episode
    task_ids: list[str]  # per step, the task that produced the reward
    switches: list[dict[str, Any]] = field(default_factory=list)  # info["task_switch"] entries
    success: bool | None = None
    beliefs: np.ndarray | None = None  # [L+1, belief_dim] when recorded

    @property
    def ret(self) -> float:
        return float(self.episode.reward.sum())


TRANSITION = ("obs", "action", "reward", "next_obs")


def padded(records: list[EpisodeRecord], names: tuple[str, ...] = TRANSITION) -> tuple[torch.Tensor, ...]:
    """The records' episode arrays `names` as float32 CPU tensors [n, L_max, ...], zero-padded past each
    episode's end, followed by the lengths [n]."""
    L = max(len(r.episode) for r in records)

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, [(0, L - len(x))] + [(0, 0)] * (x.ndim - 1))

    eps = [r.episode for r in records]
    out = [torch.as_tensor(np.stack([pad(getattr(e, k)) for e in eps]), dtype=torch.float32, device="cpu") for k in names]
    return (*out, torch.as_tensor([len(e) for e in eps], device="cpu"))


def task_index_of(task_id: str) -> int:
    """`Family/split/7` -> 7."""
    return int(task_id.rsplit("/", 1)[-1])


@torch.no_grad()
def run_episodes(
    policy: AgentPolicy | None,
    envs: list[gym.Env],
    reset_kwargs: list[dict[str, Any]],
    deterministic: bool = True,
    record_beliefs: bool = False,
    initial_state: State | None = None,
    return_state: bool = False,
) -> list[EpisodeRecord] | tuple[list[EpisodeRecord], State | None]:
    """One episode per env, in lockstep. `policy=None` acts uniformly at random (env.action_space).

    `initial_state` (n rows) replaces `policy.init_state(n)` as the state the episodes start from, e.g.
    the state a previous episode on the same task ended in (the oracle's task vector is still set from the
    reset's info). With `return_state` the call returns `(records, final_state)`: row j of `final_state`
    is the state right after env j's last step (later dummy updates of finished rows are not kept); it is
    None for the random policy.
    """
    n = len(envs)
    dev = getattr(policy, "device", torch.device("cpu"))
    obs_list, infos = zip(*(env.reset(**kw) for env, kw in zip(envs, reset_kwargs, strict=True)), strict=True)
    obs = np.stack(obs_list).astype(np.float32)
    if policy is None:
        # the random policy draws from env.action_space, whose RNG reset(seed=) does not touch: seed it too,
        # so random collection (training's initial episodes) and the random baseline are reproducible
        for env, kw in zip(envs, reset_kwargs, strict=True):
            if kw.get("seed") is not None:
                env.action_space.seed(int(kw["seed"]))
    if policy is None:
        state = None
    elif initial_state is not None:
        if any(v.shape[0] != n for v in initial_state.values()):
            raise ValueError(f"initial_state must have {n} rows (one per env)")
        state = dict(initial_state)
    else:
        state = policy.init_state(n)
    if policy is not None and policy.needs_task_vector:
        state = policy.set_task_vector(state, host_to(np.stack([i["task_vector"] for i in infos]), dev))  # type: ignore[attr-defined]
    final_state = {k: v.clone() for k, v in state.items()} if return_state and state is not None else None
    alive = np.ones(n, dtype=bool)
    buf: list[dict[str, list]] = [
        {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "task", "task_vector", "task_id")}
        for _ in range(n)
    ]
    switches: list[list[dict]] = [[] for _ in range(n)]
    success = [None] * n
    beliefs: list[list[np.ndarray]] = [[] for _ in range(n)]
    cur_task_vec = [np.asarray(i["task_vector"], dtype=np.float32) for i in infos]
    cur_task_id = [i["task_id"] for i in infos]
    while alive.any():
        if policy is not None:
            b = policy.belief(state)
            actions = policy.act(host_to(obs, dev), b, deterministic).cpu().numpy()
            if record_beliefs:
                b_host = b.cpu().numpy()
                for j in np.flatnonzero(alive):
                    beliefs[j].append(b_host[j].copy())
        else:
            actions = np.stack([env.action_space.sample() for env in envs]).astype(np.float32)
        next_obs = obs.copy()
        rewards = np.zeros(n, dtype=np.float32)
        was_alive = alive.copy()
        for j in np.flatnonzero(alive):
            o2, r, term, trunc, info = envs[j].step(actions[j])
            if "task_switch" in info:
                switches[j].append(dict(info["task_switch"]))
            d = buf[j]
            d["obs"].append(obs[j])
            d["action"].append(actions[j])
            d["reward"].append(r)
            d["next_obs"].append(o2)
            d["terminated"].append(term)
            d["task_id"].append(info.get("task_id", cur_task_id[j]))
            d["task"].append(task_index_of(d["task_id"][-1]))
            d["task_vector"].append(cur_task_vec[j])
            cur_task_vec[j] = np.asarray(info["task_vector"], dtype=np.float32)
            cur_task_id[j] = info["task_id"]
            if "success" in info:
                success[j] = bool(success[j]) or bool(info["success"])
            next_obs[j] = o2
            rewards[j] = r
            if term or trunc:
                alive[j] = False
        if policy is not None:
            new_state = policy.update(state, *(host_to(x, dev) for x in (obs, actions, rewards, next_obs)))
            if policy.needs_task_vector:
                new_state = policy.set_task_vector(new_state, host_to(np.stack(cur_task_vec), dev))  # type: ignore[attr-defined]
            state = new_state
            done_now = np.flatnonzero(was_alive & ~alive)
            if final_state is not None and len(done_now):
                put_state(final_state, done_now.tolist(), select_state(state, done_now.tolist()))
            if record_beliefs and len(done_now):
                # the belief after an env's last step (finished envs' rows get dummy updates afterwards)
                b_host = policy.belief(state).cpu().numpy()
                for j in done_now:
                    beliefs[j].append(b_host[j].copy())
        obs = next_obs
    out = []
    for j in range(n):
        d = buf[j]
        ep = Episode(
            obs=np.asarray(d["obs"], np.float32),
            action=np.asarray(d["action"], np.float32),
            reward=np.asarray(d["reward"], np.float32),
            next_obs=np.asarray(d["next_obs"], np.float32),
            terminated=np.asarray(d["terminated"], bool),
            task=np.asarray(d["task"], np.int64),
            task_vector=np.asarray(d["task_vector"], np.float32),
        )
        out.append(
            EpisodeRecord(ep, d["task_id"], switches[j], success[j], np.asarray(beliefs[j]) if record_beliefs else None)
        )
    return (out, final_state) if return_state else out
