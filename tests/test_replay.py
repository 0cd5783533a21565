"""Scenario replay: the settling-time definition, and replayed beliefs equal the served ones."""

from __future__ import annotations

import numpy as np
import pytest
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
