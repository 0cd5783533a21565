"""The session store: every open session's encoder state as one row of batched tensors, plus its last
observation, step count, episode-over flag, action mode and last activity time.

Rows live in preallocated tensors (`state`, from `policy.init_state`) that grow by doubling up to
`max_sessions`, so a batch of any sessions is gathered and scattered with `select_state`/`put_state`.
Sessions idle longer than `idle_timeout` seconds are evicted. `save`/`load` persist the sessions as one
msgpack file (tensors as raw little-endian bytes with dtype and shape; never pickle) so a restarted server
continues every session with the same belief; `snapshot` + `write_snapshot` do the same in two halves,
so the serving loop only copies rows and a writer thread does the rest.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import torch

from agents.policies import AgentPolicy, put_state
from runtime.protocol import ProtocolError

STATE_FORMAT = "metarl-sessions"
STATE_VERSION = 1
STATE_FILE = "sessions.msgpack"


class StateFileError(ValueError):
    """A session state file that cannot be restored (the message says why)."""


class SessionStore:
    def __init__(
        self,
        policy: AgentPolicy,
        max_sessions: int = 1024,
        idle_timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.max_sessions = int(max_sessions)
        self.idle_timeout = float(idle_timeout)
        self.clock = clock
        self.capacity = 0
        self.state: dict[str, torch.Tensor] = {}
        self.last_obs = np.zeros((0, policy.obs_dim), np.float32)
        self.t = np.zeros(0, np.int64)
        self.done = np.zeros(0, bool)
        self.deterministic = np.zeros(0, bool)
        self.last_seen = np.zeros(0, np.float64)
        self.slots: dict[str, int] = {}
        self.free: list[int] = []
        self.evicted: OrderedDict[str, float] = OrderedDict()  # recently evicted ids (for a clear error)
        self.n_evicted = 0
        self._grow(min(self.max_sessions, 64))

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, sid: str) -> bool:
        return sid in self.slots

    # -- rows ---------------------------------------------------------------------------------------
    def _grow(self, capacity: int) -> None:
        old = self.capacity
        fresh = self.policy.init_state(capacity)
        for k, v in self.state.items():
            fresh[k][:old] = v
        self.state = fresh

        def extend(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((capacity, *a.shape[1:]), fill, dtype=a.dtype)
            out[:old] = a
            return out

        self.last_obs = extend(self.last_obs, 0.0)
        self.t = extend(self.t, 0)
        self.done = extend(self.done, False)
        self.deterministic = extend(self.deterministic, True)
        self.last_seen = extend(self.last_seen, 0.0)
        self.free.extend(range(capacity - 1, old - 1, -1))  # pop() hands out low slots first
        self.capacity = capacity

    def init_rows(self, slots: list[int]) -> None:
        """Reset rows to the prior belief state."""
        put_state(self.state, slots, self.policy.init_state(len(slots)))

    # -- lifecycle ----------------------------------------------------------------------------------
    def open(self, sid: str | None = None) -> tuple[str, int]:
        """Allocate a session (prior state); ProtocolError session_exists / too_many_sessions."""
        if sid is not None and sid in self.slots:
            raise ProtocolError(
                "session_exists", f"session {sid!r} is already open (send reset, or close it first)"
            )
        if len(self.slots) >= self.max_sessions:
            self.evict_idle()
            if len(self.slots) >= self.max_sessions:
                raise ProtocolError(
                    "too_many_sessions",
                    f"the server holds its maximum of {self.max_sessions} sessions; close one or retry later",
                )
        if not self.free:
            self._grow(min(self.max_sessions, 2 * self.capacity))
        while sid is None or sid in self.slots:
            sid = "s" + secrets.token_hex(8)
        slot = self.free.pop()
        self.slots[sid] = slot
        self.evicted.pop(sid, None)
        self.init_rows([slot])
        self.t[slot], self.done[slot], self.deterministic[slot] = 0, False, True
        self.last_seen[slot] = self.clock()
        return sid, slot

    def slot(self, sid: str) -> int:
        """The row of an open session (and mark it active); ProtocolError unknown_session."""
        slot = self.slots.get(sid)
        if slot is None:
            if sid in self.evicted:
                raise ProtocolError(
                    "unknown_session", f"session {sid!r} was evicted after {self.idle_timeout:g} s idle"
                )
            raise ProtocolError("unknown_session", f"unknown session {sid!r} (never opened, or closed)")
        self.last_seen[slot] = self.clock()
        return slot

    def close(self, sid: str) -> None:
        slot = self.slot(sid)
        del self.slots[sid]
        self.free.append(slot)

    def evict_idle(self) -> list[str]:
        """Close sessions idle for longer than the timeout; returns their ids."""
        if not self.slots:
            return []
        cutoff = self.clock() - self.idle_timeout
        gone = [sid for sid, slot in self.slots.items() if self.last_seen[slot] < cutoff]
        for sid in gone:
            self.free.append(self.slots.pop(sid))
            self.evicted[sid] = self.clock()
            if len(self.evicted) > 10_000:
                self.evicted.popitem(last=False)
        self.n_evicted += len(gone)
        return gone

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: Path, meta: dict[str, Any]) -> int:
        """Write every session to `path` atomically; returns how many."""
        return write_snapshot(path, meta, self.snapshot())

    def snapshot(self) -> Snapshot:
        """A copy of every session's row (ids, counters, last observation, state rows): cheap enough for the
        serving loop; `write_snapshot` turns it into the file, on any thread."""
        ids, slots = list(self.slots), list(self.slots.values())
        idx = torch.as_tensor(slots, dtype=torch.long)
        return Snapshot(
            ids, self.t[slots].copy(), self.done[slots].copy(), self.deterministic[slots].copy(),
            self.last_obs[slots].copy(), {k: v.index_select(0, idx) for k, v in self.state.items()},
        )  # fmt: skip

    def load(self, path: Path, meta: dict[str, Any]) -> int:
        """Restore the sessions of `path` (written by `save` for the same checkpoint); returns how many."""
        try:
            doc = msgpack.unpackb(path.read_bytes(), raw=False)
        except Exception as e:
            raise StateFileError(
                f"{path}: not a readable session state file ({type(e).__name__}: {e})"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise StateFileError(f"{path}: not a {STATE_FORMAT} file")
        if doc.get("version") != STATE_VERSION:
            raise StateFileError(
                f"{path}: session state version {doc.get('version')!r} unsupported ({STATE_VERSION})"
            )
        for k, v in meta.items():
            if doc.get(k) != v:
                raise StateFileError(
                    f"{path}: saved for {k}={doc.get(k)!r}, but this server has {k}={v!r}; "
                    "move the file away to start without those sessions"
                )
        sessions = doc.get("sessions", [])
        if len(sessions) > self.max_sessions:
            raise StateFileError(
                f"{path}: holds {len(sessions)} sessions, more than --max-sessions {self.max_sessions}"
            )
        try:
            for rec in sessions:
                sid, slot = self.open(str(rec["id"]))
                self.t[slot], self.done[slot] = int(rec["t"]), bool(rec["done"])
                self.deterministic[slot] = bool(rec["deterministic"])
                self.last_obs[slot] = np.frombuffer(rec["last_obs"], "<f4").reshape(self.policy.obs_dim)
                for k, v in self.state.items():
                    v[slot] = _tensor_in(rec["state"][k], tuple(v.shape[1:]), v.dtype)
        except (KeyError, TypeError, ValueError, ProtocolError) as e:
            raise StateFileError(f"{path}: damaged session record ({type(e).__name__}: {e})") from None
        return len(sessions)


@dataclass
class Snapshot:
    """Every session's row at one moment (copies: the store may change while it is written)."""

    ids: list[str]
    t: np.ndarray
    done: np.ndarray
    deterministic: np.ndarray
    last_obs: np.ndarray
    state: dict[str, torch.Tensor]


def write_snapshot(path: Path, meta: dict[str, Any], snap: Snapshot) -> int:
    """Write `snap` to `path` atomically (a temporary file, then a rename): a crash mid-write leaves the
    previous file whole. Returns the number of sessions written."""
    sessions = [
        {
            "id": sid,
            "t": int(snap.t[j]),
            "done": bool(snap.done[j]),
            "deterministic": bool(snap.deterministic[j]),
            "last_obs": snap.last_obs[j].astype("<f4").tobytes(),
            "state": {k: _tensor_out(v[j]) for k, v in snap.state.items()},
        }
        for j, sid in enumerate(snap.ids)
    ]
    doc = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **meta,
        "sessions": sessions,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(msgpack.packb(doc, use_bin_type=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(sessions)


def _tensor_out(t: torch.Tensor) -> dict[str, Any]:
    a = t.detach().cpu().numpy()
    a = a.astype(a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _tensor_in(rec: dict[str, Any], shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    dt = np.dtype(str(rec["dtype"]))
    if dt.kind not in "fiub":
        raise ValueError(f"dtype {dt} not allowed")
    a = np.frombuffer(rec["data"], dtype=dt)
    if tuple(rec["shape"]) != shape:
        raise ValueError(f"state shape {rec['shape']} != {list(shape)}")
    return torch.from_numpy(a.reshape(shape).copy()).to(dtype)
