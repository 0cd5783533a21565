"""Soak (slow tier): 1,000 sessions x 1,000 steps through `runtime serve` over a few pipelining DEALERs."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from serving_helpers import make_checkpoint, serve_process

from runtime import protocol as P

SESSIONS, STEPS, SOCKETS = 1000, 1000, 4


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_no_lost_or_duplicated_replies_and_bounded_memory(tmp_path):
    ck = make_checkpoint(tmp_path / "moss.pt")
    proc, endpoint = serve_process(
        ["--checkpoint", str(ck), "--max-sessions", str(SESSIONS)], tmp_path / "serve.log"
    )
    try:
        ctx = zmq.Context.instance()
        socks = []
        for _ in range(SOCKETS):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            socks.append(s)
        per = SESSIONS // SOCKETS
        sids: list[str] = []
        for k in range(SESSIONS):  # open all sessions (pipelined per socket)
            socks[k // per].send(P.pack({"op": "open", "id": k, "obs": [0.0, 0.0], "session": f"soak-{k}"}))
        for s in socks:
            for _ in range(per):
                r = msgpack.unpackb(s.recv())
                assert r["ok"], r
                sids.append(r["session"])
        assert sorted(sids) == sorted(f"soak-{k}" for k in range(SESSIONS))

        next_id = SESSIONS
        outstanding: dict[int, int] = {}  # request id -> session index
        done = [0] * SESSIONS
        received = 0

        def send(k: int) -> None:
            nonlocal next_id
            outstanding[next_id] = k
            x = 0.001 * (done[k] % 50)
            socks[k // per].send(
                P.pack(
                    {
                        "op": "step",
                        "id": next_id,
                        "session": f"soak-{k}",
                        "action": [0.01, 0.0],
                        "reward": -1.0,
                        "next_obs": [x, 0.0],
                    }
                )
            )
            next_id += 1

        for k in range(SESSIONS):
            send(k)
        poller = zmq.Poller()
        for s in socks:
            poller.register(s, zmq.POLLIN)
        rss0 = None
        t0 = time.monotonic()
        while received < SESSIONS * STEPS:
            events = dict(poller.poll(30_000))
            assert events, f"no reply for 30 s ({received} received)"
            for s in events:
                while True:
                    try:
                        r = msgpack.unpackb(s.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    assert r["ok"], r
                    k = outstanding.pop(r["id"])  # KeyError: a duplicated or unknown reply
                    done[k] += 1
                    received += 1
                    assert r["t"] == done[k]  # the reply belongs to this session's latest step
                    if received == 50 * SESSIONS:
                        rss0 = rss_kib(proc.pid)
                    if done[k] < STEPS:
                        send(k)
        elapsed = time.monotonic() - t0
        assert not outstanding and all(d == STEPS for d in done)
        rss1 = rss_kib(proc.pid)
        assert rss0 is not None and rss1 - rss0 < 64 * 1024, (rss0, rss1)
        socks[0].send(P.pack({"op": "stats", "id": "s"}))
        stats = msgpack.unpackb(socks[0].recv())
        assert stats["steps"] == SESSIONS * STEPS and stats["sessions"] == SESSIONS and not stats["errors"]
        print(
            f"soak: {SESSIONS * STEPS / elapsed:.0f} steps/s, mean batch {stats['mean_batch_size']}, "
            f"RSS {rss0 // 1024} -> {rss1 // 1024} MiB"
        )
        for s in socks:
            s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
