"""`runtime probe`: the belief read by steps since a switch, against counts a hand calculation gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agents.config import EnvConfig
from agents.evaluation import evaluation_episodes, make_env
from agents.evaluation.belief_probe import probe, steps_under_task
from agents.parts.readout import TaskReadout
from agents.policies import MoSSPolicy, Spaces
from runtime.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_steps_under_task_counts_from_each_switch() -> None:
    ids = ["a"] * 3 + ["b"] * 2 + ["a"] * 4
    assert steps_under_task(ids).tolist() == [1, 2, 3, 1, 2, 1, 2, 3, 4]


def test_direction_accuracy_and_reward_gap_match_the_episodes() -> None:
    """A readout that always reads +1 is right exactly on the steps whose true direction is +1; the agent
    against itself has no reward gap."""
    torch.manual_seed(0)
    env = EnvConfig(id="CheetahDir", max_episode_steps=60, nonstationary="periodic", interval=20, p=1.0)
    policy = MoSSPolicy(Spaces(17, 6, [-1.0] * 6, [1.0] * 6), latent_dim=2, hidden_dim=8, embed_dim=8, actor_hidden=(16,)).eval()
    readout = TaskReadout(policy.belief_dim, 1)
    readout.out_mean.fill_(1.0)
    torch.nn.init.zeros_(readout.net[-1].weight)
    torch.nn.init.zeros_(readout.net[-1].bias)
    rep = probe(policy, readout, env, episodes=4, seed=3, reference=policy)
    assert rep["kind"] == "direction" and rep["switches"] == 8
    e = make_env(env, "test")
    plus = {t.id for t in e.unwrapped.tasks("test") if e.unwrapped.distribution.task_vector(t)[0] == 1.0}
    e.close()
    recs = evaluation_episodes(policy, env, "test", 4, 3)
    for k in (1, 2, 5, 10, 20):
        right = [r.task_ids[t] in plus for r in recs for t in np.flatnonzero(steps_under_task(r.task_ids) == k) if t >= 20]
        row = rep["after_switch"][str(k)]
        assert row["n"] == len(right) == 8 and 0 < np.mean(right) < 1
        assert row["direction_accuracy"] == pytest.approx(np.mean(right)) and row["reward_gap"] == 0.0


def test_mixture_beliefs_report_base_accuracy_and_cluster_purity() -> None:
    torch.manual_seed(0)
    env = EnvConfig(id="CheetahMultiTask", max_episode_steps=30)
    e = make_env(env, "test")
    bases = tuple(e.unwrapped.distribution.bases)
    e.close()
    policy = MoSSPolicy(Spaces(17, 6, [-1.0] * 6, [1.0] * 6), latent_dim=2, n_components=3, hidden_dim=8, embed_dim=8, actor_hidden=(16,)).eval()
    readout = TaskReadout(policy.belief_dim, len(bases), "base_task", names=bases)
    rep = probe(policy, readout, env, episodes=len(bases), seed=0)
    assert rep["kind"] == "base_task" and 0.0 <= rep["after_start"]["20"]["base_accuracy"] <= 1.0
    c = rep["components"]
    assert c["of"] == 3 and 1 <= c["used"] <= 3 and 1 / len(bases) <= c["purity"] <= 1.0


def test_cli_probe_on_a_bundled_agent(tmp_path: Path) -> None:
    asset = str(ROOT / "runtime/assets/moss_point_robot_ns.pt")
    png = tmp_path / "probe.png"
    res = CliRunner().invoke(app, ["probe", "--checkpoint", asset, "--episodes", "8", "--json", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["kind"] == "vector" and out["readout_quality"]["r2"] == pytest.approx(0.2868)
    assert out["after_start"]["20"]["n"] == 8 and out["after_switch"]["1"]["n"] == out["switches"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["probe", "--checkpoint", asset, "--split", "nope"])
    assert bad.exit_code != 0 and "nope" in bad.output


def test_probe_and_readout_refuse_an_oracle(tmp_path: Path) -> None:
    from serving_helpers import make_checkpoint

    oracle = make_checkpoint(tmp_path / "oracle.pt", algorithm="oracle")
    for args in (["probe", "--checkpoint", str(oracle)], ["readout", str(oracle)]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code != 0 and "acts on the true task" in res.output
