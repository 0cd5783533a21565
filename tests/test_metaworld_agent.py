"""Our agents under Meta-World's own referee: the MetaLearningAgent adapter, in process and served."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from metaworld.evaluation import Timestep
from typer.testing import CliRunner

from agents.checkpoint import build_policy, load_checkpoint, save_checkpoint
from agents.config import parse_config
from agents.evaluation.metaworld_agent import MetaWorldAgent, PolicyBackend, metaworld_referee
from agents.policies import MoSSPolicy, OraclePolicy, Spaces
from envs import TaskError
from envs.metaworld_ml1 import referee_envs
from runtime.cli import app
from runtime.client import Client
from runtime.metaworld_served import ServedBackend
from tests.serving_helpers import quiet_logs, running_server  # noqa: F401

SPACES = Spaces(39, 4, [-1.0] * 4, [1.0] * 4)
SHORT = {"meta_batch": 5, "evaluation_episodes": 5, "max_episode_steps": 12}


def ml1_checkpoint(path: Path, algorithm: str = "moss") -> Path:
    """A randomly initialised (seeded) ML1-reach checkpoint of the given algorithm."""
    torch.manual_seed(0)
    if algorithm == "moss":
        policy = MoSSPolicy(SPACES, latent_dim=3, hidden_dim=32, actor_hidden=(64, 64))
    else:
        policy = OraclePolicy(SPACES, task_dim=3, actor_hidden=(64, 64))
    config = parse_config({"algorithm": algorithm, "env": {"id": "ML1-reach"}}).model_dump(mode="json")
    env = {"id": "ML1-reach", "obs_dim": 39, "action_dim": 4, "action_low": [-1.0] * 4, "action_high": [1.0] * 4,
           "max_episode_steps": 200, "task_dim": 3}
    return save_checkpoint(path, policy, config=config, env=env, stats={"env_steps": 0})


@pytest.fixture(scope="module")
def moss_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ml1_checkpoint(tmp_path_factory.mktemp("mw") / "moss.pt")


def test_served_agent_scores_as_the_same_policy_in_process(moss_file: Path) -> None:
    local = metaworld_referee(PolicyBackend(build_policy(load_checkpoint(moss_file))), "reach-v3", **SHORT)
    with running_server(moss_file) as server, Client(server.endpoint) as c:
        served = metaworld_referee(ServedBackend(c), "reach-v3", **SHORT)
        assert c.stats()["sessions"] == 0  # the backend closed its sessions
    assert local["first_episodes"] == 5 and local["episode_steps"] == 12
    for k in ("metaworld_success_rate", "metaworld_mean_return", "first_episode_success_rate", "first_episode_median_length"):
        assert served[k] == pytest.approx(local[k], rel=1e-6), k


def sample_tasks(envs) -> None:  # noqa: ANN001
    """Each env draws its goal once, as metalearning_evaluation has them do before adapting."""
    envs.call("toggle_sample_tasks_on_reset", False)
    envs.call("sample_tasks")


def adapt(agent: MetaWorldAgent, envs, steps: int | None = None) -> tuple[list[tuple], np.ndarray]:  # noqa: ANN001
    """Adaptation steps as metalearning_evaluation runs them, from a reset: `steps` of them, or (None) one
    episode per env followed by `adapt()`. Returns the transitions (obs, action, reward, real next obs) and
    the last observation."""
    obs, _ = envs.reset()
    log = []
    while steps is None or len(log) < steps:
        a, aux = agent.adapt_action(obs)
        nxt, r, term, trunc, info = envs.step(a)
        ended = np.logical_or(term, trunc)
        real_next = np.where(ended[:, None], np.stack(info["final_obs"]) if ended.any() else nxt, nxt)
        log.append((obs, a, r, real_next))
        agent.step(Timestep(obs, a, r, term, trunc, aux))
        obs = nxt
        if steps is None and ended.all():
            agent.adapt()
            break
    return log, obs


def in_process(path: Path) -> tuple[Any, PolicyBackend, MetaWorldAgent]:
    """The checkpoint's policy, its in-process backend and the adapter over it."""
    policy = build_policy(load_checkpoint(path))
    backend = PolicyBackend(policy)
    return policy, backend, MetaWorldAgent(backend)


def test_adaptation_updates_on_every_transition_but_the_last_and_evaluation_holds_it(moss_file: Path) -> None:
    policy, backend, agent = in_process(moss_file)
    envs = referee_envs("reach-v3", meta_batch=2, max_episode_steps=6)
    try:
        sample_tasks(envs)
        log, _ = adapt(agent, envs)
        # the belief saw transitions 1..5 of 6: the last one's next observation never reaches the agent
        with torch.no_grad():
            state = policy.init_state(2)
            for s, a, r, s2 in log[:-1]:
                state = policy.update(state, *(torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (s, a, r, s2)))
        torch.testing.assert_close(backend.state["h"], state["h"])
        adapted = backend.state["h"].clone()
        assert not torch.allclose(adapted, policy.init_state(2)["h"])
        # evaluation: observations only; resets keep the adapted belief
        obs, _ = envs.reset()
        agent.reset(np.ones(2, bool))
        for _ in range(8):
            obs, *_ = envs.step(agent.eval_action(obs))
            agent.reset(np.array([True, False]))
        torch.testing.assert_close(backend.state["h"], adapted)
        # a new task: init() puts every env back at the prior
        agent.init()
        agent.eval_action(obs)
        torch.testing.assert_close(backend.state["h"], policy.init_state(2)["h"])
    finally:
        envs.close()


def test_reset_before_adapt_goes_back_to_the_prior(moss_file: Path) -> None:
    policy, backend, agent = in_process(moss_file)
    envs = referee_envs("reach-v3", meta_batch=2, max_episode_steps=50)
    try:
        sample_tasks(envs)
        _, obs = adapt(agent, envs, steps=4)
        agent.adapt_action(obs)
        moved = backend.state["h"].clone()
        agent.reset(np.array([True, False]))  # not adapted yet: env 0 starts over
        agent.eval_action(obs)
        prior = policy.init_state(1)["h"][0]
        torch.testing.assert_close(backend.state["h"][0], prior)
        torch.testing.assert_close(backend.state["h"][1], moved[1])
        assert not torch.allclose(moved[0], prior)
    finally:
        envs.close()


def test_oracle_acts_on_the_envs_goals(tmp_path: Path) -> None:
    oracle = build_policy(load_checkpoint(ml1_checkpoint(tmp_path / "oracle.pt", "oracle")))
    with pytest.raises(ValueError, match="task_source"):
        MetaWorldAgent(PolicyBackend(oracle))
    envs = referee_envs("reach-v3", meta_batch=5, max_episode_steps=5)
    try:
        backend = PolicyBackend(oracle)
        agent = MetaWorldAgent(backend, lambda: np.stack(envs.get_attr("_target_pos")))
        sample_tasks(envs)
        obs, _ = envs.reset()
        agent.eval_action(obs)
        goals = np.stack(envs.get_attr("_target_pos")).astype(np.float32)
        np.testing.assert_array_equal(backend.state["task"].numpy(), goals)
        assert len({tuple(g) for g in goals}) == 5  # five different test goals, one per env
    finally:
        envs.close()


class ScriptedReach:
    """A backend acting with Meta-World's own scripted reach expert on the envs in `experts` (given the goal,
    which the ML1 observation hides) and holding the arm still on the others."""

    needs_task_vector = True

    def __init__(self, experts: set[int]) -> None:
        from metaworld.policies import SawyerReachV3Policy

        self.experts, self.expert = experts, SawyerReachV3Policy()

    def actions(self, obs, mode, action, reward, task):  # noqa: ANN001, ANN201
        full = np.array(obs, dtype=np.float64)
        full[:, -3:] = task
        return np.stack([self.expert.get_action(o) if j in self.experts else np.zeros(4) for j, o in enumerate(full)])

    def close(self) -> None:
        pass


def test_metaworlds_count_leans_to_quick_successes_and_the_first_episodes_do_not() -> None:
    """3 of 5 envs solved in ~50 steps, 2 never: Meta-World's first 5 episodes to end are all successes."""
    out = metaworld_referee(ScriptedReach({0, 1, 2}), "reach-v3", meta_batch=5, evaluation_episodes=5, max_episode_steps=200)
    assert out["metaworld_success_rate"] == 1.0
    assert out["first_episode_success_rate"] == pytest.approx(0.6) and out["first_episodes"] == 5
    assert out["first_episode_median_length"] < 100  # the experts' episodes ended at their success


def test_referee_envs_refuse_a_batch_that_does_not_split_the_goals() -> None:
    with pytest.raises(TaskError, match="divide"):
        referee_envs("reach-v3", meta_batch=20)
    with pytest.raises(TaskError, match="unknown Meta-World env"):
        referee_envs("reach-v9")


def test_cli_prints_metaworlds_success_rate(moss_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["metaworld-eval", "--checkpoint", str(moss_file), "--meta-batch", "5",
                              "--evaluation-episodes", "5", "--max-episode-steps", "10", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["env"] == "reach-v3" and out["first_episodes"] == 5 and 0.0 <= out["metaworld_success_rate"] <= 1.0
    res = runner.invoke(app, ["metaworld-eval"])
    assert res.exit_code == 2 and "--checkpoint" in res.output
    res = runner.invoke(app, ["metaworld-eval", "--checkpoint", str(moss_file), "--meta-batch", "7"])
    assert res.exit_code == 2 and "divide" in res.output
