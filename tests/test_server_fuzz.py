"""Property: no hostile message kills the server, gets an untyped answer, or touches another session."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
import torch
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import drain_all, make_checkpoint, quiet_logs, running_server  # noqa: F401 (autouse fixture)

from agents.checkpoint import build_policy, load_checkpoint
from runtime import protocol as P
from runtime.client import Client
from runtime.server import Server

OBS, ACT = [0.3, -0.2], [0.05, 0.02]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.binary(max_size=16)
)
values = st.recursive(
    scalars,
    lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch, max_size=4),
    max_leaves=12,
)
REQUIRED = {
    "hello": {},
    "stats": {},
    "open": {"obs": [0.0, 0.0]},
    "step": {"session": "fuzz-a", "action": [0.0, 0.0], "reward": 0.0, "next_obs": [0.0, 0.0]},
    "reset": {"session": "fuzz-a", "obs": [0.0, 0.0]},
    "close": {"session": "fuzz-b"},
}
OPTIONAL = {
    "open": {"session": "fuzz-a", "deterministic": False},
    "step": {"done": True},
    "reset": {"keep_belief": True},
}
KEYS = [
    "op",
    "id",
    "protocol",
    "session",
    "obs",
    "action",
    "reward",
    "next_obs",
    "done",
    "deterministic",
    "keep_belief",
    "task_vector",
    "x",
]


@st.composite
def near_valid(draw):
    """A valid request (any subset of its optional fields), then 0-2 fields dropped, replaced or added."""
    op = draw(st.sampled_from(sorted(REQUIRED)))
    msg = {"op": op, **REQUIRED[op]}
    for k, v in OPTIONAL.get(op, {}).items():
        if draw(st.booleans()):
            msg[k] = v
    if draw(st.booleans()):
        msg["protocol"] = 1
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["drop", "replace", "add", "vector"]))
        key = draw(st.sampled_from(KEYS))
        if action == "drop":
            msg.pop(key, None)
        elif action == "vector":
            msg[key] = draw(
                st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=4)
                | st.binary(max_size=16)
            )
        else:
            msg[key] = draw(values)
    if draw(st.booleans()):
        msg["id"] = draw(st.integers(0, 2**32) | st.text(max_size=8))
    return P.pack(msg)


hostile = st.one_of(
    st.binary(max_size=64).map(lambda b: [b]),  # raw bytes
    values.map(lambda v: [msgpack.packb(v, use_bin_type=True)]),  # any msgpack value
    near_valid().map(lambda b: [b]),
    near_valid().map(lambda b: [b]),
    near_valid().map(lambda b: [b]),
    st.lists(st.binary(max_size=24), min_size=2, max_size=4),  # multipart garbage
    st.just([P.pack({"op": "hello", "pad": "x" * 5000})]),  # oversized
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ck = make_checkpoint(tmp_path_factory.mktemp("fuzz") / "moss.pt", seed=5)
    policy = build_policy(load_checkpoint(ck))
    with running_server(ck, max_frame_bytes=4096, max_sessions=64) as srv:
        c = Client(srv.endpoint)
        healthy = c.open(OBS)["session"]  # a random id the fuzzer cannot guess
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        sock.connect(srv.endpoint)
        yield {"client": c, "sock": sock, "healthy": healthy, "policy": policy}
        sock.close()
        c.close()


def check(served, frames):
    sock = served["sock"]
    sock.send_multipart(frames)
    reply = msgpack.unpackb(sock.recv_multipart()[-1])  # zmq.Again here = no answer: a failure
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        assert reply["error"]["code"] in P.ERROR_CODES and reply["error"]["code"] != "internal", reply
        assert isinstance(reply["error"]["message"], str)
    if len(frames) == 1:
        try:
            sent = msgpack.unpackb(frames[0], raw=False)
        except Exception:
            sent = None
        if isinstance(sent, dict) and P.request_id(sent) is not P.NO_ID:
            rid = sent["id"]
            assert reply.get("id") == rid or (isinstance(rid, float) and math.isnan(rid))


def healthy_still_works(served):
    """The healthy session's belief after one more step equals the contract path for its transitions."""
    c, policy = served["client"], served["policy"]
    served.setdefault("steps", 0)
    got = c.step(served["healthy"], ACT, 1.0, OBS)
    served["steps"] += 1
    with torch.no_grad():
        state = policy.init_state(1)
        s, a = torch.tensor([OBS]), torch.tensor([ACT])
        for _ in range(served["steps"]):
            state = policy.update(state, s, a, torch.tensor([1.0]), s)
        want = policy.belief(state)[0].numpy()
    assert got["t"] == served["steps"]
    np.testing.assert_allclose(got["belief"], want, atol=1e-5)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(frames=hostile)
def test_hostile_messages_fast(served, frames):
    check(served, frames)


def test_healthy_session_after_fast_fuzz(served):
    healthy_still_works(served)


@pytest.mark.slow
@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames=hostile)
def test_hostile_messages_slow(served, frames):
    check(served, frames)


@pytest.mark.slow
def test_healthy_session_after_slow_fuzz(served):
    healthy_still_works(served)


@pytest.fixture(scope="module")
def drained(tmp_path_factory):
    """A server driven by hand (`_drain` + `handle`), so that a whole list of messages is one batch."""
    ck = make_checkpoint(tmp_path_factory.mktemp("fuzz-wave") / "moss.pt", seed=6)
    server = Server.from_checkpoint(ck, bind="tcp://127.0.0.1:*", max_frame_bytes=4096, max_sessions=64)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(server.endpoint)
    state = {"server": server, "sock": sock, "t": 0}
    state["healthy"] = [r["session"] for r in batch(state, [[P.pack({"op": "open", "obs": OBS})]] * 4)]
    yield state
    sock.close()
    server.close()


def batch(state, frames_list):
    sock, server = state["sock"], state["server"]
    for frames in frames_list:
        sock.send_multipart(frames)
    server.handle(drain_all(server, len(frames_list)))
    return [msgpack.unpackb(sock.recv_multipart()[-1]) for _ in frames_list]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(frames=st.lists(hostile, max_size=8), where=st.lists(st.integers(0, 12), min_size=4, max_size=4))
def test_hostile_messages_inside_a_wave_of_plain_steps(drained, frames, where):
    """Hostile messages drained together with four healthy plain steps (the bulk-checked path): each gets
    its own typed answer, and the healthy steps all succeed."""
    healthy = [
        [P.pack({"op": "step", "id": f"h{k}", "session": sid, "action": ACT, "reward": 1.0, "next_obs": OBS})]
        for k, sid in enumerate(drained["healthy"])
    ]
    msgs = list(frames)
    for k, w in enumerate(where):
        msgs.insert(min(w, len(msgs)), healthy[k])
    replies = batch(drained, msgs)
    drained["t"] += 1
    for sent, reply in zip(msgs, replies, strict=True):
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
        if sent in healthy:
            assert reply["ok"] is True and reply["id"] == f"h{healthy.index(sent)}"
            assert reply["t"] == drained["t"]
        elif not reply["ok"]:
            assert reply["error"]["code"] in P.ERROR_CODES and reply["error"]["code"] != "internal", reply
