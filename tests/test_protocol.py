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


# -- a drained batch at once (parse_many, pack_rows) ------------------------------------------------------
F32_MAX = float(np.finfo(np.float32).max)


def _f32(*xs):
    return np.array(xs, "<f4").tobytes()


def same(got, want):
    """parse_many's result for a message equals parse_request's: the same Request, or the same error."""
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want)
        if isinstance(want, P.ProtocolError):
            assert (got.code, got.message) == (want.code, want.message)
        return
    assert isinstance(got, P.Request)
    for f in ("op", "id", "session", "reward", "done", "deterministic", "keep_belief", "binary"):
        g, w = getattr(got, f), getattr(want, f)
        assert type(g) is type(w) and (g == w or (isinstance(w, float) and math.isnan(w))), (f, g, w)
    for f in ("obs", "action", "task_vector"):
        g, w = getattr(got, f), getattr(want, f)
        if w is None:
            assert g is None
        else:
            assert g.dtype == w.dtype == np.float32 and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def parse_alone(msg, spec=SPEC):
    try:
        return P.parse_request(msg, spec)
    except Exception as e:
        return e


BATCH_CASES = [
    step(),
    step(id=_DROP, session="b"),
    step(action=_f32(0.1, -0.1), next_obs=_f32(0.2, 0.3), id="bin"),
    step(action=[float("nan"), 0.0]),
    step(next_obs=[1e39, 0.0]),  # finite as float64, overflows as float32
    step(next_obs=[F32_MAX, -F32_MAX]),  # float32's max: accepted
    step(next_obs=[3.4028235e38, 0.0]),  # just above it: refused
    step(action=_f32(0.1, float("inf"))),
    step(action=[1, 0.5]),  # ints are numbers: valid, parsed alone
    step(action=[True, 0.5]),
    step(action=["a", 0.5]),
    step(action=[[0.1], 0.5]),
    step(action=[0.1, 0.2, 0.3]),
    step(action=_f32(0.1)),
    step(action=_f32(0.1, 0.2), next_obs=[0.2, 0.3]),  # mixed forms
    step(reward=float("inf")),
    step(reward=-1e39),
    step(reward=2),
    step(reward=True),
    step(reward=_DROP),
    step(done=True),
    step(done=1),
    step(session=""),
    step(session="x" * 129),
    step(session=5),
    step(id=[1]),
    step(id=None),
    step(id=b"raw"),
    step(protocol=1),
    step(protocol=2),
    step(protocol=1.0),
    step(task_vector=[0.0, 0.0]),
    step(deterministic=True),
    step(x=1),
    step(op="open"),
    {"op": "open", "obs": [0.0, 0.0]},
    {"op": "hello"},
    [1, 2],
    "step",
    {1: 2},
]


def test_parse_many_equals_parse_request_message_by_message():
    plain = [step(id=k, session=f"s{k}", reward=0.25 * k) for k in range(6)]
    for batch in (plain + BATCH_CASES, BATCH_CASES + plain, plain[:3] + BATCH_CASES[:1], BATCH_CASES):
        got, rows = P.parse_many(batch, SPEC)
        assert len(got) == len(batch)
        for g, m in zip(got, batch, strict=True):
            same(g, parse_alone(m))
            if isinstance(g, P.Request) and g.row >= 0:  # its vectors are rows of the bulk arrays
                np.testing.assert_array_equal(rows.action[g.row], g.action)
                np.testing.assert_array_equal(rows.obs[g.row], g.obs)
    got, rows = P.parse_many(plain[:3], SPEC)  # fewer than BULK_MIN: parsed alone
    assert rows is None and all(g.row == -1 for g in got)
    oracle = [step(id=k, task_vector=[0.5, 0.5]) for k in range(6)]  # the oracle: always alone
    for g, m in zip(P.parse_many(oracle, ORACLE)[0], oracle, strict=True):
        same(g, parse_alone(m, ORACLE))


def test_parse_many_rounds_the_reward_to_float32_like_parse_request():
    msgs = [step(reward=r) for r in (0.1, -1e30, F32_MAX, -F32_MAX, 1e-45, 16777217.0)]
    for g, m in zip(P.parse_many(msgs, SPEC)[0], msgs, strict=True):
        assert g.row >= 0
        same(g, parse_alone(m))


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("dims", [(2, 6), (1, 17), (70, 3)])  # fixarray, array16 / bin8, bin16 headers
def test_pack_rows_writes_what_pack_writes(binary, dims):
    rng = np.random.default_rng(0)
    n = 5
    a = rng.normal(size=(n, dims[0])).astype(np.float32)
    b = rng.normal(size=(n, dims[1])).astype(np.float32)
    b[0, 0], b[1, 0] = np.nan, -np.inf
    data, width = P.pack_rows([("action", a), ("belief", b)], binary)
    assert len(data) == n * width
    for j in range(n):
        want = P.pack({"action": P.encode_vector(a[j], binary), "belief": P.encode_vector(b[j], binary)})
        assert data[j * width : (j + 1) * width] == want[1:]  # the map's entries, without its header
