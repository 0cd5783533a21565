"""The ZeroMQ server over real loopback sockets: the eval path, isolation, batching, bad input, limits, restart."""

from __future__ import annotations

import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import torch
import zmq
from serving_helpers import ENV_CFG, drain_all, make_checkpoint, quiet_logs, running_server  # noqa: F401 (autouse fixture)

from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig
from agents.evaluation import evaluation_episodes
from runtime import protocol as P
from runtime.client import Client, ClientError, drive, env_settings
from runtime.server import Server


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "moss.pt", seed=3)


@pytest.fixture(scope="module")
def policy(ckpt):
    return build_policy(load_checkpoint(ckpt))


def transitions(seed: int, n: int):
    """n random PointRobot-like transitions: obs0 and (action, reward, next_obs) per step."""
    rng = np.random.default_rng(seed)
    obs0 = rng.uniform(-1, 1, 2).astype(np.float32)
    steps, obs = [], obs0
    for _ in range(n):
        a = rng.uniform(-0.1, 0.1, 2).astype(np.float32)
        nxt = (obs + a).astype(np.float32)
        steps.append((a, float(rng.normal()), nxt))
        obs = nxt
    return obs0, steps


@torch.no_grad()
def alone(policy, obs0, steps):
    """The contract path for one session on its own: beliefs b_0..b_n and actions a_0..a_n."""
    state = policy.init_state(1)
    b = policy.belief(state)
    beliefs, actions = [b[0].numpy()], [policy.act(torch.as_tensor(obs0)[None], b)[0].numpy()]
    obs = obs0
    for a, r, nxt in steps:
        state = policy.update(
            state,
            torch.as_tensor(obs)[None],
            torch.as_tensor(a)[None],
            torch.tensor([r]),
            torch.as_tensor(nxt)[None],
        )
        b = policy.belief(state)
        beliefs.append(b[0].numpy())
        actions.append(policy.act(torch.as_tensor(nxt)[None], b)[0].numpy())
        obs = nxt
    return np.array(beliefs), np.array(actions)


def raw_socket(endpoint: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(endpoint)
    return s


def ask(sock: zmq.Socket, payload) -> dict:
    frames = (
        payload if isinstance(payload, list) else [payload if isinstance(payload, bytes) else P.pack(payload)]
    )
    sock.send_multipart(frames)
    return msgpack.unpackb(sock.recv_multipart()[-1])


# ------------------------------------------------------------------------------------------------------
def test_server_matches_runtime_eval_path(ckpt, policy):
    """Deterministic actions and beliefs per step equal `evaluation_episodes(record_beliefs=True)`."""
    recs = evaluation_episodes(
        policy, EnvConfig.model_validate(ENV_CFG), "test", 3, 10_000, record_beliefs=True
    )
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        hello = c.hello()
        res = drive(c, env_settings(hello), "test", 3, 10_000)
    assert sum(len(r.switches) for r in res) > 0  # the periodic switches happen on the served path too
    for r, e in zip(res, recs, strict=True):
        assert r.steps == len(e.episode) == 100 and r.switches == e.switches
        np.testing.assert_allclose(np.array(r.actions), e.episode.action, atol=1e-5)
        np.testing.assert_allclose(np.array(r.beliefs), e.beliefs, atol=1e-5)
        assert r.ret == pytest.approx(e.ret, abs=1e-3)


def test_hello_describes_the_checkpoint(ckpt):
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        h = c.hello()
    assert h["protocol"] == 1 and h["algorithm"] == "moss" and h["obs_dim"] == 2 and h["action_dim"] == 2
    assert h["belief_dim"] == 6 and h["action_high"] == pytest.approx([0.1, 0.1])
    assert h["checkpoint"] == {
        "sha256": load_checkpoint(ckpt).sha256,
        "env_id": "PointRobot",
        "training_steps": 1234,
    }
    assert (
        h["env"]["interval"] == 25
        and h["env"]["nonstationary"] == "periodic"
        and h["env"]["max_episode_steps"] == 100
    )


def test_sessions_are_isolated(ckpt, policy):
    """Interleaving another session's traffic leaves a session's beliefs exactly as when it runs alone."""
    obs_a, steps_a = transitions(1, 12)
    obs_b, steps_b = transitions(2, 12)
    want, want_act = alone(policy, obs_a, steps_a)
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        a = c.open(obs_a)["session"]
        b = c.open(obs_b)["session"]
        got = []
        for (aa, ra, na), (ab, rb, nb) in zip(steps_a, steps_b, strict=True):
            got.append(c.step(a, aa, ra, na)["belief"])
            c.step(b, ab, rb, nb)
            c.reset(b, nb)  # resets and closes of another session do not leak either
        c.close_session(b)
    np.testing.assert_allclose(np.array(got), want[1:], atol=1e-6)


def test_concurrent_sessions_run_as_one_batch_with_the_same_beliefs(ckpt, policy):
    """N sessions' steps drained together run as one wave; each session's beliefs equal its lone run."""
    n, steps = 8, 5
    runs = [transitions(10 + k, steps) for k in range(n)]
    server = Server.from_checkpoint(ckpt, bind="tcp://127.0.0.1:*")
    sock = raw_socket(server.endpoint)

    def pump(msgs):
        for m in msgs:
            sock.send(P.pack(m))
        got = drain_all(server, len(msgs))
        waves = server.stats.waves
        server.handle(got)  # all drained messages at once, as the loop does
        assert server.stats.waves == waves + 1  # one batched update/belief/act pass
        replies = [msgpack.unpackb(sock.recv()) for _ in msgs]
        assert [r["id"] for r in replies] == [m["id"] for m in msgs]  # arrival order, ids echoed
        return replies

    try:
        opened = pump([{"op": "open", "id": k, "obs": obs.tolist()} for k, (obs, _) in enumerate(runs)])
        sids = [r["session"] for r in opened]
        beliefs = [[np.array(r["belief"])] for r in opened]
        for t in range(steps):
            msgs = [
                {
                    "op": "step",
                    "id": 100 * t + k,
                    "session": sids[k],
                    "action": runs[k][1][t][0].tolist(),
                    "reward": runs[k][1][t][1],
                    "next_obs": runs[k][1][t][2].tolist(),
                }
                for k in range(n)
            ]
            for k, r in enumerate(pump(msgs)):
                beliefs[k].append(np.array(r["belief"]))
                assert r["t"] == t + 1
        assert server.stats.wave_items == n * (steps + 1)
    finally:
        sock.close()
        server.close()
    for k, (obs, st) in enumerate(runs):
        want, _ = alone(policy, obs, st)
        np.testing.assert_allclose(np.array(beliefs[k]), want, atol=1e-5)


def test_pipelined_steps_of_one_session_run_in_order(ckpt, policy):
    """Several steps of the same session in one drain are split into waves, so they still apply in order."""
    obs0, steps = transitions(5, 6)
    want, _ = alone(policy, obs0, steps)
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        sid = c.open(obs0)["session"]
        sock = raw_socket(srv.endpoint)
        for i, (a, r, nxt) in enumerate(steps):
            sock.send(P.pack(P.request("step", i, True, session=sid, action=a, reward=r, next_obs=nxt)))
        replies = [msgpack.unpackb(sock.recv()) for _ in steps]
        sock.close()
    assert [r["id"] for r in replies] == list(range(len(steps)))
    assert all(isinstance(r["belief"], bytes) for r in replies)  # bin in, bin out
    np.testing.assert_allclose(np.array([P.decode_vector(r["belief"]) for r in replies]), want[1:], atol=1e-6)


def test_bad_input_gets_typed_errors_and_never_touches_other_sessions(ckpt, policy):
    obs0, steps = transitions(7, 4)
    want, _ = alone(policy, obs0, steps)
    good = {"session": None, "action": [0.05, 0.05], "reward": 0.5, "next_obs": [0.1, 0.2]}
    with running_server(ckpt, max_frame_bytes=2048) as srv, Client(srv.endpoint) as c:
        sid = c.open(obs0)["session"]
        got = [c.step(sid, *steps[0])["belief"]]
        victim = c.open([0.0, 0.0], session="victim")["session"]
        sock = raw_socket(srv.endpoint)
        g = {**good, "session": victim}
        cases = [
            (b"\xc1\xff garbage", "bad_request"),
            (b"", "bad_request"),
            ([b"two", b"frames"], "bad_request"),
            ([b"", b"", b"x"], "bad_request"),
            ({"op": "fly", "id": 1}, "unknown_op"),
            ({"op": "step", "id": 2, **good, "session": "nobody"}, "unknown_session"),
            ({"op": "step", "id": 3, **g, "action": [0.1, 0.1, 0.1]}, "shape_mismatch"),
            ({"op": "step", "id": 4, **g, "next_obs": b"\x00" * 4}, "shape_mismatch"),
            ({"op": "step", "id": 5, **g, "reward": float("nan")}, "non_finite"),
            ({"op": "step", "id": 6, **g, "next_obs": [float("inf"), 0.0]}, "non_finite"),
            ({"op": "step", "id": 7, **g, "action": ["a", "b"]}, "bad_request"),
            ({"op": "step", "id": 8, **g, "done": 1}, "bad_request"),
            ({"op": "hello", "id": 9, "protocol": 2}, "unsupported_protocol"),
            ({"op": "hello", "id": 10, "pad": "x" * 4096}, "frame_too_large"),
            ({"op": "open", "id": 11, "obs": [0.0, 0.0], "session": "victim"}, "session_exists"),
            ({"op": "close", "id": 12, "session": 5}, "bad_request"),
            ({"op": "reset", "id": 13, "session": victim, "obs": [0.0, float("nan")]}, "non_finite"),
        ]
        for payload, code in cases:
            reply = ask(sock, payload)
            assert reply["ok"] is False and reply["error"]["code"] == code, (payload, reply)
            assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
            if isinstance(payload, dict) and code != "frame_too_large":
                assert reply["id"] == payload["id"]
        sock.close()
        for a, r, nxt in steps[1:]:
            got.append(c.step(sid, a, r, nxt)["belief"])
        stats = c.stats()
        assert c.step(victim, [0.0, 0.0], 0.0, [0.0, 0.0])["t"] == 1  # refused requests changed nothing
    np.testing.assert_allclose(np.array(got), want[1:], atol=1e-6)
    assert stats["errors"]["bad_request"] >= 6 and stats["errors"]["frame_too_large"] == 1


def test_req_socket_envelope_is_answered(ckpt):
    with running_server(ckpt) as srv:
        req = zmq.Context.instance().socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 5000)
        req.connect(srv.endpoint)
        req.send(P.pack({"op": "hello", "id": "q"}))
        reply = msgpack.unpackb(req.recv())
        req.close()
    assert reply["ok"] and reply["id"] == "q" and reply["protocol"] == 1


def test_step_after_done_needs_reset(ckpt):
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        sid = c.open([0.0, 0.0])["session"]
        assert c.step(sid, [0.0, 0.0], 0.0, [0.0, 0.0], done=True)["t"] == 1
        with pytest.raises(ClientError) as e:
            c.step(sid, [0.0, 0.0], 0.0, [0.0, 0.0])
        assert e.value.code == "bad_request" and "reset" in str(e.value)
        assert c.reset(sid, [0.0, 0.0])["t"] == 0
        assert c.step(sid, [0.0, 0.0], 0.0, [0.0, 0.0])["t"] == 1


def test_reset_keep_belief(ckpt, policy):
    obs0, steps = transitions(4, 3)
    want, _ = alone(policy, obs0, steps)
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        sid = c.open(obs0)["session"]
        for st in steps:
            c.step(sid, *st)
        kept = c.reset(sid, [0.0, 0.0], keep_belief=True)
        fresh = c.reset(sid, [0.0, 0.0])
    np.testing.assert_allclose(kept["belief"], want[-1], atol=1e-6)
    np.testing.assert_allclose(fresh["belief"], want[0], atol=1e-6)


def test_too_many_sessions_is_a_clear_error_and_idle_sessions_are_evicted(ckpt):
    with running_server(ckpt, max_sessions=3, idle_timeout=0.4) as srv, Client(srv.endpoint) as c:
        sids = [c.open([0.0, 0.0])["session"] for _ in range(3)]
        with pytest.raises(ClientError) as e:
            c.open([0.0, 0.0])
        assert e.value.code == "too_many_sessions" and "3" in str(e.value)
        c.close_session(sids[0])
        sids[0] = c.open([0.0, 0.0])["session"]  # a closed slot is free again
        keep = sids[1]
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # keep one session busy; the others go idle
            c.step(keep, [0.0, 0.0], 0.0, [0.0, 0.0])
            time.sleep(0.05)
        with pytest.raises(ClientError) as e:
            c.step(sids[2], [0.0, 0.0], 0.0, [0.0, 0.0])
        assert e.value.code == "unknown_session" and "evicted" in str(e.value)
        stats = c.stats()
        assert stats["sessions"] == 1 and stats["evicted"] == 2
        c.step(keep, [0.0, 0.0], 0.0, [0.0, 0.0])


def test_restart_with_state_dir_continues_every_session(ckpt, policy, tmp_path):
    runs = [transitions(20 + k, 10) for k in range(3)]
    state_dir = tmp_path / "state"
    with running_server(ckpt) as ref_srv, Client(ref_srv.endpoint) as ref:
        ref_sids = [ref.open(obs)["session"] for obs, _ in runs]
        with running_server(ckpt, state_dir=state_dir) as srv, Client(srv.endpoint) as c:
            sids = [c.open(obs, session=f"robot-{k}")["session"] for k, (obs, _) in enumerate(runs)]
            for t in range(5):
                for k, (_, st) in enumerate(runs):
                    c.step(sids[k], *st[t])
                    ref.step(ref_sids[k], *st[t])
        assert (state_dir / "sessions.msgpack").is_file()
        with running_server(ckpt, state_dir=state_dir) as srv, Client(srv.endpoint) as c:
            assert c.stats()["sessions"] == 3
            for t in range(5, 10):
                for k, (_, st) in enumerate(runs):
                    got, want = c.step(sids[k], *st[t]), ref.step(ref_sids[k], *st[t])
                    assert got["t"] == want["t"] == t + 1
                    np.testing.assert_allclose(got["belief"], want["belief"], atol=1e-6)
                    np.testing.assert_allclose(got["action"], want["action"], atol=1e-6)


def test_state_dir_of_another_checkpoint_is_refused(ckpt, tmp_path):
    from runtime.sessions import StateFileError

    with running_server(ckpt, state_dir=tmp_path) as srv, Client(srv.endpoint) as c:
        c.open([0.0, 0.0])
    other = make_checkpoint(tmp_path / "other.pt", seed=99)
    with pytest.raises(StateFileError, match="checkpoint_sha256"):
        Server.from_checkpoint(other, bind="tcp://127.0.0.1:*", state_dir=tmp_path)


def test_oracle_needs_and_uses_the_task_vector(tmp_path):
    ck = make_checkpoint(tmp_path / "oracle.pt", algorithm="oracle")
    with running_server(ck) as srv, Client(srv.endpoint) as c:
        assert c.hello()["needs_task_vector"] is True
        with pytest.raises(ClientError) as e:
            c.open([0.0, 0.0])
        assert e.value.code == "bad_request" and "task_vector" in str(e.value)
        sid = c.open([0.0, 0.0], task_vector=[0.5, -0.5])["session"]
        r = c.step(sid, [0.0, 0.0], 0.0, [0.0, 0.0], task_vector=[-0.25, 0.75])
    np.testing.assert_allclose(r["belief"], [-0.25, 0.75])


def test_client_drives_the_oracle_with_the_env_task_vectors(tmp_path):
    ck = make_checkpoint(tmp_path / "oracle.pt", algorithm="oracle", env={"p": 1.0})
    with running_server(ck) as srv, Client(srv.endpoint) as c:
        (res,) = drive(c, env_settings(c.hello(), max_episode_steps=30), "test", 1, 0)
    import envs

    env = envs.make(
        "PointRobot",
        split="test",
        nonstationary="periodic",
        max_episode_steps=30,
        nonstationary_kwargs={"interval": 25, "p": 1.0},
    )
    _, info = env.reset(seed=0, options={"task_index": 0})
    want = [info["task_vector"]]
    for a in res.actions:
        want.append(env.step(a)[4]["task_vector"])
    assert len(res.switches) == 1 and not np.allclose(want[0], want[-1])
    np.testing.assert_allclose(np.array(res.beliefs), np.array(want), atol=1e-6)


def test_stats_count_steps_batches_and_latency(ckpt):
    with running_server(ckpt) as srv, Client(srv.endpoint) as c:
        sid = c.open([0.0, 0.0])["session"]
        for _ in range(5):
            c.step(sid, [0.0, 0.0], 0.0, [0.0, 0.0])
        s = c.stats()
    assert s["sessions"] == 1 and s["steps"] == 5 and s["requests"] == 6 and s["batches"] == 6
    assert s["mean_batch_size"] == 1.0
    assert 0 < s["latency_us"]["batch"]["p50"] <= s["latency_us"]["batch"]["p99"]
    assert 0 < s["latency_us"]["request"]["p50"] <= s["latency_us"]["request"]["p99"]


def test_unreachable_server_times_out():
    ctx = zmq.Context.instance()
    probe = ctx.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")  # bound, never answers
    with Client(f"tcp://127.0.0.1:{port}", timeout_s=0.2) as c, pytest.raises(ClientError, match="no reply"):
        c.hello()
    probe.close(0)


def test_server_module_imports_no_training_code():
    code = (
        "import sys, runtime.server\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('agents', 'envs') and m not in "
        "('agents', 'agents.checkpoint', 'agents.config', 'agents.device', 'agents.parts', 'agents.parts.latent', 'agents.parts.nets', 'agents.parts.sac_nets', "
        "'agents.parts.context_encoders', 'agents.parts.grid_filter', 'agents.parts.readout') "
        "and not m.startswith('agents.policies')]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_busy_polling_server_answers_the_same(ckpt, policy):
    """`spin_us` (busy-poll before blocking) changes when the loop looks for work, not what it answers;
    one-step waves take the preallocated-row path, with array and with bin vectors."""
    obs0, steps = transitions(7, 15)
    want, want_act = alone(policy, obs0, steps)
    with running_server(ckpt, spin_us=300) as srv:
        for binary in (False, True):
            with Client(srv.endpoint, binary=binary) as c:
                sid = c.open(obs0)["session"]
                got = [c.step(sid, a, r, nxt) for a, r, nxt in steps]
            beliefs = np.array([P.decode_vector(g["belief"]) for g in got])
            actions = np.array([P.decode_vector(g["action"]) for g in got])
            np.testing.assert_allclose(beliefs, want[1:], atol=1e-6)
            np.testing.assert_allclose(actions, want_act[1:], atol=1e-6)
            assert [g["t"] for g in got] == list(range(1, len(steps) + 1))


def test_a_wave_answers_each_bad_step_alone_and_packs_replies_as_pack_does(ckpt, policy):
    """A drained batch of plain steps (checked in bulk) with bad ones in between: every bad one gets its
    own typed error, the others run as one wave with their lone-run beliefs, and every reply is the bytes
    `P.pack` writes for it (ids, `t`, arrays or bin as the request's form)."""
    n, steps = 6, 3
    runs = [transitions(30 + k, steps) for k in range(n)]
    server = Server.from_checkpoint(ckpt, bind="tcp://127.0.0.1:*")
    sock = raw_socket(server.endpoint)

    def pump(msgs):
        for m in msgs:
            sock.send(P.pack(m))
        got = drain_all(server, len(msgs))
        server.handle(got)
        raw = [sock.recv() for _ in msgs]
        for r in raw:
            assert P.pack(msgpack.unpackb(r)) == r
        return [msgpack.unpackb(r) for r in raw]

    try:
        opened = pump([{"op": "open", "id": k, "obs": obs.tolist()} for k, (obs, _) in enumerate(runs)])
        sids = [r["session"] for r in opened]
        ended = pump([{"op": "open", "id": 99, "obs": [0.0, 0.0], "session": "ended"}])[0]["session"]
        pump(
            [
                {
                    "op": "step",
                    "session": ended,
                    "action": [0.0, 0.0],
                    "reward": 0.0,
                    "next_obs": [0.0, 0.0],
                    "done": True,
                }
            ]
        )
        beliefs = [[np.array(r["belief"])] for r in opened]
        bad_base = {"op": "step", "action": [0.0, 0.0], "reward": 0.0, "next_obs": [0.0, 0.0]}
        for t in range(steps):
            msgs, codes = [], []
            for k in range(n):
                a, r, nxt = runs[k][1][t]
                binary = k % 2 == 1
                m = {"op": "step", "session": sids[k], "reward": r}
                m["action"] = a.astype("<f4").tobytes() if binary else a.tolist()
                m["next_obs"] = nxt.astype("<f4").tobytes() if binary else nxt.tolist()
                if k != 2:
                    m["id"] = f"{t}-{k}"
                msgs.append(m)
                codes.append(None)
                bad = [
                    ({**bad_base, "session": sids[k], "action": [float("nan"), 0.0]}, "non_finite"),
                    ({**bad_base, "session": "nobody"}, "unknown_session"),
                    ({**bad_base, "session": ended}, "bad_request"),
                    ({**bad_base, "session": sids[k], "next_obs": [1e39, 0.0]}, "non_finite"),
                    ({**bad_base, "session": sids[k], "reward": True}, "bad_request"),
                    ({**bad_base, "session": sids[k], "action": b"\0" * 4}, "shape_mismatch"),
                ][k]
                bad[0]["id"] = f"bad-{t}-{k}"
                msgs.append(bad[0])
                codes.append(bad[1])
            waves = server.stats.waves
            replies = pump(msgs)
            assert server.stats.waves == waves + 1  # the bad ones never split the wave
            j = 0
            for m, code, r in zip(msgs, codes, replies, strict=True):
                assert r.get("id") == m.get("id")
                if code is not None:
                    assert r["ok"] is False and r["error"]["code"] == code, (m, r)
                    continue
                assert r["ok"] is True and r["t"] == t + 1
                assert isinstance(r["belief"], bytes) == isinstance(m["action"], bytes)
                beliefs[j].append(P.decode_vector(r["belief"]))
                j += 1
    finally:
        sock.close()
        server.close()
    for k, (obs, st) in enumerate(runs):
        want, _ = alone(policy, obs, st)
        np.testing.assert_allclose(np.array(beliefs[k]), want, atol=1e-5)


def test_an_oversized_request_gets_a_typed_reply_and_a_huge_one_leaves_the_server_serving(ckpt, policy):
    """Up to the transport cap an oversized request is answered `frame_too_large` naming the limit (here
    an `open` of two million numbers, ~18 MB), on the same connection, and every other session goes on;
    above the cap ZeroMQ drops the message and its connection, and the server keeps serving others."""
    from runtime.server import TRANSPORT_CAP_BYTES, request_limit

    obs0, steps = transitions(3, 4)
    with running_server(ckpt) as srv, Client(srv.endpoint) as other, Client(srv.endpoint, timeout_s=20) as c:
        hello = c.hello()
        assert hello["max_frame_bytes"] == request_limit(srv.spec) == srv.max_frame_bytes < 16_384
        assert hello["transport_cap_bytes"] == TRANSPORT_CAP_BYTES
        sid = other.open(obs0)["session"]
        with pytest.raises(ClientError) as big:
            c.open(np.zeros(2_000_000))
        assert big.value.code == "frame_too_large" and str(srv.max_frame_bytes) in str(big.value)
        assert c.open(obs0)["ok"]  # the same connection still works
        a, r, nxt = steps[0]
        assert other.step(sid, a, r, nxt)["t"] == 1
        # above the cap: no reply on that connection, and the server serves a new one
        ctx = zmq.Context.instance()
        huge = ctx.socket(zmq.DEALER)
        huge.setsockopt(zmq.LINGER, 0)
        huge.connect(srv.endpoint)
        huge.send(b"\x00" * (TRANSPORT_CAP_BYTES + 1))
        assert huge.poll(1000) == 0
        huge.close(0)
        with Client(srv.endpoint) as fresh:
            assert fresh.hello()["ok"]
        a, r, nxt = steps[1]
        assert other.step(sid, a, r, nxt)["t"] == 2


@pytest.mark.parametrize("binary", [False, True])
def test_replies_carry_the_task_read_from_the_belief(tmp_path, binary):
    """With a task readout in the checkpoint: hello states it, and every open/step/reset reply carries
    task_estimate = readout(belief), in the request's vector form; without one, neither appears."""
    from agents.checkpoint import build_readout, store_readout
    from agents.parts.readout import TaskReadout

    plain = make_checkpoint(tmp_path / "plain.pt", seed=3)
    with running_server(plain) as srv, Client(srv.endpoint) as c:
        assert "task_readout" not in c.hello()
        assert "task_estimate" not in c.open(np.array([0.1, 0.2], np.float32))
    with_readout = make_checkpoint(tmp_path / "read.pt", seed=3)
    ck = load_checkpoint(with_readout)
    torch.manual_seed(0)
    store_readout(ck, TaskReadout(build_policy(ck).belief_dim, 2).record({"r2": 0.5}))
    readout = build_readout(load_checkpoint(with_readout))
    with running_server(with_readout) as srv, Client(srv.endpoint, binary=binary) as c:
        info = c.hello()["task_readout"]
        assert info == {"kind": "vector", "dim": 2, "names": None, "quality": {"r2": 0.5}}
        r = c.open(np.array([0.1, 0.2], np.float32))
        replies = [r]
        replies.append(c.step(r["session"], r["action"], -0.3, np.array([0.15, 0.2], np.float32)))
        replies.append(c.reset(r["session"], np.array([0.0, 0.0], np.float32)))
        for rep in replies:
            assert isinstance(rep["task_estimate"], np.ndarray) and rep["task_estimate"].shape == (2,)
            want = readout(torch.as_tensor(rep["belief"])[None])[0].numpy()
            np.testing.assert_allclose(rep["task_estimate"], want, rtol=1e-5, atol=1e-6)
