"""The training loop shared by every algorithm: collect, update, evaluate, log, checkpoint, resume.

Offline algorithms (FOCAL, FOCAL++: a config with an `offline:` section) skip collection: the buffer is
the dataset, and `step` counts gradient steps instead of env steps.

Files in the run directory: `checkpoint.pt` (policy + optimisers + counters + RNG, resumable),
`buffer.pt` (the replay buffer, for resuming), `policy.pt` (policy only: what you serve),
`metrics.jsonl` (one JSON line per epoch and per evaluation), `config.yaml` (the resolved config).

`train.device` places the policy, the learner's parts and the replay buffer (or the offline dataset's
buffer) on one device; envs step on the CPU. Checkpoint and buffer files hold CPU tensors, so a run
resumes, and its policy serves, on any device.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
import yaml

from agents.algorithms import ALGORITHMS, build_agent
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.config import RunBase
from agents.device import resolve_device
from agents.evaluation import context_episodes, evaluation_episodes, make_env, summarize
from agents.evaluation.readout import fit_readout_on_buffer
from agents.parts.buffer import EpisodeBuffer
from agents.policies import Spaces
from agents.training.collect import Collector, InProcessCollector, draw_reset_kwargs
from agents.training.datasets import DatasetError, OfflineDataset

log = structlog.get_logger("trainer")


def env_record(env, env_id: str) -> dict[str, Any]:
    """What a checkpoint records of the env it was trained on: id, spaces, horizon, task-vector size."""
    return {
        "id": env_id,
        **dataclasses.asdict(Spaces.of(env)),
        "max_episode_steps": int(env.spec.max_episode_steps) if env.spec and env.spec.max_episode_steps else None,
        "task_dim": int(env.unwrapped.task_dim),
    }


def read_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """An epoch's metrics as floats. Learners leave them as 0-d tensors on the training device; they are
    read here, once per epoch, in one transfer (a read is a host sync on a GPU)."""
    tensors = {k: v for k, v in metrics.items() if isinstance(v, torch.Tensor)}
    values = torch.stack([v.detach().reshape(()).double() for v in tensors.values()]).tolist() if tensors else []
    return {**{k: float(v) for k, v in metrics.items() if k not in tensors}, **dict(zip(tensors, values, strict=True))}


class Trainer:
    def __init__(
        self,
        cfg: RunBase,
        out_dir: str | Path,
        resume: bool = False,
        progress: bool = False,
        workers: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        """`workers`: collect on that many Ray actors (agents/training/distributed.py; `ray_address` joins a running
        cluster, else a local one is started); None collects in this process and never imports Ray."""
        self.device = resolve_device(cfg.train.device)  # a DeviceError before anything is built
        self.cfg, self.out = cfg, Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.offline = ALGORITHMS[cfg.algorithm].offline
        offline = getattr(cfg, "offline", None)
        # with workers or offline, one env for the spaces only
        n_envs = 1 if workers or self.offline else cfg.train.episodes_per_epoch
        self.envs = [make_env(cfg.env, "train") for _ in range(n_envs)]
        env0 = self.envs[0]
        self.n_train_tasks = len(env0.unwrapped.tasks("train"))
        self.horizon = int(env0.spec.max_episode_steps)
        self.env_info = env_record(env0, cfg.env.id)
        self.bases = tuple(env0.unwrapped.distribution.bases)
        self.policy, self.learner = build_agent(cfg, Spaces.of(env0), self.env_info["task_dim"], self.device)
        self.context_data: OfflineDataset | None = None
        if offline is not None:
            self.buffer = self._load_dataset(offline.dataset, offline.levels).to_buffer(self.device)
            if offline.context_dataset:
                self.context_data = self._load_dataset(offline.context_dataset, offline.levels)
        else:
            self.buffer = EpisodeBuffer(
                cfg.train.buffer_episodes, self.horizon, self.env_info["obs_dim"], self.env_info["action_dim"], self.env_info["task_dim"],
                self.device,
            )
        self.step = 0
        self.epoch = 0
        self.next_eval = cfg.train.eval_every
        self.next_ckpt = cfg.train.checkpoint_every
        self.history: list[dict[str, Any]] = []
        self.timing = {"collect": 0.0, "update": 0.0, "eval": 0.0}
        self.updates = {"encoder": 0, "sac": 0}
        if resume:
            self._resume()
        else:
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        self.collector: Collector = InProcessCollector(self.envs)
        if workers:
            from agents.training.distributed import RayCollector  # the only place Ray is imported

            self.collector = RayCollector(
                cfg.env, cfg.algorithm, self.policy.spec(), workers, address=ray_address, threads=cfg.train.threads
            )

    def _load_dataset(self, path: str, levels: list[str] | None) -> OfflineDataset:
        """A dataset of this run's env with matching spaces (DatasetError otherwise)."""
        ds = OfflineDataset.load(path).select(levels)
        m, info = ds.meta, self.env_info
        if m["env"]["id"] != self.cfg.env.id:
            raise DatasetError(f"{path}: collected on {m['env']['id']!r}, this run trains on {self.cfg.env.id!r}")
        for k in ("obs_dim", "action_dim", "task_dim"):
            if m[k] != info[k]:
                raise DatasetError(f"{path}: {k} {m[k]} does not match the env's {info[k]}")
        return ds

    # -- collection ---------------------------------------------------------------------------------------
    def collect(self, n_episodes: int, random: bool) -> list:
        """Draw every episode's (reset seed, task index) here, have the collector run them, fill the buffer."""
        kw = draw_reset_kwargs(self.rng, n_episodes, self.n_train_tasks)
        records = self.collector.collect(None if random else self.policy, kw)
        for r in records:
            self.buffer.add(r.episode)
            self.step += len(r.episode)
        return records

    def close(self) -> None:
        """Release the collector (Ray actors, and the local Ray instance if this trainer started it)."""
        self.collector.close()

    # -- loop ------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg = self.cfg.train
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.step, unit="step", dynamic_ncols=True)
        t_start = time.perf_counter()
        if self.step == 0 and self.cfg.train.initial_episodes and not self.offline:
            t0 = time.perf_counter()
            self.collect(self.cfg.train.initial_episodes, random=True)
            self.timing["collect"] += time.perf_counter() - t0
        while self.step < cfg.total_steps:
            t0 = time.perf_counter()
            if self.offline:  # no interaction: a step is a gradient step
                recs = []
                self.step += cfg.policy_updates
            else:
                recs = self.collect(cfg.episodes_per_epoch, random=False)
            t1 = time.perf_counter()
            counts = self.learner.epoch_updates(self.buffer)
            metrics = read_metrics(self.learner.train_epoch(self.buffer, self.rng))
            t2 = time.perf_counter()
            self.timing["collect"] += t1 - t0
            self.timing["update"] += t2 - t1
            for k in [k for k in metrics if k.startswith("time_")]:
                name = k.removeprefix("time_").removesuffix("_s")
                self.timing[name] = self.timing.get(name, 0.0) + metrics.pop(k)
            for k, n in counts.items():
                self.updates[k] += n
            self.epoch += 1
            row = {
                "kind": "epoch",
                "epoch": self.epoch,
                "step": self.step,
                **({"train_return": float(np.mean([r.ret for r in recs]))} if recs else {}),
                **{k: round(v, 5) for k, v in metrics.items()},
            }
            self._log_row(row)
            if bar is not None:
                bar.update(self.step - bar.n)
                if "train_return" in row:
                    bar.set_postfix(ret=f"{row['train_return']:.2f}")
            if self.step >= self.next_eval or self.step >= cfg.total_steps:
                self.evaluate()
                self.next_eval += cfg.eval_every
            if self.step >= self.next_ckpt:
                self.next_ckpt += cfg.checkpoint_every  # before saving: a resumed run keeps the schedule
                self.save()
        if bar is not None:
            bar.close()
        self.save()
        wall = time.perf_counter() - t_start
        log.info("training done", step=self.step, wall_s=round(wall, 1), out=str(self.out))
        return {"step": self.step, "wall_s": wall, "last_eval": self.last_eval()}

    def evaluate(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        recs = evaluation_episodes(self.policy, self.cfg.env, "test", self.cfg.train.eval_episodes, seed=10_000)
        s = summarize(recs)
        if self.context_data is not None:  # FOCAL's offline evaluation: act on a context from the test dataset
            o = self.cfg.offline  # type: ignore[attr-defined]
            ctx = context_episodes(self.policy, self.cfg.env, self.context_data, "test", self.cfg.train.eval_episodes, o.context_size)
            s["context_return"] = summarize(ctx)["mean_return"]
        self.timing["eval"] += time.perf_counter() - t0
        row = {"kind": "eval", "epoch": self.epoch, "step": self.step, "split": "test", **{k: v for k, v in s.items() if k != "per_task_return"}}
        self._log_row(row)
        return row

    def last_eval(self) -> dict[str, Any] | None:
        evals = [h for h in self.history if h["kind"] == "eval"]
        return evals[-1] if evals else None

    def _log_row(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if row["kind"] == "eval" or not self.progress:
            log.info(row["kind"], **{k: v for k, v in row.items() if k != "kind"})

    # -- checkpoints ------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "env_steps": self.step,
            "epochs": self.epoch,
            "updates": dict(self.updates),
            "timing_s": {k: round(v, 2) for k, v in self.timing.items()},
            "last_eval": self.last_eval(),
            "device": str(self.device),
        }

    def save(self) -> None:
        cfg = self.cfg.model_dump(mode="json")
        training = {
            "step": self.step,
            "epoch": self.epoch,
            "next_eval": self.next_eval,
            "next_ckpt": self.next_ckpt,
            "learner": self.learner.state_dict(),  # written as CPU tensors by save_checkpoint
            "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "history": json.dumps(self.history),
            "timing": dict(self.timing),
            "updates": dict(self.updates),
        }
        if not self.offline:  # an offline run's data is its dataset file
            # buffer first: a checkpoint never points at a buffer older than itself
            tmp = self.out / "buffer.pt.tmp"
            torch.save(self.buffer.state_dict(), tmp)
            tmp.replace(self.out / "buffer.pt")
        readout = self.fit_readout()
        save_checkpoint(self.out / "checkpoint.pt", self.policy, cfg, self.env_info, self.stats(), training, readout)
        save_checkpoint(self.out / "policy.pt", self.policy, cfg, self.env_info, self.stats(), None, readout)
        log.info("checkpoint saved", step=self.step, path=str(self.out / "checkpoint.pt"))

    def fit_readout(self) -> dict[str, Any] | None:
        """The task readout of the current policy (fitted on buffer episodes of training tasks), as a
        checkpoint record; None for the oracle, whose belief is the task itself."""
        if self.policy.needs_task_vector or len(self.buffer) == 0:
            return None
        t0 = time.perf_counter()
        readout, quality = fit_readout_on_buffer(self.policy, self.buffer, self.bases, seed=self.step)
        self.timing["readout"] = self.timing.get("readout", 0.0) + time.perf_counter() - t0
        log.info("task readout", step=self.step, **{k: v for k, v in quality.items() if k in ("r2", "accuracy")})
        return readout.record(quality)

    def _resume(self) -> None:
        ck = load_checkpoint(self.out / "checkpoint.pt")
        if ck.training is None:
            raise ValueError(f"{ck.path}: holds no training state (a policy-only file); cannot resume")
        self.policy.load_state_dict(ck.policy_state)
        tr = ck.training
        self.learner.load_state_dict(tr["learner"])
        if not self.offline:
            self.buffer.load_state_dict(torch.load(self.out / "buffer.pt", weights_only=True))
        self.step, self.epoch = int(tr["step"]), int(tr["epoch"])
        self.next_eval, self.next_ckpt = int(tr["next_eval"]), int(tr["next_ckpt"])
        torch.set_rng_state(tr["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in tr:  # a run resumed on another device draws afresh there
            torch.cuda.set_rng_state(tr["cuda_rng"], self.device)
        self.rng.bit_generator.state = json.loads(tr["numpy_rng"])
        self.history = json.loads(tr["history"])
        self.timing = dict(tr["timing"])
        self.updates = dict(tr.get("updates", self.updates))
        # metrics.jsonl may hold rows written after the checkpoint: rewrite it to what was saved
        with open(self.out / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.history)
        log.info("resumed", step=self.step, epoch=self.epoch)
