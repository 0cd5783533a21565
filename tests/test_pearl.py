"""PEARL, TCL-PEARL and CoCOA: similarities, key encoder, crops, the product-of-Gaussians posterior, serving,
PEARL's evaluation protocol, and tiny training runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
import torch
from serving_helpers import make_checkpoint, quiet_logs, running_server  # noqa: F401 (autouse fixture)

from agents.algorithms.pearl import PEARL
from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig, RunConfig, parse_config
from agents.evaluation import evaluation_episodes, make_env, pearl_protocol_episodes, summarize
from agents.evaluation.protocols import _HeldBelief
from agents.evaluation.rollout import run_episodes
from agents.parts.buffer import Episode, EpisodeBuffer, TaskSteps
from agents.parts.contrastive import bhattacharyya, info_nce, wasserstein2
from agents.parts.latent import Gaussian
from agents.policies import POLICIES, PEARLPolicy, Spaces
from agents.training.trainer import Trainer
from runtime.client import Client, drive, env_settings

torch.set_num_threads(1)

ALGORITHMS = ("pearl", "tcl", "cocoa")
LOW, HIGH = [-0.1, -0.1], [0.1, 0.1]


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()


def g(mu, std) -> Gaussian:
    return Gaussian(torch.tensor(mu, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))


def pearl_policy(seed: int = 0, **kw: Any) -> PEARLPolicy:
    torch.manual_seed(seed)
    args: dict[str, Any] = dict(latent_dim=3, encoder_hidden=(16, 16), actor_hidden=(32, 32))
    args.update(kw)
    return PEARLPolicy(Spaces(2, 2, LOW, HIGH), **args).eval()


def streams(n: int, steps: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """n different transition streams (s, a, r, s2) of `steps` steps: [n, steps, ...]."""
    gen = torch.Generator().manual_seed(seed)
    s = torch.rand(n, steps + 1, 2, generator=gen) * 2 - 1
    a = (torch.rand(n, steps, 2, generator=gen) * 2 - 1) * 0.1
    r = -torch.rand(n, steps, generator=gen) * 2
    return s[:, :-1], a, r, s[:, 1:]


# -- similarities --------------------------------------------------------------------------------------------
def test_wasserstein2_similarity_hand_values() -> None:
    q = g([[0.0, 0.0], [1.0, 2.0]], [[1.0, 1.0], [0.5, 2.0]])
    k = g([[1.0, 0.0], [1.0, 2.0], [-1.0, 1.0]], [[2.0, 1.0], [0.5, 2.0], [1.0, 0.5]])
    # -( ||mu_q - mu_k||^2 + ||std_q - std_k||^2 ), entry by entry
    expected = [
        [-(1 + 0 + 1 + 0), -(1 + 4 + 0.25 + 1), -(1 + 1 + 0 + 0.25)],
        [-(0 + 4 + 2.25 + 1), 0.0, -(4 + 1 + 0.25 + 2.25)],
    ]
    np.testing.assert_allclose(wasserstein2(q, k).numpy(), expected, atol=1e-12)


def test_bhattacharyya_similarity_hand_values() -> None:
    q = g([[0.0, 0.0]], [[1.0, 1.0]])
    k = g([[2.0, 1.0], [0.0, 0.0], [1.0, -1.0]], [[1.0, math.sqrt(3.0)], [3.0, 3.0], [math.sqrt(7.0), 1.0]])
    # Sigma = (Sigma_q + Sigma_k) / 2, per dim; sim = -sum (mu_q - mu_k)^2 / Sigma
    # k0: Sigma = (1, 2) -> -(4/1 + 1/2); k1: same mean -> 0; k2: Sigma = (4, 1) -> -(1/4 + 1/1)
    np.testing.assert_allclose(bhattacharyya(q, k).numpy(), [[-4.5, 0.0, -1.25]], atol=1e-12)
    # symmetric: sim(q, k) = sim(k, q)^T; a wider Gaussian at the same distance is more similar
    assert torch.allclose(bhattacharyya(k, q), bhattacharyya(q, k).T)
    wide = g([[2.0, 1.0]], [[3.0, 3.0]])
    assert bhattacharyya(q, wide).item() > bhattacharyya(q, Gaussian(wide.mu, torch.ones(1, 2))).item()


def test_info_nce_over_gaussians_with_temperature() -> None:
    q = g([[0.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [0.5, 0.5]])
    k = g([[0.5, 0.0], [1.0, 2.0]], [[1.0, 2.0], [0.5, 0.5]])
    for name, fn in (("wasserstein2", wasserstein2), ("bhattacharyya", bhattacharyya)):
        logits = (fn(q, k) / 2.0).tolist()
        terms = [-(row[i] - math.log(sum(math.exp(v) for v in row))) for i, row in enumerate(logits)]
        got = info_nce(q, k, name, temperature=2.0)
        assert got.item() == pytest.approx(sum(terms) / 2, abs=1e-12), name


# -- the posterior: online sufficient statistics == batch product of Gaussians -----------------------------
@torch.no_grad()
def test_online_posterior_equals_batch_product_of_gaussians() -> None:
    policy = pearl_policy()
    s, a, r, s2 = streams(4, 15)
    state = policy.init_state(4)
    assert torch.equal(
        policy.belief(state), torch.cat([torch.zeros(4, 3), torch.ones(4, 3)], -1)
    )  # the prior
    for t in range(15):
        state = policy.update(state, s[:, t], a[:, t], r[:, t], s2[:, t])
    online = policy.posterior(state)

    # the product written out, in float64, from the per-transition factors
    mu_n, var_n = (x.double() for x in policy.factors(s, a, r, s2))  # [4, 15, 3]
    precision = 1.0 + (1.0 / var_n).sum(1)  # the prior N(0, I) is one factor
    mean = (mu_n / var_n).sum(1) / precision
    assert torch.allclose(online.mu.double(), mean, atol=1e-5, rtol=1e-5)
    assert torch.allclose(online.std.double(), precision.rsqrt(), atol=1e-5, rtol=1e-5)
    assert torch.allclose(policy.belief(state), torch.cat([online.mu, online.std], -1))
    # one call over the whole context (what training does) gives the same, and so does any order
    batch = policy.posterior(policy.absorb(policy.init_state(4), s, a, r, s2))
    perm = torch.randperm(15)
    shuffled = policy.posterior(
        policy.absorb(policy.init_state(4), s[:, perm], a[:, perm], r[:, perm], s2[:, perm])
    )
    for other in (batch, shuffled):
        assert torch.allclose(other.mu, online.mu, atol=1e-5) and torch.allclose(
            other.std, online.std, atol=1e-5
        )
    # a mask drops padding exactly: the first 9 steps, padded to 15
    mask = torch.arange(15).unsqueeze(0).expand(4, -1) < 9
    masked = policy.posterior(policy.absorb(policy.init_state(4), s, a, r, s2, mask))
    prefix = policy.posterior(policy.absorb(policy.init_state(4), s[:, :9], a[:, :9], r[:, :9], s2[:, :9]))
    assert torch.allclose(masked.mu, prefix.mu, atol=1e-6) and torch.allclose(
        masked.std, prefix.std, atol=1e-6
    )
    assert not torch.allclose(masked.mu, online.mu, atol=1e-3)  # more evidence moves the posterior
    assert (online.std < prefix.std).all()  # ... and narrows it


@torch.no_grad()
@pytest.mark.parametrize("sample_z", [False, True])
def test_batched_update_equals_per_session(sample_z: bool) -> None:
    policy = pearl_policy(seed=2, sample_z=sample_z)
    s, a, r, s2 = streams(5, 10, seed=3)

    def run(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        state, beliefs, actions = policy.init_state(rows.stop - rows.start), [], []
        for t in range(10):
            b = policy.belief(state)
            beliefs.append(b)
            actions.append(policy.act(s[rows, t], b, deterministic=True))
            state = policy.update(state, s[rows, t], a[rows, t], r[rows, t], s2[rows, t])
        return torch.stack(beliefs, 1), torch.stack(actions, 1)

    b_all, a_all = run(slice(0, 5))
    assert b_all.shape == (5, 10, 6) and a_all.shape == (5, 10, 2)
    for i in range(5):
        b_one, a_one = run(slice(i, i + 1))
        assert torch.allclose(b_all[i], b_one[0], atol=1e-6) and torch.allclose(a_all[i], a_one[0], atol=1e-6)
    assert not torch.allclose(b_all[0, -1], b_all[1, -1], atol=1e-3)  # different streams, different beliefs
    assert policy.actor.net[0].in_features == 2 + (3 if sample_z else 6)  # z, or (mu, std)


# -- crops: never across a trajectory, negatives never from the positive's trajectory ------------------------
def marked_buffer(lengths: list[int], tasks: list[int], horizon: int = 12) -> EpisodeBuffer:
    """Episodes whose observations carry (episode index, t), so a gathered step tells where it came from."""
    buf = EpisodeBuffer(len(lengths), horizon, obs_dim=2, action_dim=2, task_dim=1)
    for i, (L, k) in enumerate(zip(lengths, tasks, strict=True)):
        obs = np.stack([np.full(L, i), np.arange(L)], 1).astype(np.float32)
        buf.add(
            Episode(
                obs,
                np.zeros((L, 2), np.float32),
                np.zeros(L, np.float32),
                obs + 0.5,
                np.zeros(L, bool),
                np.full(L, k),
                np.zeros((L, 1), np.float32),
            )
        )
    return buf


def test_crops_stay_inside_their_trajectory_and_negatives_come_from_others() -> None:
    lengths = [12, 3, 7, 12, 5, 9, 12, 2, 10, 4]
    tasks = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    buf = marked_buffer(lengths, tasks)
    cfg = parse_config(
        {
            "algorithm": "tcl",
            "env": {"id": "PointRobot"},
            "pearl": {"meta_batch": 3, "window": 6, "aux_batch": 7},
        }
    )
    learner = PEARL(pearl_policy(latent_dim=2), cfg)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        chosen, e, t_q, t_k = learner.crops(buf, rng)
        assert len(chosen) == 3 and len(set(chosen)) == 3 and len(e) == 7
        assert (
            len(set(e.tolist())) == 7
        )  # one trajectory per row: the other rows' keys are other trajectories
        for i, k in enumerate(chosen):  # the meta-batch rows are trajectories of their task
            assert buf.task[e[i], 0].item() == k
        for t0 in (t_q, t_k):  # query and key: two crops of the row's own trajectory
            (s, *_), mask = learner._crop(buf, e, t0)
            for row in range(7):
                L = lengths[int(e[row])]
                valid = mask[row]
                assert valid.sum().item() == min(6, L)  # as long as the trajectory allows
                assert (s[row, valid, 0] == e[row]).all()  # never a step of another trajectory
                steps = s[row, valid, 1]
                assert steps.max().item() < L and torch.equal(steps, t0[row] + torch.arange(int(valid.sum())))
        starts.update(t_q[row].item() for row in range(7) if lengths[int(e[row])] == 12)
    assert starts == set(range(12 - 6 + 1))  # every start that fits is drawn


def test_the_rl_context_of_tcl_is_the_tasks_own_steps() -> None:
    """TCL's RL posterior is built from `context_size` steps of each chosen task, from all of its
    trajectories (a third encoder pass), not from the contrastive crops."""
    tasks = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    buf = marked_buffer([12] * 10, tasks)
    cfg = parse_config(
        {
            "algorithm": "tcl",
            "env": {"id": "PointRobot"},
            "pearl": {"meta_batch": 3, "window": 6, "aux_batch": 7, "context_size": 40, "vary_context": False},
        }
    )
    learner = PEARL(pearl_policy(latent_dim=2), cfg)
    seen: list[torch.Tensor] = []
    factors = learner.policy.factors

    def spy(s, a, r, s2, **kw):  # records which steps each encoder pass reads
        seen.append(s.clone())
        return factors(s, a, r, s2, **kw)

    learner.policy.factors = spy  # type: ignore[method-assign]
    chosen, q, aux, _ = learner.contexts(buf, TaskSteps(buf), np.random.default_rng(0))
    assert aux.item() > 0 and q.mu.shape == (3, 2)
    assert [tuple(x.shape) for x in seen] == [(7, 6, 2), (3, 40, 2), (7, 6, 2)]
    for i, k in enumerate(chosen):
        episodes = set(seen[1][i, :, 0].long().tolist())
        assert episodes == {j for j, tk in enumerate(tasks) if tk == k}


def test_task_steps_group_by_the_task_in_force() -> None:
    buf = marked_buffer([4, 6], [0, 1])
    buf.task[0, 2:4] = 1  # a switch inside episode 0
    steps = TaskSteps(buf)
    assert sorted(steps.groups) == [0, 1]
    e0, t0 = steps.groups[0]
    assert list(zip(e0.tolist(), t0.tolist(), strict=True)) == [(0, 0), (0, 1)]
    assert len(steps.groups[1][0]) == 2 + 6
    e, t = steps.sample([0, 1], 50, np.random.default_rng(0))
    assert (buf.task[e, t] == torch.tensor([[0], [1]])).all() and buf.mask[e, t].all()
    # one vectorised draw per label, every step of the label's task reachable, none of another
    labels = torch.tensor([[0, 1, 1], [1, 0, 0]])
    e, t = steps.sample_like(labels, 400, np.random.default_rng(0))
    assert e.shape == (2, 3, 400) and (buf.task[e, t] == labels.unsqueeze(-1)).all() and buf.mask[e, t].all()
    assert {(a, b) for a, b in zip(e[0, 1].tolist(), t[0, 1].tolist(), strict=True)} == {
        (a, b) for a, b in zip(*(x.tolist() for x in steps.groups[1]), strict=True)
    }
    with pytest.raises(ValueError, match=r"tasks \[2\] have no stored step"):
        steps.sample_like(torch.tensor([0, 2]), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no stored step"):
        steps.sample_like(torch.tensor([5]), 3, np.random.default_rng(0))


# -- learners -------------------------------------------------------------------------------------------------
def tiny(algorithm: str, **overrides: Any) -> RunConfig:
    raw: dict[str, Any] = {
        "algorithm": algorithm,
        "seed": 0,
        "env": {"id": "PointRobot"},
        "pearl": {
            "latent_dim": 2,
            "encoder_hidden": [16],
            "meta_batch": 4,
            "context_size": 8,
            "window": 8,
            "aux_batch": 6,
        },
        "sac": {"hidden": [16, 16], "batch_size": 32, "gamma": 0.9, "alpha": 0.05},
        "train": {
            "total_steps": 240,
            "episodes_per_epoch": 4,
            "initial_episodes": 4,
            "policy_updates": 5,
            "buffer_episodes": 100,
            "eval_every": 160,
            "eval_episodes": 4,
            "checkpoint_every": 160,
            "device": "cpu",
        },
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        raw[section][name] = value
    return parse_config(raw)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tiny_training_run(algorithm: str, tmp_path: Path) -> None:
    trainer = Trainer(tiny(algorithm), tmp_path)
    assert type(trainer.policy) is POLICIES[algorithm] and isinstance(trainer.learner, PEARL)
    encoder0 = [p.detach().clone() for p in trainer.policy.encoder.parameters()]
    trainer.train()
    epochs = [r for r in trainer.history if r["kind"] == "epoch"]
    assert len(epochs) == 2 and trainer.updates == {"encoder": 10, "sac": 10}
    keys = ["critic_loss", "actor_loss", "kl", "z_std"]
    keys += {"pearl": [], "tcl": ["contrastive"], "cocoa": ["contrastive", "kl_queries"]}[algorithm]
    for r in epochs:
        for k in keys:
            assert np.isfinite(r[k]), (k, r)
    assert ("contrastive" in epochs[0]) == (algorithm != "pearl")
    assert any(
        not torch.equal(a, b) for a, b in zip(encoder0, trainer.policy.encoder.parameters(), strict=True)
    )
    assert np.isfinite(trainer.last_eval()["mean_return"])
    # resuming restores the learner (optimisers and, for tcl/cocoa, the key encoder)
    resumed = Trainer(tiny(algorithm), tmp_path, resume=True)
    for a, b in zip(resumed.policy.parameters(), trainer.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    if algorithm != "pearl":
        key = dict(resumed.learner.key_encoder.named_parameters())
        for name, p in trainer.learner.key_encoder.named_parameters():
            assert torch.equal(key[name], p) and not p.requires_grad


def test_critic_gradient_reaches_the_encoder_and_the_key_encoder_follows_by_ema(tmp_path: Path) -> None:
    trainer = Trainer(tiny("tcl", pearl__kl_beta=0.0, pearl__aux_weight=0.0), tmp_path)
    trainer.collect(8, random=True)
    learner, policy = trainer.learner, trainer.policy
    steps, rng = TaskSteps(trainer.buffer), np.random.default_rng(0)
    query0 = [p.detach().clone() for p in policy.encoder.parameters()]
    key0 = [p.detach().clone() for p in learner.key_encoder.parameters()]
    actor0 = [p.detach().clone() for p in policy.actor.parameters()]
    metrics = learner.update(trainer.buffer, steps, rng)
    # no KL, no contrastive weight: only the critic loss can have moved the encoder
    assert metrics["critic_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(query0, policy.encoder.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(actor0, policy.actor.parameters(), strict=True))
    m = trainer.cfg.pearl.momentum
    for k_old, k_new, q_new in zip(
        key0, learner.key_encoder.parameters(), policy.encoder.parameters(), strict=True
    ):
        assert torch.allclose(k_new, m * k_old + (1 - m) * q_new.detach(), atol=1e-7)
        assert k_new.grad is None


# -- serving: each agent's checkpoint through the real server -------------------------------------------------
STATIONARY = {"nonstationary": None, "max_episode_steps": 20}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checkpoint_is_served(algorithm: str, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / f"{algorithm}.pt", algorithm=algorithm, seed=4, env=STATIONARY)
    ck = load_checkpoint(ckpt)
    assert ck.algorithm == algorithm
    policy = build_policy(ck)
    assert type(policy) is POLICIES[algorithm] and policy.belief_dim == 6
    env_cfg = EnvConfig.model_validate({"id": "PointRobot", **STATIONARY})
    recs = evaluation_episodes(policy, env_cfg, "test", 2, 10_000, record_beliefs=True)
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        hello = c.hello()
        assert hello["algorithm"] == algorithm and hello["belief_dim"] == 6 and hello["obs_dim"] == 2
        res = drive(c, env_settings(hello), "test", 2, 10_000)
    for r, e in zip(res, recs, strict=True):  # the served path is the eval path
        assert r.steps == len(e.episode) == 20
        np.testing.assert_allclose(np.array(r.actions), e.episode.action, atol=1e-5)
        np.testing.assert_allclose(np.array(r.beliefs), e.beliefs, atol=1e-5)
    assert not np.allclose(res[0].beliefs[0], res[0].beliefs[-1])  # the belief moved during the episode


# -- PEARL's evaluation protocol ------------------------------------------------------------------------------
def test_pearl_protocol_acts_on_the_prior_then_on_the_posterior_of_what_it_saw() -> None:
    env_cfg = EnvConfig(id="PointRobot")
    for sample_z in (False, True):
        policy = pearl_policy(seed=5, sample_z=sample_z)
        out = pearl_protocol_episodes(policy, env_cfg, "test", episodes=3, exploration=2, posterior=1, seed=7)
        assert [len(x) for x in out] == [3, 3, 3]
        again = pearl_protocol_episodes(
            policy, env_cfg, "test", episodes=3, exploration=2, posterior=1, seed=7
        )
        for x, y in zip(out, again, strict=True):
            assert [r.ret for r in x] == [r.ret for r in y]  # reproducible, z draws included
        assert np.isfinite(summarize(out[-1])["mean_return"])
    # (Bayes-adaptive) the posterior episode acts on the belief from both exploration episodes of its trial
    policy = pearl_policy(seed=5)
    out = pearl_protocol_episodes(policy, env_cfg, "test", episodes=3, exploration=2, posterior=1, seed=7)
    for i in range(3):
        state = policy.init_state(1)
        with torch.no_grad():
            for k in range(2):
                ep = out[k][i].episode
                state = policy.absorb(
                    state, *(torch.as_tensor(x)[None] for x in (ep.obs, ep.action, ep.reward, ep.next_obs))
                )
        held = _HeldBelief(policy, policy.belief(state))
        env = make_env(env_cfg, "test", "none")
        (rec,) = run_episodes(held, [env], [{"seed": 7 + 2 * 3 + i, "options": {"task_index": i}}])  # type: ignore[arg-type]
        env.close()
        np.testing.assert_allclose(rec.episode.action, out[2][i].episode.action, atol=1e-5)
        # exploration acted on the prior: every step of the first episode got the prior's action for its obs
        prior = policy.belief(policy.init_state(1))
        with torch.no_grad():
            want = policy.act(
                torch.as_tensor(out[0][i].episode.obs), prior.expand(len(out[0][i].episode), -1)
            )
        np.testing.assert_allclose(out[0][i].episode.action, want.numpy(), atol=1e-6)


# -- learning -------------------------------------------------------------------------------------------------
def test_pearl_learns_on_point_robot(tmp_path: Path) -> None:
    cfg = tiny(
        "pearl",
        pearl__encoder_hidden=[32],
        pearl__meta_batch=8,
        pearl__context_size=20,
        pearl__encoder_lr=1e-3,
        sac__hidden=[32, 32],
        sac__batch_size=64,
        sac__gamma=0.5,
        sac__lr=1e-3,
        train__total_steps=2000,
        train__episodes_per_epoch=10,
        train__initial_episodes=10,
        train__policy_updates=100,
        train__buffer_episodes=200,
        train__eval_every=10**6,
        train__checkpoint_every=10**6,
        train__eval_episodes=20,
    )
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    final = trainer.last_eval()["mean_return"]
    rnd = summarize(evaluation_episodes(None, cfg.env, "test", 20, seed=10_000))["mean_return"]
    assert final > rnd + 1.0, (final, rnd)
