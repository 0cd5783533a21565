"""`runtime serve` (a real process, stopped by SIGTERM), `runtime client` and `runtime replay`, and their errors."""

from __future__ import annotations

import json
import signal

import pytest
from serving_helpers import make_checkpoint, serve_process
from typer.testing import CliRunner

from runtime.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("cli") / "moss.pt", seed=2)


@pytest.fixture(scope="module")
def served(ckpt, tmp_path_factory):
    """`runtime serve` on a free port; yields (endpoint, process, state dir)."""
    state = tmp_path_factory.mktemp("state")
    proc, endpoint = serve_process(
        ["--checkpoint", str(ckpt), "--state-dir", str(state)], state / "serve.log"
    )
    yield endpoint, proc, state
    if proc.poll() is None:
        proc.kill()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_client_matches_eval_and_replay_reports_change_points(served, ckpt, tmp_path):
    endpoint, _, _ = served
    res = run("client", "--server", endpoint, "--episodes", "2", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [e["episode"] for e in out["episodes"]] == [0, 1] and out["env"]["id"] == "PointRobot"
    ev = run("eval", "--checkpoint", str(ckpt), "--episodes", "2", "--json")
    assert ev.exit_code == 0, ev.output
    assert out["mean_return"] == pytest.approx(json.loads(ev.stdout)["mean_return"], abs=1e-3)

    log = tmp_path / "scenario.msgpack"
    res = run(
        "client",
        "--server",
        endpoint,
        "--episodes",
        "2",
        "--p",
        "1",
        "--max-episode-steps",
        "60",
        "--record",
        str(log),
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.count("episode ") == 2 and "t=25" in res.stdout and "mean return" in res.stdout

    png = tmp_path / "belief.png"
    rep = run("replay", str(log), "--checkpoint", str(ckpt), "--json", "--plot", str(png))
    assert rep.exit_code == 0, rep.output
    rep = json.loads(rep.stdout)
    assert rep["episodes"] == 2 and rep["transitions"] == 120
    assert [(c["episode"], c["t"]) for c in rep["change_points"]] == [(0, 25), (0, 50), (1, 25), (1, 50)]
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = run("replay", str(log), "--checkpoint", str(ckpt))
    assert text.exit_code == 0 and "4 change point(s)" in text.stdout


def test_sigterm_stops_the_server_and_saves_sessions(served):
    endpoint, proc, state = served
    from runtime.client import Client

    with Client(endpoint) as c:
        sid = c.open([0.0, 0.0], session="kept")["session"]
        c.step(sid, [0.01, 0.0], -1.0, [0.01, 0.0])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    rest = (state / "serve.log").read_text()
    assert '"event": "stopped"' in rest and '"sessions": 1' in rest
    assert (state / "sessions.msgpack").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "--checkpoint", "/nonexistent/moss.pt"], "checkpoint not found"),
        (["client", "--server", "tcp://127.0.0.1:9", "--timeout", "0.3"], "no reply from tcp://127.0.0.1:9"),
        (["client", "--server", "not an address", "--timeout", "0.3"], "cannot connect"),
        (["client", "--env", "Nope"], "unknown env id"),
        (["replay", "/nonexistent.msgpack", "--checkpoint", "x.pt"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(args, message):
    res = run(*args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output


def test_serve_refuses_a_taken_port_and_a_foreign_file(ckpt, tmp_path):
    import zmq

    sock = zmq.Context.instance().socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        res = run("serve", "--checkpoint", str(ckpt), "--bind", f"tcp://127.0.0.1:{port}")
    finally:
        sock.close(0)
    assert res.exit_code == 2 and "cannot bind" in res.output
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x93\x01\x02")
    res = run("replay", str(bad), "--checkpoint", str(ckpt))
    assert res.exit_code == 2 and "scenario" in res.output
