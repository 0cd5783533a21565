"""Scenario log: round trips through the recorder (with NonStationary inside) and clear errors on bad files."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import msgpack
import numpy as np
import pytest

import envs
from envs.scenario import (
    SCENARIO_FORMAT,
    ChangePoint,
    ScenarioError,
    ScenarioRecorder,
    ScenarioWriter,
    read_scenario,
)

FORMATS = [".msgpack", ".jsonl"]


def _record(path: Path, episodes: int = 2, steps: int = 30, session: str = "sim-1") -> list[dict]:
    """Record a non-stationary PointRobot run; returns the transitions as the test loop saw them."""
    env = envs.make(
        "PointRobot",
        nonstationary="periodic",
        max_episode_steps=steps,
        nonstationary_kwargs={"interval": 10, "p": 1.0},
    )
    env = ScenarioRecorder(env, path, session=session, metadata={"purpose": "test", "seed": 7})
    rng = np.random.default_rng(0)
    seen = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=100 + ep)
        for t in range(steps):
            action = rng.uniform(-0.2, 0.2, size=2).astype(np.float32)
            next_obs, reward, terminated, truncated, info = env.step(action)
            seen.append(
                {
                    "type": "transition",
                    "session": session,
                    "episode": ep,
                    "t": t,
                    "task_id": info["task_id"],
                    "obs": [float(v) for v in obs],
                    "action": [float(v) for v in action],
                    "reward": float(reward),
                    "next_obs": [float(v) for v in next_obs],
                    "terminated": terminated,
                    "truncated": truncated,
                    "change_point": "task_switch" in info,
                    "switch": info.get("task_switch"),
                    "task_vector": [float(v) for v in info["task_vector"]],
                }
            )
            obs = next_obs
    env.close()
    return seen


@pytest.mark.parametrize("suffix", FORMATS)
def test_recorder_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    seen = _record(path)
    scenario = read_scenario(path)
    assert scenario.transitions == seen
    h = scenario.header
    assert (h["type"], h["format"], h["version"], h["env_id"]) == ("header", SCENARIO_FORMAT, 1, "PointRobot")
    assert h["purpose"] == "test" and h["seed"] == 7 and "T" in h["created"]
    assert scenario.env_id == "PointRobot" and scenario.sessions() == ["sim-1"]
    # the switches of NonStationary are the log's change points, at t = 10 and 20 of each episode
    cps = scenario.change_points()
    assert [(c.episode, c.t) for c in cps] == [(0, 10), (0, 20), (1, 10), (1, 20)]
    for cp in cps:
        tr = scenario.episodes()[("sim-1", cp.episode)][cp.t]
        assert tr["change_point"] and tr["task_id"] == cp.new
        assert scenario.episodes()[("sim-1", cp.episode)][cp.t - 1]["task_id"] == cp.old
    assert sum(tr["change_point"] for tr in scenario.transitions) == 4
    eps = scenario.episodes()
    assert list(eps) == [("sim-1", 0), ("sim-1", 1)] and all(len(v) == 30 for v in eps.values())
    assert [tr["truncated"] for tr in eps[("sim-1", 0)]] == [False] * 29 + [True]
    # obs of a step is the previous step's next_obs
    ep0 = eps[("sim-1", 0)]
    assert all(a["next_obs"] == b["obs"] for a, b in pairwise(ep0))


def test_writer_sessions_and_change_points_without_switch(tmp_path: Path) -> None:
    path = tmp_path / "clients.jsonl"
    with ScenarioWriter(path, "PointRobotWind") as w:
        for session in ("a", "b"):
            for t in range(3):
                w.write_transition(
                    session=session,
                    episode=0,
                    t=t,
                    task_id="T1" if t < 2 else "T2",
                    obs=np.zeros(2, np.float32),
                    action=(0.1, 0.0),
                    reward=np.float32(-1.5),
                    next_obs=[0.5, 0.25],
                    terminated=False,
                    truncated=t == 2,
                    change_point=t == 2,
                )
    sc = read_scenario(path)
    assert sc.sessions() == ["a", "b"] and len(sc.transitions) == 6
    assert sc.change_points() == [ChangePoint(0, 2, "T1", "T2")] * 2
    assert sc.change_points(session="b") == [ChangePoint(0, 2, "T1", "T2")]
    assert sc.transitions[0]["reward"] == -1.5 and sc.transitions[0]["action"] == [pytest.approx(0.1), 0.0]
    assert sc.episodes(session="a").keys() == {("a", 0)}


def test_writer_flushes_each_episode(tmp_path: Path) -> None:
    path = tmp_path / "live.msgpack"
    w = ScenarioWriter(path, "PointRobot")
    kw = {"session": "s", "task_id": "x", "obs": [0.0], "action": [0.0], "reward": 0.0, "next_obs": [0.0]}
    w.write_transition(episode=0, t=0, terminated=False, truncated=False, **kw)
    w.write_transition(episode=0, t=1, terminated=False, truncated=True, **kw)
    # readable while the writer is still open: the finished episode is on disk
    assert len(read_scenario(path).transitions) == 2
    w.close()
    w.close()  # idempotent
    with pytest.raises(ScenarioError, match="closed"):
        w.write_transition(episode=1, t=0, terminated=False, truncated=False, **kw)


def test_writer_refuses_bad_extension_and_reserved_metadata(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="unknown extension '.json'"):
        ScenarioWriter(tmp_path / "x.json", "PointRobot")
    with pytest.raises(ScenarioError, match="header keys \\['version'\\]"):
        ScenarioWriter(tmp_path / "x.jsonl", "PointRobot", metadata={"version": 2})


# -- errors -----------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        read_scenario(tmp_path / "nope.msgpack")


@pytest.mark.parametrize("suffix", FORMATS)
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    _record(path, episodes=1, steps=5)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) - 17, len(data) // 2):
        path.write_bytes(data[:cut])
        with pytest.raises(ScenarioError, match="truncated"):
            read_scenario(path)
    path.write_bytes(b"")
    with pytest.raises(ScenarioError, match="empty"):
        read_scenario(path)


def test_corrupt_data(tmp_path: Path) -> None:
    path = tmp_path / "bad.msgpack"
    _record(path, episodes=1, steps=5)
    data = bytearray(path.read_bytes())
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(bytes(data))
    unpacker.unpack()  # the header
    start = (
        unpacker.tell()
    )  # the first record after it: corrupt its structure (float payloads carry no check)
    data[start : start + 4] = b"\xc1\xc1\xc1\xc1"  # 0xc1 is never used in msgpack
    path.write_bytes(bytes(data))
    with pytest.raises(ScenarioError, match="corrupt msgpack data in record"):
        read_scenario(path)
    jpath = tmp_path / "bad.jsonl"
    _record(jpath, episodes=1, steps=5)
    lines = jpath.read_text().splitlines()
    lines[3] = lines[3][:20] + "#" + lines[3][21:]
    jpath.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match="corrupt JSON on line 4"):
        read_scenario(jpath)


def _write_records(path: Path, records: list[dict]) -> None:
    if path.suffix == ".msgpack":
        path.write_bytes(b"".join(msgpack.packb(r) for r in records))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("suffix", FORMATS)
def test_wrong_format_and_newer_version(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    _record(path, episodes=1, steps=3)
    good = read_scenario(path)
    _write_records(path, [{**good.header, "format": "other-log"}, *good.transitions])
    with pytest.raises(ScenarioError, match="wrong format tag 'other-log'"):
        read_scenario(path)
    _write_records(path, [{**good.header, "version": 2}, *good.transitions])
    with pytest.raises(ScenarioError, match="version 2 is newer"):
        read_scenario(path)
    _write_records(path, [good.header, *good.transitions])  # the rewrite itself is faithful
    assert read_scenario(path) == good


def test_not_a_scenario_and_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"type": "transition"}\n')
    with pytest.raises(ScenarioError, match="first record is not a header"):
        read_scenario(path)
    header = {
        "type": "header",
        "format": SCENARIO_FORMAT,
        "version": 1,
        "env_id": "PointRobot",
        "created": "",
    }
    good = {
        "type": "transition", "session": "s", "episode": 0, "t": 0, "task_id": "x", "obs": [0.0],
        "action": [0.0], "reward": 0.0, "next_obs": [0.0], "terminated": False, "truncated": False,
        "change_point": False, "switch": None,
    }  # fmt: skip
    for bad, problem in (
        ({k: v for k, v in good.items() if k != "reward"}, "missing field 'reward'"),
        ({**good, "episode": "0"}, "field 'episode' has type str"),
        ({**good, "obs": ["a"]}, "'obs' is not a list of numbers"),
        ({**good, "switch": {"step": 1}}, "'switch'"),
        ({**good, "type": "comment"}, "unknown record type 'comment'"),
    ):
        path.write_text(json.dumps(header) + "\n" + json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ScenarioError, match=problem):
            read_scenario(path)
    path.write_text(json.dumps(header) + "\n" + json.dumps(good) + "\n")
    assert read_scenario(path).transitions == [good]


def test_recorder_keeps_an_episode_cut_short_by_reset_or_close(tmp_path: Path) -> None:
    path = tmp_path / "cut.msgpack"
    env = ScenarioRecorder(envs.make("PointRobot"), path)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(2, np.float32))
    env.reset(seed=1)  # episode 0 ends after 3 steps, not by termination
    env.step(np.full(2, 0.05, np.float32))
    env.close()  # episode 1 has 1 step
    sc = read_scenario(path)
    assert [(tr["episode"], tr["t"]) for tr in sc.transitions] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert sc.transitions[3]["action"] == [0.05000000074505806, 0.05000000074505806]
    assert sc.transitions[1]["obs"] == sc.transitions[0]["next_obs"]
