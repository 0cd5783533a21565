"""Scenario replay: the settling-time definition, and replayed beliefs equal the served ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from serving_helpers import make_checkpoint, quiet_logs, running_server  # noqa: F401 (autouse fixture)

from agents.checkpoint import build_policy, load_checkpoint
from envs.scenario import read_scenario
from runtime.client import Client, drive, env_settings
from runtime.replay import EpisodeBeliefs, plot, replay_beliefs, report, settling


def test_settling_time_definition():
    # 1-d belief: 0 until the change at t=10, then 0.2, 0.4, ... reaching 1.0 at b_15, then flat until L=30
    b = np.zeros((31, 1))
    b[11:16, 0] = [0.2, 0.4, 0.6, 0.8, 1.0]
    b[16:, 0] = 1.0
    b[20, 0] = 0.95  # a wobble inside the 10% tolerance does not count
    eb = EpisodeBeliefs("s", 0, b, [{"t": 10, "old": "A", "new": "B"}])
    (row,) = settling(eb, tolerance=0.1)
    assert row["steps"] == 5 and row["segment"] == 20 and row["settled"] is True
    assert row["shift"] == pytest.approx(1.0)
    (tight,) = settling(eb, tolerance=0.01)
    assert tight["steps"] == 11  # the wobble at b_20 now counts: settled from b_21 on


def test_never_settling_and_the_segment_ends_at_the_next_change_point():
    b = np.linspace(0, 1, 41)[:, None]  # keeps moving
    eb = EpisodeBeliefs("s", 0, b, [{"t": 10, "old": "A", "new": "B"}, {"t": 25, "old": "B", "new": "C"}])
    first, second = settling(eb, tolerance=0.01)
    assert first["segment"] == 15 and first["settled"] is False and first["steps"] == 15
    assert second["segment"] == 15
    rep = report([eb], 0.01)
    assert rep["settled"] == 0 and rep["median_steps"] is None and len(rep["change_points"]) == 2


def test_replayed_beliefs_equal_the_served_beliefs(tmp_path):
    ck = make_checkpoint(tmp_path / "moss.pt", seed=11, env={"p": 1.0})
    log = tmp_path / "run.msgpack"
    with running_server(ck) as srv, Client(srv.endpoint) as c:
        served = drive(c, env_settings(c.hello(), max_episode_steps=60), "test", 3, 500, record=log)
    scenario = read_scenario(log)
    episodes = replay_beliefs(build_policy(load_checkpoint(ck)), scenario)
    assert len(episodes) == 3
    for eb, res in zip(episodes, served, strict=True):
        np.testing.assert_allclose(eb.beliefs, np.array(res.beliefs), atol=1e-5)
        assert [cp["t"] for cp in eb.change_points] == [s["step"] for s in res.switches] == [25, 50]
    rep = report(episodes)
    assert len(rep["change_points"]) == 6 and all(
        1 <= r["steps"] <= r["segment"] for r in rep["change_points"]
    )
    png = plot(episodes, tmp_path / "b.png", max_panels=2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_refuses_mismatched_sizes_and_the_oracle(tmp_path):
    ck = make_checkpoint(tmp_path / "moss.pt")
    log = tmp_path / "run.jsonl"
    with running_server(ck) as srv, Client(srv.endpoint) as c:
        drive(c, env_settings(c.hello(), max_episode_steps=5), "test", 1, 0, record=log)
    scenario = read_scenario(log)
    oracle = build_policy(load_checkpoint(make_checkpoint(tmp_path / "o.pt", algorithm="oracle")))
    with pytest.raises(ValueError, match="oracle"):
        replay_beliefs(oracle, scenario)
    scenario.transitions[0]["obs"] = [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="sizes"):
        replay_beliefs(build_policy(load_checkpoint(ck)), scenario)


def test_replay_reads_the_task_from_the_belief_and_draws_the_path(tmp_path):
    """With a readout in the checkpoint and true task vectors in the log: the estimate of every belief,
    the estimate's error at each segment's end, and a plot with the point robot's path."""
    from agents.checkpoint import build_readout, store_readout
    from agents.parts.readout import TaskReadout

    ck_path = make_checkpoint(tmp_path / "moss.pt", seed=11, env={"p": 1.0})
    ck = load_checkpoint(ck_path)
    policy = build_policy(ck)
    readout = TaskReadout(policy.belief_dim, 2)
    readout.out_mean.copy_(torch.tensor([0.25, -0.5]))  # an untrained net reads about its output mean
    store_readout(ck, readout.record({"r2": 0.0}))
    ck = load_checkpoint(ck_path)
    log = tmp_path / "run.msgpack"
    with running_server(ck_path) as srv, Client(srv.endpoint) as c:
        drive(c, env_settings(c.hello(), max_episode_steps=60), "test", 2, 500, record=log)
    scenario = read_scenario(log)
    episodes = replay_beliefs(policy, scenario, build_readout(ck))
    for eb in episodes:
        assert eb.estimate.shape == (61, 2) and eb.task.shape == (60, 2) and eb.obs.shape == (61, 2)
        np.testing.assert_allclose(eb.estimate, build_readout(ck)(torch.as_tensor(eb.beliefs)).numpy(), atol=1e-6)
        # the log's true task changes exactly at the change points
        changes = [t for t in range(1, 60) if not np.array_equal(eb.task[t], eb.task[t - 1])]
        assert changes == [cp["t"] for cp in eb.change_points]
    rep = report(episodes)
    assert rep["settled_on"] == "estimate" and report(episodes, on="belief")["settled_on"] == "belief"
    # settling on the estimate is the settling-time definition applied to the estimate's rows
    for_estimate = [EpisodeBeliefs(eb.session, eb.episode, eb.estimate, eb.change_points) for eb in episodes]
    assert [r["steps"] for r in rep["change_points"]] == [r["steps"] for r in report(for_estimate, on="belief")["change_points"]]
    rows = rep["change_points"]
    eb = episodes[0]
    e = eb.change_points[1]["t"]
    assert rows[0]["estimate_error"] == pytest.approx(float(np.linalg.norm(eb.estimate[e] - eb.task[e - 1])), abs=1e-4)
    png = plot(episodes, tmp_path / "task.png", max_panels=2, path=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_runs_a_reference_on_the_logged_episodes(tmp_path):
    """--reference re-runs a client log's episodes (same tasks, seeds, switches) with another checkpoint and
    plots its reward beside the agent's; the agent against itself earns exactly the logged rewards."""
    from typer.testing import CliRunner

    from runtime.cli import app, reference_rewards

    ck = make_checkpoint(tmp_path / "moss.pt", seed=5, env={"p": 1.0})
    log = tmp_path / "run.msgpack"
    with running_server(ck) as srv, Client(srv.endpoint) as c:
        drive(c, env_settings(c.hello(), max_episode_steps=60), "test", 2, 700, record=log)
    scenario = read_scenario(log)
    episodes = replay_beliefs(build_policy(load_checkpoint(ck)), scenario)
    reference_rewards(scenario, episodes, ck)  # deterministic: the same agent reproduces its own episodes
    for eb in episodes:
        np.testing.assert_allclose(eb.reference_reward, eb.reward, atol=1e-6)
    oracle = make_checkpoint(tmp_path / "oracle.pt", algorithm="oracle", env={"p": 1.0})
    png = tmp_path / "r.png"
    res = CliRunner().invoke(app, ["replay", str(log), "--checkpoint", str(ck), "--reference", str(oracle), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
