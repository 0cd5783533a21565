"""`runtime serve`: a ZeroMQ ROUTER that serves a checkpoint's policy to many sessions at once.

Loop: block in poll, then drain every waiting message (non-blocking, up to `drain_cap`), decode and check
each against the wire schema (`protocol.parse`), and run the requests of all sessions as one *wave*: one
batched `policy.update` over the sessions that sent `step` (their vectors converted by one numpy pass per
field), one batched `policy.belief`, and one `policy.act` per action mode over every session that needs an
action (open, reset, step). Replies leave in arrival order. A session that appears twice in one drain
(pipelined steps) starts a new wave, so its requests still run in order. `batching=False` runs one wave
per request (the benchmark's baseline).

Sessions' states live in host tensors. On a device other than the CPU (`from_checkpoint(device=...)`)
the policy computes there behind `agents.policies.on_device.HostStates`, which moves each wave's rows to
the device and back; on the CPU (the default) the policy is called directly.

This module imports only the served side of `agents` (policies, checkpoint): no training code.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
import zmq

from agents.checkpoint import Checkpoint, build_policy, build_readout, load_checkpoint
from agents.parts.readout import TaskReadout
from agents.policies import AgentPolicy, State, put_state, select_state
from agents.policies.on_device import HostStates
from runtime import protocol as P
from runtime.sessions import STATE_FILE, SessionStore, write_snapshot

log = structlog.get_logger("runtime.server")

DEFAULT_BIND = "tcp://127.0.0.1:5555"
DRAIN_CAP = 1024
_NOBLOCK, _SNDMORE_NOBLOCK = int(zmq.NOBLOCK), int(zmq.SNDMORE | zmq.NOBLOCK)  # plain ints: enum `|` costs us
_RCVMORE = int(zmq.RCVMORE)


def hello_info(ck: Checkpoint, policy: AgentPolicy, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The static fields of the `hello` reply (`P.HelloReply`); `overrides`: the policy settings served
    other than stored."""
    env_cfg = ck.config.get("env") if isinstance(ck.config, dict) else None
    info = {
        "protocol": P.PROTOCOL,
        "algorithm": ck.algorithm,
        "obs_dim": policy.obs_dim,
        "action_dim": policy.action_dim,
        "action_low": policy.action_low.tolist(),
        "action_high": policy.action_high.tolist(),
        "belief_dim": policy.belief_dim,
        "needs_task_vector": bool(policy.needs_task_vector),
        "checkpoint": P.CheckpointInfo(
            sha256=ck.sha256,
            env_id=(ck.env or {}).get("id") or (env_cfg or {}).get("id"),
            training_steps=int((ck.stats or {}).get("env_steps", 0) or 0),
            policy_set=dict(overrides) if overrides else P.UNSET,
        ),
        "env": dict(env_cfg or {}),
    }
    if ck.readout:
        spec = ck.readout["spec"]
        info["task_readout"] = P.TaskReadoutInfo(
            kind=spec["kind"], dim=int(spec["out_dim"]), names=spec.get("names"), quality=dict(ck.readout["quality"])
        )
    return info


#: the largest message a server reads (ZeroMQ's MAXMSGSIZE): up to it an oversized request is answered
#: `frame_too_large`; beyond it ZeroMQ drops the message and the sender's connection
TRANSPORT_CAP_BYTES = 64 << 20


def request_limit(spec: P.Spec) -> int:
    """The default per-request size limit for a model: four times its largest valid request (a `step` or
    `open` with every vector as msgpack float64, 9 bytes a number, and the longest session id, request id
    and field names), and at least 4 KiB."""
    numbers = 2 * spec.obs_dim + spec.action_dim + (spec.task_dim or 0)
    return max(4096, 4 * (9 * numbers + 512))


#: upper bounds of the cumulative histograms (Prometheus buckets): request latency in seconds, wave sizes
LATENCY_BOUNDS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
WAVE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Stats:
    """Counters, cumulative histograms and latency samples (the last 10,000 of each) for the `stats` op and
    the Prometheus endpoint (runtime/metrics.py), which reads them when scraped."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests = 0
        self.steps = 0
        self.ops: Counter[str] = Counter()  # decoded, valid requests by op
        self.errors: Counter[str] = Counter()
        self.waves = 0
        self.wave_items = 0
        self.batch_us: deque[float] = deque(maxlen=10_000)
        self.request_us: deque[float] = deque(maxlen=10_000)
        self.snapshots = 0
        self.snapshot_failures = 0
        self.last_snapshot: float | None = None  # monotonic time the last written snapshot was taken
        self.latency_counts = np.zeros(len(LATENCY_BOUNDS_S) + 1, np.int64)  # last: above every bound
        self.latency_sum_s = 0.0
        self.wave_counts = np.zeros(len(WAVE_BOUNDS) + 1, np.int64)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def observe_latencies(self, seconds: np.ndarray) -> None:
        self.latency_counts += np.bincount(np.searchsorted(LATENCY_BOUNDS_S, seconds), minlength=len(self.latency_counts))
        self.latency_sum_s += float(seconds.sum())

    def snapshot(self) -> dict[str, Any]:
        """The counter fields of the `stats` reply (`P.StatsReply`)."""

        def pct(d: deque[float]) -> P.Percentiles:
            if not d:
                return P.Percentiles(None, None)
            p50, p99 = np.percentile(np.fromiter(d, float), [50, 99]).tolist()
            return P.Percentiles(round(p50, 1), round(p99, 1))

        return {
            "requests": self.requests,
            "steps": self.steps,
            "errors": dict(self.errors),
            "batches": self.waves,
            "mean_batch_size": round(self.wave_items / self.waves, 3) if self.waves else 0.0,
            "latency_us": P.Latencies(batch=pct(self.batch_us), request=pct(self.request_us)),
            "uptime_s": round(self.uptime_s(), 3),
        }


class Server:
    def __init__(
        self,
        policy: AgentPolicy,
        info: dict[str, Any],
        bind: str = DEFAULT_BIND,
        max_sessions: int = 1024,
        idle_timeout: float = 600.0,
        state_dir: str | Path | None = None,
        max_frame_bytes: int | None = None,
        batching: bool = True,
        drain_cap: int = DRAIN_CAP,
        context: zmq.Context | None = None,
        torch_threads: int | None = 1,
        spin_us: float = 0.0,
        snapshot_every: float | None = None,
        readout: TaskReadout | None = None,
    ) -> None:
        """`state_dir`: sessions are saved there on shutdown and restored on start; with `snapshot_every`
        (seconds) also written there that often while serving (copied on the loop, written by a thread), so
        a crashed server restarts with every session as of its last snapshot."""
        if snapshot_every is not None and (state_dir is None or snapshot_every <= 0):
            raise ValueError("snapshot_every needs a state_dir and a positive number of seconds")
        self.policy = policy.eval()
        self.readout = readout.eval() if readout is not None else None  # ok replies then carry task_estimate
        if readout is not None and readout.belief_dim != policy.belief_dim:
            raise ValueError(f"the task readout reads {readout.belief_dim}-d beliefs; the policy's are {policy.belief_dim}-d")
        self.info = info
        self.spec = P.Spec(
            policy.obs_dim, policy.action_dim, policy.belief_dim if policy.needs_task_vector else None
        )
        self.store = SessionStore(policy, max_sessions, idle_timeout)
        self.max_frame_bytes = int(max_frame_bytes) if max_frame_bytes is not None else request_limit(self.spec)
        self.batching = batching
        self.torch_threads = torch_threads  # process-wide; None: leave torch alone (in-process tests)
        self.drain_cap = int(drain_cap)
        self.state_path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        self.stats = Stats()
        self._stop = threading.Event()
        self._poll_ms = int(max(1, min(100, idle_timeout * 250)))
        self._spin_s = max(0.0, float(spin_us)) * 1e-6
        self._next_evict = 0.0
        self.snapshot_every = snapshot_every
        self._next_snapshot = time.monotonic() + (snapshot_every or 0.0)
        self._writer: threading.Thread | None = None
        # saved sessions fit only the same policy: checkpoint, and the settings it is served with (state shapes)
        self._meta = {
            "checkpoint_sha256": info["checkpoint"].sha256,
            "algorithm": info["algorithm"],
            "policy_set": info["checkpoint"].policy_set or None,  # UNSET (not served otherwise): None
        }
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        # frames up to the transport cap get a `frame_too_large` reply; ZeroMQ drops a larger one together
        # with its sender's connection, before it is read into memory
        self.transport_cap = max(TRANSPORT_CAP_BYTES, 2 * self.max_frame_bytes)
        self.sock.setsockopt(zmq.MAXMSGSIZE, self.transport_cap)
        try:
            self.sock.bind(bind)
        except zmq.ZMQError:
            self.sock.close(0)
            raise
        self.endpoint: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._poller = zmq.Poller()
        self._poller.register(self.sock, zmq.POLLIN)
        # a wave of one step (the latency case) fills one preallocated float32 row; its four torch views
        # (s, a, r, s') are made once here, so that wave creates no input tensor at all
        o, a = policy.obs_dim, policy.action_dim
        self._one = np.zeros(2 * o + a + 1, np.float32)
        row = torch.from_numpy(self._one).unsqueeze(0)
        self._one_views = (row[:, :o], row[:, o : o + a], row[:, o + a : o + a + 1], row[:, o + a + 1 :])
        if (
            self.state_path is not None and self.state_path.is_file()
        ):  # after bind: a taken port loses nothing
            try:
                n = self.store.load(self.state_path, self._meta)
            except Exception:
                self.sock.close(0)
                raise
            if snapshot_every is None:  # nothing will overwrite it: keep a later crash from restoring it again
                self.state_path.replace(self.state_path.with_name(STATE_FILE + ".restored"))
            log.info("sessions restored", sessions=n, path=str(self.state_path))

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, overrides: dict[str, Any] | None = None, device: str | torch.device = "cpu", **kwargs: Any
    ) -> Server:
        """Serve the checkpoint at `path` with its policy on `device` (a torch device); `overrides` replace
        acting-time entries of its policy spec. The task readout reads the beliefs on the CPU."""
        ck = load_checkpoint(path)
        policy: Any = build_policy(ck, overrides, device)
        if policy.device.type != "cpu":
            policy = HostStates(policy)
        return cls(policy, hello_info(ck, policy, overrides), readout=build_readout(ck), **kwargs)

    # -- loop -----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to answer what is in flight and return (thread- and signal-safe)."""
        self._stop.set()

    def serve_forever(self) -> None:
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        log.info(
            "serving",
            endpoint=self.endpoint,
            algorithm=self.info["algorithm"],
            sessions=len(self.store),
            max_sessions=self.store.max_sessions,
            batching=self.batching,
            spin_us=round(self._spin_s * 1e6, 1),
        )
        try:
            with torch.inference_mode():
                while not self._stop.is_set():
                    if self._wait():
                        self._handle_safely(self._drain())
                    self._maybe_evict()
                    self._maybe_snapshot()
                while msgs := self._drain():  # answer what is in flight
                    self._handle_safely(msgs)
        finally:
            self.close()

    def _handle_safely(self, msgs: list[tuple[list[bytes], float]]) -> None:
        try:
            self.handle(msgs)
        except Exception:  # handle() answers every request itself; this is the last line against a bug
            log.exception("batch failed", messages=len(msgs))

    def _maybe_snapshot(self) -> None:
        """Every `snapshot_every` seconds: copy the sessions here and write them on a thread (skipped while the
        previous write is still running)."""
        if self.snapshot_every is None or time.monotonic() < self._next_snapshot:
            return
        self._next_snapshot = time.monotonic() + self.snapshot_every
        if self._writer is not None and self._writer.is_alive():
            return
        snap, taken = self.store.snapshot(), time.monotonic()

        def write() -> None:
            try:
                write_snapshot(self.state_path, self._meta, snap)  # type: ignore[arg-type]
                self.stats.snapshots += 1
                self.stats.last_snapshot = taken
            except OSError as e:  # a full disk must not stop serving
                self.stats.snapshot_failures += 1
                log.error("session snapshot failed", error=str(e), path=str(self.state_path))

        self._writer = threading.Thread(target=write, name="session-snapshot", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self.sock.closed:
            return
        self.sock.close()
        if self._writer is not None:
            self._writer.join()
        if self.state_path is not None:
            n = self.store.save(self.state_path, self._meta)
            log.info("sessions saved", sessions=n, path=str(self.state_path))
        log.info(
            "stopped",
            **{k: v for k, v in self.stats.snapshot().items() if k in ("requests", "steps", "batches")},
        )

    def _wait(self) -> bool:
        """True when a message is waiting. With `spin_us`, busy-poll that long first: a core that blocks
        between requests sleeps, and waking it (and refilling its caches) costs more than the whole
        server's work on a one-session round trip. Then block in poll for up to `_poll_ms`."""
        poll = self._poller.poll
        if self._spin_s:
            clock = time.perf_counter
            end = clock() + self._spin_s
            while True:
                if poll(0):
                    return True
                if clock() >= end:
                    break
        return bool(poll(self._poll_ms))

    def _drain(self) -> list[tuple[list[bytes], float]]:
        """Every waiting message (up to `drain_cap`) with its arrival time, without blocking.

        After the first message one zero-timeout poll says whether more wait (cheaper than the zmq.Again a
        last recv would raise: the one-session case ends there). If more do, frames are received until
        zmq.Again, one `recv` per frame and one RCVMORE check each, no poll per message (a ZeroMQ message
        arrives whole, so its later frames never raise zmq.Again)."""
        msgs: list[tuple[list[bytes], float]] = []
        sock, clock = self.sock, time.perf_counter
        try:
            frames = sock.recv_multipart(_NOBLOCK)
        except zmq.Again:
            return msgs
        msgs.append((frames, clock()))
        if not self._poller.poll(0):
            return msgs
        recv, more, cap = sock.recv, sock.getsockopt, self.drain_cap
        while len(msgs) < cap:
            try:
                frames = [recv(_NOBLOCK)]
            except zmq.Again:
                break
            while more(_RCVMORE):
                frames.append(recv(_NOBLOCK))
            msgs.append((frames, clock()))
        return msgs

    def _maybe_evict(self) -> None:
        now = time.monotonic()
        if now >= self._next_evict:
            self._next_evict = now + min(1.0, self.store.idle_timeout / 4)
            for sid in self.store.evict_idle():
                log.info("session evicted", session=sid, idle_timeout_s=self.store.idle_timeout)

    # -- one drained batch ----------------------------------------------------------------------------
    def handle(self, msgs: list[tuple[list[bytes], float]]) -> None:
        """Decode, run and answer a drained batch of messages (replies in arrival order)."""
        if not msgs:
            return
        if torch.is_inference_mode_enabled():  # serve_forever runs in inference mode already
            self._handle(msgs)
        else:
            with torch.inference_mode():
                self._handle(msgs)

    def _handle(self, msgs: list[tuple[list[bytes], float]]) -> None:
        t0 = time.perf_counter()
        n = len(msgs)
        replies: list[Any] = [None] * n  # a reply Struct per message
        envelopes: list[list[bytes]] = [[]] * n
        parse, spec, limit, ops = P.parse, self.spec, self.max_frame_bytes, self.stats.ops
        wave: list[tuple[int, P.Request]] = []
        touched: set[str] = set()
        for i, (frames, _) in enumerate(msgs):
            if len(frames) == 2 and frames[1]:  # a DEALER's [identity, body]: split_envelope's common case
                envelopes[i], body = frames[:1], frames[1]
            else:
                envelope, body = split_envelope(frames)
                envelopes[i] = envelope
                if body is None:
                    replies[i] = self._error(
                        P.NO_ID,
                        "bad_request",
                        f"expected one message frame after the envelope, got {len(frames) - len(envelope)}",
                        None,
                    )
                    continue
            try:
                req = parse(body, spec, limit)
            except P.ProtocolError as e:
                replies[i] = self._error(e.id, e.code, e.message, None)
                continue
            except Exception as e:  # a bug in decoding or checking: answer it, keep serving
                log.exception("decoding failed")
                replies[i] = self._error(P.NO_ID, "internal", f"{type(e).__name__}: {e}", None)
                continue
            t = type(req)
            if t is P.Step or t is P.Open or t is P.Reset or t is P.Close:
                ops[req.op] += 1
                sid = req.session
                if sid is not P.UNSET:  # an `open` without one gets a fresh id
                    if sid in touched:
                        self._run_wave(wave, replies)
                        wave, touched = [], set()
                    touched.add(sid)  # type: ignore[arg-type]
                if t is P.Close:
                    replies[i] = self._close(req)  # type: ignore[arg-type]
                else:
                    wave.append((i, req))
                    if not self.batching:
                        self._run_wave(wave, replies)
                        wave, touched = [], set()
            elif t is P.Hello:
                ops["hello"] += 1
                replies[i] = P.HelloReply(
                    id=req.id,
                    **self.info,
                    max_sessions=self.store.max_sessions,
                    max_frame_bytes=self.max_frame_bytes,
                    transport_cap_bytes=self.transport_cap,
                )
            else:
                ops["stats"] += 1
                replies[i] = P.StatsReply(
                    id=req.id,
                    sessions=len(self.store),
                    max_sessions=self.store.max_sessions,
                    evicted=self.store.n_evicted,
                    **self.stats.snapshot(),
                )
        self._run_wave(wave, replies)
        send, encode = self.sock.send, P.pack
        for envelope, reply in zip(envelopes, replies, strict=True):
            try:
                for frame in envelope:
                    send(frame, _SNDMORE_NOBLOCK)
                send(encode(reply), _NOBLOCK)
            except zmq.ZMQError as e:  # peer gone, or an unroutable envelope
                log.debug("reply dropped", error=str(e))
        t1 = time.perf_counter()
        st = self.stats
        st.requests += len(msgs)
        st.batch_us.append((t1 - t0) * 1e6)
        if n == 1:
            lat = t1 - msgs[0][1]
            st.request_us.append(lat * 1e6)
            st.latency_counts[bisect.bisect_left(LATENCY_BOUNDS_S, lat)] += 1
            st.latency_sum_s += lat
        else:
            lat_s = t1 - np.fromiter((tr for _, tr in msgs), float, n)
            st.request_us.extend((lat_s * 1e6).tolist())
            st.observe_latencies(lat_s)

    def _error(self, req_id: Any, code: str, message: str, session: str | None) -> P.ErrorReply:
        self.stats.errors[code] += 1
        log.info(
            "request refused",
            code=code,
            message=message,
            session=session,
            request_id=req_id if req_id is not P.NO_ID and not isinstance(req_id, bytes) else None,
        )
        return P.error_reply(req_id, code, message)

    def _close(self, req: P.Close) -> P.OkReply | P.ErrorReply:
        try:
            self.store.close(req.session)
        except P.ProtocolError as e:
            return self._error(req.id, e.code, e.message, req.session)
        log.info("session closed", session=req.session)
        return P.OkReply(id=req.id)

    def _run_wave(self, wave: list[tuple[int, P.Request]], replies: list[Any]) -> None:
        """One batched update over the steps of `wave`, then one belief and act pass over all of it."""
        if not wave:
            return
        store = self.store
        ready: list[tuple[int, Any, str, int]] = []  # (reply index, open/reset request, session id, slot)
        steps: list[tuple[int, Any, str, int]] = []  # (reply index, step request, session id, slot)
        fresh: list[int] = []
        slot_of, done, last_seen, now = store.slots.get, store.done, store.last_seen, store.clock()
        for i, req in wave:
            is_step = type(req) is P.Step
            if is_step:  # the common case: an open session, episode not over
                slot = slot_of(req.session)
                if slot is not None and not done[slot]:
                    last_seen[slot] = now  # as store.slot(): before any open of this wave may evict
                    steps.append((i, req, req.session, slot))
                    continue
            try:
                if type(req) is P.Open:
                    sid, slot = store.open(None if req.session is P.UNSET else req.session)
                    store.deterministic[slot] = req.deterministic
                    log.info("session opened", session=sid, deterministic=req.deterministic)
                else:
                    sid = req.session
                    slot = store.slot(sid)
                    if is_step and store.done[slot]:
                        raise P.ProtocolError(
                            "bad_request", f"session {sid!r}: the episode ended (done); send reset"
                        )
            except P.ProtocolError as e:
                replies[i] = self._error(req.id, e.code, e.message, req.session or None)
                continue
            if is_step:
                steps.append((i, req, sid, slot))
            else:
                if type(req) is P.Reset and not req.keep_belief:
                    fresh.append(slot)
                store.t[slot], store.done[slot] = 0, False
                store.last_obs[slot] = P.decode_vector(req.obs)
                ready.append((i, req, sid, slot))
        if fresh:
            store.init_rows(fresh)
        if not ready and not steps:
            return
        items = steps + ready
        try:
            action, belief = self._compute(steps, ready)
        except Exception as e:  # a bug, not a bad request: answer, log, keep serving
            log.exception("wave failed", size=len(wave))
            for i, req in wave:
                if replies[i] is None:
                    replies[i] = self._error(req.id, "internal", f"{type(e).__name__}: {e}", req.session or None)
            return
        self.stats.waves += 1
        self.stats.wave_items += len(items)
        self.stats.wave_counts[bisect.bisect_left(WAVE_BOUNDS, len(items))] += 1
        ts = store.t[[x[3] for x in items]].tolist()
        rows = [action, belief] if self.readout is None else [action, belief, self.readout(belief)]
        lists = bins = None  # the action, belief (and estimate) rows: lists of floats for arrays, float32 bytes for bin
        unset = P.UNSET
        for j, (i, req, sid, _slot) in enumerate(items):
            if P.wants_bin(req):
                if bins is None:
                    bins = [x.numpy().astype("<f4", copy=False) for x in rows]
                vec = [x[j].tobytes() for x in bins]
            else:
                if lists is None:
                    lists = [x.tolist() for x in rows]
                vec = [x[j] for x in lists]
            session = sid if type(req) is P.Open else unset
            est = vec[2] if len(vec) == 3 else unset
            replies[i] = P.ActReply(id=req.id, action=vec[0], belief=vec[1], t=ts[j], session=session, task_estimate=est)

    def _compute(self, steps: list, ready: list) -> tuple[torch.Tensor, torch.Tensor]:
        """update over `steps`, then belief and act over steps + ready (in that order).

        Rows of the session store are addressed by a slice when the batch is one session (numpy and torch
        views: no gather, no scatter, no index tensors), else by an index array; the policy calls are the
        contract calls of `runtime eval` either way. A view handed to `policy.update` is only read (the
        contract returns a new state); it is then overwritten with that new state.
        """
        store, policy = self.store, self.policy
        oracle = policy.needs_task_vector
        if len(steps) == 1 and not ready:
            return self._compute_one(*steps[0])
        new_state = None
        if steps:
            ns = len(steps)
            rows, rows_t = _rows([x[3] for x in steps])
            a_np = P.decode_rows([x[1].action for x in steps])
            s2 = P.decode_rows([x[1].next_obs for x in steps])
            rew = np.fromiter((x[1].reward for x in steps), np.float32, ns).reshape(ns, 1)
            sub = _gather(store.state, rows_t)
            new_state = policy.update(
                sub,
                torch.from_numpy(store.last_obs[rows]),
                torch.from_numpy(a_np),
                torch.from_numpy(rew),
                torch.from_numpy(s2),
            )
            if oracle:
                tv = torch.from_numpy(P.decode_rows([x[1].task_vector for x in steps]))
                new_state = policy.set_task_vector(new_state, tv)  # type: ignore[attr-defined]
            _scatter(store.state, rows_t, new_state)
            store.last_obs[rows] = s2
            store.t[rows] += 1
            store.done[rows] = [x[1].done for x in steps]
            self.stats.steps += ns
        if oracle and ready:  # open/reset set the task vector too
            _, sl = _rows([x[3] for x in ready])
            tv = torch.from_numpy(P.decode_rows([x[1].task_vector for x in ready]))
            _scatter(store.state, sl, policy.set_task_vector(_gather(store.state, sl), tv))  # type: ignore[attr-defined]
        if ready:
            rows, rows_t = _rows([x[3] for x in steps + ready])
            sub = _gather(store.state, rows_t)
        else:
            sub = new_state
        belief = policy.belief(sub)
        obs = torch.from_numpy(store.last_obs[rows])
        det = store.deterministic[rows]
        first = bool(det[0])
        if len(det) == 1 or (det == first).all():
            return policy.act(obs, belief, first), belief
        action = torch.empty(len(det), policy.action_dim)
        for mode in (True, False):
            m = torch.from_numpy(det == mode)
            action[m] = policy.act(obs[m], belief[m], mode)
        return action, belief

    def _compute_one(self, _i: int, req: P.Step, _sid: str, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`_compute` for a wave of exactly one step: the same contract calls, with the transition written
        into the preallocated row behind `_one_views` and the session's state rows used as views."""
        store, policy = self.store, self.policy
        buf, (s, a, r, s2) = self._one, self._one_views
        o, n_a = policy.obs_dim, policy.action_dim
        next_obs = P.decode_vector(req.next_obs)
        buf[:o] = store.last_obs[slot]
        buf[o : o + n_a] = P.decode_vector(req.action)
        buf[o + n_a] = req.reward
        buf[o + n_a + 1 :] = next_obs
        rows = slice(slot, slot + 1)
        sub = {k: v[rows] for k, v in store.state.items()}
        new_state = policy.update(sub, s, a, r, s2)
        if policy.needs_task_vector:
            tv = torch.from_numpy(P.decode_vector(req.task_vector)[None])  # type: ignore[arg-type]
            new_state = policy.set_task_vector(new_state, tv)  # type: ignore[attr-defined]
        for k, v in sub.items():
            v.copy_(new_state[k])
        store.last_obs[slot] = next_obs
        store.t[slot] += 1
        store.done[slot] = req.done
        self.stats.steps += 1
        belief = policy.belief(new_state)
        return policy.act(s2, belief, bool(store.deterministic[slot])), belief


def _rows(slots: list[int]) -> tuple[slice | np.ndarray, slice | torch.Tensor]:
    """How to address these store rows in numpy and in torch: one slot as a slice (views), else indices."""
    if len(slots) == 1:
        rows = slice(slots[0], slots[0] + 1)
        return rows, rows
    idx = np.array(slots, np.int64)
    return idx, torch.from_numpy(idx)


def _gather(state: State, rows: slice | torch.Tensor) -> State:
    if type(rows) is slice:
        return {k: v[rows] for k, v in state.items()}
    return select_state(state, rows)


def _scatter(state: State, rows: slice | torch.Tensor, sub: State) -> None:
    if type(rows) is slice:
        for k, v in state.items():
            v[rows].copy_(sub[k])
    else:
        put_state(state, rows, sub)


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], bytes | None]:
    """ROUTER frames -> (envelope to send back, the one body frame or None when malformed).

    The envelope is the peer identity plus, when present, every frame up to the first empty delimiter
    (REQ clients and proxies); the body must be exactly one frame after it.
    """
    if len(frames) == 2 and frames[1]:  # a DEALER's [identity, body]: the common case
        return frames[:1], frames[1]
    rest = frames[1:]
    try:
        cut = rest.index(b"") + 1
    except ValueError:
        cut = 0
    envelope, body = frames[: 1 + cut], rest[cut:]
    return envelope, body[0] if len(body) == 1 else None


def serve_in_thread(server: Server) -> threading.Thread:
    """Start `server.serve_forever` in a daemon thread (tests, benchmarks)."""
    th = threading.Thread(target=server.serve_forever, name="runtime-server", daemon=True)
    th.start()
    return th
