"""Training runs on PointRobot: resume after an interruption, reproducibility, learning, and `runtime eval`.

Every run here is tiny (small nets, a few hundred to two thousand env steps) and seeded; the trainer sets
one torch thread, so the numbers are reproducible bit for bit on one machine.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
import torch
from typer.testing import CliRunner

from agents.checkpoint import build_readout, load_checkpoint
from agents.config import RunConfig, parse_config
from agents.evaluation import evaluation_episodes, summarize
from agents.training.trainer import Trainer
from runtime.cli import app

torch.set_num_threads(1)

EPISODE = 20  # PointRobot's horizon
PER_EPOCH = 4 * EPISODE  # env steps per epoch with episodes_per_epoch = 4 (and in the 4 initial episodes)
TOTAL = 5 * PER_EPOCH  # the reference run: initial random episodes + 4 epochs


def after(epochs: int) -> int:
    """The env step count after `epochs` epochs."""
    return (epochs + 1) * PER_EPOCH


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()  # the CLI points structlog at CliRunner's stderr


def tiny(algorithm: str = "moss", seed: int = 0, **overrides: Any) -> RunConfig:
    """A few-second config; `overrides` are `section__key=value` (e.g. train__total_steps=320)."""
    raw: dict[str, Any] = {
        "algorithm": algorithm,
        "seed": seed,
        "env": {"id": "PointRobot"},
        "encoder": {
            "latent_dim": 2,
            "embed_dim": 8,
            "hidden_dim": 8,
            "decoder_hidden": [16],
            "batch_size": 8,
            "time_steps": 8,
            "contrastive": True,
        },
        "sac": {"hidden": [16, 16], "batch_size": 32, "gamma": 0.9, "alpha": 0.05},
        "train": {
            "total_steps": TOTAL,
            "episodes_per_epoch": 4,
            "initial_episodes": 4,
            "encoder_updates": 3,
            "policy_updates": 5,
            "buffer_episodes": 100,
            "eval_every": PER_EPOCH,
            "eval_episodes": 4,
            "checkpoint_every": 2 * PER_EPOCH,
            "device": "cpu",  # the CPU tiers train on the CPU on any machine (tests/test_cuda.py: on CUDA)
        },
    }
    if algorithm == "oracle":
        del raw["encoder"]
    for key, value in overrides.items():
        section, name = key.split("__")
        raw[section][name] = value
    return parse_config(raw)


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Everything trained: the served policy, and the learner's critics/decoders."""
    sd = {f"policy.{k}": v for k, v in trainer.policy.state_dict().items()}
    learner = trainer.learner
    sd.update({f"critic.{k}": v for k, v in learner.sac.critic.state_dict().items()})
    sd.update({f"critic_target.{k}": v for k, v in learner.sac.critic_target.state_dict().items()})
    if hasattr(learner, "state_decoder"):
        sd.update({f"state_decoder.{k}": v for k, v in learner.state_decoder.state_dict().items()})
        sd.update({f"reward_decoder.{k}": v for k, v in learner.reward_decoder.state_dict().items()})
    return {k: v.detach().clone() for k, v in sd.items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different}"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The uninterrupted tiny MoSS run: 4 epochs, checkpoints after epochs 1 and 3 and at the end."""
    out = tmp_path_factory.mktemp("reference")
    trainer = Trainer(tiny(), out)
    trainer.train()
    assert trainer.step == TOTAL and trainer.epoch == 4
    return out, weights(trainer)


# -- (1) resume -------------------------------------------------------------------------------------------
class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_where_it_was_saved(tmp_path: Path, reference_run, monkeypatch) -> None:
    ref_out, ref_weights = reference_run
    cfg = tiny()
    trainer = Trainer(cfg, tmp_path)

    # remember exactly what each save wrote
    saved: list[dict[str, Any]] = []
    original_save = trainer.save

    def save_and_remember() -> None:
        original_save()
        saved.append(
            {
                "step": trainer.step,
                "epoch": trainer.epoch,
                "next": (trainer.next_eval, trainer.next_ckpt),
                "history": json.loads(json.dumps(trainer.history)),
                "buffer": {
                    k: v.clone() if torch.is_tensor(v) else v for k, v in trainer.buffer.state_dict().items()
                },
                "weights": weights(trainer),
            }
        )

    monkeypatch.setattr(trainer, "save", save_and_remember)
    # kill the run in the middle of epoch 3's updates: saved after epoch 1, epoch 2 logged after that
    calls = {"n": 0}
    original_epoch = trainer.learner.train_epoch

    def epoch_then_crash(buffer, rng):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt
        return original_epoch(buffer, rng)

    monkeypatch.setattr(trainer.learner, "train_epoch", epoch_then_crash)
    with pytest.raises(Interrupt):
        trainer.train()
    assert [s["step"] for s in saved] == [after(1)]
    last = saved[-1]
    assert len(rows(tmp_path)) > len(last["history"])  # a row written after the checkpoint

    resumed = Trainer(cfg, tmp_path, resume=True)
    assert resumed.step == last["step"] == after(1) and resumed.epoch == last["epoch"] == 1
    assert (resumed.next_eval, resumed.next_ckpt) == last["next"] and resumed.next_ckpt == after(3)
    assert resumed.history == last["history"]
    assert rows(tmp_path) == last["history"]  # metrics.jsonl cut back to what the checkpoint knew
    buf = resumed.buffer.state_dict()
    assert buf.keys() == last["buffer"].keys()
    for k, v in last["buffer"].items():
        assert torch.equal(buf[k], v) if torch.is_tensor(v) else buf[k] == v, k
    assert buf["n_added"] == 4 + 4  # initial episodes + one epoch
    assert_same_weights(weights(resumed), last["weights"])

    resumed_saves: list[int] = []
    resumed_save = resumed.save
    monkeypatch.setattr(resumed, "save", lambda: (resumed_saves.append(resumed.step), resumed_save()))
    resumed.train()
    assert resumed.step == TOTAL
    assert resumed_saves == [after(3), TOTAL]  # the checkpoint schedule of the uninterrupted run
    assert_same_weights(weights(resumed), ref_weights)
    assert rows(tmp_path) == rows(ref_out)


def test_finished_run_extended_by_resume_equals_longer_run(tmp_path: Path, reference_run) -> None:
    ref_out, ref_weights = reference_run
    first = Trainer(tiny(train__total_steps=after(2)), tmp_path)
    first.train()
    assert first.step == after(2)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck.training["step"] == after(2) and ck.stats["env_steps"] == after(2)

    # `runtime train --resume --total-steps` does this: the saved config with a larger budget
    second = Trainer(tiny(train__total_steps=TOTAL), tmp_path, resume=True)
    assert second.step == after(2) and second.history == first.history
    second.train()
    assert_same_weights(weights(second), ref_weights)
    assert rows(tmp_path) == rows(ref_out)


def test_resume_without_checkpoint_fails_clearly(tmp_path: Path) -> None:
    from agents.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not found"):
        Trainer(tiny(), tmp_path, resume=True)


def test_contrastive_pairs_share_a_task(reference_run, tmp_path: Path) -> None:
    """MoSS's InfoNCE positives (window rows 2i, 2i+1) come from one training task; pairs differ in task."""
    shutil.copytree(reference_run[0], tmp_path / "run")
    trainer = Trainer(tiny(), tmp_path / "run", resume=True)
    learner, buffer = trainer.learner, trainer.buffer
    learner.relabel(buffer)
    e, t0, paired = learner._windows(buffer, np.random.default_rng(0))
    assert paired and len(e) == 8  # encoder batch_size 8 -> 4 pairs
    first_task = buffer.task[e, 0]
    assert torch.equal(first_task[0::2], first_task[1::2])
    assert len(set(first_task[0::2].tolist())) == 4
    loss, metrics = learner.encoder_loss(buffer, np.random.default_rng(0))
    assert loss.requires_grad and np.isfinite(metrics["contrastive"]) and metrics["contrastive"] > 0


def test_encoder_batch_is_full_with_few_training_tasks(reference_run, tmp_path: Path) -> None:
    """With fewer training tasks than pairs (CheetahDir has two), tasks repeat and the batch stays full."""
    shutil.copytree(reference_run[0], tmp_path / "run")
    trainer = Trainer(tiny(), tmp_path / "run", resume=True)
    learner, buffer = trainer.learner, trainer.buffer
    learner.relabel(buffer)
    n_tasks = len(buffer.episodes_by_task())
    learner.cfg.encoder.batch_size = 2 * n_tasks + 6
    e, _, paired = learner._windows(buffer, np.random.default_rng(0))
    first_task = buffer.task[e, 0]
    assert paired and len(e) == 2 * n_tasks + 6
    assert torch.equal(first_task[0::2], first_task[1::2])


# -- (2) reproducibility ----------------------------------------------------------------------------------
def test_same_seed_same_numbers(tmp_path: Path, reference_run) -> None:
    ref_out, ref_weights = reference_run
    again = Trainer(tiny(), tmp_path / "again")
    again.train()
    ref_rows = rows(ref_out)
    assert rows(tmp_path / "again") == ref_rows
    assert_same_weights(weights(again), ref_weights)
    # the rows hold real numbers from every part of the update (not a vacuous comparison)
    epoch_rows = [r for r in ref_rows if r["kind"] == "epoch"]
    assert len(epoch_rows) == 4 and len([r for r in ref_rows if r["kind"] == "eval"]) == 4
    for key in ("encoder_loss", "rec", "kl_z", "contrastive", "critic_loss", "actor_loss"):
        assert all(np.isfinite(r[key]) for r in epoch_rows), key

    other = Trainer(tiny(seed=1), tmp_path / "other")
    other.train()
    assert rows(tmp_path / "other") != ref_rows


# -- (3), (4) learning ------------------------------------------------------------------------------------
def random_return(cfg: RunConfig) -> float:
    records = evaluation_episodes(None, cfg.env, "test", cfg.train.eval_episodes, seed=10_000)
    return summarize(records)["mean_return"]


def test_random_baseline_is_reproducible() -> None:
    cfg = tiny()
    a = evaluation_episodes(None, cfg.env, "test", 6)
    b = evaluation_episodes(None, cfg.env, "test", 6)
    assert [r.ret for r in a] == [r.ret for r in b]


def test_moss_learns_on_point_robot(tmp_path: Path) -> None:
    # stationary tasks, horizon 20. The contrastive term is off here: with 8 pairs per batch it is a noisy
    # estimate that hides the trend of the ELBO part (it is exercised by the tiny runs above).
    cfg = tiny(
        "moss",
        encoder__embed_dim=32,
        encoder__hidden_dim=32,
        encoder__decoder_hidden=[64],
        encoder__batch_size=16,
        encoder__time_steps=20,
        encoder__lr=1e-3,
        encoder__alpha_z=0.1,
        encoder__alpha_y=0.1,
        encoder__contrastive=False,
        sac__hidden=[32, 32],
        sac__batch_size=64,
        sac__gamma=0.5,
        sac__lr=1e-3,
        train__total_steps=2000,
        train__episodes_per_epoch=10,
        train__initial_episodes=10,
        train__encoder_updates=20,
        train__policy_updates=100,
        train__eval_every=10**6,
        train__checkpoint_every=10**6,
        train__eval_episodes=20,
    )
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    loss = [r["encoder_loss"] for r in trainer.history if r["kind"] == "epoch"]
    assert len(loss) >= 6
    assert np.mean(loss[-2:]) < 0.5 * np.mean(loss[:2]), loss
    final = trainer.last_eval()["mean_return"]
    rnd = random_return(cfg)
    assert final > rnd + 1.0, (final, rnd)


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory) -> tuple[Path, Trainer]:
    out = tmp_path_factory.mktemp("oracle")
    cfg = tiny(
        "oracle",
        sac__hidden=[32, 32],
        sac__batch_size=64,
        sac__lr=1e-3,
        train__total_steps=1600,
        train__episodes_per_epoch=10,
        train__initial_episodes=10,
        train__policy_updates=100,
        train__eval_every=10**6,
        train__checkpoint_every=10**6,
        train__eval_episodes=20,
    )
    trainer = Trainer(cfg, out)
    trainer.train()
    return out, trainer


def test_oracle_beats_random(oracle_run) -> None:
    _, trainer = oracle_run
    final = trainer.last_eval()["mean_return"]
    rnd = random_return(trainer.cfg)
    assert final > rnd + 5.0, (final, rnd)


# -- (5) runtime eval ------------------------------------------------------------------------------------
def test_cli_eval_json(oracle_run) -> None:
    out, trainer = oracle_run
    result = CliRunner().invoke(
        app, ["eval", "--checkpoint", str(out / "policy.pt"), "--episodes", "20", "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert report["algorithm"] == "oracle" and report["env"] == "PointRobot" and report["episodes"] == 20
    assert isinstance(report["std_return"], float) and report["std_return"] > 0
    test_ids = {t.id for t in trainer.envs[0].unwrapped.tasks("test")}
    assert set(report["per_task_return"]) == test_ids  # 20 episodes cover the 20 test tasks once each
    assert np.mean(list(report["per_task_return"].values())) == pytest.approx(report["mean_return"])
    # the same checkpoint, evaluated the way the trainer evaluates it, gives the same number
    assert report["mean_return"] == pytest.approx(trainer.last_eval()["mean_return"], abs=1e-9)


def test_cli_eval_bad_split_and_missing_checkpoint(oracle_run, tmp_path: Path) -> None:
    out, _ = oracle_run
    r = CliRunner().invoke(app, ["eval", "--checkpoint", str(out / "policy.pt"), "--split", "validation"])
    assert r.exit_code == 2 and "--split" in r.stderr
    r = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "none.pt"), "--json"])
    assert r.exit_code == 2 and "not found" in r.stderr and r.stdout == ""


class _EdgeRng(np.random.Generator):
    """A generator whose `random` returns the largest float below 1: samples land on range ends."""

    def __init__(self) -> None:
        super().__init__(np.random.PCG64(0))

    def random(self, size=None, dtype=np.float64, out=None):  # type: ignore[override]
        return np.full(size, np.nextafter(1.0, 0.0))


def test_encoder_loss_sampling_stays_inside_episodes(reference_run, tmp_path: Path) -> None:
    """Segment-decoding and contrastive step indices drawn at the top of [0, 1) stay inside the episode."""
    shutil.copytree(reference_run[0], tmp_path / "run")
    trainer = Trainer(tiny(), tmp_path / "run", resume=True)
    trainer.learner.relabel(trainer.buffer)
    loss, metrics = trainer.learner.encoder_loss(trainer.buffer, _EdgeRng())
    assert np.isfinite(loss.item()) and np.isfinite(metrics["rec"])


def test_checkpoints_carry_a_task_readout(reference_run) -> None:
    """Every checkpoint of an inferring agent holds a readout fitted on its training tasks; it reads the
    task in task units (2-d goals here) and serves from the policy file alone."""
    out, _ = reference_run
    for name in ("checkpoint.pt", "policy.pt"):
        ck = load_checkpoint(out / name)
        q = ck.readout["quality"]
        assert ck.readout["spec"]["out_dim"] == 2 and q["held_out"] >= 1 and len(q["r2_per_dim"]) == 2
    readout = build_readout(load_checkpoint(out / "policy.pt"))
    assert readout(torch.zeros(3, readout.belief_dim)).shape == (3, 2)
    stats = load_checkpoint(out / "policy.pt").stats
    assert stats["timing_s"]["readout"] > 0


def test_the_oracle_has_no_readout(tmp_path: Path) -> None:
    Trainer(tiny("oracle", train__total_steps=160), tmp_path).train()
    assert load_checkpoint(tmp_path / "policy.pt").readout is None
