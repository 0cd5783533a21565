"""Training and acting on CUDA (skipped on a machine without it): short MoSS, PEARL-family, FOCAL and
grid-filter runs on the GPU, their files of CPU tensors, resuming across devices, and a CUDA-trained
checkpoint that acts and serves on the CPU as it does on the GPU (to float tolerance)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_helpers import quiet_logs, running_server  # noqa: E402, F401 (autouse fixture)
from test_device import run_config, tensors  # noqa: E402
from test_server import alone, transitions  # noqa: E402

from agents.checkpoint import build_policy, load_checkpoint  # noqa: E402
from agents.config import EnvConfig  # noqa: E402
from agents.evaluation import evaluation_episodes  # noqa: E402
from agents.training.trainer import Trainer  # noqa: E402
from runtime.cli import app  # noqa: E402
from runtime.client import Client, drive, env_settings  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TOL = 1e-4  # CPU and GPU kernels round differently


def train_on(device: str, case: str, tmp: Path, name: str = "run") -> Trainer:
    trainer = Trainer(run_config(case, tmp, device), tmp / name)
    trainer.train()
    return trainer


def on_cuda(trainer: Trainer) -> bool:
    parts = [*trainer.policy.parameters(), trainer.buffer.obs, *trainer.learner.sac.critic.parameters()]
    return all(t.device.type == "cuda" for t in parts)


@pytest.mark.parametrize("case", ["moss", "pearl", "tcl", "focal", "focalpp", "gridfilter", "oracle"])
def test_a_short_run_trains_on_cuda_and_saves_cpu_tensors(tmp_path: Path, case: str) -> None:
    trainer = train_on("cuda", case, tmp_path)
    assert trainer.device.type == "cuda" and on_cuda(trainer)
    epochs = [r for r in trainer.history if r["kind"] == "epoch"]
    losses = [v for r in epochs for k, v in r.items() if k.endswith("loss")]
    assert epochs and losses and np.isfinite(losses).all()
    assert np.isfinite(trainer.last_eval()["mean_return"])
    for name in ("checkpoint.pt", "policy.pt", *([] if trainer.offline else ["buffer.pt"])):
        found = tensors(torch.load(tmp_path / "run" / name, map_location=None, weights_only=True))
        assert found and all(t.device.type == "cpu" for t in found), name
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck.stats["device"].startswith("cuda") and "cuda_rng" in ck.training


@pytest.mark.parametrize("case", ["moss", "pearl", "focal"])
def test_a_cuda_run_resumes_on_cuda_and_on_the_cpu(tmp_path: Path, case: str) -> None:
    first = train_on("cuda", case, tmp_path)
    for device in ("cuda", "cpu"):
        run = tmp_path / f"again_{device}"
        run.mkdir()
        for name in ("checkpoint.pt", "buffer.pt", "config.yaml", "metrics.jsonl"):
            if (tmp_path / "run" / name).exists():
                (run / name).write_bytes((tmp_path / "run" / name).read_bytes())
        cfg = run_config(case, tmp_path, device)
        cfg.train.total_steps = first.step + (cfg.train.policy_updates if first.offline else 4 * 20)
        again = Trainer(cfg, run, resume=True)
        assert again.step == first.step and again.policy.device.type == device
        for k, v in first.policy.state_dict().items():
            torch.testing.assert_close(again.policy.state_dict()[k].cpu(), v.cpu(), rtol=0, atol=0)
        assert again.train()["step"] == cfg.train.total_steps


@pytest.fixture(scope="module")
def cuda_moss(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cuda_moss")
    train_on("cuda", "moss", tmp)
    return tmp / "run" / "policy.pt"


def test_a_cuda_checkpoint_acts_on_the_cpu_as_on_the_gpu(cuda_moss: Path) -> None:
    ck = load_checkpoint(cuda_moss)
    cpu, gpu = build_policy(ck, device="cpu"), build_policy(ck, device="cuda")
    assert cpu.device.type == "cpu" and gpu.device.type == "cuda"
    obs0, steps = transitions(5, 30)
    want_b, want_a = alone(cpu, obs0, steps)
    state = gpu.init_state(1)
    obs, got_b, got_a = obs0, [], []
    with torch.no_grad():
        b = gpu.belief(state)
        got_b.append(b[0].cpu().numpy())
        got_a.append(gpu.act(torch.as_tensor(obs0, device="cuda")[None], b)[0].cpu().numpy())
        for a, r, nxt in steps:
            row = [torch.as_tensor(x, dtype=torch.float32, device="cuda").reshape(1, -1) for x in (obs, a, [r], nxt)]
            state = gpu.update(state, row[0], row[1], row[2].reshape(1), row[3])
            b = gpu.belief(state)
            got_b.append(b[0].cpu().numpy())
            got_a.append(gpu.act(row[3], b)[0].cpu().numpy())
            obs = nxt
    np.testing.assert_allclose(np.array(got_b), want_b, atol=TOL)
    np.testing.assert_allclose(np.array(got_a), want_a, atol=TOL)


def test_a_cuda_checkpoint_served_on_the_cpu_acts_as_evaluated_on_the_gpu(cuda_moss: Path) -> None:
    ck = load_checkpoint(cuda_moss)
    env_cfg = EnvConfig.model_validate(ck.config["env"])
    recs = evaluation_episodes(build_policy(ck, device="cuda"), env_cfg, "test", 2, 10_000, record_beliefs=True)
    for device in ("cpu", "cuda"):  # the default CPU server, and the policy on the GPU behind HostStates
        with running_server(cuda_moss, device=torch.device(device)) as srv, Client(srv.endpoint) as c:
            res = drive(c, env_settings(c.hello()), "test", 2, 10_000)
        for r, e in zip(res, recs, strict=True):
            np.testing.assert_allclose(np.array(r.actions), e.episode.action, atol=TOL)
            np.testing.assert_allclose(np.array(r.beliefs), e.beliefs, atol=TOL)


def test_eval_and_collect_take_a_cuda_device(cuda_moss: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--checkpoint", str(cuda_moss), "--episodes", "4", "--device", "cuda", "--json"])
    assert res.exit_code == 0, res.output
    collect: dict[str, Any] = {
        "env": {"id": "PointRobot"}, "policy": str(cuda_moss), "out": str(tmp_path / "data"), "splits": ["train"],
        "levels": {"expert": {"noise": 0.0, "episodes_per_task": 1}, "mixed": {"noise": 0.5, "episodes_per_task": 1}},
    }  # fmt: skip
    (tmp_path / "collect.yaml").write_text(json.dumps(collect))  # JSON is YAML
    res = runner.invoke(app, ["collect", "--config", str(tmp_path / "collect.yaml"), "--device", "cuda", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "data" / "train.npz").is_file()
