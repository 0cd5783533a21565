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


def parse(msg, spec=SPEC, max_frame_bytes=None):
    return P.parse(msg if isinstance(msg, bytes) else P.pack(msg), spec, max_frame_bytes)


def refusal(msg, spec=SPEC, max_frame_bytes=None) -> P.ProtocolError:
    with pytest.raises(P.ProtocolError) as e:
        parse(msg, spec, max_frame_bytes)
    assert isinstance(e.value.message, str) and e.value.message
    return e.value


def code_of(msg, spec=SPEC, max_frame_bytes=None) -> str:
    return refusal(msg, spec, max_frame_bytes).code


def test_valid_step_parses_arrays_and_bin_alike():
    a = parse(step())
    b = parse(step(action=np.array([0.1, -0.1], "<f4").tobytes(), next_obs=[0.2, 0.3]))
    assert type(a) is P.Step and a.op == "step" and a.id == 7 and a.session == "a"
    assert not P.wants_bin(a) and P.wants_bin(b)
    np.testing.assert_array_equal(P.decode_vector(a.action), P.decode_vector(b.action))
    assert P.decode_vector(b.action).dtype == np.float32 and a.reward == -1.5 and a.done is False


def test_defaults_of_open_and_reset():
    o = parse({"op": "open", "obs": [0, 1]})
    assert o.deterministic is True and o.session is P.UNSET and o.id is P.NO_ID and o.obs == [0.0, 1.0]
    r = parse({"op": "reset", "session": "x", "obs": [0.0, 1.0], "keep_belief": True})
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
        ({"op": "open", "obs": [0.0, 0.0], "session": None}, "bad_request"),
        ({"op": "close", "session": "a", "protocol": True}, "bad_request"),
        ({"op": "hello", "id": {"a": 1}}, "bad_request"),
        (b"\x82\xa2op\xa5hello\xa2id" + b"\x91" * 2000 + b"\xc0", "bad_request"),  # nested too deeply
        (b"\x91" * 2000 + b"\xc0", "bad_request"),
        (b"\x81\xa2op\xa2\xff\xfe", "bad_request"),  # not UTF-8
    ],
)
def test_refusals_have_their_code(msg, code):
    assert code_of(msg) == code


@pytest.mark.parametrize(
    "msg, code",
    [
        ({"op": "fly", "id": "x"}, "unknown_op"),
        ({"op": "hello", "id": 2**64 - 1, "protocol": 2}, "unsupported_protocol"),
        ({"op": "hello", "id": None, "protocol": "1"}, "bad_request"),
        ({"op": "hello", "id": b"\x00", "extra": 1}, "bad_request"),
        (step(id=-(2**63), session=_DROP), "bad_request"),
        (step(id=1.5, reward="1"), "bad_request"),
        (step(id=True, action=[0.1]), "shape_mismatch"),
        (step(id="s", next_obs=[math.nan, 0.0]), "non_finite"),
        (step(id=0, task_vector=[0.0, 0.0]), "bad_request"),
        ({"id": 9, "op": "step", "session": "a", "action": [0.1, 0.2], 1: 2}, "bad_request"),  # non-str key
    ],
)
def test_refusals_echo_a_usable_id(msg, code):
    """The id of a refused map is echoed whatever else is wrong with it (the fields are checked in any
    order, and an unknown op, protocol or field, or one that does not fit, does not hide it)."""
    e = refusal(msg)
    assert e.code == code and e.id == msg["id"] and type(e.id) is type(msg["id"])


def test_refusals_with_an_unusable_id_or_before_decoding_carry_none():
    for msg in ({"op": "hello", "id": [1]}, {"op": "step", "id": {}}, b"\xc1", [1, 2]):
        assert refusal(msg).id is P.NO_ID
    assert refusal({"op": "hello", "id": 1, "pad": "x" * 100}, max_frame_bytes=50).id is P.NO_ID


def test_frame_too_large_is_checked_before_decoding():
    big = P.pack({"op": "hello", "pad": "x" * 1000})
    assert code_of(big, max_frame_bytes=500) == "frame_too_large"


def test_oracle_needs_task_vector():
    assert code_of({"op": "open", "obs": [0.0, 0.0]}, ORACLE) == "bad_request"
    assert code_of({"op": "open", "obs": [0.0, 0.0], "task_vector": [1.0]}, ORACLE) == "shape_mismatch"
    r = parse({"op": "open", "obs": [0.0, 0.0], "task_vector": [0.5, -0.5]}, ORACLE)
    np.testing.assert_array_equal(P.decode_vector(r.task_vector), [0.5, -0.5])


def test_replies_echo_id_and_use_the_request_form():
    a = P.encode_vector(np.array([1.0, 2.0]), True)
    ok = msgpack.unpackb(P.pack(P.ActReply(id="abc", action=a, belief=[0.5], t=3)))
    assert ok == {"ok": True, "id": "abc", "action": np.array([1, 2], "<f4").tobytes(), "belief": [0.5], "t": 3}
    opened = msgpack.unpackb(P.pack(P.ActReply(action=[0.0], belief=[0.5], t=0, session="s")))
    assert list(opened) == ["ok", "action", "belief", "t", "session"]  # no id without one
    assert msgpack.unpackb(P.pack(P.OkReply(id=None))) == {"ok": True, "id": None}
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
    raw = msgpack.unpackb(P.pack(msg))
    assert "done" not in raw and isinstance(raw["action"], bytes) and raw["op"] == "step"
    req = P.parse(P.pack(msg), SPEC)
    assert P.wants_bin(req) and req.id == 3 and req.reward == 1.0
    with pytest.raises(TypeError):  # a field the op does not have is refused before it is sent
        P.request("step", 1, session="s", deterministc=True)


# -- a catalogue of edge cases, and vectors of many requests at once (decode_rows) ----------------------
F32_MAX = float(np.finfo(np.float32).max)


def _f32(*xs):
    return np.array(xs, "<f4").tobytes()


CASES = [  # (request, the code it is refused with, or None when valid)
    (step(), None),
    (step(id=_DROP, session="b"), None),
    (step(action=_f32(0.1, -0.1), next_obs=_f32(0.2, 0.3), id="bin"), None),
    (step(action=[float("nan"), 0.0]), "non_finite"),
    (step(next_obs=[1e39, 0.0]), "non_finite"),  # finite as float64, overflows as float32
    (step(next_obs=[F32_MAX, -F32_MAX]), None),  # float32's max: accepted
    (step(next_obs=[3.4028235e38, 0.0]), "non_finite"),  # just above it: refused
    (step(action=_f32(0.1, float("inf"))), "non_finite"),
    (step(action=[1, 0.5]), None),  # ints are numbers
    (step(action=[True, 0.5]), "bad_request"),
    (step(action=["a", 0.5]), "bad_request"),
    (step(action=[[0.1], 0.5]), "bad_request"),
    (step(action=[0.1, 0.2, 0.3]), "shape_mismatch"),
    (step(action=_f32(0.1)), "shape_mismatch"),
    (step(action=_f32(0.1, 0.2), next_obs=[0.2, 0.3]), None),  # mixed forms
    (step(reward=float("inf")), "non_finite"),
    (step(reward=-1e39), "non_finite"),
    (step(reward=2), None),
    (step(reward=True), "bad_request"),
    (step(reward=_DROP), "bad_request"),
    (step(done=True), None),
    (step(done=1), "bad_request"),
    (step(session=""), "bad_request"),
    (step(session="x" * 129), "bad_request"),
    (step(session="é" * 128), None),  # 128 characters, more bytes
    (step(session=5), "bad_request"),
    (step(id=[1]), "bad_request"),
    (step(id=None), None),
    (step(id=b"raw"), None),
    (step(protocol=1), None),
    (step(protocol=2), "unsupported_protocol"),
    (step(protocol=1.0), "bad_request"),
    (step(task_vector=[0.0, 0.0]), "bad_request"),
    (step(deterministic=True), "bad_request"),
    (step(x=1), "bad_request"),
    (step(op="open"), "bad_request"),
    ({"op": "open", "obs": [0.0, 0.0]}, None),
    ({"op": "hello"}, None),
    ([1, 2], "bad_request"),
    ("step", "bad_request"),
    ({1: 2}, "bad_request"),
]


@pytest.mark.parametrize("msg, code", CASES)
def test_catalogue_of_edge_cases(msg, code):
    if code is None:
        req = parse(msg)
        assert req.op == msg["op"] and req.id == msg.get("id", P.NO_ID)
    else:
        assert code_of(msg) == code


def test_decode_rows_equals_each_vector_decoded_alone():
    vecs = [[0.1, -0.2], _f32(0.3, 1e-45), [1.0, 16777217.0], _f32(F32_MAX, -F32_MAX)]
    rows = P.decode_rows(vecs)
    assert rows.dtype == np.float32 and rows.shape == (4, 2) and rows.flags.writeable
    np.testing.assert_array_equal(rows, np.stack([P.decode_vector(v) for v in vecs]))
    np.testing.assert_array_equal(P.decode_rows([[1.0, 2.0]]), [[1.0, 2.0]])
