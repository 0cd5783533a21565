"""Offline meta-RL datasets: episodes per task collected by a behaviour policy at chosen quality levels.

On disk (`.npz`, written with numpy's savez, read with allow_pickle=False, so a dataset can never run
code), with E episodes padded to the horizon T:

    meta          0-d unicode array: JSON {"format": "metarl-dataset", "version": 1, "env": {...}, "split",
                  "n_tasks", "horizon", "obs_dim", "action_dim", "task_dim", "levels": [names],
                  "level_noise": {name: noise}, "behaviour": checkpoint path or "random", "seed", "created"}
    obs, next_obs [E, T, O] float32   action [E, T, A] float32 (env units)
    reward, terminated [E, T] float32 length [E] int64 (valid steps; the rest is zero padding)
    task [E] int64 (task index in `split`)   task_vector [E, V] float32   level [E] int64 (index in levels)

Quality levels follow FOCAL's recipe of mixing behaviours of different skill: a level is the behaviour
policy acting stochastically with each step replaced, with probability `noise`, by a uniform random action
(noise 0 = the trained policy, 1 = random). `OfflineDataset.load` checks the format, version, shapes, task
indices and finiteness and raises `DatasetError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.config import EnvConfig
from agents.evaluation.protocols import env_pool
from agents.evaluation.rollout import EpisodeRecord, run_episodes, task_index_of
from agents.parts.buffer import EpisodeBuffer
from agents.policies import AgentPolicy, State

FORMAT = "metarl-dataset"
VERSION = 1
ARRAYS = ("obs", "next_obs", "action", "reward", "terminated", "length", "task", "task_vector", "level")


class DatasetError(ValueError):
    """A file that is not a usable dataset (the message names the file and says why)."""


@dataclass
class OfflineDataset:
    meta: dict[str, Any]
    obs: np.ndarray
    next_obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    length: np.ndarray
    task: np.ndarray
    task_vector: np.ndarray
    level: np.ndarray

    def __len__(self) -> int:
        return int(self.length.shape[0])

    @property
    def transitions(self) -> int:
        return int(self.length.sum())

    @classmethod
    def from_records(cls, records: list[EpisodeRecord], levels: list[int], meta: dict[str, Any]) -> OfflineDataset:
        T, E = int(meta["horizon"]), len(records)
        n_obs, n_act, n_task = meta["obs_dim"], meta["action_dim"], meta["task_dim"]
        out = {
            "obs": np.zeros((E, T, n_obs), np.float32),
            "next_obs": np.zeros((E, T, n_obs), np.float32),
            "action": np.zeros((E, T, n_act), np.float32),
            "reward": np.zeros((E, T), np.float32),
            "terminated": np.zeros((E, T), np.float32),
        }
        for i, r in enumerate(records):
            ep, L = r.episode, len(r.episode)
            for k in ("obs", "next_obs", "action", "reward"):
                out[k][i, :L] = getattr(ep, k)
            out["terminated"][i, :L] = ep.terminated
        return cls(
            meta=meta,
            **out,
            length=np.array([len(r.episode) for r in records], np.int64),
            task=np.array([task_index_of(r.task_ids[0]) for r in records], np.int64),
            task_vector=np.stack([r.episode.task_vector[0] for r in records]).astype(np.float32).reshape(E, n_task),
            level=np.asarray(levels, np.int64),
        )

    # -- files ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(self.meta)), **{k: getattr(self, k) for k in ARRAYS})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> OfflineDataset:
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"dataset not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                names = set(z.files)
                missing = [k for k in ("meta", *ARRAYS) if k not in names]
                if missing:
                    raise DatasetError(f"{path}: not a {FORMAT} file (missing {', '.join(missing)})")
                meta = json.loads(str(z["meta"][()]))
                arrays = {k: z[k] for k in ARRAYS}
        except DatasetError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
            raise DatasetError(f"{path}: damaged or not a dataset ({type(e).__name__}: {e})") from None
        ds = cls(meta=meta, **arrays)
        ds.validate(str(path))
        return ds

    def validate(self, name: str = "<dataset>") -> None:
        m = self.meta
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise DatasetError(f"{name}: not a {FORMAT} file (format {m.get('format') if isinstance(m, dict) else m!r})")
        if m.get("version") != VERSION:
            raise DatasetError(f"{name}: dataset version {m.get('version')!r}, this runtime reads version {VERSION}")
        E, T = len(self), int(m["horizon"])
        expect = {
            "obs": (E, T, m["obs_dim"]),
            "next_obs": (E, T, m["obs_dim"]),
            "action": (E, T, m["action_dim"]),
            "reward": (E, T),
            "terminated": (E, T),
            "length": (E,),
            "task": (E,),
            "task_vector": (E, m["task_dim"]),
            "level": (E,),
        }
        for k, shape in expect.items():
            got = getattr(self, k).shape
            if tuple(got) != tuple(shape):
                raise DatasetError(f"{name}: {k} has shape {tuple(got)}, expected {tuple(shape)}")
        if E == 0:
            raise DatasetError(f"{name}: holds no episodes")
        if (self.length < 1).any() or (self.length > T).any():
            raise DatasetError(f"{name}: episode lengths must lie in [1, {T}]")
        if (self.task < 0).any() or (self.task >= m["n_tasks"]).any():
            raise DatasetError(f"{name}: task indices must lie in [0, {m['n_tasks']}) for split {m['split']!r}")
        if (self.level < 0).any() or (self.level >= len(m["levels"])).any():
            raise DatasetError(f"{name}: level indices must lie in [0, {len(m['levels'])})")
        for k in ("obs", "next_obs", "action", "reward", "task_vector"):
            if not np.isfinite(getattr(self, k)).all():
                raise DatasetError(f"{name}: {k} holds NaN or inf")

    # -- views ------------------------------------------------------------------------------------------
    def select(self, levels: list[str] | None) -> OfflineDataset:
        """The episodes of the named quality levels (all when None)."""
        if not levels:
            return self
        unknown = [lv for lv in levels if lv not in self.meta["levels"]]
        if unknown:
            raise DatasetError(f"levels {unknown} not in the dataset (it has {self.meta['levels']})")
        keep = np.isin(self.level, [self.meta["levels"].index(lv) for lv in levels])
        return OfflineDataset(self.meta, **{k: getattr(self, k)[keep] for k in ARRAYS})

    def subsample(self, episodes_per_task: int, seed: int = 0) -> OfflineDataset:
        """`episodes_per_task` episodes of every task (all of a task's when it has fewer), drawn without
        replacement in turns over its levels, so a small file keeps the level mix of the whole: what an
        offline evaluation needs to draw its contexts from."""
        if episodes_per_task < 1:
            raise DatasetError(f"episodes_per_task must be at least 1, got {episodes_per_task}")
        rng = np.random.default_rng(seed)
        keep: list[int] = []
        for task in np.unique(self.task):
            of_task = self.task == task
            pools = [rng.permutation(np.flatnonzero(of_task & (self.level == j))) for j in np.unique(self.level[of_task])]
            turns = [pools[j][i] for i in range(max(map(len, pools))) for j in rng.permutation(len(pools)) if i < len(pools[j])]
            keep += turns[:episodes_per_task]
        rows = np.sort(np.asarray(keep, np.int64))
        meta = {**self.meta, "subsample": {"episodes_per_task": episodes_per_task, "seed": seed, "of_episodes": len(self)}}
        return OfflineDataset(meta, **{k: getattr(self, k)[rows] for k in ARRAYS})

    def to_buffer(self, device: str | torch.device = "cpu") -> EpisodeBuffer:
        """The episodes as a training buffer on `device`."""
        m = self.meta
        buf = EpisodeBuffer(len(self), int(m["horizon"]), m["obs_dim"], m["action_dim"], m["task_dim"], device)
        buf.extend(self.obs, self.action, self.reward, self.next_obs, self.terminated, self.length, self.task, self.task_vector)
        return buf

    def summary(self) -> dict[str, Any]:
        rets = (self.reward * (np.arange(self.reward.shape[1]) < self.length[:, None])).sum(1)
        per_level = {
            name: {"episodes": int((self.level == j).sum()), "mean_return": float(rets[self.level == j].mean())}
            for j, name in enumerate(self.meta["levels"])
            if (self.level == j).any()
        }
        return {
            "env": self.meta["env"]["id"],
            "split": self.meta["split"],
            "episodes": len(self),
            "transitions": self.transitions,
            "tasks": int(len(np.unique(self.task))),
            "levels": per_level,
        }


class NoisyBehaviour:
    """A behaviour policy for collection: `policy`'s stochastic action, replaced per step and env with
    probability `noise` by a uniform random action (duck-types the contract for `run_episodes`)."""

    def __init__(self, policy: AgentPolicy | None, noise: float, low, high, gen: torch.Generator) -> None:
        self.policy, self.noise, self.gen = policy, float(noise), gen
        self.low = torch.as_tensor(low, dtype=torch.float32, device="cpu")
        self.high = torch.as_tensor(high, dtype=torch.float32, device="cpu")
        self.needs_task_vector = bool(policy is not None and policy.needs_task_vector)
        # the random actions and the swaps are drawn on the CPU (`gen`), the same on any device
        self.device = policy.device if policy is not None else torch.device("cpu")

    def init_state(self, n: int) -> State:
        return self.policy.init_state(n) if self.policy is not None else {"n": torch.zeros(n, 1, device="cpu")}

    def set_task_vector(self, state: State, v: torch.Tensor) -> State:
        return self.policy.set_task_vector(state, v)  # type: ignore[union-attr]

    def update(self, state: State, s, a, r, s2) -> State:
        return self.policy.update(state, s, a, r, s2) if self.policy is not None else state

    def belief(self, state: State) -> torch.Tensor:
        return self.policy.belief(state) if self.policy is not None else state["n"]

    def act(self, obs: torch.Tensor, belief: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        n = obs.shape[0]
        rand = self.low + torch.rand(n, len(self.low), generator=self.gen, device="cpu") * (self.high - self.low)
        if self.policy is None or self.noise >= 1.0:
            return rand
        a = self.policy.act(obs, belief, deterministic=False)
        swap = torch.rand(n, 1, generator=self.gen, device="cpu") < self.noise
        return torch.where(swap.to(a.device), rand.to(a.device), a)


def dataset_meta(env_cfg: dict[str, Any], env, split: str, levels: dict[str, float], behaviour: str, seed: int) -> dict[str, Any]:
    act = env.action_space
    return {
        "format": FORMAT,
        "version": VERSION,
        "env": env_cfg,
        "split": split,
        "n_tasks": len(env.unwrapped.tasks(split)),
        "horizon": int(env.spec.max_episode_steps),
        "obs_dim": int(np.prod(env.observation_space.shape)),
        "action_dim": int(act.shape[0]),
        "task_dim": int(env.unwrapped.task_dim),
        "levels": list(levels),
        "level_noise": dict(levels),
        "behaviour": behaviour,
        "seed": seed,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def collect_dataset(
    policy: AgentPolicy | None,
    env_cfg: EnvConfig,
    split: str,
    levels: dict[str, tuple[float, int]],
    seed: int = 0,
    behaviour: str = "random",
    parallel: int = 32,
    progress=None,
) -> OfflineDataset:
    """Episodes on every task of `split`: for each level name, (noise, episodes per task) of `NoisyBehaviour`
    around `policy` (None = random). `progress(n_episodes)` is called after each batch. Reproducible
    given `seed` (reset seeds, action noise and the policy's own sampling all derive from it)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    records: list[EpisodeRecord] = []
    record_levels: list[int] = []
    noises = [noise for noise, _ in levels.values()]
    with env_pool(env_cfg, split, "none", parallel) as (pool, n_tasks):
        meta = dataset_meta(env_cfg.model_dump(mode="json"), pool[0], split, dict(zip(levels, noises, strict=True)), behaviour, seed)
        low, high = pool[0].action_space.low, pool[0].action_space.high
        jobs = [(j, task) for j, (_, per_task) in enumerate(levels.values()) for task in range(n_tasks) for _ in range(per_task)]
        for start in range(0, len(jobs), len(pool)):
            batch = jobs[start : start + len(pool)]
            for j in sorted({j for j, _ in batch}):  # one behaviour per call; a batch may straddle two levels
                idx = [i for i, (jj, _) in enumerate(batch) if jj == j]
                kw = [{"seed": seed * 1_000_003 + start + i, "options": {"task_index": batch[i][1]}} for i in idx]
                behave = NoisyBehaviour(policy, noises[j], low, high, gen)
                records += run_episodes(behave, [pool[i] for i in idx], kw, deterministic=False)  # type: ignore[arg-type]
                record_levels += [j] * len(idx)
            if progress is not None:
                progress(len(batch))
    return OfflineDataset.from_records(records, record_levels, meta)
