"""The scenario log: every transition of one or more sessions, with change points, for `runtime replay`.

A log is a stream of records, either msgpack (`.msgpack`: maps packed back to back) or JSON Lines
(`.jsonl`: one JSON object per line). The first record is the header

    {"type": "header", "format": "metarl-scenario", "version": 1, "env_id": str, "created": ISO-8601 time,
     ...metadata}

and every following record a transition

    {"type": "transition", "session": str, "episode": int, "t": int, "task_id": str,
     "obs": list[float], "action": list[float], "reward": float, "next_obs": list[float],
     "terminated": bool, "truncated": bool, "change_point": bool,
     "switch": {"step": int, "old": str, "new": str} | None,
     "task_vector": list[float]}      # optional: the true task vector that produced the transition

`t` counts steps within the episode from 0; `change_point` marks the transition from which a new task
applies (the `NonStationary` switch of that step). `ScenarioWriter` writes a log, `ScenarioRecorder` records
an env's transitions through it, and `read_scenario` reads and validates one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NamedTuple, SupportsFloat

import gymnasium as gym
import msgpack
import numpy as np

SCENARIO_FORMAT = "metarl-scenario"
SCENARIO_VERSION = 1
SUFFIXES: dict[str, str] = {".msgpack": "msgpack", ".jsonl": "jsonl"}
_HEADER_KEYS = frozenset({"type", "format", "version", "env_id", "created"})
_TRANSITION_FIELDS: dict[str, tuple[type, ...]] = {
    "session": (str,),
    "episode": (int,),
    "t": (int,),
    "task_id": (str,),
    "obs": (list, bytes),
    "action": (list, bytes),
    "reward": (int, float),
    "next_obs": (list, bytes),
    "terminated": (bool,),
    "truncated": (bool,),
    "change_point": (bool,),
}


class ScenarioError(ValueError):
    """A scenario log that cannot be written or read (the message names the file and the problem)."""


class ChangePoint(NamedTuple):
    """A task switch: from step `t` of `episode` on, task `new` replaced task `old`."""

    episode: int
    t: int
    old: str
    new: str


def _format_of(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ScenarioError(
            f"scenario file {str(path)!r}: unknown extension {path.suffix!r} (expected .msgpack or .jsonl)"
        )
    return fmt


def _floats(x: Any, what: str) -> list[float]:
    """A flat list of python floats from an array-like."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":  # fast path: the recorder passes float arrays
        return x.ravel().tolist()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scenario: {what} must be numeric, got {type(x).__name__}") from e
    return arr.ravel().tolist()


# ----------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------
class ScenarioWriter:
    """Writes a scenario log to `path` (`.msgpack` or `.jsonl`); a context manager.

    The header is written on construction; `metadata` entries are merged into it (they may not reuse the
    header's own keys). Records are buffered and flushed at the end of each episode (a transition with
    `terminated` or `truncated`, or one of a new session/episode) and on `close()`.
    """

    def __init__(
        self, path: str | os.PathLike[str], env_id: str, metadata: Mapping[str, Any] | None = None
    ) -> None:
        self.path = Path(path)
        self.format = _format_of(self.path)
        clash = _HEADER_KEYS.intersection(metadata or {})
        if clash:
            raise ScenarioError(f"scenario metadata may not set the header keys {sorted(clash)}")
        self.header: dict[str, Any] = {
            "type": "header",
            "format": SCENARIO_FORMAT,
            "version": SCENARIO_VERSION,
            "env_id": str(env_id),
            "created": datetime.now(timezone.utc).isoformat(),
            **dict(metadata or {}),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(self.path, "wb")  # closed in close()
        self._packer = msgpack.Packer(use_bin_type=True) if self.format == "msgpack" else None
        self._last_episode: tuple[str, int] | None = None
        self.n_transitions = 0
        self._write(self.header)
        self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def _vec(self, x: Any, what: str) -> list[float] | bytes:
        """msgpack: `bin` of little-endian float64 (exact, and ~5x cheaper to write than a float list);
        JSONL: a list of floats. The reader returns lists either way."""
        if self._packer is not None:
            try:
                return np.asarray(x, dtype="<f8").tobytes()  # C order: the flattened vector
            except (TypeError, ValueError) as e:
                raise ValueError(f"scenario: {what} must be numeric, got {type(x).__name__}") from e
        return _floats(x, what)

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise ScenarioError(f"scenario file {str(self.path)!r} is closed")
        if self._packer is not None:
            self._file.write(self._packer.pack(record))
        else:
            self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    def write_transition(
        self,
        *,
        session: str,
        episode: int,
        t: int,
        task_id: str,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        next_obs: Any,
        terminated: bool,
        truncated: bool,
        change_point: bool | None = None,
        switch: Mapping[str, Any] | None = None,
        task_vector: Any = None,
    ) -> dict[str, Any]:
        """Append one transition; returns the record as written.

        Vectors (any array-like) are flattened to lists of floats. `change_point` defaults to whether a
        `switch` ({"step", "old", "new"}) is given.
        """
        sw: dict[str, Any] | None = None
        if switch is not None:
            try:
                sw = {"step": int(switch["step"]), "old": str(switch["old"]), "new": str(switch["new"])}
            except KeyError as e:
                raise ValueError(f"scenario: switch must have step, old and new; missing {e}") from e
        record = {
            "type": "transition",
            "session": str(session),
            "episode": int(episode),
            "t": int(t),
            "task_id": str(task_id),
            "obs": self._vec(obs, "obs"),
            "action": self._vec(action, "action"),
            "reward": float(reward),
            "next_obs": self._vec(next_obs, "next_obs"),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "change_point": bool(sw is not None if change_point is None else change_point),
            "switch": sw,
        }
        if task_vector is not None:
            record["task_vector"] = self._vec(task_vector, "task_vector")
        key = (record["session"], record["episode"])
        if self._last_episode is not None and key != self._last_episode:
            self.flush()
        self._write(record)
        self._last_episode = key
        self.n_transitions += 1
        if record["terminated"] or record["truncated"]:
            self.flush()
        return record

    def write_episode(
        self,
        *,
        session: str,
        episode: int,
        task_ids: Sequence[str],
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: Sequence[bool],
        truncated: Sequence[bool],
        switches: Sequence[Mapping[str, Any] | None],
        task_vector: np.ndarray | None = None,
    ) -> None:
        """Append L transitions at once (arrays [L, ...]; `switches[t]` is step t's switch or None;
        `task_vector` [L, V], optional: the true task of each transition).

        msgpack: one `episode` record with the vectors stacked into float64 `bin`s (the per-step cost of
        recording is then an append, not a serialisation); JSONL: L transition records. The reader gives
        back the same transitions either way.
        """
        L = len(reward)
        if self._packer is None:
            for t in range(L):
                self.write_transition(
                    session=session,
                    episode=episode,
                    t=t,
                    task_id=task_ids[t],
                    obs=obs[t],
                    action=action[t],
                    reward=reward[t],
                    next_obs=next_obs[t],
                    terminated=terminated[t],
                    truncated=truncated[t],
                    switch=switches[t],
                    task_vector=None if task_vector is None else task_vector[t],
                )
            return
        o, a, o2 = (np.asarray(x, dtype="<f8").reshape(L, -1) for x in (obs, action, next_obs))
        extra: dict[str, Any] = {}
        if task_vector is not None:
            tv = np.asarray(task_vector, dtype="<f8").reshape(L, -1)
            extra = {"task_vector": tv.tobytes(), "task_dim": tv.shape[1]}
        self._write(
            {
                "type": "episode",
                "session": str(session),
                "episode": int(episode),
                "task_id": [str(x) for x in task_ids],
                "obs": o.tobytes(),
                "action": a.tobytes(),
                "reward": np.asarray(reward, dtype="<f8").tobytes(),
                "next_obs": o2.tobytes(),
                "dims": [o.shape[1], a.shape[1]],
                "terminated": [bool(x) for x in terminated],
                "truncated": [bool(x) for x in truncated],
                "switches": [
                    None
                    if sw is None
                    else {"step": int(sw["step"]), "old": str(sw["old"]), "new": str(sw["new"])}
                    for sw in switches
                ],
                **extra,
            }
        )
        self.n_transitions += L
        self.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> ScenarioWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() still leaves a complete file
        try:
            self.close()
        except Exception:
            pass


# ----------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    """A read scenario log: its `header` and its `transitions` (records as dicts, in file order)."""

    header: dict[str, Any]
    transitions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def env_id(self) -> str:
        return str(self.header["env_id"])

    def sessions(self) -> list[str]:
        """Session names in order of first appearance."""
        return list(dict.fromkeys(tr["session"] for tr in self.transitions))

    def episodes(self, session: str | None = None) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """Transitions grouped by (session, episode), in order of first appearance (one session if given)."""
        out: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for tr in self.transitions:
            if session is None or tr["session"] == session:
                out.setdefault((tr["session"], tr["episode"]), []).append(tr)
        return out

    def change_points(self, session: str | None = None) -> list[ChangePoint]:
        """(episode, t, old task id, new task id) of every change point (of one session if given).

        A change point without a `switch` record (e.g. marked by a simulator client) takes `old` from the
        previous transition of the same episode ("" at the episode's first step) and `new` from its task id.
        """
        out: list[ChangePoint] = []
        prev_task: dict[tuple[str, int], str] = {}
        for tr in self.transitions:
            key = (tr["session"], tr["episode"])
            if (session is None or tr["session"] == session) and tr["change_point"]:
                sw = tr["switch"]
                if sw is not None:
                    out.append(ChangePoint(tr["episode"], tr["t"], sw["old"], sw["new"]))
                else:
                    out.append(ChangePoint(tr["episode"], tr["t"], prev_task.get(key, ""), tr["task_id"]))
            prev_task[key] = tr["task_id"]
        return out


def _iter_msgpack(path: Path) -> Iterator[tuple[int, Any]]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=True)
        end = 0  # byte offset just after the last whole record
        count = 0
        try:
            for obj in unpacker:
                end = unpacker.tell()
                yield count, obj
                count += 1
        except (ValueError, TypeError) as e:  # msgpack's FormatError, StackError, ExtraData are ValueErrors
            why = str(e) or type(e).__name__
            raise ScenarioError(
                f"scenario file {str(path)!r}: corrupt msgpack data in record {count} (after byte {end}): {why}"
            ) from e
        if end != size:
            raise ScenarioError(
                f"scenario file {str(path)!r}: truncated: {size - end} trailing bytes do not form a whole "
                f"record (the file ends inside record {count})"
            )


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        n = data.count(b"\n")
        raise ScenarioError(f"scenario file {str(path)!r}: truncated: line {n + 1} has no line end")
    for i, line in enumerate(data.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ScenarioError(f"scenario file {str(path)!r}: corrupt JSON on line {i + 1}: {e}") from e
        yield i, obj


def _check_header(path: Path, rec: Any) -> dict[str, Any]:
    where = f"scenario file {str(path)!r}"
    if not isinstance(rec, dict) or rec.get("type") != "header":
        raise ScenarioError(f"{where}: the first record is not a header (not a scenario log?)")
    if rec.get("format") != SCENARIO_FORMAT:
        raise ScenarioError(f"{where}: wrong format tag {rec.get('format')!r} (expected {SCENARIO_FORMAT!r})")
    version = rec.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ScenarioError(f"{where}: invalid version {version!r} in the header")
    if version > SCENARIO_VERSION:
        raise ScenarioError(
            f"{where}: format version {version} is newer than this reader supports ({SCENARIO_VERSION}); "
            "upgrade the package"
        )
    if not isinstance(rec.get("env_id"), str):
        raise ScenarioError(f"{where}: the header has no env_id string")
    return rec


def _expand_episode(path: Path, n: int, rec: dict[str, Any]) -> list[dict[str, Any]]:
    """An `episode` record (see ScenarioWriter.write_episode) as its transition records."""
    where = f"scenario file {str(path)!r}, record {n}"
    try:
        L = len(rec["terminated"])
        od, ad = (int(x) for x in rec["dims"])
        o = np.frombuffer(rec["obs"], dtype="<f8").reshape(L, od)
        a = np.frombuffer(rec["action"], dtype="<f8").reshape(L, ad)
        r = np.frombuffer(rec["reward"], dtype="<f8").reshape(L)
        o2 = np.frombuffer(rec["next_obs"], dtype="<f8").reshape(L, od)
        rows = list(zip(rec["task_id"], rec["truncated"], rec["switches"], strict=True))
        tv = np.frombuffer(rec["task_vector"], dtype="<f8").reshape(L, int(rec["task_dim"])) if "task_vector" in rec else None
    except (KeyError, TypeError, ValueError) as e:
        raise ScenarioError(f"{where}: malformed episode record ({e})") from None
    out = [
        {
            "type": "transition",
            "session": rec.get("session"),
            "episode": rec.get("episode"),
            "t": t,
            "task_id": task_id,
            "obs": o[t].tolist(),
            "action": a[t].tolist(),
            "reward": float(r[t]),
            "next_obs": o2[t].tolist(),
            "terminated": rec["terminated"][t],
            "truncated": trunc,
            "change_point": sw is not None,
            "switch": sw,
        }
        for t, (task_id, trunc, sw) in enumerate(rows)
    ]
    if tv is not None:
        for t, tr in enumerate(out):
            tr["task_vector"] = tv[t].tolist()
    return out


def _check_transition(path: Path, n: int, rec: Any) -> dict[str, Any]:
    where = f"scenario file {str(path)!r}, record {n}"
    if not isinstance(rec, dict):
        raise ScenarioError(f"{where}: expected a map, got {type(rec).__name__}")
    if rec.get("type") != "transition":
        raise ScenarioError(f"{where}: unknown record type {rec.get('type')!r} (expected 'transition')")
    for key, types in _TRANSITION_FIELDS.items():
        if key not in rec:
            raise ScenarioError(f"{where}: missing field {key!r}")
        value = rec[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise ScenarioError(f"{where}: field {key!r} has type {type(value).__name__}")
    for key in ("obs", "action", "next_obs", "task_vector"):
        if key == "task_vector" and key not in rec:  # optional
            continue
        if not isinstance(rec[key], (list, bytes)):
            raise ScenarioError(f"{where}: field {key!r} has type {type(rec[key]).__name__}")
        if isinstance(rec[key], bytes):
            if len(rec[key]) % 8:
                raise ScenarioError(f"{where}: field {key!r} is not whole little-endian float64 values")
            rec[key] = np.frombuffer(rec[key], dtype="<f8").tolist()
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rec[key]):
            raise ScenarioError(f"{where}: field {key!r} is not a list of numbers")
        rec[key] = [float(v) for v in rec[key]]
    rec["reward"] = float(rec["reward"])
    sw = rec.get("switch")
    if sw is not None:
        if not (
            isinstance(sw, dict)
            and isinstance(sw.get("step"), int)
            and isinstance(sw.get("old"), str)
            and isinstance(sw.get("new"), str)
        ):
            raise ScenarioError(f"{where}: field 'switch' must be None or {{step: int, old: str, new: str}}")
    rec["switch"] = sw
    return rec


def read_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario log (format from the extension, `.msgpack` or `.jsonl`).

    Raises ScenarioError naming the file and the problem: missing file, unknown extension, empty file,
    no header, wrong format tag, newer version, truncated or corrupt data, malformed records.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"scenario file {str(p)!r} does not exist")
    fmt = _format_of(p)
    records = _iter_msgpack(p) if fmt == "msgpack" else _iter_jsonl(p)
    header: dict[str, Any] | None = None
    transitions: list[dict[str, Any]] = []
    for i, rec in records:
        if header is None:
            header = _check_header(p, rec)
        elif isinstance(rec, dict) and rec.get("type") == "episode":
            transitions.extend(_check_transition(p, i, r) for r in _expand_episode(p, i, rec))
        else:
            transitions.append(_check_transition(p, i, rec))
    if header is None:
        raise ScenarioError(f"scenario file {str(p)!r} is empty (no header)")
    return Scenario(header=header, transitions=transitions)


# ----------------------------------------------------------------------------------------------------------
# recording an env
# ----------------------------------------------------------------------------------------------------------
class ScenarioRecorder(gym.Wrapper):
    """Writes every transition of the wrapped env to a scenario log.

    `target` is a path (the recorder owns the writer and closes it in `close()`) or an open
    `ScenarioWriter` (shared, e.g. by several recorders with different `session` names; the caller closes
    it). Episodes are numbered from 0 per recorder (one per `reset`); the task id comes from
    `info["task_id"]` (else `env.unwrapped.task.id`); `info["task_switch"]` (from `NonStationary` inside
    this wrapper) marks the transition as a change point and is stored as its `switch`.
    """

    def __init__(
        self,
        env: gym.Env,
        target: str | os.PathLike[str] | ScenarioWriter,
        session: str = "local",
        env_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(env)
        if isinstance(target, ScenarioWriter):
            self.writer = target
            self._owns_writer = False
        else:
            if env_id is None:
                env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            self.writer = ScenarioWriter(target, env_id, metadata)
            self._owns_writer = True
        self.session = str(session)
        self.episode = -1
        self._first_obs: np.ndarray | None = None
        self._steps: list[tuple] = []

    def _flat(self, obs: Any) -> np.ndarray:
        """The observation as a flat float64 array."""
        if isinstance(self.observation_space, gym.spaces.Box):
            return np.array(obs, dtype=np.float64).ravel()
        return np.asarray(gym.spaces.flatten(self.observation_space, obs), dtype=np.float64)

    def _write_episode(self) -> None:
        """Write the buffered steps of the current episode (if any) as one record."""
        steps, self._steps = self._steps, []
        if not steps:
            return
        actions, next_obs, rewards, terms, truncs, task_ids, switches, task_vectors = zip(*steps, strict=True)
        if any(t is None for t in task_ids):
            task = getattr(self.env.unwrapped, "task", None)
            fallback = task.id if task is not None else ""
            task_ids = tuple(fallback if t is None else t for t in task_ids)
        L = len(rewards)
        if isinstance(self.observation_space, gym.spaces.Box):
            nxt = np.asarray(next_obs, dtype=np.float64).reshape(L, -1)  # one conversion for the episode
        else:
            nxt = np.stack([self._flat(o) for o in next_obs])
        self.writer.write_episode(
            session=self.session,
            episode=self.episode,
            task_ids=task_ids,
            obs=np.concatenate([self._first_obs[None], nxt[:-1]]),
            action=np.asarray(actions, dtype=np.float64).reshape(L, -1),
            reward=np.asarray(rewards, dtype=np.float64),
            next_obs=nxt,
            terminated=terms,
            truncated=truncs,
            switches=switches,
            task_vector=None if any(v is None for v in task_vectors) else np.stack(task_vectors).reshape(L, -1),
        )
        self._first_obs = nxt[-1]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._write_episode()  # an episode cut short by reset is still recorded
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode += 1
        self._first_obs = self._flat(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        # the hot path only keeps references (the env returns a fresh obs array each step; the action is
        # copied since callers may reuse its buffer); conversion happens once per episode
        if self._first_obs is None:
            raise gym.error.ResetNeeded("ScenarioRecorder: call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps.append(
            (
                action.copy() if isinstance(action, np.ndarray) else action,
                obs,
                float(reward),
                bool(terminated),
                bool(truncated),
                info.get("task_id"),
                info.get("task_switch"),
                info.get("task_vector"),
            )
        )
        if terminated or truncated:
            self._write_episode()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._write_episode()
        if self._owns_writer:
            self.writer.close()
        super().close()


__all__ = [
    "SCENARIO_FORMAT",
    "SCENARIO_VERSION",
    "ChangePoint",
    "Scenario",
    "ScenarioError",
    "ScenarioRecorder",
    "ScenarioWriter",
    "read_scenario",
]
