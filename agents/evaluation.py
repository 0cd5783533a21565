"""Zero-shot evaluation through the inference contract: returns per task, success, switches.

Episode i of an evaluation runs task i mod n_tasks with reset seed `seed + i`, so two agents evaluated
with the same arguments see the same tasks, start states and switch schedules (what the normalised score
and the adaptation delay compare).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

import envs
from agents.config import EnvConfig
from agents.policies import AgentPolicy, PEARLPolicy, State
from agents.rollout import EpisodeRecord, run_episodes


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
    """Run `episodes` episodes (task i mod n) in batches of `parallel` envs; `policy=None` is the random policy."""
    records: list[EpisodeRecord] = []
    with env_pool(env_cfg, split, nonstationary, min(parallel, episodes)) as (pool, n_tasks):
        for idx in batches(episodes, len(pool)):
            kw = [{"seed": seed + i, "options": {"task_index": i % n_tasks}} for i in idx]
            records += run_episodes(policy, pool[: len(idx)], kw, deterministic, record_beliefs)
    return records


class _HeldBelief:
    """Acts on one fixed belief per env for a whole episode (transitions change nothing): PEARL's protocol
    holds z (or the belief) between posterior updates. Duck-types the contract for `run_episodes`."""

    needs_task_vector = False

    def __init__(self, policy: PEARLPolicy, belief: torch.Tensor) -> None:
        self.policy, self.held = policy, belief

    def init_state(self, n: int) -> State:
        return {"b": self.held[:n]}

    def update(self, state: State, s, a, r, s2) -> State:
        return state

    def belief(self, state: State) -> torch.Tensor:
        return state["b"]

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, belief, deterministic)


def _padded(records: list[EpisodeRecord]) -> tuple[torch.Tensor, ...]:
    """The records' transitions as [n, L_max, ...] tensors (s, a, r, s2) and their mask [n, L_max]."""
    L = max(len(r.episode) for r in records)

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, [(0, L - len(x))] + [(0, 0)] * (x.ndim - 1))

    eps = [r.episode for r in records]
    s, a, rew, s2 = (
        torch.as_tensor(np.stack([pad(getattr(e, k)) for e in eps]), dtype=torch.float32)
        for k in ("obs", "action", "reward", "next_obs")
    )
    mask = torch.arange(L).unsqueeze(0) < torch.as_tensor([len(e) for e in eps]).unsqueeze(1)
    return s, a, rew, s2, mask


@torch.no_grad()
def pearl_protocol_episodes(
    policy: PEARLPolicy,
    env_cfg: EnvConfig,
    split: str = "test",
    episodes: int = 20,
    exploration: int = 2,
    posterior: int = 1,
    seed: int = 10_000,
    parallel: int = 16,
    deterministic: bool = True,
) -> list[list[EpisodeRecord]]:
    """PEARL's meta-test protocol (Rakelly et al. 2019; papers 001 and 002, section 5): per task trial i
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
    with env_pool(env_cfg, split, "none", min(parallel, episodes)) as (pool, n_tasks):
        gen = torch.Generator().manual_seed(seed)
        D = policy.latent_dim
        result: list[list[EpisodeRecord]] = [[] for _ in range(exploration + posterior)]
        for trials in batches(episodes, len(pool)):
            n = len(trials)
            context = policy.init_state(n)  # the prior
            for k in range(exploration + posterior):
                g = policy.posterior(context)
                mu, std = (torch.zeros(n, D), torch.ones(n, D)) if k < exploration else (g.mu, g.std)
                if policy.sample_z:  # one z per episode, given to the policy as a point belief (z, 0)
                    mu, std = mu + std * torch.randn(n, D, generator=gen), torch.zeros(n, D)
                held = _HeldBelief(policy, torch.cat([mu, std], -1))
                kw = [{"seed": seed + k * episodes + i, "options": {"task_index": i % n_tasks}} for i in trials]
                recs = run_episodes(held, pool[:n], kw, deterministic)  # type: ignore[arg-type]
                context = policy.absorb(context, *_padded(recs))
                result[k] += recs
    return result


@torch.no_grad()
def trial_episodes(
    policy: AgentPolicy | None,
    env_cfg: EnvConfig,
    split: str = "test",
    episodes: int = 20,
    per_trial: int = 3,
    seed: int = 10_000,
    nonstationary: str | None = "none",
    parallel: int = 16,
    deterministic: bool = True,
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
    with env_pool(env_cfg, split, nonstationary, min(parallel, episodes)) as (pool, n_tasks):
        result: list[list[EpisodeRecord]] = [[] for _ in range(per_trial)]
        for trials in batches(episodes, len(pool)):
            n = len(trials)
            state: State | None = None
            for k in range(per_trial):
                kw = [{"seed": seed + k * episodes + i, "options": {"task_index": i % n_tasks}} for i in trials]
                recs, state = run_episodes(
                    policy, pool[:n], kw, deterministic, record_beliefs, initial_state=state, return_state=True
                )
                result[k] += recs
    return result


def protocol_episodes(
    policy: AgentPolicy | None,
    env_cfg: EnvConfig,
    split: str = "test",
    episodes: int = 20,
    exploration: int = 2,
    posterior: int = 1,
    seed: int = 10_000,
    parallel: int = 16,
    deterministic: bool = True,
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
        return pearl_protocol_episodes(
            policy,
            env_cfg,
            split,
            episodes,
            exploration,
            posterior,
            seed=seed,
            parallel=parallel,
            deterministic=deterministic,
        )
    return trial_episodes(
        policy,
        env_cfg,
        split,
        episodes,
        exploration + posterior,
        seed=seed,
        nonstationary="none",
        parallel=parallel,
        deterministic=deterministic,
    )


def summarize(records: list[EpisodeRecord]) -> dict[str, Any]:
    """mean/std return, per-task mean returns (by the task the episode began on), success rate, switches."""
    rets = np.array([r.ret for r in records])
    per_task: dict[str, list[float]] = {}
    for r in records:
        per_task.setdefault(r.task_ids[0], []).append(r.ret)
    out: dict[str, Any] = {
        "episodes": len(records),
        "mean_return": float(rets.mean()),
        "std_return": float(rets.std()),
        "per_task_return": {k: float(np.mean(v)) for k, v in per_task.items()},
        "switches": int(sum(len(r.switches) for r in records)),
    }
    succ = [r.success for r in records if r.success is not None]
    if succ:
        out["success_rate"] = float(np.mean(succ))
    return out


def per_base_return(per_task: dict[str, float], env_cfg: EnvConfig, split: str) -> dict[str, float] | None:
    """Mean of the per-task returns of each base task of `split` (multi-task families; None when the
    family has one base): which base tasks an agent has learned."""
    env = make_env(env_cfg, split)
    try:
        base_of = {t.id: t.base for t in env.unwrapped.tasks(split)}
    finally:
        env.close()
    if len(set(base_of.values())) < 2:
        return None
    by_base: dict[str, list[float]] = {}
    for task_id, ret in per_task.items():
        by_base.setdefault(base_of[task_id], []).append(ret)
    return {b: float(np.mean(v)) for b, v in sorted(by_base.items())}


def adaptation_delays(
    agent: list[EpisodeRecord], oracle: list[EpisodeRecord], scale: float, tol: float = 0.1
) -> list[int]:
    """Per task switch: steps until the agent's per-step reward is back within `tol * scale` of the oracle's
    and stays there until the next switch (or the episode's end).

    `agent` and `oracle` are evaluations with the same seeds (same tasks, starts and switch times);
    `scale` = |oracle - random| mean per-step reward, so 10% is measured in normalised-score units. Right
    after a switch both agents stand where the old task left them and earn similar rewards, so a first
    crossing would read as zero delay: the agent must *stay* within tolerance. A switch it never settles
    after counts as the full segment.
    """
    delays: list[int] = []
    for a, o in zip(agent, oracle, strict=True):
        ra, ro = a.episode.reward, o.episode.reward
        L = min(len(ra), len(ro))
        times = [s["step"] for s in a.switches]
        for j, s in enumerate(times):
            end = min(times[j + 1] if j + 1 < len(times) else L, L)
            bad = np.flatnonzero(ra[s:end] < ro[s:end] - tol * scale)
            delays.append(int(bad[-1] + 1) if len(bad) else 0)
    return delays


def normalised_score(ret: float, random_ret: float, oracle_ret: float) -> float:
    """(return - random) / (oracle - random)."""
    return float((ret - random_ret) / (oracle_ret - random_ret))


def compare_to_reference(
    agent: list[EpisodeRecord], oracle: list[EpisodeRecord], random: list[EpisodeRecord]
) -> dict[str, Any]:
    """oracle_return, random_return, normalised_score and adaptation_delay (switches, median, mean) of
    `agent` against the oracle's and the random policy's evaluations with the same seeds."""
    ret = summarize(agent)["mean_return"]
    o_ret, r_ret = summarize(oracle)["mean_return"], summarize(random)["mean_return"]
    steps = sum(len(r.episode) for r in agent)
    delays = adaptation_delays(agent, oracle, abs(o_ret - r_ret) * len(agent) / max(steps, 1))
    return {
        "oracle_return": o_ret,
        "random_return": r_ret,
        "normalised_score": normalised_score(ret, r_ret, o_ret),
        "adaptation_delay": {
            "switches": len(delays),
            "median": float(np.median(delays)) if delays else None,
            "mean": float(np.mean(delays)) if delays else None,
        },
    }


@torch.no_grad()
def context_episodes(
    policy: Any,
    env_cfg: EnvConfig,
    dataset: Any,
    split: str = "test",
    episodes: int = 20,
    context_size: int = 64,
    seed: int = 10_000,
    parallel: int = 16,
) -> list[EpisodeRecord]:
    """FOCAL's offline evaluation: episode i (task i mod n, reset seed `seed + i`) acts on the belief of
    `context_size` transitions drawn from `dataset`'s episodes of that task (an `OfflineDataset` of the
    same split and task seed), held for the whole episode. `policy` needs `absorb` (FOCAL, PEARL)."""
    m = dataset.meta
    if m["split"] != split or m["env"].get("task_seed", 0) != env_cfg.task_seed:
        raise ValueError(f"context dataset holds split {m['split']!r}, task seed {m['env'].get('task_seed')}; asked for {split!r}, {env_cfg.task_seed}")
    rng = np.random.default_rng(seed)
    with env_pool(env_cfg, split, "none", min(parallel, episodes)) as (pool, n_tasks):
        records: list[EpisodeRecord] = []
        for idx in batches(episodes, len(pool)):
            rows = []
            for i in idx:
                eps = np.flatnonzero(dataset.task == i % n_tasks)
                if len(eps) == 0:
                    raise ValueError(f"the context dataset has no episode of {split} task {i % n_tasks}")
                e = rng.choice(eps, context_size)
                rows.append((e, (rng.random(context_size) * dataset.length[e]).astype(np.int64)))
            ctx = [torch.as_tensor(np.stack([getattr(dataset, k)[e, t] for e, t in rows])) for k in ("obs", "action", "reward", "next_obs")]
            belief = policy.belief(policy.absorb(policy.init_state(len(idx)), *ctx))
            kw = [{"seed": seed + i, "options": {"task_index": i % n_tasks}} for i in idx]
            records += run_episodes(_HeldBelief(policy, belief), pool[: len(idx)], kw, True)  # type: ignore[arg-type]
    return records
