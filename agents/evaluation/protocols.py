"""Evaluation protocols through the inference contract: zero-shot episodes, trials, PEARL's protocol and
offline contexts.

Episode i of an evaluation runs task i mod n_tasks with reset seed `seed + i`, so two agents evaluated
with the same arguments see the same tasks, start states and switch schedules (what the normalised score
and the adaptation delay compare).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

import envs
from agents.config import EnvConfig
from agents.device import host_to
from agents.evaluation.rollout import EpisodeRecord, padded, run_episodes
from agents.policies import AgentPolicy, PEARLPolicy, State


def make_env(env_cfg: EnvConfig, split: str, nonstationary: str | None = None, **overrides: Any):
    ns = nonstationary if nonstationary is not None else env_cfg.nonstationary
    if ns == "none":
        ns = None
    return envs.make(
        env_cfg.id,
        split=split,
        seed=env_cfg.task_seed,
        nonstationary=ns,
        max_episode_steps=overrides.get("max_episode_steps", env_cfg.max_episode_steps),
        nonstationary_kwargs=env_cfg.nonstationary_kwargs() if ns else None,
        **env_cfg.kwargs,
    )


@contextlib.contextmanager
def env_pool(env_cfg: EnvConfig, split: str, nonstationary: str | None, n: int) -> Iterator[tuple[list, int]]:
    """`n` envs of `split` (n >= 1) and the split's number of tasks; every env is closed on exit."""
    pool = [make_env(env_cfg, split, nonstationary) for _ in range(max(n, 1))]
    try:
        yield pool, len(pool[0].unwrapped.tasks(split))
    finally:
        for e in pool:
            e.close()


def batches(total: int, size: int) -> Iterator[list[int]]:
    """[0, size), [size, 2 size), ... up to `total`."""
    for start in range(0, total, size):
        yield list(range(start, min(start + size, total)))


def reset_kwargs(idx: list[int], n_tasks: int, seed: int) -> list[dict[str, Any]]:
    """Episode i runs task i mod n_tasks, reset with seed `seed + i`."""
    return [{"seed": seed + i, "options": {"task_index": i % n_tasks}} for i in idx]


RunTrialEpisode = Callable[[int, list, list[dict[str, Any]], Any], tuple[list[EpisodeRecord], Any]]


def run_trials(
    env_cfg: EnvConfig,
    split: str,
    nonstationary: str | None,
    episodes: int,
    per_trial: int,
    seed: int,
    parallel: int,
    run_episode: RunTrialEpisode,
) -> list[list[EpisodeRecord]]:
    """The loop every trial protocol shares: trial i runs task i mod n, its episode k reset with seed
    `seed + k * episodes + i`; `run_episode(k, envs, reset_kwargs, carry)` runs episode k of a batch of
    trials and returns its records and what episode k + 1 starts from (`carry`, None before episode 0).
    Returns one list per trial episode k, each with one record per trial."""
    with env_pool(env_cfg, split, nonstationary, min(parallel, episodes)) as (pool, n_tasks):
        result: list[list[EpisodeRecord]] = [[] for _ in range(per_trial)]
        for trials in batches(episodes, len(pool)):
            carry = None
            for k in range(per_trial):
                kw = reset_kwargs(trials, n_tasks, seed + k * episodes)
                recs, carry = run_episode(k, pool[: len(trials)], kw, carry)
                result[k] += recs
    return result


def evaluation_episodes(
    policy: AgentPolicy | None,
    env_cfg: EnvConfig,
    split: str = "test",
    episodes: int = 20,
    seed: int = 10_000,
    nonstationary: str | None = None,
    parallel: int = 16,
    deterministic: bool = True,
    record_beliefs: bool = False,
) -> list[EpisodeRecord]:
    """Run `episodes` episodes (task i mod n, reset seed `seed + i`) in batches of `parallel` envs;
    `policy=None` is the random policy. A trial protocol of one episode per trial."""

    def run_episode(k: int, pool: list, kw: list[dict[str, Any]], _: None) -> tuple[list[EpisodeRecord], None]:
        return run_episodes(policy, pool, kw, deterministic, record_beliefs), None

    return run_trials(env_cfg, split, nonstationary, episodes, 1, seed, parallel, run_episode)[0]


class _HeldBelief:
    """Acts on one fixed belief per env for a whole episode (transitions change nothing): PEARL's protocol
    holds z (or the belief) between posterior updates. Duck-types the contract for `run_episodes`."""

    needs_task_vector = False

    def __init__(self, policy: PEARLPolicy, belief: torch.Tensor) -> None:
        self.policy, self.held = policy, belief

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def init_state(self, n: int) -> State:
        return {"b": self.held[:n]}

    def update(self, state: State, s, a, r, s2) -> State:
        return state

    def belief(self, state: State) -> torch.Tensor:
        return state["b"]

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, belief, deterministic)


@torch.no_grad()
def pearl_protocol_episodes(
    policy: PEARLPolicy, env_cfg: EnvConfig, split: str = "test", episodes: int = 20, exploration: int = 2,
    posterior: int = 1, seed: int = 10_000, parallel: int = 16, deterministic: bool = True,
) -> list[list[EpisodeRecord]]:
    """PEARL's meta-test protocol (Rakelly et al. 2019; the TCL-PEARL and CoCOA papers, section 5): per task trial i
    (task i mod n), `exploration` episodes acting on the prior, then `posterior` episodes acting on the
    posterior of every transition collected so far in that trial.

    The belief is held for a whole episode and recomputed between episodes (from all of the trial's
    transitions, exploration included). A `sample_z` policy acts on one z per episode, drawn from N(0, I)
    in exploration and from the posterior afterwards (posterior sampling); a Bayes-adaptive policy acts on
    the belief (mu, std) itself (the prior (0, 1) in exploration). Episode k of trial i is reset with seed
    `seed + k * episodes + i` (episode 0 therefore starts as `evaluation_episodes(seed=seed)` does), and
    the z draws come from a generator seeded with `seed`, so a protocol run is reproducible.

    Returns one list per protocol episode k (exploration first), each with one record per trial: the
    adapted performance is `summarize(result[-1])`. Zero-shot online use (the belief updated at every
    step from the episode's first transition) is the ordinary `evaluation_episodes`.
    """
    if not hasattr(policy, "absorb"):
        raise TypeError(f"the PEARL protocol needs a product-of-Gaussians policy, not {policy.algorithm!r}")
    gen = torch.Generator().manual_seed(seed)
    D = policy.latent_dim

    def run_episode(k: int, pool: list, kw: list[dict[str, Any]], context: State | None) -> tuple[list[EpisodeRecord], State]:
        n, dev = len(pool), policy.device
        context = policy.init_state(n) if context is None else context  # the prior
        g = policy.posterior(context)
        mu, std = (torch.zeros(n, D, device=dev), torch.ones(n, D, device=dev)) if k < exploration else (g.mu, g.std)
        if policy.sample_z:  # one z per episode, given to the policy as a point belief (z, 0)
            mu, std = mu + std * torch.randn(n, D, generator=gen, device="cpu").to(dev), torch.zeros(n, D, device=dev)
        recs = run_episodes(_HeldBelief(policy, torch.cat([mu, std], -1)), pool, kw, deterministic)  # type: ignore[arg-type]
        s, a, r, s2, lengths = padded(recs)
        mask = torch.arange(s.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        return recs, policy.absorb(context, *(x.to(dev) for x in (s, a, r, s2, mask)))

    return run_trials(env_cfg, split, "none", episodes, exploration + posterior, seed, parallel, run_episode)


@torch.no_grad()
def trial_episodes(
    policy: AgentPolicy | None, env_cfg: EnvConfig, split: str = "test", episodes: int = 20, per_trial: int = 3,
    seed: int = 10_000, nonstationary: str | None = "none", parallel: int = 16, deterministic: bool = True,
    record_beliefs: bool = False,
) -> list[list[EpisodeRecord]]:
    """Trials of `per_trial` consecutive episodes on one task, the agent's inference state carried over.

    Trial i runs task i mod n; its episode k starts from the state episode k - 1 ended in (episode 0 from
    `init_state`), so an agent such as MoSS can use what it saw in earlier episodes of the trial; its belief
    is still updated at every step, as online. This is the PEARL protocol for agents that have no
    separate exploration policy (MoSS, the oracle, `policy=None` = random, whose episodes are independent);
    PEARL-family policies go through `pearl_protocol_episodes` (see `protocol_episodes`). Episode k of
    trial i is reset with seed `seed + k * episodes + i`, as in `pearl_protocol_episodes`, so with
    `per_trial=1` this is `evaluation_episodes` on the same `nonstationary` mode. Tasks are stationary by
    default (`nonstationary="none"`; None = as configured).

    Returns one list per trial episode k, each with one record per trial (the last: `result[-1]`).
    """

    def run_episode(k: int, pool: list, kw: list[dict[str, Any]], state: State | None) -> tuple[list[EpisodeRecord], State | None]:
        return run_episodes(policy, pool, kw, deterministic, record_beliefs, initial_state=state, return_state=True)

    return run_trials(env_cfg, split, nonstationary, episodes, per_trial, seed, parallel, run_episode)


def protocol_episodes(
    policy: AgentPolicy | None, env_cfg: EnvConfig, split: str = "test", episodes: int = 20, exploration: int = 2,
    posterior: int = 1, seed: int = 10_000, parallel: int = 16, deterministic: bool = True,
) -> list[list[EpisodeRecord]]:
    """PEARL's meta-test protocol for any agent: `exploration + posterior` episodes per trial on stationary
    tasks; the adapted performance is `summarize(result[-1])`.

    A PEARL-family policy (a `PEARLPolicy`: pearl, tcl, cocoa) explores on the prior and then acts on the
    posterior (`pearl_protocol_episodes`); any other agent (MoSS, the oracle, `None` = random) runs
    `trial_episodes`, its inference state carried from episode to episode. Both reset episode k of trial i
    with seed `seed + k * episodes + i`, so every agent meets the same tasks and start states.
    """
    if exploration < 0 or posterior < 1:
        raise ValueError(f"need exploration >= 0 and posterior >= 1, got {exploration} and {posterior}")
    if isinstance(policy, PEARLPolicy):
        return pearl_protocol_episodes(policy, env_cfg, split, episodes, exploration, posterior, seed, parallel, deterministic)
    return trial_episodes(policy, env_cfg, split, episodes, exploration + posterior, seed, "none", parallel, deterministic)


@torch.no_grad()
def context_episodes(
    policy: Any, env_cfg: EnvConfig, dataset: Any, split: str = "test", episodes: int = 20, context_size: int = 64,
    seed: int = 10_000, parallel: int = 16,
) -> list[EpisodeRecord]:
    """FOCAL's offline evaluation: episode i (task i mod n, reset seed `seed + i`) acts on the belief of
    `context_size` transitions drawn from `dataset`'s episodes of that task (an `OfflineDataset` of the
    same split and task seed), held for the whole episode. `policy` needs `absorb` (FOCAL, PEARL)."""
    m = dataset.meta
    if m["split"] != split or m["env"].get("task_seed", 0) != env_cfg.task_seed:
        raise ValueError(f"context dataset holds split {m['split']!r}, task seed {m['env'].get('task_seed')}; asked for {split!r}, {env_cfg.task_seed}")
    rng = np.random.default_rng(seed)

    def run_episode(k: int, pool: list, kw: list[dict[str, Any]], _: None) -> tuple[list[EpisodeRecord], None]:
        rows = []
        for task in (x["options"]["task_index"] for x in kw):
            eps = np.flatnonzero(dataset.task == task)
            if len(eps) == 0:
                raise ValueError(f"the context dataset has no episode of {split} task {task}")
            e = rng.choice(eps, context_size)
            rows.append((e, (rng.random(context_size) * dataset.length[e]).astype(np.int64)))
        ctx = [host_to(np.stack([getattr(dataset, k)[e, t] for e, t in rows]), policy.device) for k in ("obs", "action", "reward", "next_obs")]
        belief = policy.belief(policy.absorb(policy.init_state(len(kw)), *ctx))
        return run_episodes(_HeldBelief(policy, belief), pool, kw, True), None  # type: ignore[arg-type]

    return run_trials(env_cfg, split, "none", episodes, 1, seed, parallel, run_episode)[0]
