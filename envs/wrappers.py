"""Wrappers composable with every task family: `NonStationary` task switching and `SparseReward`.

The scenario recorder lives in `envs.scenario` (`ScenarioRecorder`).
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from envs.base import MetaEnv
from envs.rewards import sparsify
from envs.tasks import Task

NONSTATIONARY_MODES: tuple[str, ...] = ("periodic", "hazard")


class NonStationary(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Switch the task of a `MetaEnv` family within an episode.

    Let `t` be the number of steps already taken in the current episode. The switch check runs at the start
    of `step`, *before* the action is executed, so a switch at `t` means steps t, t+1, ... run under the new
    task (the observation the agent acted on was produced under the old one).

    - `mode="periodic"` (the MoSS paper): at every `t` that is a positive multiple of `interval`
      (t = interval, 2*interval, ...) the task switches with probability `p`. Change points can only fall
      on that grid.
    - `mode="hazard"`: once at least `min_dwell` steps (default `interval`) have run since the episode
      start or the last switch, the task switches at each step with probability `p`, so change points are
      unpredictable (geometric waiting time after the dwell). The MoSS authors' group's env code behaves
      like `hazard` with `min_dwell=100`: with p=0.5 it switches about 2 steps after 100.

    A switch draws a fresh task uniformly from the env's own split (`env.unwrapped.split`), excluding the
    current one, and applies it with `env.unwrapped.set_task`; a split with a single task never switches.
    The switch is reported in that step's `info["task_switch"] = {"step": t, "old": id, "new": id}` and
    appended to `self.switches` (the current episode's switches). `reset` does not undo switches: without
    `options={"task": ...}` / `{"task_index": i}` the next episode starts on the task last switched to.

    Randomness: a numpy Generator, re-seeded by `reset(seed=s)` (the same `s` gives the same switch
    schedule, independently of the env's own RNG) and otherwise continued; before the first seeded reset
    it comes from the constructor's `seed` (None: fresh entropy).
    """

    def __init__(
        self,
        env: gym.Env,
        mode: str = "periodic",
        interval: int = 100,
        p: float = 0.5,
        min_dwell: int | None = None,
        seed: int | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, mode=mode, interval=interval, p=p, min_dwell=min_dwell, seed=seed
        )
        gym.Wrapper.__init__(self, env)
        if mode not in NONSTATIONARY_MODES:
            raise ValueError(f"NonStationary: unknown mode {mode!r} (expected 'periodic' or 'hazard')")
        if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)) or interval < 1:
            raise ValueError(f"NonStationary: interval must be a positive integer, got {interval!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"NonStationary: p must be a probability in [0, 1], got {p!r}")
        if min_dwell is not None and (
            isinstance(min_dwell, bool) or not isinstance(min_dwell, (int, np.integer)) or min_dwell < 1
        ):
            raise ValueError(
                f"NonStationary: min_dwell must be a positive integer or None, got {min_dwell!r}"
            )
        if not isinstance(env.unwrapped, MetaEnv):
            raise TypeError(
                f"NonStationary needs a task-family env (envs.base.MetaEnv), got {type(env.unwrapped).__name__}"
            )
        self.mode = mode
        self.interval = int(interval)
        self.p = float(p)
        self.min_dwell = int(min_dwell) if min_dwell is not None else self.interval
        self._switch_rng = np.random.default_rng(seed)
        self._t = 0
        self._dwell = 0
        self.switches: list[dict[str, Any]] = []

    @property
    def meta_env(self) -> MetaEnv:
        """The wrapped family env (`env.unwrapped`)."""
        return self.env.unwrapped  # type: ignore[return-value]

    @property
    def steps(self) -> int:
        """Steps taken in the current episode."""
        return self._t

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            # a stream of its own (not the env's np_random), reproducible from the reset seed
            self._switch_rng = np.random.default_rng([int(seed), 0x5717C4])
        obs, info = self.env.reset(seed=seed, options=options)
        self._t = 0
        self._dwell = 0
        self.switches = []
        return obs, info

    def _due(self) -> bool:
        """Whether a switch is drawn for before the step at `self._t` (consumes the RNG only when eligible)."""
        if self.mode == "periodic":
            eligible = self._t > 0 and self._t % self.interval == 0
        else:
            eligible = self._dwell >= self.min_dwell
        return eligible and bool(self._switch_rng.random() < self.p)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        switch: dict[str, Any] | None = None
        if self._due():
            meta = self.meta_env
            old: Task = meta.task
            new = meta.distribution.sample(meta.split, self._switch_rng, exclude=old)
            if new != old:
                meta.set_task(new)
                switch = {"step": self._t, "old": old.id, "new": new.id}
                self.switches.append(switch)
                self._dwell = 0
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        self._dwell += 1
        if switch is not None:
            info["task_switch"] = dict(switch)
        return obs, reward, terminated, truncated, info


class SparseReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """FOCAL++ sparsification: reward -> `(r - threshold) / |threshold|` if `r > threshold` else 0.

    The original reward is kept in `info["dense_reward"]`. `threshold` must be a non-zero finite number
    (e.g. -0.1 for SparseCheetahVel, 3 for SparseAntDir, -R for a goal radius R).
    """

    def __init__(self, env: gym.Env, threshold: float) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, threshold=threshold)
        gym.Wrapper.__init__(self, env)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
            raise ValueError(f"SparseReward: threshold must be a number, got {threshold!r}")
        if not math.isfinite(float(threshold)) or float(threshold) == 0.0:
            raise ValueError(f"SparseReward: threshold must be finite and non-zero, got {threshold!r}")
        self.threshold = float(threshold)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        dense = float(reward)
        info["dense_reward"] = dense
        return obs, sparsify(dense, self.threshold), terminated, truncated, info
