"""Crash-safe sessions: `runtime serve --state-dir D --snapshot-every S` is killed (SIGKILL) while clients
step it; restarted, it continues every session as of its last snapshot, over real sockets."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from serving_helpers import make_checkpoint, serve_process
from test_server import alone, transitions

from agents.checkpoint import build_policy, load_checkpoint
from runtime.client import Client, ClientError
from runtime.server import Server
from runtime.sessions import STATE_FILE

N_SESSIONS, STEPS = 6, 400


def test_a_killed_server_restarts_with_every_session_as_of_its_last_snapshot(tmp_path: Path) -> None:
    ck = make_checkpoint(tmp_path / "moss.pt")
    state_dir = tmp_path / "state"
    args = ["--checkpoint", str(ck), "--state-dir", str(state_dir), "--snapshot-every", "0.05"]
    proc, endpoint = serve_process(args, tmp_path / "serve.log")
    streams = [transitions(100 + k, STEPS) for k in range(N_SESSIONS)]
    sids: list[str] = []
    sent = [0] * N_SESSIONS
    stop = threading.Event()

    def load() -> None:  # keeps stepping every session until the server dies under it
        with Client(endpoint, timeout_s=2) as c:
            for obs0, _ in streams:
                sids.append(c.open(obs0.tolist())["session"])
            for t in range(STEPS):
                for k, (_, steps) in enumerate(streams):
                    if stop.is_set():
                        return
                    a, r, nxt = steps[t]
                    try:
                        c.step(sids[k], a.tolist(), r, nxt.tolist())
                    except ClientError:
                        return
                    sent[k] = t + 1

    loader = threading.Thread(target=load)
    loader.start()
    try:
        deadline = time.monotonic() + 30
        while min(sent) < 50 and time.monotonic() < deadline:  # under load, several snapshots written
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop.set()
        loader.join(10)
    assert min(sent) >= 50 and max(sent) < STEPS, "the kill must land mid-load"
    saved = msgpack.unpackb((state_dir / STATE_FILE).read_bytes(), raw=False)
    at = {rec["id"]: rec["t"] for rec in saved["sessions"]}
    assert set(at) == set(sids) and all(0 < at[sid] <= sent[k] for k, sid in enumerate(sids))

    proc, endpoint = serve_process(args, tmp_path / "serve2.log")
    try:
        policy = build_policy(load_checkpoint(ck))
        with Client(endpoint) as c:
            assert c.stats()["sessions"] == N_SESSIONS
            for k, sid in enumerate(sids):  # each continues from its snapshot: the next step's belief is exact
                obs0, steps = streams[k]
                t = at[sid]
                want, _ = alone(policy, obs0, steps[: t + 1])
                a, r, nxt = steps[t]
                got = c.step(sid, a.tolist(), r, nxt.tolist())
                np.testing.assert_allclose(got["belief"], want[t + 1], atol=1e-5)
            with pytest.raises(ClientError) as gone:
                c.step("s0123456789abcdef", [0.0, 0.0], 0.0, [0.0, 0.0])
            assert gone.value.code == "unknown_session"
    finally:
        proc.terminate()
        proc.wait(30)
    events = [json.loads(x)["event"] for x in (tmp_path / "serve2.log").read_text().splitlines()]
    assert "sessions restored" in events


def test_snapshots_need_a_state_dir(tmp_path: Path) -> None:
    ck = make_checkpoint(tmp_path / "moss.pt")
    with pytest.raises(ValueError, match="state_dir"):
        Server.from_checkpoint(ck, bind="tcp://127.0.0.1:*", snapshot_every=1.0)
