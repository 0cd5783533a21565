"""The bundled agents (runtime/assets/) act exactly as they did when they were trained and first bundled:
tests/data/bundled_reference.json holds, for one seeded non-stationary PointRobot test episode, the belief
each showed and the deterministic action each took at every step, recorded from the files as first
bundled. The files were later re-saved in today's checkpoint format; their actions must not move."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from agents.checkpoint import build_policy, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "bundled_reference.json").read_text())
BUNDLED = [("moss_point_robot_ns", "moss_point_robot_ns"), ("gridfilter_point_robot_ns", "filter_point_robot_ns")]


@pytest.mark.parametrize(("asset", "recorded_as"), BUNDLED, ids=[b[0] for b in BUNDLED])
def test_bundled_agent_takes_the_recorded_actions(asset: str, recorded_as: str) -> None:
    ck = load_checkpoint(ROOT / "runtime" / "assets" / f"{asset}.pt")
    policy, ref = build_policy(ck), REFERENCE[recorded_as]
    env = envs.make(
        "PointRobot", split="test", seed=0, nonstationary="periodic", max_episode_steps=100,
        nonstationary_kwargs={"interval": 25, "p": 0.5},
    )  # fmt: skip
    obs, _ = env.reset(seed=3)
    state, actions, beliefs, ret = policy.init_state(1), [], [], 0.0
    with torch.no_grad():
        for _ in ref["actions"]:
            o = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
            b = policy.belief(state)
            a = policy.act(o, b, deterministic=True)
            obs, r, *_ = env.step(a[0].numpy())
            state = policy.update(state, o, a, torch.tensor([float(r)]), torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))
            actions.append(a[0].tolist())
            beliefs.append(b[0].tolist())
            ret += float(r)
    np.testing.assert_allclose(actions, ref["actions"], atol=1e-6)
    np.testing.assert_allclose(beliefs, ref["beliefs"], atol=1e-5)
    assert ret == pytest.approx(ref["return"], abs=1e-4)
    assert ck.version == 2 and ck.training is None  # today's format, policy only


@pytest.mark.slow
def test_bundled_cheetah_dir_agents_reproduce_the_headline() -> None:
    """`runtime eval` of the bundled Cheetah-Dir-NS MoSS against its bundled oracle gives the benchmark
    report's figure (40 test episodes, 80 direction flips)."""
    import json as _json

    from typer.testing import CliRunner

    from runtime.cli import app

    assets = ROOT / "runtime" / "assets"
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(assets / "moss_cheetah_dir_ns.pt"), "--reference",
                                   str(assets / "oracle_cheetah_dir_ns.pt"), "--episodes", "40", "--json"])
    assert res.exit_code == 0, res.output
    out = _json.loads(res.output)
    assert out["switches"] == 80
    assert out["normalised_score"] == pytest.approx(0.803, abs=0.02)


@pytest.mark.slow
@pytest.mark.parametrize(("asset", "success"), [("moss_ml1_reach", 0.18), ("pearl_ml1_reach", 0.08), ("oracle_ml1_reach", 0.88)])
def test_bundled_ml1_reach_agents_reproduce_the_table(asset: str, success: float) -> None:
    """`runtime eval` of the bundled ML1-reach agents on the 50 test goals gives docs/benchmarks.md's
    zero-shot success rate (deterministic; one episode of slack for float drift across machines)."""
    import json as _json

    from typer.testing import CliRunner

    from runtime.cli import app

    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(ROOT / "runtime" / "assets" / f"{asset}.pt"), "--episodes", "50", "--json"])
    assert res.exit_code == 0, res.output
    assert _json.loads(res.output)["success_rate"] == pytest.approx(success, abs=0.021)


# FOCAL and FOCAL++ on the offline point robots: (policy, context file, `runtime eval --protocol context
# --episodes 400` on that file, as docs/benchmarks.md reports it)
FOCAL_ASSETS = [
    ("focal_sparse_point_robot", "sparse_point_robot", 7.243),
    ("focalpp_sparse_point_robot", "sparse_point_robot", 7.784),
    ("focalpp_sparse_point_robot_pearl", "sparse_point_robot_pearl", 11.618),
    ("focal_point_robot_wind", "point_robot_wind", -5.892),
    ("focalpp_point_robot_wind", "point_robot_wind", -5.760),
]


@pytest.mark.parametrize(("asset", "contexts", "figure"), FOCAL_ASSETS, ids=[a[0] for a in FOCAL_ASSETS])
def test_bundled_focal_agents_reproduce_the_table(asset: str, contexts: str, figure: float) -> None:
    """Each bundled FOCAL policy is policy-only and under 1 MB, its context file holds every test task of
    the same env (reward convention included), and `runtime eval --protocol context` on that file gives
    the figure docs/benchmarks.md reports (deterministic; slack for float drift across machines)."""
    from typer.testing import CliRunner

    from agents.config import EnvConfig
    from agents.training.datasets import OfflineDataset
    from runtime.cli import app

    assets = ROOT / "runtime" / "assets"
    ck = load_checkpoint(assets / f"{asset}.pt")
    ctx = OfflineDataset.load(assets / f"contexts_{contexts}_test.npz")
    env = EnvConfig.model_validate(ck.config["env"])
    assert ck.training is None and (assets / f"{asset}.pt").stat().st_size < 1_000_000
    assert ctx.meta["split"] == "test" and ctx.meta["env"]["id"] == env.id and ctx.meta["env"]["kwargs"] == env.kwargs
    assert sorted(np.unique(ctx.task).tolist()) == list(range(ctx.meta["n_tasks"]))
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(assets / f"{asset}.pt"), "--protocol", "context", "--context-dataset",
                                   str(assets / f"contexts_{contexts}_test.npz"), "--episodes", "400", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["mean_return"] == pytest.approx(figure, abs=0.05)
