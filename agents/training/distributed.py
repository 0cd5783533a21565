"""Rollouts on Ray core actors (`runtime train --workers N [--ray-address ADDR]`; the optional `[ray]` extra).

One learner in the driver, N `RolloutWorker` actors (`num_cpus=1` each, spread over the cluster's nodes).
Each actor owns its envs (`make_env(cfg.env, "train")`) and a policy rebuilt from `policy.spec()` through
`agents.policies.POLICIES`; per collection round the driver puts the policy's weights in the object store
once (a plain dict of numpy arrays) and passes that one reference to every actor, which loads it and runs
its share of the round with `agents.evaluation.rollout.run_episodes` (stochastic actions, online belief updates),
returning whole episodes. Nothing but dicts, lists, numbers, strings and numpy arrays crosses the wire.
Actors act on the CPU whatever `train.device` the learner trains on: each builds its policy on the CPU
and receives CPU copies of the weights (`weights_of`).

Assignment is deterministic: the trainer draws every episode's (seed, task index) from its RNG exactly as
in-process collection does, and the round is cut into N contiguous slices, slice i for worker i. Each slice
also carries a torch seed derived from its episodes' reset seeds, so a slice gives the same trajectories
whichever actor runs it: a worker that dies is replaced by a fresh actor and its slice collected again
(a structlog warning says so); results arrive only as whole slices, so no partial trajectory ever reaches
the buffer. With the same seed and the same N, a Ray run is reproducible; it is not bit-identical to an
in-process run (the action noise comes from other generators), though it collects the same tasks and the
same number of steps per task.

This module imports `ray` at the top: import it only when Ray is wanted (the trainer does so lazily).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np
import ray
import structlog
import torch
from ray.exceptions import RayActorError

from agents.config import EnvConfig
from agents.evaluation import make_env
from agents.evaluation.rollout import EpisodeRecord, run_episodes
from agents.policies import POLICIES, AgentPolicy
from agents.training.collect import ResetKwargs

log = structlog.get_logger("distributed")

def policy_from_spec(algorithm: str, spec: dict[str, Any]) -> AgentPolicy:
    """A fresh policy of `algorithm` built from `policy.spec()` (weights are loaded separately)."""
    return POLICIES[algorithm].from_spec(spec).eval()


def weights_of(policy: AgentPolicy) -> dict[str, np.ndarray]:
    """The policy's state dict as numpy arrays (what is broadcast)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in policy.state_dict().items()}


def owned(record: EpisodeRecord) -> EpisodeRecord:
    """A record whose arrays are the driver's own: Ray hands numpy arrays back read-only, backed by the
    object store (which they would keep pinned while the trainer holds the record)."""
    ep = record.episode
    copies = {f.name: np.array(getattr(ep, f.name)) for f in dataclasses.fields(ep)}
    return dataclasses.replace(record, episode=dataclasses.replace(ep, **copies))


def slices(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges cutting n episodes into `workers` parts (the first ones one longer)."""
    base, extra = divmod(n, workers)
    out, start = [], 0
    for i in range(workers):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def slice_seed(reset_kwargs: list[ResetKwargs]) -> int:
    """The torch seed of a slice: a function of its episodes' reset seeds only."""
    return int(np.random.SeedSequence([int(kw["seed"]) for kw in reset_kwargs]).generate_state(1)[0])


class RolloutWorker:
    """One Ray actor: its own envs and policy copy. Created through `RayCollector` (as a `ray.remote` class)."""

    def __init__(
        self, env_cfg: dict[str, Any], algorithm: str, spec: dict[str, Any], threads: int = 1
    ) -> None:
        torch.set_num_threads(threads)
        self.env_cfg = EnvConfig.model_validate(env_cfg)
        self.policy = policy_from_spec(algorithm, spec)
        self.envs: list = []

    def ready(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    def load(self, weights: dict[str, np.ndarray]) -> None:
        self.policy.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})

    def collect(
        self, weights: dict[str, np.ndarray] | None, reset_kwargs: list[ResetKwargs], torch_seed: int
    ) -> list[EpisodeRecord]:
        """Whole episodes for `reset_kwargs` (lockstep, one policy call per step); `weights=None` acts at random."""
        while len(self.envs) < len(reset_kwargs):
            self.envs.append(make_env(self.env_cfg, "train"))
        policy = None
        if weights is not None:
            self.load(weights)
            policy = self.policy
        torch.manual_seed(torch_seed)
        return run_episodes(policy, self.envs[: len(reset_kwargs)], reset_kwargs, deterministic=False)


def connect(address: str | None, num_cpus: int) -> bool:
    """Join the cluster at `address`, or start a local one with `num_cpus` CPUs (no dashboard, nothing
    downloaded). Returns True when this call started/joined Ray (so the caller shuts it down), False when the
    process was already connected."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


class RayCollector:
    """The `Collector` interface over N Ray actors (see the module docstring)."""

    def __init__(
        self,
        env_cfg: EnvConfig,
        algorithm: str,
        spec: dict[str, Any],
        workers: int,
        address: str | None = None,
        threads: int = 1,
        max_replacements: int = 3,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.n = workers
        self.max_replacements = max_replacements  # per round
        self._owns_ray = connect(address, workers)
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        self._args = (env_cfg.model_dump(mode="json"), algorithm, spec, threads)
        self.actors = [self._new_actor() for _ in range(workers)]
        self.placement = ray.get([a.ready.remote() for a in self.actors])
        self.replaced = 0  # workers replaced so far
        self.timing = {"put_s": 0.0, "rounds": 0}
        log.info(
            "ray rollout workers ready",
            workers=workers,
            nodes=len({p["node_id"] for p in self.placement}),
            address=address or "local",
        )

    def _new_actor(self):
        return self._remote.options(scheduling_strategy="SPREAD").remote(*self._args)

    def _submit(self, i: int, weights, kw: list[ResetKwargs]):
        return self.actors[i].collect.remote(weights, kw, slice_seed(kw))

    def broadcast(self, policy: AgentPolicy):
        """Put the policy's weights in the object store once; the returned reference goes to every actor."""
        t0 = time.perf_counter()
        ref = ray.put(weights_of(policy))
        self.timing["put_s"] += time.perf_counter() - t0
        return ref

    def collect(self, policy: AgentPolicy | None, reset_kwargs: list[ResetKwargs]) -> list[EpisodeRecord]:
        weights = self.broadcast(policy) if policy is not None else None
        parts = {i: reset_kwargs[a:b] for i, (a, b) in enumerate(slices(len(reset_kwargs), self.n)) if b > a}
        pending = {self._submit(i, weights, kw): i for i, kw in parts.items()}
        results: dict[int, list[EpisodeRecord]] = {}
        replaced = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            i = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except RayActorError as e:
                replaced += 1
                self.replaced += 1
                log.warning(
                    "rollout worker died: replaced, its slice of the round re-collected",
                    worker=i,
                    episodes=len(parts[i]),
                    error=type(e).__name__,
                    replaced_this_round=replaced,
                )
                if replaced > self.max_replacements:
                    raise RuntimeError(
                        f"{replaced} rollout workers died in one collection round; giving up"
                    ) from e
                try:
                    ray.kill(self.actors[i])
                except Exception:  # already gone
                    pass
                self.actors[i] = self._new_actor()
                pending[self._submit(i, weights, parts[i])] = i
        self.timing["rounds"] += 1
        return [owned(r) for i in sorted(results) for r in results[i]]

    def close(self) -> None:
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        self.actors = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
