"""Offline datasets the way FOCAL builds them: one SAC behaviour policy per task, recorded along its training.

For every task of a split, on its own:
  1. a fresh SAC agent learns that task alone, on `learn_env` (the same family with a dense reward, e.g.
     SparsePointRobot's `sparse: dense`): `episodes_per_epoch` stochastic episodes, then as many SAC steps
     as the epoch had env steps (`updates_per_step` each), after `initial_steps` of random actions;
  2. at each of the `checkpoints` (env steps of its training, 0 = untrained) the agent as it stands then
     plays `episodes_per_checkpoint` stochastic episodes on the dataset's env (the reward the offline
     learner will see); those episodes form the dataset's quality level `sac_<steps>`.
So each task's data mixes behaviours from near-random to trained, as the per-task checkpoints of FOCAL's
data do, and the behaviours differ between tasks (no policy is shared across tasks).

The per-task agent is the oracle (agents/policies/oracle.py, SAC on (s, task vector)) trained by the oracle's
learner on that task's episodes only: with one task its task vector is a constant input, so it is plain
SAC on s.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from agents.algorithms.oracle import Oracle
from agents.config import EnvConfig, OracleRun, PerTaskBehaviourConfig, TrainConfig
from agents.evaluation.protocols import env_pool
from agents.evaluation.rollout import EpisodeRecord, run_episodes
from agents.parts.buffer import EpisodeBuffer
from agents.policies import OraclePolicy, Spaces
from agents.training.datasets import OfflineDataset, dataset_meta


def level_name(steps: int) -> str:
    """The dataset level of the behaviour after `steps` env steps of its training."""
    return f"sac_{steps}"


def task_behaviour_episodes(
    task: int, learn_pool: list, pool: list, cfg: PerTaskBehaviourConfig, learn_env: EnvConfig, seed: int
) -> tuple[list[EpisodeRecord], list[int]]:
    """Train one SAC agent on task `task` of the pools' split and record it at `cfg.checkpoints`; returns
    the recorded episodes (on `pool`'s env) and each one's checkpoint index. Reproducible given `seed`."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = pool[0]
    horizon, task_dim = int(env.spec.max_episode_steps), int(env.unwrapped.task_dim)
    spaces = Spaces.of(env)
    policy = OraclePolicy(spaces, task_dim, tuple(cfg.sac.hidden))
    run = OracleRun(algorithm="oracle", env=learn_env, seed=seed, sac=cfg.sac, train=TrainConfig())
    learner = Oracle(policy, run)  # its SAC steps per call, `run.train.policy_updates`, follow each epoch's env steps
    capacity = max(cfg.checkpoints) // horizon + cfg.episodes_per_epoch  # every episode of its training
    buffer = EpisodeBuffer(capacity, horizon, spaces.obs_dim, spaces.action_dim, task_dim)
    next_seed = itertools.count(seed * 1_000_003)  # each episode's reset seed

    def episodes(envs: list, n: int, acting: OraclePolicy | None) -> list[EpisodeRecord]:
        out: list[EpisodeRecord] = []
        for start in range(0, n, len(envs)):
            k = min(len(envs), n - start)
            kw = [{"seed": next(next_seed), "options": {"task_index": task}} for _ in range(k)]
            out += run_episodes(acting, envs[:k], kw, deterministic=False)  # type: ignore[arg-type]
        return out

    records: list[EpisodeRecord] = []
    levels: list[int] = []
    pending = list(enumerate(cfg.checkpoints))  # (level index, env steps), ascending (the config sorts them)
    steps = 0
    while True:
        while pending and pending[0][1] <= steps:
            j, _ = pending.pop(0)
            recorded = episodes(pool, cfg.episodes_per_checkpoint, policy if steps > 0 else None)
            records += recorded
            levels += [j] * len(recorded)
        if not pending:
            return records, levels
        new = episodes(learn_pool, cfg.episodes_per_epoch, policy if steps >= cfg.initial_steps else None)
        for r in new:
            buffer.add(r.episode)
        n = sum(len(r.episode) for r in new)
        steps += n
        if steps >= cfg.initial_steps:
            run.train.policy_updates = max(1, round(n * cfg.updates_per_step))
            learner.train_epoch(buffer, rng)


def per_task_dataset(
    env_cfg: EnvConfig,
    split: str,
    cfg: PerTaskBehaviourConfig,
    seed: int = 0,
    parallel: int = 50,
    progress: Callable[[int], object] | None = None,
) -> OfflineDataset:
    """The split's dataset: for each task, its own SAC behaviour recorded at `cfg.checkpoints`
    (`task_behaviour_episodes`, seeded per task). `progress(1)` after each task."""
    learn_env = env_cfg.model_copy(update={"kwargs": {**env_cfg.kwargs, **cfg.learn_env_kwargs}})
    records: list[EpisodeRecord] = []
    levels: list[int] = []
    n_learn = min(parallel, cfg.episodes_per_epoch)
    with env_pool(env_cfg, split, "none", parallel) as (pool, n_tasks), env_pool(learn_env, split, "none", n_learn) as (learn_pool, _):
        names = {level_name(s): 0.0 for s in cfg.checkpoints}
        meta = dataset_meta(env_cfg.model_dump(mode="json"), pool[0], split, names, "per-task SAC", seed)
        meta["behaviour_settings"] = cfg.model_dump(mode="json")
        for task in range(n_tasks):
            recs, lv = task_behaviour_episodes(task, learn_pool, pool, cfg, learn_env, seed * 100_003 + task)
            records += recs
            levels += lv
            if progress is not None:
                progress(1)
    return OfflineDataset.from_records(records, levels, meta)
