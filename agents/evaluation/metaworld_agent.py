"""Any of our agents as a Meta-World `MetaLearningAgent`, so Meta-World's own referee can score it.

`metaworld.evaluation.metalearning_evaluation` (metaworld 3.1) drives a vector env of N test envs:

    for each eval:  sample_tasks; agent.init()
                    adaptation_steps x [ reset envs; until every env ended adaptation_episodes episodes:
                                         a, aux = agent.adapt_action(obs); env step;
                                         agent.step(Timestep(obs, a, r, terminated, truncated, aux)) ;
                                         agent.adapt() ]
                    evaluation(): reset envs; agent.reset(all); until enough episodes ended:
                                  a = agent.eval_action(obs); env step; agent.reset(done mask)

`MetaWorldAgent` keeps one belief per vector env and answers those calls:

- `init()`: every env's belief goes back to the prior; the agent is adapting.
- `step(timestep)`: the transition is held until the next observation arrives with the next
  `adapt_action` / `eval_action` call (a Timestep carries no next observation), then the belief is updated
  with (s, a, r, s'). A transition that ended an episode is dropped: the vector env's autoreset has already
  replaced its next observation by the next episode's first. The next episode starts from the belief as it
  stands, so adaptation carries over the episodes of a task.
- `adapt()`: transitions still held are dropped (no next observation will come); the agent is adapted.
- `reset(env_mask)`: before `adapt()`, the masked envs start again from the prior; after it, they keep their
  belief. Meta-World's evaluation hands the agent observations only, no rewards, so after `adapt()` the
  belief cannot move: every evaluation episode acts on the belief the adaptation episodes ended with.
- `eval_action(obs)` / `adapt_action(obs)`: deterministic actions on the current beliefs.

Agents that are given the task (the oracle) read it from `task_source()`, e.g. the envs' goals.

The beliefs live behind a `Backend`: `PolicyBackend` runs a policy in this process (batched over the envs);
`runtime.metaworld_served.ServedBackend` drives an agent served by `runtime serve`, one session per env.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any, Protocol

import numpy as np
import torch

from agents.device import host_to
from agents.policies import AgentPolicy, State, put_state, select_state


class Mode(IntEnum):
    """What a row's belief does before the agent acts on the row's new observation."""

    NEW = 0  # start from the prior at this observation
    STEP = 1  # update with the held transition (last observation, action, reward, this observation)
    HOLD = 2  # keep the belief as it is (a new episode after adaptation, or an evaluation step)


class Backend(Protocol):
    """Beliefs of N envs and actions on them."""

    needs_task_vector: bool

    def actions(
        self, obs: np.ndarray, mode: np.ndarray, action: np.ndarray | None, reward: np.ndarray | None, task: np.ndarray | None
    ) -> np.ndarray:
        """obs [N, O]; mode [N] (`Mode`); action [N, A] and reward [N]: the held transitions (read where mode is
        STEP; None before any is held); task [N, task_dim] for agents given the task. Returns deterministic actions [N, A] (env units)."""
        ...

    def close(self) -> None: ...


class PolicyBackend:
    """One policy in this process: a state row per env, one batched update and one act call per call."""

    def __init__(self, policy: AgentPolicy) -> None:
        self.policy = policy
        self.needs_task_vector = policy.needs_task_vector
        self.state: State | None = None
        self.last_obs: np.ndarray | None = None

    @torch.no_grad()
    def actions(
        self, obs: np.ndarray, mode: np.ndarray, action: np.ndarray | None, reward: np.ndarray | None, task: np.ndarray | None
    ) -> np.ndarray:
        p, dev = self.policy, self.policy.device
        obs = np.asarray(obs, np.float32)
        if self.state is None or next(iter(self.state.values())).shape[0] != len(obs):
            self.state, self.last_obs = p.init_state(len(obs)), obs
        new = np.flatnonzero(mode == Mode.NEW).tolist()
        if new:
            put_state(self.state, new, p.init_state(len(new)))
        step = np.flatnonzero(mode == Mode.STEP).tolist()
        if step:
            s, a, r, s2 = (host_to(np.asarray(x, np.float32)[step], dev) for x in (self.last_obs, action, reward, obs))
            put_state(self.state, step, p.update(select_state(self.state, step), s, a, r, s2))
        if self.needs_task_vector:
            self.state = p.set_task_vector(self.state, host_to(np.asarray(task, np.float32), dev))  # type: ignore[attr-defined]
        self.last_obs = obs
        return p.act(host_to(obs, dev), p.belief(self.state), True).cpu().numpy().astype(np.float64)

    def close(self) -> None:
        self.state = None


class MetaWorldAgent:
    """`metaworld.evaluation.MetaLearningAgent` (and `Agent`) over a `Backend`; see the module docstring."""

    def __init__(self, backend: Backend, task_source: Callable[[], np.ndarray] | None = None) -> None:
        if backend.needs_task_vector and task_source is None:
            raise ValueError("this agent is given its task (the oracle): pass task_source, e.g. the envs' goals")
        self.backend, self.task_source = backend, task_source
        self.init()

    # -- bookkeeping --------------------------------------------------------------------------------------
    def init(self) -> None:
        self.adapted = False
        self.mode: np.ndarray | None = None  # per env: what happens at its next observation
        self.held_action: np.ndarray | None = None
        self.held_reward: np.ndarray | None = None

    def _act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if self.mode is None or len(self.mode) != len(obs):
            self.mode = np.full(len(obs), Mode.NEW, dtype=np.int8)  # no transition is held yet
        task = None
        if self.backend.needs_task_vector:
            task = np.asarray(self.task_source(), np.float32).reshape(len(obs), -1)  # type: ignore[misc]
        actions = self.backend.actions(obs, self.mode, self.held_action, self.held_reward, task)
        self.mode = np.full(len(obs), Mode.HOLD, dtype=np.int8)  # until a transition is held or a reset asks
        return actions

    # -- the MetaLearningAgent protocol -------------------------------------------------------------------
    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self._act(observations), {}

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        return self._act(observations)

    def step(self, timestep: Any) -> None:
        """Hold each env's transition for its next observation; a transition that ended an episode is dropped."""
        ended = np.logical_or(timestep.terminated, timestep.truncated)
        self.held_action = np.asarray(timestep.action, np.float64)
        self.held_reward = np.asarray(timestep.reward, np.float64)
        self.mode = np.where(ended, Mode.HOLD, Mode.STEP).astype(np.int8)

    def adapt(self) -> None:
        if self.mode is not None:
            self.mode[:] = Mode.HOLD
        self.adapted = True

    def reset(self, env_mask: np.ndarray) -> None:
        mask = np.asarray(env_mask, dtype=bool)
        if self.mode is None:
            return  # nothing acted yet: every env starts from the prior anyway
        self.mode[mask] = Mode.HOLD if self.adapted else Mode.NEW

    def close(self) -> None:
        self.backend.close()


def first_evaluation_episodes(
    agent: MetaWorldAgent, envs: Any, num_evals: int = 1, adaptation_steps: int = 1, adaptation_episodes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Meta-World's adaptation as `metalearning_evaluation` runs it, then every env's *first* evaluation episode
    run to its end (terminate-on-success on, as in Meta-World's evaluation). Returns success [num_evals, N]
    (1.0 / 0.0) and length [num_evals, N] (steps).

    Meta-World's own `evaluation` scores the first episodes to *end* across the envs: with terminate-on-success
    an env that succeeds quickly ends several episodes before a slow or failing env ends one, so its figure
    leans towards the goals solved fastest. This counts each env's first episode once."""
    from metaworld.evaluation import Timestep

    n = envs.num_envs
    envs.call("toggle_sample_tasks_on_reset", False)
    success, length = np.full((num_evals, n), np.nan), np.full((num_evals, n), np.nan)
    for i in range(num_evals):
        envs.call("sample_tasks")
        agent.init()
        envs.call("toggle_terminate_on_success", False)
        for _ in range(adaptation_steps):
            obs, _ = envs.reset()
            episodes = np.zeros(n, dtype=int)
            while (episodes < adaptation_episodes).any():
                a, aux = agent.adapt_action(obs)
                nxt, r, terminated, truncated, _ = envs.step(a)
                agent.step(Timestep(obs, a, r, terminated, truncated, aux))
                episodes += np.logical_or(terminated, truncated)
                obs = nxt
            agent.adapt()
        envs.call("toggle_terminate_on_success", True)
        obs, _ = envs.reset()
        agent.reset(np.ones(n, dtype=bool))
        t = 0
        while np.isnan(success[i]).any():
            obs, _, terminated, truncated, info = envs.step(agent.eval_action(obs))
            t += 1
            ended = np.logical_or(terminated, truncated)
            agent.reset(ended)
            first = ended & np.isnan(success[i])
            if not first.any():
                continue
            success[i, first] = np.asarray(info["final_info"]["success"], np.float64)[first]
            length[i, first] = t
    envs.call("toggle_terminate_on_success", False)
    return success, length


def metaworld_referee(
    backend: Backend,
    env_name: str = "reach-v3",
    seed: int = 0,
    meta_batch: int = 50,
    num_evals: int = 1,
    adaptation_steps: int = 1,
    adaptation_episodes: int = 1,
    evaluation_episodes: int = 50,
    max_episode_steps: int | None = None,
) -> dict[str, Any]:
    """Meta-World's `metalearning_evaluation` of `backend`'s agent on `Meta-World/ML1-test` (`referee_envs`).

    Returns Meta-World's figures (`metaworld_success_rate`, `metaworld_mean_return`: over the first
    `evaluation_episodes` episodes to end) and, from a second pass on the same envs with the same adaptation,
    each env's first evaluation episode run to its end (`first_episode_success_rate` over num_evals x
    meta_batch episodes, their median length in steps): `first_evaluation_episodes`."""
    from metaworld.evaluation import metalearning_evaluation

    from envs.metaworld_ml1 import referee_envs

    envs = referee_envs(env_name, seed, meta_batch, max_episode_steps)
    try:
        agent = MetaWorldAgent(backend, lambda: np.stack(envs.get_attr("_target_pos")))
        success, mean_return, _ = metalearning_evaluation(
            agent, envs, num_evals, adaptation_steps, adaptation_episodes, evaluation_episodes  # type: ignore[arg-type]
        )
        first, length = first_evaluation_episodes(agent, envs, num_evals, adaptation_steps, adaptation_episodes)
        horizon = int(envs.get_attr("max_path_length")[0]) if max_episode_steps is None else int(max_episode_steps)
    finally:
        envs.close()
        backend.close()
    return {
        "env": env_name,
        "task_seed": seed,
        "meta_batch": meta_batch,
        "num_evals": num_evals,
        "adaptation_steps": adaptation_steps,
        "adaptation_episodes": adaptation_episodes,
        "evaluation_episodes": evaluation_episodes,
        "episode_steps": horizon,
        "metaworld_success_rate": float(success),
        "metaworld_mean_return": float(mean_return),
        "first_episode_success_rate": float(first.mean()),
        "first_episode_median_length": float(np.median(length)),
        "first_episodes": int(first.size),
    }
