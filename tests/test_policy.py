"""The inference contract: batched == per-session, relabel == online, action scaling, state gather/scatter."""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs
from agents.algorithms.moss import MoSS
from agents.config import parse_config
from agents.evaluation.rollout import run_episodes
from agents.parts.buffer import EpisodeBuffer
from agents.parts.nets import GRUEncoder
from agents.policies import MoSSPolicy, OraclePolicy, Spaces, cat_states, put_state, select_state

torch.set_num_threads(1)

LOW, HIGH = [-0.1, -0.1], [0.1, 0.1]


def moss_policy(seed: int = 0, **kw: Any) -> MoSSPolicy:
    torch.manual_seed(seed)
    args = dict(
        latent_dim=3, n_components=3, embed_dim=16, hidden_dim=24, actor_hidden=(32, 32), include_probs=True
    )
    args.update(kw)
    return MoSSPolicy(Spaces(2, 2, LOW, HIGH), **args).eval()


def streams(n: int, steps: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """n different transition streams (s, a, r, s2) of `steps` steps: [n, steps, ...]."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, steps + 1, 2, generator=g) * 2 - 1
    a = (torch.rand(n, steps, 2, generator=g) * 2 - 1) * 0.1
    r = -torch.rand(n, steps, generator=g) * 2
    return s[:, :-1], a, r, s[:, 1:]


def point_robot_buffer(policy, n: int, task_step: int = 1, record_beliefs: bool = False):
    """n stochastic PointRobot episodes of `policy` (reset seed i, task task_step * i) and a buffer holding them."""
    recs = run_episodes(
        policy,
        [envs.make("PointRobot") for _ in range(n)],
        [{"seed": i, "options": {"task_index": task_step * i}} for i in range(n)],
        deterministic=False,
        record_beliefs=record_beliefs,
    )
    buffer = EpisodeBuffer(2 * n + 2, 20, 2, 2, 2)
    for rec in recs:
        buffer.add(rec.episode)
    return recs, buffer


@torch.no_grad()
def run_contract(policy, s, a, r, s2) -> tuple[torch.Tensor, torch.Tensor]:
    """Beliefs [n, T+1, B] and deterministic actions [n, T, A] through the four contract calls."""
    n, T = s.shape[:2]
    state = policy.init_state(n)
    beliefs, actions = [], []
    for t in range(T):
        b = policy.belief(state)
        beliefs.append(b)
        actions.append(policy.act(s[:, t], b, deterministic=True))
        state = policy.update(state, s[:, t], a[:, t], r[:, t], s2[:, t])
    beliefs.append(policy.belief(state))
    return torch.stack(beliefs, 1), torch.stack(actions, 1)


def test_batched_inference_equals_per_session() -> None:
    policy = moss_policy()
    s, a, r, s2 = streams(5, 12)
    b_batch, a_batch = run_contract(policy, s, a, r, s2)
    assert b_batch.shape == (5, 13, policy.belief_dim) and a_batch.shape == (5, 12, 2)
    for i in range(5):
        b_one, a_one = run_contract(policy, s[i : i + 1], a[i : i + 1], r[i : i + 1], s2[i : i + 1])
        assert torch.allclose(b_batch[i], b_one[0], atol=1e-6)
        assert torch.allclose(a_batch[i], a_one[0], atol=1e-6)
    # the streams differ, and so do the beliefs they lead to (the test is not vacuous)
    assert not torch.allclose(b_batch[0, -1], b_batch[1, -1], atol=1e-3)
    assert torch.allclose(b_batch[:, 0], b_batch[0:1, 0].expand(5, -1))  # same prior for every session


@torch.no_grad()
def test_subset_stepping_with_select_and_put_state_equals_per_session() -> None:
    """The server steps whichever sessions have a request: gather their rows, update, scatter back."""
    policy = moss_policy(seed=3)
    s, a, r, s2 = streams(4, 6, seed=7)
    state = policy.init_state(4)
    done = [0, 0, 0, 0]
    schedule = [[0, 2], [1], [0, 1, 3], [3, 2], [2], [0, 1, 2, 3]]
    for idx in schedule:
        sub = select_state(state, idx)
        ts = [done[i] for i in idx]
        rows = torch.tensor(idx)
        tt = torch.tensor(ts)
        sub = policy.update(sub, s[rows, tt], a[rows, tt], r[rows, tt], s2[rows, tt])
        put_state(state, idx, sub)
        for i in idx:
            done[i] += 1
    for i in range(4):
        k = done[i]
        b_one, _ = run_contract(
            policy, s[i : i + 1, :k], a[i : i + 1, :k], r[i : i + 1, :k], s2[i : i + 1, :k]
        )
        assert torch.allclose(policy.belief(select_state(state, [i]))[0], b_one[0, -1], atol=1e-6)


def test_select_put_cat_state() -> None:
    state = {"h": torch.arange(12.0).reshape(4, 3), "c": torch.arange(4.0).reshape(4, 1)}
    sub = select_state(state, [3, 1])
    assert sub["h"].tolist() == [[9, 10, 11], [3, 4, 5]] and sub["c"].tolist() == [[3], [1]]
    put_state(state, torch.tensor([0, 2]), {"h": -torch.ones(2, 3), "c": torch.tensor([[7.0], [8.0]])})
    assert state["h"][0].tolist() == [-1, -1, -1] and state["h"][2].tolist() == [-1, -1, -1]
    assert state["h"][1].tolist() == [3, 4, 5] and state["c"].flatten().tolist() == [7, 1, 8, 3]
    both = cat_states([sub, select_state(state, [0])])
    assert both["h"].shape == (3, 3) and both["c"].flatten().tolist() == [3, 1, 7]


def test_gru_sequence_equals_repeated_step() -> None:
    torch.manual_seed(0)
    enc = GRUEncoder(2, 2, 16, 24)
    s, a, r, s2 = streams(3, 9, seed=5)
    with torch.no_grad():
        for h0 in (None, torch.randn(3, 24)):
            seq = enc.sequence(s, a, r, s2, h0)
            h = torch.zeros(3, 24) if h0 is None else h0
            for t in range(9):
                h = enc.step(h, s[:, t], a[:, t], r[:, t], s2[:, t])
                assert torch.allclose(seq[:, t], h, atol=1e-6)


def test_relabel_equals_online_beliefs() -> None:
    """What MoSS trains the policy on (relabelled beliefs) is what the policy saw while acting."""
    cfg = parse_config(
        {
            "algorithm": "moss",
            "env": {"id": "PointRobot"},
            "encoder": {
                "latent_dim": 3,
                "n_components": 3,
                "embed_dim": 16,
                "hidden_dim": 24,
                "include_probs": True,
            },
            "sac": {"hidden": [32, 32]},
        }
    )
    policy = moss_policy()
    recs, buffer = point_robot_buffer(policy, 3, task_step=5, record_beliefs=True)
    learner = MoSS(policy, cfg)
    learner.relabel(buffer)
    for i, rec in enumerate(recs):
        L = len(rec.episode)
        assert rec.beliefs.shape == (L + 1, policy.belief_dim)
        assert torch.allclose(buffer.derived["belief"][i, : L + 1], torch.as_tensor(rec.beliefs), atol=1e-5)


# -- rollouts with episodes of different lengths ------------------------------------------------------------
class ShortEnv(gym.Env):
    """A tiny family-like env: task i drifts the point by (0.05 i, -0.02) per step and ends after 3 + 2i steps."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
        self.task_dim = 1

    def _info(self) -> dict[str, Any]:
        return {"task_id": f"Short/train/{self.i}", "task_vector": np.array([self.i], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.i, self.t = int(options["task_index"]), 0
        self.x = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.x.copy(), self._info()

    def step(self, action):
        self.t += 1
        self.x = (self.x + np.clip(action, -0.1, 0.1) + np.array([0.05 * self.i, -0.02])).astype(np.float32)
        return self.x.copy(), float(-np.abs(self.x).sum()), self.t >= 3 + 2 * self.i, False, self._info()


def test_rollout_batched_equals_single_with_early_termination() -> None:
    policy = moss_policy(seed=2)
    kw = [{"seed": 10 + i, "options": {"task_index": i}} for i in range(3)]
    batched = run_episodes(
        policy, [ShortEnv() for _ in range(3)], kw, deterministic=True, record_beliefs=True
    )
    for i in range(3):
        (one,) = run_episodes(policy, [ShortEnv()], [kw[i]], deterministic=True, record_beliefs=True)
        b = batched[i]
        assert len(b.episode) == 3 + 2 * i
        np.testing.assert_allclose(b.episode.action, one.episode.action, atol=1e-6)
        np.testing.assert_allclose(b.episode.reward, one.episode.reward, atol=1e-6)
        assert b.beliefs.shape == (len(b.episode) + 1, policy.belief_dim)
        # includes the belief after the last step of the envs that finished first
        np.testing.assert_allclose(b.beliefs, one.beliefs, atol=1e-6)
        assert b.task_ids == [f"Short/train/{i}"] * (3 + 2 * i)


def test_random_rollout_is_reproducible_from_reset_seeds() -> None:
    kw = [{"seed": 3, "options": {"task_index": 1}}, {"seed": 4, "options": {"task_index": 2}}]
    a = run_episodes(None, [envs.make("PointRobot") for _ in range(2)], kw)
    b = run_episodes(None, [envs.make("PointRobot") for _ in range(2)], kw)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.episode.action, y.episode.action)
        assert np.abs(x.episode.action).max() <= 0.1
    assert not np.array_equal(a[0].episode.action, a[1].episode.action)


# -- action scaling --------------------------------------------------------------------------------------
def test_action_scaling_round_trip() -> None:
    policy = MoSSPolicy(Spaces(2, 2, [-1.0, 0.0], [3.0, 0.5]), actor_hidden=(8,))
    u = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [0.5, -0.25]])
    env_units = policy.scale_action(u)
    expected = torch.tensor([[-1.0, 0.0], [3.0, 0.5], [1.0, 0.25], [2.0, 0.1875]])
    assert torch.allclose(env_units, expected, atol=1e-6)
    assert torch.allclose(policy.normalize_action(env_units), u, atol=1e-6)
    a = torch.tensor([[2.5, 0.4]])
    assert torch.allclose(policy.scale_action(policy.normalize_action(a)), a, atol=1e-6)
    # out-of-box actions clamp to the box edge
    assert policy.normalize_action(torch.tensor([[7.0, -3.0]])).tolist() == [[1.0, -1.0]]


def test_actions_are_in_env_units_and_deterministic_is_repeatable() -> None:
    policy = MoSSPolicy(Spaces(2, 2, [-1.0, 0.0], [3.0, 0.5]), actor_hidden=(8,))
    obs = torch.randn(64, 2) * 10
    b = policy.belief(policy.init_state(64))
    for det in (True, False):
        act = policy.act(obs, b, deterministic=det)
        assert act.shape == (64, 2)
        assert (
            (act[:, 0] >= -1).all()
            and (act[:, 0] <= 3).all()
            and (act[:, 1] >= 0).all()
            and (act[:, 1] <= 0.5).all()
        )
    assert torch.equal(policy.act(obs, b, True), policy.act(obs, b, True))
    assert not torch.equal(policy.act(obs, b, False), policy.act(obs, b, False))


def test_oracle_belief_is_the_task_vector() -> None:
    torch.manual_seed(0)
    policy = OraclePolicy(Spaces(2, 2, LOW, HIGH), task_dim=2, actor_hidden=(8,))
    state = policy.set_task_vector(policy.init_state(3), torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]))
    s, a, r, s2 = streams(3, 1)
    after = policy.update(state, s[:, 0], a[:, 0], r[:, 0], s2[:, 0])
    assert torch.equal(policy.belief(after), torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]))
    obs = torch.zeros(3, 2)
    acts = policy.act(obs, policy.belief(after))
    assert not torch.allclose(acts[0], acts[2])  # the action depends on the task vector


# -- the fused inference paths (what serving runs at batch 1) equal the module forwards ------------------
def test_fused_forwards_equal_the_module_forwards_in_values_and_gradients() -> None:
    from torch import nn

    from agents.parts.latent import belief_vector
    from agents.parts.nets import MLP
    from agents.parts.sac_nets import TanhGaussianActor

    torch.manual_seed(0)
    mlp = MLP(5, (16, 16), 3)
    x = torch.randn(7, 5, requires_grad=True)
    fused, plain = mlp(x), nn.Sequential.forward(mlp, x)  # nn.Sequential's own loop over the modules
    assert torch.equal(fused, plain)
    (g_fused,) = torch.autograd.grad(fused.square().sum(), x)
    (g_plain,) = torch.autograd.grad(plain.square().sum(), x)
    assert torch.equal(g_fused, g_plain)
    before = x.detach().clone()
    mlp(x)
    assert torch.equal(x.detach(), before)  # the in-place ReLUs never touch the caller's tensor

    actor = TanhGaussianActor(5, 2, (16,))
    mu, _ = actor(x)
    assert torch.equal(actor.act(x, deterministic=True), torch.tanh(mu))
    for k, probs in itertools.product((1, 3), (False, True)):
        # one component takes the 4-op belief path, several the general one
        policy = moss_policy(n_components=k, include_probs=probs)
        with torch.no_grad():
            policy.head.gauss.bias.add_(torch.randn_like(policy.head.gauss.bias) * 4)  # hit the clamp
        h = torch.randn(9, 24, requires_grad=True)
        got, want = policy.belief({"h": h}), belief_vector(policy.head(h), probs)
        assert torch.equal(got, want)
        w = torch.randn_like(want)
        assert torch.allclose(*(torch.autograd.grad((b * w).sum(), h)[0] for b in (got, want)), atol=1e-6)


def test_action_maps_follow_the_bounds_through_load_to_and_stay_out_of_the_state_dict() -> None:
    src = MoSSPolicy(Spaces(2, 2, [-1.0, 0.0], [3.0, 0.5]), actor_hidden=(8,))
    dst = MoSSPolicy(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), actor_hidden=(8,))
    assert not any(k.startswith(("_norm", "_scale")) for k in src.state_dict())
    dst.load_state_dict(src.state_dict())
    a = torch.tensor([[2.5, 0.4], [-1.0, 0.5]])
    assert torch.equal(dst.normalize_action(a), src.normalize_action(a))
    # the affine forms equal the textbook ones to float32 rounding
    low, high = src.action_low, src.action_high
    assert torch.allclose(src.normalize_action(a), 2 * (a - low) / (high - low) - 1, atol=1e-6)
    u = torch.tensor([[0.3, -0.7]])
    assert torch.allclose(src.scale_action(u), low + (u + 1) * 0.5 * (high - low), atol=1e-6)
    src.double()
    assert src.scale_action(u.double()).dtype == torch.float64
