"""`train.device` and `--device` on the CPU: names checked, an absent CUDA refused up front, the CPU path
unchanged, checkpoints of CPU tensors, and no part that makes its tensors on the default device.

The last needs no GPU: with the default device set to `meta` and everything placed on the CPU, a tensor
made without naming its device lands on `meta` and fails the first op it shares with the CPU tensors:
the same mistake that, training on CUDA, puts a CPU tensor beside CUDA ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_helpers import make_checkpoint, quiet_logs  # noqa: E402, F401 (autouse fixture)
from test_focal import offline_config  # noqa: E402
from test_pearl import tiny as tiny_pearl  # noqa: E402
from test_training import tiny  # noqa: E402

from agents.checkpoint import build_policy, load_checkpoint  # noqa: E402
from agents.config import ConfigError, parse_config  # noqa: E402
from agents.device import DeviceError, resolve_device, to_cpu  # noqa: E402
from agents.policies import beliefs_along  # noqa: E402
from agents.policies.on_device import HostStates  # noqa: E402
from agents.training.trainer import Trainer  # noqa: E402
from runtime.cli import app  # noqa: E402

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens on a machine without CUDA")


def run_config(case: str, tmp: Path, device: str = "cpu") -> Any:
    """A few-second config of `case`, trained on `device`."""
    if case in ("pearl", "tcl", "cocoa"):
        return tiny_pearl(case, train__device=device)
    if case in ("focal", "focalpp"):
        extra = {"brac_strength": 1.0} if case == "focal" else {"attention": "series", "contrastive_weight": 1.0}
        raw = offline_config(tmp, case, **extra)
        raw["train"]["device"] = device
        return parse_config(raw)
    if case == "gridfilter":
        raw = tiny("oracle", train__device=device).model_dump(mode="json")
        raw.update(algorithm="gridfilter", gridfilter={"grid": 4, "hidden": 8, "batch_size": 4, "grad_samples": 4})
        return parse_config(raw)
    return tiny(case, train__device=device)


def tensors(tree: Any) -> list[torch.Tensor]:
    """Every tensor in nested dicts, lists and tuples."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in tensors(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in tensors(v)]
    return []


# -- names ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names_are_accepted(name: str) -> None:
    assert tiny(train__device=name).train.device == name


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "mps", ""])
def test_a_malformed_device_is_refused_naming_the_key(name: str) -> None:
    with pytest.raises(ConfigError, match=r"train\.device: .*auto, cpu, cuda or cuda:N"):
        tiny(train__device=name)
    with pytest.raises(DeviceError, match="auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@no_cuda
def test_auto_is_the_cpu_and_cuda_is_refused_without_cuda(tmp_path: Path) -> None:
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match=f"device '{name}': .*(no CUDA|CUDA support)"):
            resolve_device(name)
    with pytest.raises(DeviceError, match="CUDA"):  # before any env, network or file is made
        Trainer(tiny(train__device="cuda"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@no_cuda
def test_the_cli_refuses_an_absent_cuda_with_a_message(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "moss.pt")
    cfg, on_cuda = tmp_path / "tiny.yaml", tmp_path / "on_cuda.yaml"
    cfg.write_text(tiny().model_dump_json())  # JSON is YAML
    on_cuda.write_text(tiny(train__device="cuda").model_dump_json())
    runner = CliRunner()
    for args in (
        ["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--device", "cuda"],
        ["train", "--config", str(on_cuda), "--out", str(tmp_path / "run")],
        ["eval", "--checkpoint", str(ckpt), "--device", "cuda:0"],
        ["serve", "--checkpoint", str(ckpt), "--device", "cuda"],
        ["eval", "--checkpoint", str(ckpt), "--device", "gpu"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "device" in res.output and ("CUDA" in res.output or "auto, cpu, cuda" in res.output), res.output
    assert not (tmp_path / "run").exists()


# -- the CPU path -----------------------------------------------------------------------------------------
@no_cuda
@pytest.mark.parametrize("case", ["moss", "pearl", "focal"])
def test_explicit_cpu_trains_exactly_as_the_default(tmp_path: Path, case: str) -> None:
    """`train.device: auto` on a machine without CUDA is the CPU, with the same numbers."""
    got = {}
    for device in ("auto", "cpu"):
        cfg = run_config(case, tmp_path, device)
        cfg.train.total_steps = cfg.train.eval_every = cfg.train.checkpoint_every = 160 if case != "focal" else 40
        trainer = Trainer(cfg, tmp_path / device)
        trainer.train()
        got[device] = trainer.policy.state_dict()
        assert load_checkpoint(tmp_path / device / "policy.pt").stats["device"] == "cpu"
    for k, v in got["cpu"].items():
        assert torch.equal(v, got["auto"][k]), k


def test_checkpoints_and_buffer_files_hold_cpu_tensors_and_load_for_any_device(tmp_path: Path) -> None:
    trainer = Trainer(tiny(), tmp_path / "run")
    trainer.train()
    for name in ("checkpoint.pt", "policy.pt", "buffer.pt"):
        raw = torch.load(tmp_path / "run" / name, map_location=None, weights_only=True)  # as saved
        found = tensors(raw)
        assert found and all(t.device.type == "cpu" for t in found), name
    live = {id(t.untyped_storage()) for t in trainer.policy.state_dict().values()}
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert not live & {id(t.untyped_storage()) for t in ck.policy_state.values()}  # copies, not the live weights
    policy = build_policy(ck, device="cpu")
    assert policy.device == torch.device("cpu") and not policy.training


def test_to_cpu_copies_every_tensor_in_a_nest() -> None:
    x = torch.ones(2, requires_grad=True)
    tree = {"a": [x, (x * 2, 3)], "b": {"c": x}, "d": "text"}
    out = to_cpu(tree)
    assert out["d"] == "text" and out["a"][1][1] == 3 and isinstance(out["a"][1], tuple)
    assert all(not t.requires_grad and t.data_ptr() != x.data_ptr() for t in tensors(out))


# -- no tensor on the default device ------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["moss", "oracle", "pearl", "tcl", "cocoa", "focal", "focalpp", "gridfilter"])
def test_no_part_makes_its_tensors_on_the_default_device(tmp_path: Path, case: str) -> None:
    """Collection, an epoch of updates (buffer sampling, relabelling, BRAC, contrastive keys), the task
    readout's fit and an evaluation, with the default device `meta` and the run on the CPU."""
    trainer = Trainer(run_config(case, tmp_path), tmp_path / "run")
    if not trainer.offline:
        trainer.collect(4, random=True)
    trainer.learner.train_epoch(trainer.buffer, trainer.rng)  # optimiser state made beforehand, as after epoch 1
    with torch.device("meta"):
        if not trainer.offline:
            trainer.collect(2, random=False)
        metrics = trainer.learner.train_epoch(trainer.buffer, trainer.rng)
        readout = trainer.fit_readout()
        row = trainer.evaluate()
    assert all(v.device.type == "cpu" for v in metrics.values() if isinstance(v, torch.Tensor))
    assert (readout is None) == (case == "oracle") and np.isfinite(row["mean_return"])
    if readout is not None:
        assert all(t.device.type == "cpu" for t in tensors(readout["state"]))


# -- serving on another device --------------------------------------------------------------------------------
def test_host_states_keeps_the_contract_of_the_policy_it_wraps(tmp_path: Path) -> None:
    """What `runtime serve --device cuda` serves through: host states and tensors, the policy's numbers
    (here the policy is on the CPU too, so every move is a no-op and the answers are exact)."""
    policy = build_policy(load_checkpoint(make_checkpoint(tmp_path / "moss.pt", seed=2)))
    wrapped = HostStates(policy).eval()
    assert wrapped.obs_dim == policy.obs_dim and wrapped.belief_dim == policy.belief_dim and wrapped.spec() == policy.spec()
    assert wrapped.compute_device == policy.device and wrapped.device == torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    n, T = 3, 6
    obs, action = torch.randn(n, T, 2, generator=g), torch.rand(n, T, 2, generator=g) * 0.2 - 0.1
    reward, next_obs = torch.randn(n, T, generator=g), torch.randn(n, T, 2, generator=g)
    want = beliefs_along(policy, obs, action, reward, next_obs, torch.full((n,), T))
    state = wrapped.init_state(n)
    for t in range(T):
        state = wrapped.update(state, obs[:, t], action[:, t], reward[:, t], next_obs[:, t])
        assert torch.equal(wrapped.belief(state), want[:, t + 1])
    assert torch.equal(wrapped.act(next_obs[:, -1], want[:, -1]), policy.act(next_obs[:, -1], want[:, -1]))
