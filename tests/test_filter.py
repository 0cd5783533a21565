"""Grid filter: Bayes' rule by hand, sequence = online steps, batched = per session, learning, serving."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from serving_helpers import ENV_CFG, make_checkpoint, quiet_logs, running_server  # noqa: F401 (autouse fixture)
from test_policy import point_robot_buffer, run_contract, streams

from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig, parse_config
from agents.evaluation import evaluation_episodes
from agents.filter import GridFilter
from agents.latent_filter import LatentGridFilter
from agents.policies import FilterPolicy
from agents.trainer import Trainer
from runtime.client import Client, drive, env_settings

torch.set_num_threads(1)


def filter_policy(seed: int = 0, **kw) -> FilterPolicy:
    torch.manual_seed(seed)
    args = dict(grid=5, latent_dim=2, hidden=16, hazard=0.05, actor_hidden=(32, 32))
    args.update(kw)
    return FilterPolicy(2, 2, [-0.1, -0.1], [0.1, 0.1], **args).eval()


def reward_is_z(hazard: float, sigma: float = 0.5) -> LatentGridFilter:
    """A 1-d, two-point filter (z in {-1, +1}) whose decoder predicts r = z exactly."""
    f = LatentGridFilter(obs_dim=2, action_dim=2, grid=2, latent_dim=1, hidden=2, hazard=hazard)
    with torch.no_grad():
        for p in f.parameters():
            p.zero_()
        f.latent_in.weight.copy_(torch.tensor([[1.0], [-1.0]]))  # hidden = (relu(z), relu(-z))
        f.rest[0].weight.copy_(torch.eye(2))
        f.rest[2].weight.copy_(torch.tensor([[1.0, -1.0]]))  # r_hat = relu(z) - relu(-z) = z
        f.log_sigma.fill_(math.log(sigma))
    return f


@torch.no_grad()
def test_one_step_is_bayes_rule_by_hand() -> None:
    f = reward_is_z(hazard=0.1)
    s = torch.zeros(1, 2)
    logq = torch.log(torch.tensor([[0.8, 0.2]]))  # belief on z = -1, +1
    new = f.step(logq, s, s, torch.tensor([0.6]), s).exp()[0]
    prior = 0.9 * torch.tensor([0.8, 0.2]) + 0.1 / 2  # switch prior mixed in
    lik = torch.exp(-0.5 * ((0.6 - torch.tensor([-1.0, 1.0])) / 0.5) ** 2)  # common factors cancel
    expected = prior * lik / (prior * lik).sum()
    assert torch.allclose(new, expected, atol=1e-6)
    # belief = (posterior mean, posterior std) of z
    mean = float(expected @ torch.tensor([-1.0, 1.0]))
    assert torch.allclose(f.belief(new.log()[None]), torch.tensor([[mean, math.sqrt(1 - mean**2)]]), atol=1e-5)


@torch.no_grad()
def test_belief_follows_a_switch_only_with_a_switch_prior() -> None:
    s = torch.zeros(1, 2)
    r = torch.tensor([1.0] * 10 + [-1.0] * 10)  # the task switches from z = +1 to z = -1 at step 10
    for hazard, switches in ((0.02, True), (1e-12, False)):
        f = reward_is_z(hazard, sigma=1.0)  # each reward of +-1 is worth 2 nats of evidence
        logq = f.prior(1)
        means = []
        for t in range(20):
            logq = f.step(logq, s, s, r[t : t + 1], s)
            means.append(float(f.belief(logq)[0, 0]))
        assert means[9] > 0.99  # ten rewards of +1: sure of z = +1
        if switches:  # the switch prior caps its certainty, so it follows the switch within a few steps
            assert means[14] < 0 and means[-1] < -0.99
        else:  # without one, 10 contrary rewards only cancel the 10 before: still sure at 15, even at 20
            assert means[14] > 0.99 and abs(means[-1]) < 0.5


@torch.no_grad()
def test_sequence_equals_repeated_step_and_batched_equals_per_session() -> None:
    policy = filter_policy()
    s, a, r, s2 = streams(4, 15)
    pred, post = policy.filter.sequence(s, policy.normalize_action(a), r, s2)
    logq = policy.filter.prior(4)
    for t in range(15):
        ll_next = torch.logsumexp(policy.filter.predict(logq) + policy.filter.log_likelihood(s[:, t], policy.normalize_action(a[:, t]), r[:, t], s2[:, t]), -1)
        logq = policy.update({"logq": logq}, s[:, t], a[:, t], r[:, t], s2[:, t])["logq"]
        assert torch.allclose(post[:, t], logq, atol=1e-5)
        assert torch.allclose(pred[:, t], ll_next, atol=1e-5)
    b_batch, a_batch = run_contract(policy, s, a, r, s2)
    for i in range(4):
        b_one, a_one = run_contract(policy, s[i : i + 1], a[i : i + 1], r[i : i + 1], s2[i : i + 1])
        assert torch.allclose(b_batch[i], b_one[0], atol=1e-5) and torch.allclose(a_batch[i], a_one[0], atol=1e-5)
    assert not torch.allclose(b_batch[0, -1], b_batch[1, -1], atol=1e-3)  # different streams, different beliefs


def config(**train):
    return parse_config(
        {
            "algorithm": "filter",
            "env": {"id": "PointRobot"},
            "filter": {"grid": 5, "hidden": 16, "hazard": 0.05, "batch_size": 8},
            "sac": {"hidden": [32, 32], "batch_size": 64},
            "train": {"encoder_updates": 2, "policy_updates": 4, **train},
        }
    )


def test_relabelled_beliefs_equal_the_online_beliefs() -> None:
    """What SAC trains on (beliefs re-filtered from the buffer) is what the policy saw while acting."""
    policy = filter_policy()
    recs, buffer = point_robot_buffer(policy, 3, task_step=5, record_beliefs=True)
    GridFilter(policy, config()).relabel(buffer)
    for i, rec in enumerate(recs):
        L = len(rec.episode)
        assert torch.allclose(buffer.derived["belief"][i, : L + 1], torch.as_tensor(rec.beliefs), atol=1e-5)


def test_likelihood_training_sharpens_the_filter() -> None:
    """On PointRobot episodes the predictive NLL of the rewards falls from ~7 nats to ~0."""
    policy = filter_policy().train()
    _, buffer = point_robot_buffer(policy, 16, task_step=5)
    learner = GridFilter(policy, config())
    rng = np.random.default_rng(0)
    first = learner.likelihood_step(buffer, rng)
    for _ in range(100):
        last = learner.likelihood_step(buffer, rng)
    assert first["filter_nll"] > 5 and last["filter_nll"] < 0.1


def test_training_run_checkpoints_and_resumes(tmp_path) -> None:
    cfg = config(total_steps=80, episodes_per_epoch=2, initial_episodes=2, eval_every=40, eval_episodes=2, checkpoint_every=40)
    tr = Trainer(cfg, tmp_path)
    tr.train()
    assert tr.step == 80 and tr.updates == {"encoder": 2, "sac": 4}  # 2 random episodes of 20 steps, then one epoch
    ck = load_checkpoint(tmp_path / "policy.pt")
    assert ck.algorithm == "filter" and isinstance(build_policy(ck), FilterPolicy)
    resumed = Trainer(cfg.model_copy(update={"train": cfg.train.model_copy(update={"total_steps": 120})}), tmp_path, resume=True)
    assert resumed.step == 80
    resumed.train()
    assert resumed.step == 120 and resumed.updates["encoder"] == 4


def test_served_filter_matches_the_evaluation_path(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "filter.pt", algorithm="filter", seed=2)
    policy = build_policy(load_checkpoint(ckpt))
    recs = evaluation_episodes(policy, EnvConfig.model_validate(ENV_CFG), "test", 2, 10_000, record_beliefs=True)
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        hello = c.hello()
        assert hello["algorithm"] == "filter" and hello["belief_dim"] == 4
        res = drive(c, env_settings(hello), "test", 2, 10_000)
    for r, e in zip(res, recs, strict=True):
        np.testing.assert_allclose(np.array(r.actions), e.episode.action, atol=1e-5)
        np.testing.assert_allclose(np.array(r.beliefs), e.beliefs, atol=1e-5)


def test_bad_filter_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="grid"):
        LatentGridFilter(2, 2, grid=1, latent_dim=2, hidden=8, hazard=0.1)
    with pytest.raises(Exception, match="hazard"):
        parse_config({"algorithm": "filter", "env": {"id": "PointRobot"}, "filter": {"hazard": 1.5}})
