"""Meta-World 3.1 ML1 (v3 envs) as a task family: `ML1Env` and `ML1Distribution`.

One family per Meta-World env (`ML1-reach` = `reach-v3`, ...). The train and test splits are
Meta-World's own 50 train and 50 test goals of `metaworld.ML1(env_name, seed=task_seed)` (the seed is
always passed, so every process gets the same goals); there is no `ood` split.

Task params: `{"goal_x", "goal_y", "goal_z"}` [m], the goal position Meta-World sets at reset for the
task (read from the env's `_target_pos`, which is generic over env classes: e.g. push-v3's goal height is
the object's, not the task vector's). Task vector: the goal, float32 (3,). The Meta-World task object
behind each of our tasks stays in the distribution (`metaworld_task(task)`).

Observations: 39 float64, with the goal part (last 3) zeroed as ML1 requires (`_partially_observable`);
the space bounds those 3 entries by Meta-World's goal box widened to include 0.
Actions: Box(-1, 1, (4,), float32). `info` carries the task info, `success` (0.0/1.0) and Meta-World's
reward terms (`near_object`, `grasp_success`, `grasp_reward`, `in_place_reward`, `obj_to_target`,
`unscaled_reward`), all floats.

Meta-World quirks handled here (metaworld 3.1.1): its envs ignore the reset seed (their reset is
deterministic for a fixed task, so seeding changes nothing); they raise when stepped past their own
`max_path_length` (500), so that limit is switched off and the horizon is ours: the TimeLimit of
`gymnasium.make` governs, and an env built directly truncates at `max_path_length`.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import metaworld
import numpy as np
from gymnasium import spaces

from envs.base import MetaEnv
from envs.tasks import Task, TaskDistribution, TaskError, require_keys

_GOAL_KEYS: tuple[str, str, str] = ("goal_x", "goal_y", "goal_z")
_GOAL_ATOL = 1e-6  # [m]; tolerance when matching a task's goal to a Meta-World task (float32 round trips)
_NO_LIMIT = 2**62  # Meta-World's own path-length limit, switched off
_MW_INFO_KEYS: tuple[str, ...] = (
    "near_object",
    "grasp_success",
    "grasp_reward",
    "in_place_reward",
    "obj_to_target",
    "unscaled_reward",
)

# goals per (env_name, seed, split): reading them costs one Meta-World reset per task
_GOAL_CACHE: dict[tuple[str, int, str], np.ndarray] = {}


def check_env_name(env_name: str) -> None:
    """TaskError unless `env_name` is one of Meta-World's ML1 envs."""
    if env_name not in metaworld.ML1.ENV_NAMES:
        raise TaskError(f"unknown Meta-World env {env_name!r} (e.g. reach-v3, push-v3, pick-place-v3)")


@functools.lru_cache(maxsize=8)
def ml1_benchmark(env_name: str, seed: int) -> metaworld.ML1:
    """`metaworld.ML1(env_name, seed=seed)`, built once per process (~1.4 s; its tasks are immutable)."""
    check_env_name(env_name)
    return metaworld.ML1(env_name, seed=int(seed))


def family_name(env_name: str) -> str:
    """Our family id of a Meta-World env: `push-v3` -> `ML1-push`."""
    return f"ML1-{env_name.removesuffix('-v3')}"


class ML1Distribution(TaskDistribution):
    """Meta-World ML1's 50 train and 50 test goals of one env, reproducible from the seed.

    `probe` is a Meta-World env of the same class used to read the goals of both splits right away
    (set_task + reset on it; it is not kept). Without one, the distribution builds and closes its own
    env the first time it needs goals. Goals are cached per process. Split sizes can be lowered
    (`n_train=10`) but not raised above Meta-World's 50.
    """

    n_tasks = {"train": 50, "test": 50, "ood": 0}
    task_dim = 3

    def __init__(self, env_name: str = "push-v3", seed: int = 0, probe: Any = None, **overrides: int) -> None:
        self.env_name = env_name
        self.family = family_name(env_name)
        self.bases = (env_name,)
        super().__init__(seed, **overrides)
        self.benchmark = ml1_benchmark(env_name, self.seed)
        if probe is not None:
            self._read_goals(probe)

    # -- Meta-World tasks ---------------------------------------------------------------------------
    def metaworld_tasks(self, split: str) -> list[metaworld.Task]:
        """Meta-World's task list of `split` (50 each)."""
        if split == "train":
            return self.benchmark.train_tasks
        if split == "test":
            return self.benchmark.test_tasks
        raise TaskError(f"{self.family}: has no {split!r} split (ML1 has train and test goals only)")

    def _read_goals(self, env: Any) -> None:
        """Read the goals of both splits off Meta-World env `env` into the cache (one reset per task)."""
        for split in ("train", "test"):
            key = (self.env_name, self.seed, split)
            if key in _GOAL_CACHE:
                continue
            mw_tasks = self.metaworld_tasks(split)
            goals = np.empty((len(mw_tasks), 3))
            for i, mw_task in enumerate(mw_tasks):
                env.set_task(mw_task)
                env.reset()
                goals[i] = env._target_pos
            goals.setflags(write=False)
            _GOAL_CACHE[key] = goals

    def goals(self, split: str) -> np.ndarray:
        """Goal positions of Meta-World's `split` tasks, float64 (50, 3) [m], read-only."""
        self.metaworld_tasks(split)  # raises for a split ML1 does not have
        key = (self.env_name, self.seed, split)
        if key not in _GOAL_CACHE:
            env = self.benchmark.train_classes[self.env_name]()
            try:
                self._read_goals(env)
            finally:
                env.close()
        return _GOAL_CACHE[key]

    def _find(self, split: str, goal: np.ndarray, index: int = -1) -> int | None:
        """Index of the Meta-World task of `split` whose goal is `goal` (prefers `index`), or None."""
        goals = self.goals(split)
        if 0 <= index < len(goals) and np.allclose(goals[index], goal, rtol=0.0, atol=_GOAL_ATOL):
            return index
        hits = np.flatnonzero(np.all(np.abs(goals - goal) <= _GOAL_ATOL, axis=1))
        return int(hits[0]) if hits.size else None

    def metaworld_task(self, task: Task) -> metaworld.Task:
        """The Meta-World task object behind `task` (matched by its goal)."""
        i = self._find(task.split, self._goal(task), task.index)
        if i is None:
            raise TaskError(
                f"{self.family}: task {task.id!r} has no Meta-World {task.split} task with its goal"
            )
        return self.metaworld_tasks(task.split)[i]

    @staticmethod
    def _goal(task: Task) -> np.ndarray:
        return np.array([task.params[k] for k in _GOAL_KEYS], dtype=np.float64)

    # -- TaskDistribution ---------------------------------------------------------------------------
    def _sample(self, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
        goals = self.goals(split)  # raises for ood
        if n > len(goals):
            raise TaskError(f"{self.family}: {split} has {len(goals)} Meta-World tasks, {n} requested")
        return [(self.env_name, dict(zip(_GOAL_KEYS, map(float, g), strict=True))) for g in goals[:n]]

    def _check(self, split: str, base: str, params: dict[str, float]) -> str | None:
        why = require_keys(params, _GOAL_KEYS)
        if why is not None:
            return why
        if split not in ("train", "test"):
            return f"ML1 has no {split!r} split"
        goal = np.array([params[k] for k in _GOAL_KEYS])
        if self._find(split, goal) is None:
            g = ", ".join(f"{v:.4f}" for v in goal)
            return f"goal ({g}) is not one of Meta-World's {len(self.goals(split))} {split} goals"
        return None

    def task_vector(self, task: Task) -> np.ndarray:
        """The goal position, float32 (3,) [m]."""
        return np.array([task.params[k] for k in _GOAL_KEYS], dtype=np.float32)


class ML1Env(gym.Env, MetaEnv):
    """A Meta-World ML1 env (one of its 50 train or 50 test goals per task) behind the family API.

    `max_path_length` is the horizon of an env built directly (it then reports `truncated` at that
    step); under `gymnasium.make` (which sets `spec`) the TimeLimit wrapper alone is the horizon, so
    `envs.make(..., max_episode_steps=500)` gives 500-step episodes. None: never truncate.
    `set_task` mid-episode moves the goal at once; the object's start position changes at the next reset.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 80}

    def __init__(
        self,
        env_name: str = "push-v3",
        split: str = "train",
        task_seed: int = 0,
        task_index: int = 0,
        render_mode: str | None = None,
        max_path_length: int | None = 200,
    ) -> None:
        self.env_name = env_name
        self.render_mode = render_mode
        self.max_path_length = max_path_length
        benchmark = ml1_benchmark(env_name, int(task_seed))
        self._mw = benchmark.train_classes[env_name](render_mode=render_mode)
        self._mw.max_path_length = _NO_LIMIT
        self._in_episode = False
        self._t = 0
        self._horizon: int | None = max_path_length
        self._goal = np.zeros(3)
        self._init_meta(ML1Distribution(env_name, seed=task_seed, probe=self._mw), split, task_index)
        # Meta-World bounds the hidden goal entries by [0, 0]; widen them to its goal box (and 0) so no
        # dimension of the space is degenerate (env checkers warn, normalisers divide by high - low)
        box, goal_box = self._mw.sawyer_observation_space, self._mw.goal_space
        low, high = box.low.copy(), box.high.copy()
        low[-3:] = np.minimum(goal_box.low, 0.0)
        high[-3:] = np.maximum(goal_box.high, 0.0)
        self.observation_space = spaces.Box(low, high, dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)

    @property
    def metaworld_env(self) -> Any:
        """The wrapped Meta-World env (a `SawyerXYZEnv`)."""
        return self._mw

    @property
    def goal(self) -> np.ndarray:
        """The current task's goal position, float64 (3,) [m]."""
        return self._goal.copy()

    def _apply_task(self, task: Task) -> None:
        self._mw.set_task(self.distribution.metaworld_task(task))  # type: ignore[attr-defined]
        if not self._mw._partially_observable:
            raise RuntimeError(f"{self.env_name}: Meta-World task exposes the goal in the observation")
        self._goal = np.array([task.params[k] for k in _GOAL_KEYS], dtype=np.float64)
        if self._in_episode:  # Meta-World applies a task at reset; move the goal now
            self._mw._target_pos = self._goal.copy()
            self._mw.model.site("goal").pos = self._goal

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset to the task's start (deterministic per task); options select a task as in `MetaEnv`."""
        self._select_task(options)
        super().reset(seed=seed)
        if seed is not None:
            self._mw.seed(seed)  # Meta-World's reset ignores its seed argument
        self._in_episode = False
        obs, _ = self._mw.reset()
        self._in_episode = True
        self._t = 0
        # built by gymnasium.make: its TimeLimit is the horizon; built directly: ours
        self._horizon = None if self.spec is not None else self.max_path_length
        info = self.task_info()
        info["success"] = 0.0
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One Meta-World step (action (4,) in [-1, 1]); never terminates, truncates at our horizon."""
        if not self._in_episode:
            raise RuntimeError("ML1Env: call reset() before step()")
        obs, reward, _, _, mw_info = self._mw.step(action)
        self._t += 1
        truncated = self._horizon is not None and self._t >= self._horizon
        info = self.task_info()
        info["success"] = float(mw_info["success"])
        for k in _MW_INFO_KEYS:
            info[k] = float(mw_info.get(k, 0.0))
        return obs, float(reward), False, truncated, info

    def render(self) -> Any:
        return self._mw.render()

    def close(self) -> None:
        self._mw.close()


def referee_envs(
    env_name: str = "reach-v3", seed: int = 0, meta_batch: int = 50, max_episode_steps: int | None = None
) -> gym.vector.VectorEnv:
    """Meta-World's own `Meta-World/ML1-test` vector env, as its `metalearning_evaluation` expects: `meta_batch`
    envs sharing the 50 test goals of `metaworld.ML1(env_name, seed=seed)` (the goals of our test split with
    `task_seed=seed`), observations with the goal zeroed, episodes of Meta-World's `max_path_length` (500)
    unless `max_episode_steps` is given, same-step autoreset. `meta_batch` must divide 50."""
    check_env_name(env_name)
    if meta_batch < 1 or 50 % meta_batch:
        raise TaskError(f"meta_batch must divide Meta-World's 50 test goals (1, 2, 5, 10, 25 or 50), got {meta_batch}")
    extra = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    return gym.make_vec("Meta-World/ML1-test", env_name=env_name, seed=int(seed), meta_batch_size=meta_batch, **extra)


__all__ = ["ML1Distribution", "ML1Env", "family_name", "ml1_benchmark", "referee_envs"]
