"""Shared by the serving tests: checkpoints built on the fly and an in-process server on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch

from agents.checkpoint import save_checkpoint
from agents.config import parse_config
from agents.policies import POLICIES, MoSSPolicy, OraclePolicy, Spaces
from runtime.server import Server, serve_in_thread

ENV_CFG: dict[str, Any] = {
    "id": "PointRobot",
    "max_episode_steps": 100,
    "nonstationary": "periodic",
    "interval": 25,
    "p": 0.5,
    "task_seed": 0,
    "min_dwell": None,
    "kwargs": {},
}
SPACES = {"obs_dim": 2, "action_dim": 2, "action_low": [-0.1, -0.1], "action_high": [0.1, 0.1]}


def make_checkpoint(
    path: Path, algorithm: str = "moss", seed: int = 0, env: dict[str, Any] | None = None
) -> Path:
    """A randomly initialised (seeded) PointRobot checkpoint whose config validates as a run config."""
    env_cfg = {**ENV_CFG, **(env or {})}
    torch.manual_seed(seed)
    if algorithm == "moss":
        policy = MoSSPolicy(Spaces(**SPACES), latent_dim=3, hidden_dim=32, actor_hidden=(64, 64))
    elif algorithm in ("pearl", "tcl", "cocoa"):
        policy = POLICIES[algorithm](Spaces(**SPACES), latent_dim=3, encoder_hidden=(32,), actor_hidden=(64, 64))
    elif algorithm in ("focal", "focalpp"):
        attention = "series" if algorithm == "focalpp" else "none"
        policy = POLICIES[algorithm](
            Spaces(**SPACES),
            latent_dim=3,
            encoder_hidden=(32, 32),
            attention=attention,
            attention_width=16,
            attention_heads=2,
            actor_hidden=(64, 64),
        )
    elif algorithm == "gridfilter":
        policy = POLICIES[algorithm](Spaces(**SPACES), grid=5, latent_dim=2, hidden=16, actor_hidden=(64, 64))
    else:
        policy = OraclePolicy(Spaces(**SPACES), task_dim=2, actor_hidden=(64, 64))
    raw: dict[str, Any] = {"algorithm": algorithm, "env": env_cfg, "seed": seed}
    if algorithm in ("focal", "focalpp"):
        raw["offline"] = {"dataset": "datasets/point_robot/train.npz"}
    if algorithm == "gridfilter":  # the config a training run would have stored with this spec
        raw.update(gridfilter={"grid": 5, "latent_dim": 2, "hidden": 16}, sac={"hidden": [64, 64]})
    config = parse_config(raw).model_dump(mode="json")
    env_rec = {
        "id": env_cfg["id"],
        **SPACES,
        "max_episode_steps": env_cfg["max_episode_steps"],
        "task_dim": 2,
    }
    return save_checkpoint(path, policy, config=config, env=env_rec, stats={"env_steps": 1234})


@pytest.fixture(autouse=True)
def quiet_logs():
    """Warnings and errors only while a serving test runs (the server logs every session event); the
    structlog configuration is restored afterwards, so other test modules see theirs."""
    from runtime.logs import configure_logging

    saved = structlog.get_config()
    configure_logging(level="warning")
    yield
    structlog.configure(**saved)


@contextlib.contextmanager
def running_server(checkpoint: Path, **kwargs: Any) -> Iterator[Server]:
    """A server on a free loopback port, serving in a background thread; stopped (and saved) on exit."""
    kwargs.setdefault("bind", "tcp://127.0.0.1:*")
    kwargs.setdefault("torch_threads", None)  # leave the test process's torch threads alone
    server = Server.from_checkpoint(checkpoint, **kwargs)
    thread = serve_in_thread(server)
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        assert not thread.is_alive(), "server did not stop"


def drain_all(server: Server, n: int, timeout: float = 5.0) -> list:
    """Drain exactly the n messages just sent to `server` (what its loop would hand `handle` at once)."""
    import time

    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += server._drain()
    assert len(got) == n
    return got


def serve_process(args: list[str], log_path: Path, timeout: float = 60.0):
    """`runtime serve ARGS --bind tcp://127.0.0.1:*` as a process logging JSON to `log_path` (a file, so a
    chatty server never blocks on a full pipe); returns (process, endpoint)."""
    import json
    import subprocess
    import sys
    import time

    runtime = str(Path(sys.executable).with_name("runtime"))
    log = open(log_path, "w")  # noqa: SIM115 (the child holds it)
    proc = subprocess.Popen(
        [runtime, "serve", *args, "--bind", "tcp://127.0.0.1:*", "--json-logs"],
        stderr=log,
        stdout=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path(log_path).read_text().splitlines():
            rec = json.loads(line)
            if rec.get("event") == "serving":
                return proc, rec["endpoint"]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"runtime serve did not start: {Path(log_path).read_text()}")
