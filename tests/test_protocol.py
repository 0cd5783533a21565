"""Wire protocol v1 codec and validation (no sockets)."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from runtime import protocol as P

SPEC = P.Spec(obs_dim=2, action_dim=2)
ORACLE = P.Spec(obs_dim=2, action_dim=2, task_dim=2)


def step(**over):
    msg = {
        "op": "step",
        "id": 7,
        "session": "a",
        "action": [0.1, -0.1],
        "reward": -1.5,
        "next_obs": [0.2, 0.3],
    }
    msg.update(over)
    return {k: v for k, v in msg.items() if v is not _DROP}


_DROP = object()


def code_of(msg, spec=SPEC, max_frame_bytes=None) -> str:
    with pytest.raises(P.ProtocolError) as e:
        raw = msg if isinstance(msg, bytes) else P.pack(msg)
        P.parse_request(P.unpack(raw, max_frame_bytes), spec)
    return e.value.code


def test_valid_step_parses_arrays_and_bin_alike():
    a = P.parse_request(step(), SPEC)
    b = P.parse_request(step(action=np.array([0.1, -0.1], "<f4").tobytes(), next_obs=[0.2, 0.3]), SPEC)
    assert a.op == "step" and a.id == 7 and a.session == "a" and not a.binary and b.binary
    np.testing.assert_array_equal(a.action, b.action)
    assert a.action.dtype == np.float32 and a.reward == -1.5 and a.done is False


def test_defaults_of_open_and_reset():
    o = P.parse_request({"op": "open", "obs": [0, 1]}, SPEC)
    assert o.deterministic is True and o.session is None and o.id is P.NO_ID
    r = P.parse_request({"op": "reset", "session": "x", "obs": [0.0, 1.0], "keep_belief": True}, SPEC)
    assert r.keep_belief is True


@pytest.mark.parametrize(
    "msg, code",
    [
        (b"\xc1", "bad_request"),  # a byte msgpack never uses
        (b"\x92\x01", "bad_request"),  # truncated array
        (P.pack({"op": "hello"}) + b"\x00", "bad_request"),  # trailing bytes
        ([1, 2], "bad_request"),  # not a map
        ({1: "hello"}, "bad_request"),  # non-string key
        ({"id": 1}, "bad_request"),  # no op
        ({"op": 3}, "bad_request"),
        ({"op": "fly"}, "unknown_op"),
        ({"op": "hello", "protocol": 2}, "unsupported_protocol"),
        ({"op": "hello", "protocol": "1"}, "bad_request"),
        ({"op": "hello", "extra": 1}, "bad_request"),
        ({"op": "hello", "id": [1]}, "bad_request"),
        (step(session=_DROP), "bad_request"),
        (step(session=""), "bad_request"),
        (step(session="x" * 129), "bad_request"),
        (step(action=[0.1]), "shape_mismatch"),
        (step(action=[[0.1, 0.2]]), "bad_request"),
        (step(action=b"\x00" * 12), "shape_mismatch"),
        (step(action=[True, False]), "bad_request"),
        (step(action="0.1,0.2"), "bad_request"),
        (step(next_obs=[math.nan, 0.0]), "non_finite"),
        (step(next_obs=[math.inf, 0.0]), "non_finite"),
        (step(next_obs=[1e39, 0.0]), "non_finite"),  # finite as float64, inf as float32
        (step(next_obs=np.array([np.nan, 0], "<f4").tobytes()), "non_finite"),
        (step(reward=math.nan), "non_finite"),
        (step(reward=-1e300), "non_finite"),
        (step(reward="1"), "bad_request"),
        (step(reward=True), "bad_request"),
        (step(done="yes"), "bad_request"),
        (step(task_vector=[0.0, 0.0]), "bad_request"),  # only for oracle checkpoints
        ({"op": "open", "obs": [0.0, 0.0], "deterministic": 1}, "bad_request"),
    ],
)
def test_refusals_have_their_code(msg, code):
    assert code_of(msg) == code


def test_frame_too_large_is_checked_before_decoding():
    big = P.pack({"op": "hello", "pad": "x" * 1000})
    assert code_of(big, max_frame_bytes=500) == "frame_too_large"


def test_oracle_needs_task_vector():
    assert code_of({"op": "open", "obs": [0.0, 0.0]}, ORACLE) == "bad_request"
    assert code_of({"op": "open", "obs": [0.0, 0.0], "task_vector": [1.0]}, ORACLE) == "shape_mismatch"
    r = P.parse_request({"op": "open", "obs": [0.0, 0.0], "task_vector": [0.5, -0.5]}, ORACLE)
    np.testing.assert_array_equal(r.task_vector, [0.5, -0.5])


def test_replies_echo_id_and_use_the_request_form():
    ok = P.ok_reply("abc", action=P.encode_vector(np.array([1.0, 2.0]), True))
    assert ok["ok"] is True and ok["id"] == "abc" and ok["action"] == np.array([1, 2], "<f4").tobytes()
    assert "id" not in P.ok_reply(P.NO_ID)
    err = msgpack.unpackb(P.pack(P.error_reply(5, "non_finite", "x")))
    assert err == {"ok": False, "id": 5, "error": {"code": "non_finite", "message": "x"}}
    np.testing.assert_array_equal(P.decode_vector(P.encode_vector([0.25, -1], True)), [0.25, -1])
    np.testing.assert_array_equal(P.decode_vector(P.encode_vector([0.25, -1], False)), [0.25, -1])


def test_request_builder_round_trips_through_parse():
    msg = P.request(
        "step",
        3,
        True,
        session="s",
        action=np.array([0.1, 0.2]),
        reward=np.float32(1.0),
        next_obs=np.zeros(2),
        done=None,
    )
    assert "done" not in msg and isinstance(msg["action"], bytes)
    req = P.parse_request(P.unpack(P.pack(msg)), SPEC)
    assert req.binary and req.id == 3 and req.reward == 1.0
