"""Grid filter: Bayes' rule by hand, sequence = online steps, batched = per session, learning, serving."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from serving_helpers import ENV_CFG, make_checkpoint, quiet_logs, running_server  # noqa: F401 (autouse fixture)
from test_policy import point_robot_buffer, run_contract, streams

from agents.algorithms.gridfilter import GridFilter
from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig, parse_config
from agents.evaluation import evaluation_episodes
from agents.parts.buffer import EpisodeBuffer
from agents.parts.grid_filter import LatentGridFilter
from agents.parts.nets import ConcaveProfile
from agents.policies import GridFilterPolicy, Spaces
from agents.training.trainer import Trainer
from runtime.client import Client, drive, env_settings

torch.set_num_threads(1)


def filter_policy(seed: int = 0, **kw) -> GridFilterPolicy:
    torch.manual_seed(seed)
    args = dict(grid=5, latent_dim=2, hidden=16, hazard=0.05, actor_hidden=(32, 32))
    args.update(kw)
    return GridFilterPolicy(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), **args).eval()


def reward_is_z(hazard: float, sigma: float = 0.5, refine: int = 1) -> LatentGridFilter:
    """A 1-d, two-point filter (z in {-1, +1}; acting on refine + 1 points) whose decoder predicts r = z exactly."""
    f = LatentGridFilter(obs_dim=2, action_dim=2, grid=2, latent_dim=1, hidden=2, hazard=hazard, refine=refine)
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
            "algorithm": "gridfilter",
            "env": {"id": "PointRobot"},
            "gridfilter": {"grid": 5, "hidden": 16, "hazard": 0.05, "batch_size": 8},
            "sac": {"hidden": [32, 32], "batch_size": 64},
            "train": {"encoder_updates": 2, "policy_updates": 4, "device": "cpu", **train},
        }
    )


def test_relabelled_beliefs_equal_the_online_beliefs() -> None:
    """What SAC trains on (beliefs re-filtered from the buffer) is what the policy saw while acting (at refine
    1; with refine > 1 acting filters on the finer grid, tested below)."""
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
    assert ck.algorithm == "gridfilter" and isinstance(build_policy(ck), GridFilterPolicy)
    resumed = Trainer(cfg.model_copy(update={"train": cfg.train.model_copy(update={"total_steps": 120})}), tmp_path, resume=True)
    assert resumed.step == 80
    resumed.train()
    assert resumed.step == 120 and resumed.updates["encoder"] == 4


@pytest.mark.parametrize("overrides", [None, {"refine": 3}])
def test_served_filter_matches_the_evaluation_path(tmp_path, overrides) -> None:
    """Also with an acting-time setting overridden at load (`runtime serve --policy-set refine=3`)."""
    ckpt = make_checkpoint(tmp_path / "filter.pt", algorithm="gridfilter", seed=2)
    policy = build_policy(load_checkpoint(ckpt), overrides)
    assert policy.filter.k == (13**2 if overrides else 25)
    recs = evaluation_episodes(policy, EnvConfig.model_validate(ENV_CFG), "test", 2, 10_000, record_beliefs=True)
    with running_server(ckpt, overrides=overrides) as srv, Client(srv.endpoint) as c:
        hello = c.hello()
        assert hello["algorithm"] == "gridfilter" and hello["belief_dim"] == 4
        res = drive(c, env_settings(hello), "test", 2, 10_000)
    for r, e in zip(res, recs, strict=True):
        np.testing.assert_allclose(np.array(r.actions), e.episode.action, atol=1e-5)
        np.testing.assert_allclose(np.array(r.beliefs), e.beliefs, atol=1e-5)


def test_bad_filter_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="grid"):
        LatentGridFilter(2, 2, grid=1, latent_dim=2, hidden=8, hazard=0.1)
    with pytest.raises(Exception, match="hazard"):
        parse_config({"algorithm": "gridfilter", "env": {"id": "PointRobot"}, "gridfilter": {"hazard": 1.5}})
    with pytest.raises(Exception, match="refine"):
        parse_config({"algorithm": "gridfilter", "env": {"id": "PointRobot"}, "gridfilter": {"refine": 0}})
    with pytest.raises(ValueError, match="refine"):
        LatentGridFilter(2, 2, grid=4, latent_dim=2, hidden=8, hazard=0.1, refine=0)


def test_incremental_relabel_equals_a_full_one_until_the_likelihood_moves() -> None:
    """With the likelihood unchanged only new episodes are filtered, and their beliefs are what a full pass
    gives; after a likelihood step every stored episode is filtered again. Over a buffer that wraps."""
    policy = filter_policy().train()
    recs, _ = point_robot_buffer(policy, 8, task_step=5)
    buffer = EpisodeBuffer(6, 20, 2, 2, 2)
    for rec in recs[:6]:
        buffer.add(rec.episode)
    learner = GridFilter(policy, config())
    learner.relabel(buffer)
    old = buffer.derived["belief"].clone()
    for rec in recs[6:]:  # the buffer is full: these overwrite slots 0 and 1
        buffer.add(rec.episode)
    learner.relabel(buffer)  # incremental
    incremental = buffer.derived["belief"].clone()
    GridFilter(policy, config()).relabel(buffer)  # a fresh learner filters everything
    assert torch.allclose(incremental, buffer.derived["belief"], atol=1e-6)
    assert torch.equal(incremental[2:], old[2:])  # untouched rows were not recomputed
    assert not torch.allclose(incremental[:2], old[:2], atol=1e-3)  # the overwritten ones were
    learner.likelihood_step(buffer, np.random.default_rng(0))
    learner.relabel(buffer)
    assert not torch.allclose(buffer.derived["belief"][2:], old[2:], atol=1e-4)  # all filtered again


def test_relabel_every_n_catches_up_with_a_moved_likelihood_on_the_nth_call() -> None:
    """gridfilter.relabel_every: 3: after likelihood steps, the next two relabels filter only new episodes
    (stored rows keep their stale beliefs), the third filters every episode with the current likelihood."""
    policy = filter_policy().train()
    recs, _ = point_robot_buffer(policy, 9, task_step=5)
    buffer = EpisodeBuffer(9, 20, 2, 2, 2)
    cfg = config()
    cfg.gridfilter.relabel_every = 3
    learner, rng = GridFilter(policy, cfg), np.random.default_rng(0)
    for rec in recs[:6]:
        buffer.add(rec.episode)
    learner.relabel(buffer)
    stale = buffer.derived["belief"][:6].clone()
    for call in (1, 2, 3):
        learner.likelihood_step(buffer, rng)
        buffer.add(recs[5 + call].episode)
        learner.relabel(buffer)
        labelled = buffer.derived["belief"][: 6 + call].clone()
        GridFilter(policy, config()).relabel(buffer)  # every row under the current likelihood
        current = buffer.derived["belief"][: 6 + call].clone()
        buffer.derived["belief"][: 6 + call] = labelled
        assert torch.allclose(labelled[5 + call], current[5 + call], atol=1e-6)  # the new episode: current
        if call < 3:
            assert torch.equal(labelled[:6], stale)  # the stored ones: left as they were
        else:
            assert torch.allclose(labelled, current, atol=1e-6)  # third call: everything caught up
            assert not torch.allclose(labelled[:6], stale, atol=1e-4)


def test_likelihood_on_explicit_points_equals_the_acting_grid_only_on_those_points() -> None:
    policy = filter_policy()  # grid 5 on [-1, 1]: points 0.5 apart
    f = policy.filter
    assert torch.equal(f.train_z[:2], torch.tensor([[-1.0, -1.0], [-1.0, -0.5]]))
    s, a, r, s2 = streams(2, 6)
    a = policy.normalize_action(a)
    assert torch.equal(f.log_likelihood(s, a, r, s2, f.z.clone()), f.log_likelihood(s, a, r, s2))
    assert not torch.allclose(f.log_likelihood(s, a, r, s2, f.z + torch.tensor([0.2, -0.2])), f.log_likelihood(s, a, r, s2))


def test_sampled_gradient_estimates_the_exact_likelihood_gradient() -> None:
    """gridfilter.grad_samples: the same reported objective; the step's gradient drawn from M points per step is
    an unbiased estimate of the exact one (its mean over draws converges to it; one draw of 4 points does not
    equal it)."""
    cfg = config()
    _, buffer = point_robot_buffer(filter_policy(), 4)

    def grads(samples: int, seed: int = 0) -> tuple[torch.Tensor, float]:
        policy = filter_policy().train()
        torch.manual_seed(seed)
        learner = GridFilter(policy, cfg.model_copy(update={"gridfilter": cfg.gridfilter.model_copy(update={"grad_samples": samples})}))
        learner.opt.step = lambda: None  # keep the gradients, leave the weights
        m = learner.likelihood_step(buffer, np.random.default_rng(0))  # the same episodes every time
        return torch.cat([p.grad.flatten() for p in policy.filter.parameters()]), m["filter_nll"]

    exact, nll = grads(0)
    one, nll_one = grads(4)
    assert nll_one == pytest.approx(nll)
    assert not torch.allclose(one, exact, rtol=0.05, atol=1e-4)
    mean = torch.stack([grads(64, seed)[0] for seed in range(8)]).mean(0)  # 512 draws per step in all
    assert float((mean - exact).norm() / exact.norm()) < 0.1
    assert float((one - exact).norm() / exact.norm()) > float((mean - exact).norm() / exact.norm())


def test_concave_profile_is_concave_whatever_its_weights_and_fits_a_distance_cone() -> None:
    g = torch.Generator().manual_seed(0)
    f = ConcaveProfile(2, 32)
    a, b = torch.randn(500, 2, generator=g) * 2, torch.randn(500, 2, generator=g) * 2
    for _ in range(3):
        assert bool((f((a + b) / 2) >= (f(a) + f(b)) / 2 - 1e-5).all())  # midpoint concavity
        with torch.no_grad():
            for p in f.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 3)
    f = ConcaveProfile(2, 32)
    opt = torch.optim.Adam(f.parameters(), lr=0.03)
    u = torch.rand(2000, 2, generator=g) * 4 - 2
    target = -u.norm(dim=-1, keepdim=True)  # the point robot's reward as a function of position - goal
    for _ in range(400):
        opt.zero_grad()
        loss = (f(u) - target).pow(2).mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.003 * float(target.var())


def test_isotropic_start_makes_the_concave_profile_a_round_cone() -> None:
    policy = filter_policy(decoder="translation", isotropic=True, hidden=32)
    assert policy.cfg["isotropic"]
    angle = torch.linspace(0, 2 * math.pi, 50)
    ring = torch.stack([angle.cos(), angle.sin()], -1)
    with torch.no_grad():
        f = policy.filter.translation.rest
        on_ring, centre, outer = f(ring), f(torch.zeros(1, 2)), f(2 * ring)
    assert float(on_ring.std()) < 0.01 * float(centre - on_ring.mean())  # the same height all round
    assert float(centre) > float(on_ring.mean()) > float(outer.mean())  # falling off from the centre
    with pytest.raises(ValueError, match="2-D latent"):
        filter_policy(decoder="translation", isotropic=True, latent_dim=1)
    with pytest.raises(ValueError, match="gridfilter.decoder: translation"):
        parse_config({"algorithm": "gridfilter", "env": {"id": "PointRobot"}, "gridfilter": {"isotropic": True}})
    with pytest.raises(ValueError, match="gridfilter.latent_dim: 2, got 3"):
        parse_config({"algorithm": "gridfilter", "env": {"id": "PointRobot"}, "gridfilter": {"isotropic": True, "decoder": "translation", "latent_dim": 3}})


def test_translation_decoder_is_a_target_shift_in_a_learned_feature_space(tmp_path) -> None:
    """decoder=translation: r_hat(x, z) = f(phi x - A z) + b(x) by hand (phi, A linear, f concave); moving every point z by d and
    every feature phi(x) by A d leaves r_hat unchanged (a task is a target, so the grid maps to tasks by an
    affine map); trains, checkpoints and loads with its spec."""
    policy = filter_policy(decoder="translation")
    f = policy.filter
    t = f.translation
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        t.latent_in.weight.copy_(torch.tensor([[1.0, 0.5], [-0.3, 2.0]]))
        by_hand = torch.stack([t.rest(t.feature(xi) - t.latent_in(f.z)).squeeze(-1) + t.base(xi) for xi in x])
        assert torch.allclose(f.mean_reward(x, f.z), by_hand, atol=1e-6) and by_hand.shape == (4, 25)
        d = torch.tensor([0.2, -0.1])
        shifted = t.rest(t.feature(x).unsqueeze(-2) + t.latent_in(d) - t.latent_in(f.z + d)).squeeze(-1) + t.base(x)
        assert torch.allclose(shifted, by_hand, atol=1e-5)
    assert not hasattr(f, "transition_in") and isinstance(t.rest, ConcaveProfile) and policy.cfg["decoder"] == "translation"
    # weights saved before the decoder moved into TranslationReward (keys feature.*, rest.*, ...) still load
    old = {k.replace("translation.", "", 1): v for k, v in f.state_dict().items()}
    assert "feature.weight" in old and "translation.feature.weight" not in old
    fresh = filter_policy(decoder="translation").filter
    fresh.load_state_dict(old)
    with torch.no_grad():
        assert torch.equal(fresh.mean_reward(x, f.z), f.mean_reward(x, f.z))
    cfg = config(total_steps=40, episodes_per_epoch=2, initial_episodes=0, eval_every=400, eval_episodes=2, checkpoint_every=400)
    cfg = cfg.model_copy(update={"gridfilter": cfg.gridfilter.model_copy(update={"decoder": "translation"})})
    Trainer(cfg, tmp_path).train()
    loaded = build_policy(load_checkpoint(tmp_path / "policy.pt"))
    assert loaded.filter.decoder == "translation"
    s, a, r, s2 = streams(2, 6)
    b_saved, _ = run_contract(loaded, s, a, r, s2)
    again = build_policy(load_checkpoint(tmp_path / "policy.pt"))
    assert torch.equal(run_contract(again, s, a, r, s2)[0], b_saved)
    with pytest.raises(ValueError, match="decoder"):
        parse_config({"algorithm": "gridfilter", "env": {"id": "PointRobot"}, "gridfilter": {"decoder": "rbf"}})
    with pytest.raises(ValueError, match="decoder"):
        LatentGridFilter(obs_dim=2, action_dim=2, grid=3, latent_dim=2, hidden=4, hazard=0.1, decoder="rbf")


@torch.no_grad()
def test_refined_grid_places_a_task_between_the_training_points() -> None:
    """Decoder r_hat = z on training points {-1, +1}: rewards of 0 leave the training grid split between
    them (mean 0, std 1), while the refined grid {-1, 0, +1} is sure of z = 0."""
    s = torch.zeros(1, 2)
    coarse, fine = reward_is_z(0.02, sigma=0.2), reward_is_z(0.02, sigma=0.2, refine=2)
    assert fine.z.flatten().tolist() == [-1.0, 0.0, 1.0] and fine.train_z.flatten().tolist() == [-1.0, 1.0]
    assert not {"z", "train_z"} & set(fine.state_dict())  # derived from (grid, refine): not in checkpoints
    fine.load_state_dict({**coarse.state_dict(), "z": coarse.z})  # a checkpoint from before refine stored z
    assert fine.z.flatten().tolist() == [-1.0, 0.0, 1.0]
    beliefs = []
    for f in (coarse, fine):
        logq = f.prior(1)
        for _ in range(5):
            logq = f.step(logq, s, s, torch.zeros(1), s)
        beliefs.append(f.belief(logq)[0])
    assert torch.allclose(beliefs[0], torch.tensor([0.0, 1.0]), atol=1e-5)
    assert torch.allclose(beliefs[1], torch.tensor([0.0, 0.0]), atol=1e-3)


def test_refine_changes_acting_only_learning_stays_on_the_training_grid(tmp_path) -> None:
    """Same weights, refine 1 and 2: equal likelihood steps and relabelled beliefs (the training grid),
    different online beliefs (the acting grid, 9 x 9 points containing the 5 x 5 training grid)."""
    coarse, fine = filter_policy(), filter_policy(refine=2)
    assert fine.filter.k == 81 and coarse.filter.k == 25
    assert torch.equal(fine.filter.z.reshape(9, 9, 2)[::2, ::2].reshape(-1, 2), coarse.filter.z)
    recs, buffer = point_robot_buffer(coarse, 3, task_step=5, record_beliefs=True)
    losses, relabelled = [], []
    for pol in (coarse, fine):
        learner = GridFilter(pol.train(), config())
        losses.append(learner.likelihood_step(buffer, np.random.default_rng(0))["filter_nll"].item())
        buffer.derived.pop("belief", None)
        learner.relabel(buffer)
        relabelled.append(buffer.derived["belief"].clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert torch.allclose(relabelled[0], relabelled[1], atol=1e-6)
    s, a, r, s2 = streams(2, 8)
    assert not torch.allclose(run_contract(coarse.eval(), s, a, r, s2)[0], run_contract(fine.eval(), s, a, r, s2)[0], atol=1e-3)
    cfg = config(total_steps=40, episodes_per_epoch=2, initial_episodes=2, eval_every=40, eval_episodes=2, checkpoint_every=40)
    cfg = cfg.model_copy(update={"gridfilter": cfg.gridfilter.model_copy(update={"refine": 2})})
    Trainer(cfg, tmp_path).train()
    assert build_policy(load_checkpoint(tmp_path / "policy.pt")).filter.k == 81  # the checkpoint keeps it


def test_served_refined_says_so_and_keeps_its_saved_sessions_to_itself(tmp_path) -> None:
    """`serve --policy-set refine=2`: hello reports it; sessions saved by it restore only with the same settings."""
    from runtime.server import Server
    from runtime.sessions import StateFileError

    ckpt = make_checkpoint(tmp_path / "filter.pt", algorithm="gridfilter", seed=2)
    with running_server(ckpt, overrides={"refine": 2}, state_dir=tmp_path / "s") as srv, Client(srv.endpoint) as c:
        assert c.hello()["checkpoint"]["policy_set"] == {"refine": 2}
        sid = c.open([0.0, 0.0])["session"]
        c.step(sid, [0.05, 0.0], -1.0, [0.05, 0.0])
    with pytest.raises(StateFileError, match="policy_set"):
        Server.from_checkpoint(ckpt, bind="tcp://127.0.0.1:*", state_dir=tmp_path / "s")
    with running_server(ckpt, overrides={"refine": 2}, state_dir=tmp_path / "s") as srv, Client(srv.endpoint) as c:
        assert c.stats()["sessions"] == 1
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        assert "policy_set" not in c.hello()["checkpoint"]
