"""Wire protocol v1 (docs/serving.md): the one schema of server, client and tests.

One ZeroMQ message body = one msgpack map. The requests (`Hello`, `Open`, `Step`, `Reset`, `Close`,
`Stats`, tagged by `op`) and the replies (`HelloReply`, `ActReply`, `OkReply`, `StatsReply`,
`ErrorReply`) are msgspec Structs declared here: decoding a request checks the presence and type of every
field and refuses unknown ones. `check` adds what the schema cannot say: the id's type, each vector's
length for the served checkpoint, finiteness as float32, and `task_vector` (required by oracle checkpoints,
refused by the others). A vector is a msgpack array of numbers or `bin` of little-endian float32; a reply
uses `bin` when any vector of its request did (`wants_bin`). A refused request raises `ProtocolError`
carrying a code from `ERROR_CODES` and the id to echo.

`parse` turns a frame into a checked request; `pack`/`unpack` encode and decode any message;
`request` builds a request (client side); `encode_vector`/`decode_vector`/`decode_rows` convert vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import msgspec
import numpy as np
from msgspec import UNSET, Meta, Struct, UnsetType

PROTOCOL = 1
ERROR_CODES: dict[str, str] = {
    "bad_request": "not a msgpack map, a missing or mistyped field, an unknown field, or a step after done",
    "unknown_op": "`op` names no operation of this protocol",
    "unknown_session": "no such session (never opened, closed, or evicted after the idle timeout)",
    "shape_mismatch": "a vector has the wrong length for this checkpoint",
    "non_finite": "a number is NaN or infinite (also after conversion to float32)",
    "too_many_sessions": "the server holds --max-sessions sessions; close one or retry later",
    "unsupported_protocol": "`protocol` is not 1",
    "frame_too_large": "the message is larger than --max-frame-bytes",
    "session_exists": "`open` named a session id that is already open",
    "internal": "the server failed on a valid request (a bug); the session is unchanged",
}
MAX_SESSION_ID = 128
NO_ID = UNSET  # a request without `id` (a reply then has none either)
_F32_MAX = float(np.finfo(np.float32).max)
# msgspec unions cannot hold both str and bin, so `id` is decoded as Any and its type checked here
_ID_TYPES = frozenset({type(None), bool, int, float, str, bytes, UnsetType})

Vector = list[float] | bytes  # (dim,) numbers, or 4 * dim bytes of little-endian float32
SessionId = Annotated[str, Meta(min_length=1, max_length=MAX_SESSION_ID)]


class ProtocolError(Exception):
    """A request refused with error `code` (one of ERROR_CODES), a human-readable message, and the id to
    echo in the reply (NO_ID when the request had no usable one)."""

    def __init__(self, code: str, message: str, id: Any = NO_ID) -> None:
        super().__init__(message)
        self.code, self.message, self.id = code, message, id


@dataclass(frozen=True)
class Spec:
    """What the served checkpoint expects: vector sizes, and whether `task_vector` is required (oracle)."""

    obs_dim: int
    action_dim: int
    task_dim: int | None = None  # set when the policy needs the true task vector


# ------------------------------------------------------------------------------------------------------
# requests
# ------------------------------------------------------------------------------------------------------
class _Request(Struct, tag_field="op", forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    id: Any = UNSET  # nil, bool, int, float, str or bin: echoed in the reply
    protocol: Literal[1] = 1

    @property
    def op(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]


class Hello(_Request, tag="hello"):
    """The served checkpoint, its sizes and limits (`HelloReply`)."""


class Stats(_Request, tag="stats"):
    """The server's counters (`StatsReply`)."""


class Open(_Request, tag="open", kw_only=True):
    """A new session from the prior belief, and its first action (`ActReply` with `session`)."""

    obs: Vector
    session: SessionId | UnsetType = UNSET  # absent: the server draws one
    deterministic: bool = True  # the session's action mode
    task_vector: Vector | UnsetType = UNSET  # oracle checkpoints only, and required there


class Step(_Request, tag="step", kw_only=True):
    """One transition of a session: its belief takes it in, then the action for `next_obs` (`ActReply`)."""

    session: SessionId
    action: Vector  # the action executed
    reward: float
    next_obs: Vector
    done: bool = False  # the episode ended: the next step needs a reset
    task_vector: Vector | UnsetType = UNSET  # oracle only: the task after this transition


class Reset(_Request, tag="reset", kw_only=True):
    """A new episode of a session (`ActReply`, t = 0)."""

    session: SessionId
    obs: Vector
    keep_belief: bool = False  # keep the state, restart only t and the last observation
    task_vector: Vector | UnsetType = UNSET


class Close(_Request, tag="close", kw_only=True):
    """Forget a session (`OkReply`)."""

    session: SessionId


Request = Hello | Open | Step | Reset | Close | Stats
REQUESTS: dict[str, type[Request]] = {cls.__struct_config__.tag: cls for cls in get_args(Request)}
OPS = tuple(REQUESTS)


# ------------------------------------------------------------------------------------------------------
# replies (fields are written in declaration order; UNSET fields are left out)
# ------------------------------------------------------------------------------------------------------
class _Reply(Struct, kw_only=True):
    ok: bool = True
    id: Any = UNSET  # the request's id


class OkReply(_Reply, kw_only=True):
    """`close`."""


class ActReply(_Reply, kw_only=True):
    """`open`, `step`, `reset`: the action for the latest observation and the belief after the request."""

    action: Vector  # (action_dim,)
    belief: Vector  # (belief_dim,)
    t: int  # transitions seen in this episode
    session: str | UnsetType = UNSET  # `open` only: the session id
    task_estimate: Vector | UnsetType = UNSET  # with a task readout: the belief read in task units (TaskReadoutInfo)


class CheckpointInfo(Struct, kw_only=True):
    sha256: str
    env_id: str | None
    training_steps: int
    policy_set: dict[str, Any] | UnsetType = UNSET  # the acting-time settings served other than stored


class TaskReadoutInfo(Struct, kw_only=True):
    """What `task_estimate` holds: the task vector (kind "vector", `dim` numbers in the env's task units) or
    base-task probabilities (kind "base_task", one per name in `names`); `quality`: the readout's fit on
    held-out training-task episodes (r2, r2_per_dim, rmse; or accuracy)."""

    kind: str
    dim: int
    names: list[str] | None
    quality: dict[str, Any]


class HelloReply(_Reply, kw_only=True):
    protocol: int
    algorithm: str
    obs_dim: int
    action_dim: int
    action_low: list[float]
    action_high: list[float]
    belief_dim: int
    needs_task_vector: bool
    checkpoint: CheckpointInfo
    env: dict[str, Any]  # the checkpoint's env config
    max_sessions: int
    max_frame_bytes: int
    transport_cap_bytes: int
    task_readout: TaskReadoutInfo | UnsetType = UNSET  # present when replies carry `task_estimate`


class Percentiles(Struct):
    p50: float | None  # microseconds; None before the first sample
    p99: float | None


class Latencies(Struct):
    batch: Percentiles  # the processing of a drained batch
    request: Percentiles  # a message's arrival to its reply being sent


class StatsReply(_Reply, kw_only=True):
    sessions: int
    max_sessions: int
    evicted: int
    requests: int
    steps: int  # transitions served
    errors: dict[str, int]  # error replies by code
    batches: int  # waves run
    mean_batch_size: float  # requests per wave
    latency_us: Latencies  # over the last 10,000 samples
    uptime_s: float


class ErrorInfo(Struct):
    code: str  # one of ERROR_CODES
    message: str


class ErrorReply(_Reply, kw_only=True):
    ok: bool = False
    error: ErrorInfo


def error_reply(req_id: Any, code: str, message: str) -> ErrorReply:
    return ErrorReply(id=req_id, error=ErrorInfo(code, message))


# ------------------------------------------------------------------------------------------------------
# encoding
# ------------------------------------------------------------------------------------------------------
pack = msgspec.msgpack.Encoder().encode  # any message, Struct or plain map
_decode_request = msgspec.msgpack.Decoder(Request).decode
_decode_any = msgspec.msgpack.Decoder().decode


def unpack(frame: bytes, max_frame_bytes: int | None = None) -> Any:
    """Decode one frame (any msgpack value, maps as dicts); ProtocolError frame_too_large / bad_request."""
    _check_size(frame, max_frame_bytes)
    try:
        return _decode_any(frame)
    except (msgspec.MsgspecError, RecursionError) as e:
        raise ProtocolError("bad_request", f"not a msgpack message: {_reason(e)}") from None


def encode_vector(x: Any, binary: bool) -> list[float] | bytes:
    """A vector as a msgpack array of floats, or as little-endian float32 bytes."""
    a = np.asarray(x, dtype="<f4").ravel()
    return a.tobytes() if binary else a.tolist()


def decode_vector(value: Vector) -> np.ndarray:
    """A vector (array or bin) -> a float32 array of its own."""
    if type(value) is bytes:
        return np.frombuffer(value, dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def decode_rows(values: list[Vector]) -> np.ndarray:
    """n checked vectors of one length (array or bin, mixed) -> (n, dim) float32: one numpy pass."""
    return np.array([np.frombuffer(v, "<f4") if type(v) is bytes else v for v in values], np.float32)


def request(op: str, req_id: Any = NO_ID, binary: bool = False, **fields: Any) -> Request:
    """A request (client side); numpy arrays become vectors in the chosen form, None fields are left out."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            v = encode_vector(v, binary)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return REQUESTS[op](id=req_id, **out)


# ------------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------------
def parse(frame: bytes, spec: Spec, max_frame_bytes: int | None = None) -> Request:
    """One frame -> its checked request; ProtocolError (with the id to echo) on any fault."""
    _check_size(frame, max_frame_bytes)
    try:
        req = _decode_request(frame)
    except (msgspec.MsgspecError, RecursionError) as e:
        raise _refusal(frame, e) from None
    check(req, spec)
    return req


def check(req: Request, spec: Spec) -> None:
    """What the schema leaves to the served checkpoint: the id's type, vector lengths and finiteness as
    float32 (NaN, inf, and finite numbers beyond float32's range fail), and `task_vector`."""
    rid = req.id
    if type(rid) not in _ID_TYPES:
        raise ProtocolError("bad_request", f"id: expected nil, a number, a string or bin, got {_tname(rid)}")
    if isinstance(req, Step):
        _check_vector(req.action, spec.action_dim, "action", rid)
        _check_vector(req.next_obs, spec.obs_dim, "next_obs", rid)
        if not -_F32_MAX <= req.reward <= _F32_MAX:  # also false for NaN
            raise ProtocolError("non_finite", "reward: NaN or infinite value (as float32)", rid)
    elif isinstance(req, (Open, Reset)):
        _check_vector(req.obs, spec.obs_dim, "obs", rid)
    else:
        return
    tv = req.task_vector
    if spec.task_dim is not None:
        if tv is UNSET:
            raise ProtocolError(
                "bad_request",
                f"{req.op}: this checkpoint (oracle) needs 'task_vector' ({spec.task_dim} values)",
                rid,
            )
        _check_vector(tv, spec.task_dim, "task_vector", rid)
    elif tv is not UNSET:
        raise ProtocolError(
            "bad_request", f"{req.op}: 'task_vector' is only accepted by oracle checkpoints", rid
        )


def wants_bin(req: Open | Step | Reset) -> bool:
    """Whether the reply's vectors are bin: when any vector of the request was."""
    if isinstance(req, Step):
        return type(req.action) is bytes or type(req.next_obs) is bytes or type(req.task_vector) is bytes
    return type(req.obs) is bytes or type(req.task_vector) is bytes


def _check_vector(v: Vector, dim: int, key: str, rid: Any) -> None:
    if type(v) is bytes:
        if len(v) != 4 * dim:
            raise ProtocolError(
                "shape_mismatch",
                f"{key}: {len(v)} bytes of float32, expected {dim} values ({4 * dim} bytes)",
                rid,
            )
        v = np.frombuffer(v, "<f4").tolist()
    elif len(v) != dim:
        raise ProtocolError("shape_mismatch", f"{key}: {len(v)} values, expected {dim}", rid)
    for x in v:  # a plain loop: cheaper than any numpy call for the short vectors of a step
        if not -_F32_MAX <= x <= _F32_MAX:  # also false for NaN
            raise ProtocolError("non_finite", f"{key}: NaN or infinite value (as float32)", rid)


def request_id(msg: Any) -> Any:
    """The id to echo from a decoded map: its `id` when it is nil, bool, int, float, str or bin; else NO_ID."""
    if isinstance(msg, dict) and "id" in msg:
        rid = msg["id"]
        if rid is None or isinstance(rid, (bool, int, float, str, bytes)):
            return rid
    return NO_ID


def _refusal(frame: bytes, err: Exception) -> ProtocolError:
    """Why a frame that does not fit the schema is refused. In this order: not msgpack, not a map, an id
    of another type (no id echoed); a protocol that is no integer, or not 1; an op that names no
    operation; else msgspec's account of the first field that does not fit. The frame is decoded a second
    time, as plain values, to find the id to echo (error paths only)."""
    try:
        msg = _decode_any(frame)
    except (msgspec.MsgspecError, RecursionError) as e:
        return ProtocolError("bad_request", f"not a msgpack message: {_reason(e)}")
    if not isinstance(msg, dict):
        return ProtocolError("bad_request", f"a request is a msgpack map, got {_tname(msg)}")
    rid = request_id(msg)
    if "id" in msg and rid is NO_ID:
        return ProtocolError(
            "bad_request", f"id: expected nil, a number, a string or bin, got {_tname(msg['id'])}"
        )
    pv = msg.get("protocol", PROTOCOL)
    if type(pv) is not int:
        return ProtocolError("bad_request", f"protocol: expected an integer, got {_tname(pv)}", rid)
    if pv != PROTOCOL:
        return ProtocolError(
            "unsupported_protocol", f"protocol {pv} is not supported; this server speaks {PROTOCOL}", rid
        )
    op = msg.get("op")
    if type(op) is not str:
        return ProtocolError("bad_request", _reason(err), rid)
    if op not in REQUESTS:
        return ProtocolError("unknown_op", f"unknown op {op[:40]!r}; ops: {', '.join(OPS)}", rid)
    return ProtocolError("bad_request", f"{op}: {_reason(err)}", rid)


def _check_size(frame: bytes, max_frame_bytes: int | None) -> None:
    if max_frame_bytes is not None and len(frame) > max_frame_bytes:
        raise ProtocolError(
            "frame_too_large", f"message of {len(frame)} bytes exceeds the limit of {max_frame_bytes}"
        )


def _reason(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e)[:200]


def _tname(v: Any) -> str:
    return {dict: "map", list: "array", bytes: "bin", str: "string", type(None): "nil"}.get(
        type(v), type(v).__name__
    )
