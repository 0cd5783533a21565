"""Evaluation protocols: rollouts from and to a given state, trials with carried-over state, PEARL's protocol
for every agent."""

from __future__ import annotations

import numpy as np
import torch
from test_policy import ShortEnv, moss_policy

from agents.config import EnvConfig
from agents.evaluation import (
    evaluation_episodes,
    make_env,
    pearl_protocol_episodes,
    protocol_episodes,
    trial_episodes,
)
from agents.evaluation.rollout import EpisodeRecord, run_episodes
from agents.policies import OraclePolicy, PEARLPolicy, Spaces

torch.set_num_threads(1)

LOW, HIGH = [-0.1, -0.1], [0.1, 0.1]
ENV = EnvConfig(id="PointRobot")


def oracle_policy(seed: int = 0) -> OraclePolicy:
    torch.manual_seed(seed)
    return OraclePolicy(Spaces(2, 2, LOW, HIGH), task_dim=2, actor_hidden=(32, 32)).eval()


def pearl_policy(seed: int = 0) -> PEARLPolicy:
    torch.manual_seed(seed)
    return PEARLPolicy(Spaces(2, 2, LOW, HIGH), latent_dim=3, encoder_hidden=(16, 16), actor_hidden=(32, 32)).eval()


def same_episodes(a: list[EpisodeRecord], b: list[EpisodeRecord]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.episode.obs, y.episode.obs, atol=1e-6)
        np.testing.assert_allclose(x.episode.action, y.episode.action, atol=1e-6)
        np.testing.assert_allclose(x.episode.reward, y.episode.reward, atol=1e-6)
        assert x.task_ids == y.task_ids


@torch.no_grad()
def replay_state(policy, rec: EpisodeRecord, state):
    """`state` [1 row] updated with every transition of `rec`."""
    ep = rec.episode
    for t in range(len(ep)):
        state = policy.update(
            state, *(torch.as_tensor(x[t : t + 1]) for x in (ep.obs, ep.action, ep.reward, ep.next_obs))
        )
    return state


# -- run_episodes: initial and final states ---------------------------------------------------------------
def test_final_state_is_each_env_state_after_its_own_last_step() -> None:
    policy = moss_policy(seed=2)
    kw = [{"seed": 10 + i, "options": {"task_index": i}} for i in range(3)]  # episodes of 3, 5 and 7 steps
    plain = run_episodes(policy, [ShortEnv() for _ in range(3)], kw, record_beliefs=True)
    recs, final = run_episodes(
        policy, [ShortEnv() for _ in range(3)], kw, record_beliefs=True, return_state=True
    )
    same_episodes(plain, recs)  # the default behaviour is unchanged
    for i in range(3):
        want = replay_state(policy, recs[i], policy.init_state(1))
        torch.testing.assert_close(final["h"][i : i + 1], want["h"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(recs[i].beliefs[-1], policy.belief(want)[0].detach().numpy(), atol=1e-6)
    # starting from those states: the first belief is the carried one, not the prior
    again, _ = run_episodes(
        policy,
        [ShortEnv() for _ in range(3)],
        kw,
        record_beliefs=True,
        initial_state=final,
        return_state=True,
    )
    np.testing.assert_allclose(
        np.stack([r.beliefs[0] for r in again]), policy.belief(final).detach().numpy(), atol=1e-6
    )
    assert not np.allclose(again[0].episode.action, recs[0].episode.action)


def test_random_policy_has_no_state() -> None:
    kw = [{"seed": 3, "options": {"task_index": 1}}]
    recs, final = run_episodes(None, [ShortEnv()], kw, return_state=True)
    assert final is None and len(recs[0].episode) == 5


# -- trials -----------------------------------------------------------------------------------------------
def test_trial_of_one_episode_is_evaluation_episodes() -> None:
    for policy in (moss_policy(seed=1, include_probs=False), oracle_policy(), pearl_policy(), None):
        trial = trial_episodes(policy, ENV, "test", episodes=5, per_trial=1, seed=7, parallel=2)
        assert len(trial) == 1
        same_episodes(
            trial[0], evaluation_episodes(policy, ENV, "test", 5, seed=7, nonstationary="none", parallel=2)
        )


def test_trial_carries_the_inference_state_from_episode_to_episode() -> None:
    policy = moss_policy(seed=1, include_probs=False)
    out = trial_episodes(
        policy, ENV, "test", episodes=3, per_trial=2, seed=7, parallel=2, record_beliefs=True
    )
    assert [len(x) for x in out] == [3, 3]
    for i in range(3):
        assert out[0][i].task_ids[0] == out[1][i].task_ids[0] == f"PointRobot/test/{i}"
        carried = replay_state(policy, out[0][i], policy.init_state(1))
        np.testing.assert_allclose(
            out[1][i].beliefs[0], policy.belief(carried)[0].detach().numpy(), atol=1e-6
        )
        env = make_env(ENV, "test", "none")
        (rec,) = run_episodes(
            policy, [env], [{"seed": 7 + 3 + i, "options": {"task_index": i}}], initial_state=carried
        )
        env.close()
        same_episodes([rec], [out[1][i]])


def test_protocol_episodes_dispatches_by_agent() -> None:
    args = dict(split="test", episodes=3, exploration=2, posterior=1, seed=7, parallel=2)
    pearl = pearl_policy(seed=4)
    got, want = protocol_episodes(pearl, ENV, **args), pearl_protocol_episodes(pearl, ENV, **args)
    assert len(got) == len(want) == 3
    for x, y in zip(got, want, strict=True):
        same_episodes(x, y)
    for policy in (moss_policy(seed=1, include_probs=False), oracle_policy(), None):
        got = protocol_episodes(policy, ENV, **args)
        want = trial_episodes(policy, ENV, "test", episodes=3, per_trial=3, seed=7, parallel=2)
        for x, y in zip(got, want, strict=True):
            same_episodes(x, y)
