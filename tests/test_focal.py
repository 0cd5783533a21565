"""FOCAL / FOCAL++: losses against hand-computed values, the attention encoder, BRAC's divergence, datasets,
the online context statistics, a short offline run, and serving."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from serving_helpers import make_checkpoint, quiet_logs, running_server  # noqa: F401 (autouse fixture)
from typer.testing import CliRunner

from agents.algorithms.focal import distance_metric_loss
from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig, parse_config
from agents.evaluation import context_episodes, evaluation_episodes
from agents.parts.brac import BehaviourRegulariser
from agents.parts.buffer import Episode, EpisodeBuffer
from agents.parts.context_encoders import ATTENTIONS, ContextEncoder, pooled
from agents.parts.contrastive import info_nce
from agents.policies import POLICIES, FOCALPolicy, Spaces
from agents.training.datasets import DatasetError, OfflineDataset, collect_dataset
from agents.training.trainer import Trainer
from runtime.cli import app
from runtime.client import Client, drive, env_settings

SPACES = {"obs_dim": 2, "action_dim": 2, "action_low": [-0.1, -0.1], "action_high": [0.1, 0.1]}


# -- losses -----------------------------------------------------------------------------------------------------
def test_matrix_form_contrast_matches_a_hand_computed_example() -> None:
    zq = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    zk = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # logits = zq zk^T / 0.5 = [[2, 6], [0, 2]]; target = identity
    row0 = math.log(1 + math.exp(4))  # -log(e^2 / (e^2 + e^6))
    row1 = math.log(1 + math.exp(-2))  # -log(e^2 / (e^0 + e^2))
    labels = torch.tensor([3, 7])
    got = info_nce(zq, zk, "dot", labels, labels, temperature=0.5)
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # a repeated task in the meta-batch is a positive, not a negative
    same = torch.tensor([3, 3])
    assert info_nce(zq, zk, "dot", same, same, 0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_distance_metric_loss_matches_a_hand_computed_example() -> None:
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # m = mean over the 2 dims of the squared difference: same task 0.5 (pairs 01, 10); different 0.5 (02, 20)
    # and 1 (12, 21). FOCAL: positives sqrt(m + 1e-3), negatives 1 / (m + 0.1)
    expect = math.sqrt(0.5 + 1e-3) + (2 / (0.5 + 0.1) + 2 / (1 + 0.1)) / 4
    assert distance_metric_loss(z, labels).item() == pytest.approx(expect, rel=1e-6)
    # one task only: no negatives; all tasks distinct: no positives
    assert distance_metric_loss(z[:2], labels[:2]).item() == pytest.approx(math.sqrt(0.5 + 1e-3), rel=1e-6)
    assert distance_metric_loss(z, torch.tensor([0, 1, 2])).item() == pytest.approx((2 / 0.6 + 2 / 0.6 + 2 / 1.1) / 6, rel=1e-6)


def test_brac_dual_recovers_a_known_kl_divergence() -> None:
    """KL(N(0.5, 1) || N(0, 1)) = 0.125: the trained dual's estimate lands on it."""
    torch.manual_seed(0)
    reg = BehaviourRegulariser(in_dim=1, action_dim=1, strength=2.0, lr=3e-3, hidden=(32, 32))
    x = torch.zeros(512, 1)
    for _ in range(400):
        reg.update(x, 0.5 + torch.randn(512, 1), torch.randn(512, 1))
    est = np.mean([reg.dual.estimate(x, 0.5 + torch.randn(512, 1), torch.randn(512, 1)).item() for _ in range(40)])
    assert est == pytest.approx(0.125, abs=0.03)
    # identical distributions: no divergence
    reg0 = BehaviourRegulariser(1, 1, 1.0, lr=3e-3, hidden=(32, 32))
    for _ in range(200):
        reg0.update(x, torch.randn(512, 1), torch.randn(512, 1))
    assert abs(np.mean([reg0.dual.estimate(x, torch.randn(512, 1), torch.randn(512, 1)).item() for _ in range(40)])) < 0.03
    # the actor's penalty is strength x g at its own actions, with gradient into those actions
    a = torch.zeros(4, 1, requires_grad=True)
    reg.penalty(torch.zeros(4, 1), a).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


# -- the attention encoder ------------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_attention_encoder_shapes_and_weights(attention: str) -> None:
    torch.manual_seed(0)
    enc = ContextEncoder(7, 5, (32, 32), attention, width=16, heads=2, reduction=4)  # type: ignore[arg-type]
    x = torch.randn(3, 10, 7)
    e, score = enc(x)
    assert e.shape == (3, 10, 5) and score.shape == (3, 10, 1)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2] = False
    z, w = pooled(e, score, mask)
    assert z.shape == (3, 5) and w.shape == (3, 10)
    assert torch.allclose(w[:2].sum(1), torch.ones(2)) and (w[1, 6:] == 0).all()
    assert torch.equal(z[2], torch.zeros(5))  # an empty context
    # at initialisation the batch scores are zero: the weighted mean starts as FOCAL's plain mean
    assert torch.allclose(w[0], torch.full((10,), 0.1))
    if enc.uses_scores:
        torch.nn.init.normal_(enc.score.net[-1].weight)
        _, w2 = pooled(*enc(x), mask)
        assert not torch.allclose(w2[0], w[0]) and torch.allclose(w2[:2].sum(1), torch.ones(2))
    # permutation invariance over the batch
    perm = torch.randperm(10)
    z_perm, _ = pooled(*enc(x[:, perm]))
    assert torch.allclose(z_perm, pooled(*enc(x))[0], atol=1e-5)


@pytest.mark.parametrize("attention", ["none", "series", "parallel"])
def test_online_statistics_equal_the_whole_context(attention: str) -> None:
    torch.manual_seed(1)
    pol = FOCALPolicy(Spaces(**SPACES), latent_dim=4, encoder_hidden=(32, 32), attention=attention, attention_width=16, attention_heads=2, reduction=4)
    if pol.encoder.uses_scores:
        torch.nn.init.normal_(pol.encoder.score.net[-1].weight, std=2.0)  # scores that differ a lot
    n, L = 3, 12
    s, a, s2 = torch.randn(n, L, 2), 0.1 * torch.rand(n, L, 2) - 0.05, torch.randn(n, L, 2)
    r = torch.randn(n, L)
    with torch.no_grad():
        state = pol.init_state(n)
        assert torch.equal(pol.belief(state), torch.zeros(n, 4))
        for t in range(L):
            state = pol.update(state, s[:, t], a[:, t], r[:, t], s2[:, t])
        whole = pol.absorb(pol.init_state(n), s, a, r, s2)
        z_batch, _ = pooled(*pol.embed(s, a, r, s2))
    assert torch.allclose(pol.belief(state), pol.belief(whole), atol=1e-5)
    assert torch.allclose(pol.belief(state), z_batch, atol=1e-5)


# -- datasets ---------------------------------------------------------------------------------------------------
def tiny_dataset(split: str = "train", env_id: str = "PointRobotWind") -> OfflineDataset:
    env = EnvConfig(id=env_id)
    return collect_dataset(None, env, split, {"random": (1.0, 2), "half": (0.5, 1)}, seed=3)


def test_dataset_round_trip_and_damaged_files(tmp_path: Path) -> None:
    ds = tiny_dataset()
    assert len(ds) == 40 * 3 and ds.meta["levels"] == ["random", "half"] and ds.meta["n_tasks"] == 40
    assert sorted(np.unique(ds.task).tolist()) == list(range(40))
    path = ds.save(tmp_path / "train.npz")
    back = OfflineDataset.load(path)
    assert back.meta == json.loads(json.dumps(ds.meta))
    for k in ("obs", "action", "reward", "next_obs", "length", "task", "task_vector", "level"):
        np.testing.assert_array_equal(getattr(back, k), getattr(ds, k))
    assert len(back.select(["half"])) == 40
    # the dataset's buffer (one batched fill) holds what adding its episodes one by one would
    buf = back.to_buffer()
    ref = EpisodeBuffer(len(back), 20, 2, 2, 2)
    for i in range(len(back)):
        L = int(back.length[i])
        ref.add(Episode(back.obs[i, :L], back.action[i, :L], back.reward[i, :L], back.next_obs[i, :L], back.terminated[i, :L] > 0, np.full(L, back.task[i]), np.repeat(back.task_vector[i : i + 1], L, 0)))
    for k in ("obs", "next_obs", "action", "reward", "done", "mask", "task", "task_vector", "length"):
        assert torch.equal(getattr(buf, k), getattr(ref, k)), k
    assert (buf.n_added, buf.steps_added) == (ref.n_added, ref.steps_added)
    with pytest.raises(DatasetError, match="levels"):
        back.select(["expert"])
    # the same seed collects the same data
    np.testing.assert_array_equal(tiny_dataset().action, ds.action)
    # damaged: truncated
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="damaged"):
        OfflineDataset.load(tmp_path / "cut.npz")
    # not a dataset / missing
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="damaged"):
        OfflineDataset.load(tmp_path / "junk.npz")
    with pytest.raises(DatasetError, match="not found"):
        OfflineDataset.load(tmp_path / "nope.npz")
    # a newer version, a bad task index, a wrong shape
    for change, match in [
        (lambda d: d.meta.update(version=2), "version 2"),
        (lambda d: d.task.__setitem__(0, 99), "task indices"),
        (lambda d: setattr(d, "reward", d.reward[:, :5]), "reward has shape"),
    ]:
        bad = tiny_dataset()
        change(bad)
        bad.save(tmp_path / "bad.npz")
        with pytest.raises(DatasetError, match=match):
            OfflineDataset.load(tmp_path / "bad.npz")


def test_collect_cli_writes_the_splits_and_refuses_bad_configs(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"env: {{id: PointRobotWind}}\nout: {tmp_path / 'ds'}\nsplits: [train, test]\n"
        "levels:\n  random: {noise: 1.0, episodes_per_task: 1}\n"
    )
    res = CliRunner().invoke(app, ["collect", "--config", str(cfg), "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["splits"]["train"]["episodes"] == 40 and out["splits"]["test"]["episodes"] == 10
    assert OfflineDataset.load(tmp_path / "ds" / "test.npz").meta["split"] == "test"
    cfg.write_text("env: {id: PointRobotWind}\nout: x\nlevels: {random: {noise: 2.0, episodes_per_task: 1}}\n")
    res = CliRunner().invoke(app, ["collect", "--config", str(cfg)])
    assert res.exit_code == 2 and "levels.random.noise" in res.output
    ckpt = make_checkpoint(tmp_path / "moss.pt")  # a PointRobot checkpoint cannot collect on PointRobotWind
    cfg.write_text(f"env: {{id: PointRobotWind}}\npolicy: {ckpt}\nout: x\nlevels: {{r: {{noise: 1.0, episodes_per_task: 1}}}}\n")
    res = CliRunner().invoke(app, ["collect", "--config", str(cfg)])
    assert res.exit_code == 2 and "trained on 'PointRobot'" in res.output
    # --set changes a key of the config (here the env's sparse reward) and names a bad one
    cfg.write_text(f"env: {{id: SparsePointRobot, kwargs: {{goal_radius: 0.9}}}}\nout: {tmp_path / 'sp'}\nsplits: [test]\nlevels: {{random: {{noise: 1.0, episodes_per_task: 1}}}}\n")
    for sparse in ("focal", "pearl"):
        res = CliRunner().invoke(app, ["collect", "-c", str(cfg), "--set", f"env.kwargs.sparse={sparse}", "--out", str(tmp_path / sparse), "--no-progress"])
        assert res.exit_code == 0, res.output
    focal, pearl = (OfflineDataset.load(tmp_path / s / "test.npz") for s in ("focal", "pearl"))
    np.testing.assert_array_equal(focal.next_obs, pearl.next_obs)  # the same episodes
    inside = focal.reward > 0
    assert inside.any() and (pearl.reward[~inside] == 0).all()
    # FOCAL's 1 - d/R and PEARL's 1 - d at the same distance d (R = 0.9, so that random steps reach it)
    np.testing.assert_allclose(pearl.reward[inside], 1 - 0.9 * (1 - focal.reward[inside]), atol=1e-6)
    res = CliRunner().invoke(app, ["collect", "-c", str(cfg), "--set", "env.kwargs.sparse=wrong", "--out", str(tmp_path / "w")])
    assert res.exit_code == 2 and "wrong" in res.output


def test_subsample_keeps_every_task_and_the_level_mix(tmp_path: Path) -> None:
    ds = tiny_dataset("test")  # 10 tasks x (2 random + 1 half) episodes
    small = ds.subsample(2, seed=1)
    assert len(small) == 20 and np.bincount(small.task).tolist() == [2] * 10
    # each task's two episodes come from its two levels, and are its own episodes unchanged
    assert all(sorted(small.level[small.task == t].tolist()) == [0, 1] for t in range(10))
    for i in range(len(small)):
        j = int(np.flatnonzero((ds.obs == small.obs[i]).all(axis=(1, 2)))[0])
        assert ds.task[j] == small.task[i] and (ds.reward[j] == small.reward[i]).all()
    assert len(ds.subsample(9)) == len(ds)  # a task with fewer episodes keeps all of them
    np.testing.assert_array_equal(ds.subsample(2, seed=1).obs, small.obs)
    with pytest.raises(DatasetError, match="at least 1"):
        ds.subsample(0)
    ds.save(tmp_path / "test.npz")
    res = CliRunner().invoke(app, ["subsample", str(tmp_path / "test.npz"), "--out", str(tmp_path / "small.npz"), "--episodes-per-task", "1"])
    assert res.exit_code == 0 and "10 episodes, 200 transitions, 10 tasks" in res.output, res.output
    assert OfflineDataset.load(tmp_path / "small.npz").meta["subsample"]["of_episodes"] == 30
    res = CliRunner().invoke(app, ["subsample", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "x.npz")])
    assert res.exit_code == 2 and "not found" in res.output


# -- a short offline run ------------------------------------------------------------------------------------------
def offline_config(tmp_path: Path, algorithm: str, **focal) -> dict:
    train, test = tiny_dataset("train", "PointRobot"), tiny_dataset("test", "PointRobot")
    train.save(tmp_path / "train.npz")
    test.save(tmp_path / "test.npz")
    return {
        "algorithm": algorithm,
        "seed": 0,
        "env": {"id": "PointRobot"},
        "offline": {"dataset": str(tmp_path / "train.npz"), "context_dataset": str(tmp_path / "test.npz"), "context_size": 16},
        "focal": {"encoder_hidden": [32, 32], "meta_batch": 8, "context_size": 16, "attention_width": 16, "attention_heads": 2, **focal},
        "sac": {"hidden": [32, 32], "batch_size": 64},
        "train": {"total_steps": 200, "policy_updates": 20, "eval_every": 200, "eval_episodes": 4, "checkpoint_every": 100, "device": "cpu"},
    }


@pytest.mark.parametrize(
    "algorithm,focal,loss",
    [("focal", {}, "dml"), ("focalpp", {"attention": "series", "metric_weight": 0.0, "contrastive_weight": 1.0}, "contrastive")],
)
def test_short_offline_run_lowers_the_encoder_loss(tmp_path: Path, algorithm: str, focal: dict, loss: str) -> None:
    cfg = parse_config(offline_config(tmp_path, algorithm, **focal))
    trainer = Trainer(cfg, tmp_path / "run")
    out = trainer.train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert out["step"] == 200 and len(epochs) == 10 and not (tmp_path / "run" / "buffer.pt").exists()
    assert np.mean([r[loss] for r in epochs[-3:]]) < 0.8 * epochs[0][loss]
    assert "context_return" in out["last_eval"] and np.isfinite(out["last_eval"]["mean_return"])
    # resumable: the saved step continues
    again = Trainer(parse_config({**offline_config(tmp_path, algorithm, **focal), "train": {**cfg.train.model_dump(), "total_steps": 240}}), tmp_path / "run", resume=True)
    assert again.step == 200 and again.train()["step"] == 240
    # a dataset of another env is refused
    bad = offline_config(tmp_path, algorithm, **focal)
    tiny_dataset("train", "PointRobotWind").save(tmp_path / "wind.npz")
    bad["offline"]["dataset"] = str(tmp_path / "wind.npz")
    with pytest.raises(DatasetError, match="PointRobotWind"):
        Trainer(parse_config(bad), tmp_path / "run2")


def test_offline_algorithms_need_a_dataset() -> None:
    from agents.config import ConfigError

    with pytest.raises(ConfigError, match="offline"):
        parse_config({"algorithm": "focal", "env": {"id": "PointRobot"}})


def test_context_evaluation_acts_on_the_tasks_own_data(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pol = FOCALPolicy(Spaces(**SPACES), latent_dim=3, encoder_hidden=(16,), actor_hidden=(16,))
    test = tiny_dataset("test", "PointRobot")
    env = EnvConfig(id="PointRobot")
    recs = context_episodes(pol, env, test, "test", episodes=4, context_size=8)
    again = context_episodes(pol, env, test, "test", episodes=4, context_size=8)
    assert [r.ret for r in recs] == [r.ret for r in again] and len(recs) == 4
    with pytest.raises(ValueError, match="split"):
        context_episodes(pol, env, tiny_dataset("train", "PointRobot"), "test", 2, 8)


# -- serving ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["focal", "focalpp"])
def test_checkpoint_is_served(algorithm: str, tmp_path: Path) -> None:
    stationary = {"nonstationary": None, "max_episode_steps": 20}
    ckpt = make_checkpoint(tmp_path / f"{algorithm}.pt", algorithm=algorithm, seed=4, env=stationary)
    policy = build_policy(load_checkpoint(ckpt))
    assert type(policy) is POLICIES[algorithm] and policy.belief_dim == 3
    recs = evaluation_episodes(policy, EnvConfig(id="PointRobot", **stationary), "test", 2, 10_000, record_beliefs=True)
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        hello = c.hello()
        assert hello["algorithm"] == algorithm and hello["belief_dim"] == 3
        res = drive(c, env_settings(hello), "test", 2, 10_000)
    for r, e in zip(res, recs, strict=True):  # the served path is the eval path
        np.testing.assert_allclose(np.array(r.actions), e.episode.action, atol=1e-5)
        np.testing.assert_allclose(np.array(r.beliefs), e.beliefs, atol=1e-5)
    assert not np.allclose(res[0].beliefs[1], res[0].beliefs[-1])


def test_train_set_overrides_a_config_key_and_refuses_bad_ones(tmp_path: Path) -> None:
    cfg = offline_config(tmp_path, "focalpp", attention="none", metric_weight=0.0, contrastive_weight=1.0)
    cfg["train"].update(total_steps=20, eval_every=20, checkpoint_every=20)
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    run = tmp_path / "run"
    args = ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(run), "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--set", "focal.attention=batch", "--set", "train.total_steps=40"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(run / "policy.pt").config["focal"]["attention"] == "batch"
    assert json.loads(res.stdout.strip().splitlines()[-1])["step"] == 40
    for bad, msg in [("focal.attention", "KEY=VALUE"), ("focal.attention=mystery", "focal.attention"), ("focal.nope=1", "focal.nope"), ("env.kwargs.bogus=1", "unknown override 'bogus'")]:
        res = CliRunner().invoke(app, [*args[:-3], "--out", str(tmp_path / "x"), "--set", bad])
        assert res.exit_code == 2 and msg in res.output, res.output


def test_eval_cli_context_protocol(tmp_path: Path) -> None:
    stationary = {"nonstationary": None, "max_episode_steps": 20}
    ckpt = make_checkpoint(tmp_path / "focal.pt", algorithm="focal", seed=2, env=stationary)
    tiny_dataset("test", "PointRobot").save(tmp_path / "test.npz")
    args = ["eval", "--checkpoint", str(ckpt), "--episodes", "4", "--json"]
    res = CliRunner().invoke(app, [*args, "--protocol", "context", "--context-dataset", str(tmp_path / "test.npz"), "--context-size", "8"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    policy = build_policy(load_checkpoint(ckpt))
    want = context_episodes(policy, EnvConfig(id="PointRobot", **stationary), OfflineDataset.load(tmp_path / "test.npz"), "test", 4, 8)
    assert out["protocol"] == "context" and out["mean_return"] == pytest.approx(np.mean([r.ret for r in want]))
    res = CliRunner().invoke(app, [*args, "--protocol", "context"])
    assert res.exit_code == 2 and "--context-dataset" in res.output
    moss = make_checkpoint(tmp_path / "moss.pt", algorithm="moss", env=stationary)
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(moss), "--protocol", "context", "--context-dataset", str(tmp_path / "test.npz")])
    assert res.exit_code == 2 and "context posterior" in res.output
