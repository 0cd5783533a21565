"""Serving benchmark: prints a markdown table (medians, one run).

    .venv/bin/python tools/bench_serving.py [--checkpoint moss.pt] [--seconds 5] [--requests 3000] [--spin-us US]
        [--sessions 1 16 64 256] [--quick] [--handle-only]

`--quick` (about 40 s on a busy 2-core machine): 3-second load windows, 1,500 round trips, 1, 64 and 256 sessions.
`--handle-only`: just the server's own work per request, in-process (`Server.handle` on a drained batch of
N plain steps of N sessions, hot, no sockets to a client), for each of `--sessions`.

(a) floor: a bare ZeroMQ ROUTER echo (another process) carrying the same msgpack step payload;
(b) one session's step round trip through `runtime serve` (p50/p99), with the server's default busy-poll
    (`--spin-us`, or the value given here) and with `--spin-us 0` (always block in poll);
(c) steps/s with 1, 16, 64 and 256 concurrent sessions: a load-generator process with one DEALER per 16
    sessions, each session sending its next step as soon as its reply arrives (per-request p50/p99 too);
(d) the same loads against `runtime serve --no-batching` (one forward pass per request);
(e) the same load generator against the bare ROUTER echo at each --sessions above 1: the transport ceiling
    of this machine, of which (c) is reported as a share;
and, for reference, the policy's own update + belief + act for one session in-process (no sockets).
Throughput is the median over 1-second windows after a 1-second warm-up. Without --checkpoint a MoSS policy
with the default sizes (GRU 64, latent 5, actor 256x256) for PointRobot's spaces is built, seeded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime import protocol as P  # noqa: E402

STEP = {
    "op": "step",
    "id": 1,
    "session": "s0123456789abcdef",
    "action": [0.01, -0.02],
    "reward": -0.5,
    "next_obs": [0.11, -0.22],
}


def build_checkpoint(path: Path) -> Path:
    import torch

    from agents.checkpoint import save_checkpoint
    from agents.config import parse_config
    from agents.policies import MoSSPolicy, Spaces

    torch.manual_seed(0)
    spaces = {"obs_dim": 2, "action_dim": 2, "action_low": [-0.1, -0.1], "action_high": [0.1, 0.1]}
    policy = MoSSPolicy(Spaces(**spaces))
    env = {
        "id": "PointRobot",
        "max_episode_steps": 100,
        "nonstationary": "periodic",
        "interval": 25,
        "p": 0.5,
    }
    cfg = parse_config({"algorithm": "moss", "env": env}).model_dump(mode="json")
    return save_checkpoint(path, policy, cfg, {"id": "PointRobot", **spaces, "task_dim": 2}, {"env_steps": 0})


# -- processes --------------------------------------------------------------------------------------------
def echo_server(endpoint_q) -> None:
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    endpoint_q.put(f"tcp://127.0.0.1:{port}")
    while True:
        sock.send_multipart(sock.recv_multipart())


def start_serve(
    checkpoint: Path, batching: bool, spin_us: float | None = None
) -> tuple[subprocess.Popen, str]:
    cmd = [
        str(Path(sys.executable).with_name("runtime")),
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--bind",
        "tcp://127.0.0.1:*",
        "--json-logs",
        "--max-sessions",
        "4096",
    ]
    if not batching:
        cmd.append("--no-batching")
    if spin_us is not None:
        cmd += ["--spin-us", str(spin_us)]
    log_path = Path(tempfile.mkdtemp()) / "serve.log"
    with open(log_path, "w") as log:  # a file, not a pipe: the server's session logs never block it
        proc = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        for line in log_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("event") == "serving":
                return proc, rec["endpoint"]
        time.sleep(0.05)
    raise RuntimeError(f"runtime serve exited: {log_path.read_text()}")


def stop_serve(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def round_trips(endpoint: str, payloads, n: int) -> np.ndarray:
    """Sequential request/reply round trips in microseconds; `payloads(i)` gives request i's bytes."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    out = np.empty(n)
    for i in range(n + 200):
        msg = payloads(i)
        t0 = time.perf_counter()
        s.send(msg)
        s.recv()
        if i >= 200:  # warm-up
            out[i - 200] = (time.perf_counter() - t0) * 1e6
    s.close()
    return out


def loadgen(endpoint: str, n_sessions: int, seconds: float, out_q) -> None:
    """n sessions, one DEALER per 16, each with one step always in flight; reports steps per window and latencies."""
    ctx = zmq.Context.instance()
    socks = []
    for _ in range((n_sessions + 15) // 16):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        socks.append(s)
    sids = []
    for k in range(n_sessions):  # ids chosen here, so a bare echo answers an open as the server would
        sid = f"s{os.getpid() % 65536:04x}{k:012x}"  # unique per load run: earlier runs' sessions stay open
        socks[k // 16].send(P.pack({"op": "open", "id": k, "obs": [0.0, 0.0], "session": sid}))
        sids.append(msgpack.unpackb(socks[k // 16].recv())["session"])
    sent_at: dict[int, tuple[int, float]] = {}
    next_id = [0]
    # the step map without its id, packed once per session: {id, **rest} = map header + "id" + id + rest
    rest = {k: v for k, v in STEP.items() if k != "id"}
    head = bytes([0x80 | (len(rest) + 1)]) + msgpack.packb("id")
    tails = [msgpack.packb({**rest, "session": sid})[1:] for sid in sids]

    def send(k: int) -> None:
        i = next_id[0]
        next_id[0] += 1
        sent_at[i] = (k, time.perf_counter())
        socks[k // 16].send(head + msgpack.packb(i) + tails[k])

    for k in range(n_sessions):
        send(k)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    start = time.perf_counter()
    warm, end = start + 1.0, start + 1.0 + seconds
    windows = [0] * int(seconds)
    lat: list[float] = []
    errors = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        for s, _ in poller.poll(1000):
            while True:
                try:
                    r = msgpack.unpackb(s.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                k, t_sent = sent_at.pop(r["id"])
                if r.get("ok") is False:  # a bare echo's reply is the request itself
                    errors += 1
                t = time.perf_counter()
                if warm <= t < end:
                    windows[min(int(t - warm), len(windows) - 1)] += 1
                    lat.append((t - t_sent) * 1e6)
                send(k)
    for s in socks:
        s.close()
    out_q.put(
        {
            "windows": windows,
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
            "errors": errors,
        }
    )


def policy_alone(checkpoint: Path, n: int) -> np.ndarray:
    """update + belief + act for one session in this process (no sockets, no server): the compute floor."""
    import torch

    from agents.checkpoint import build_policy, load_checkpoint
    from agents.policies import put_state, select_state

    torch.set_num_threads(1)
    policy = build_policy(load_checkpoint(checkpoint))
    state, idx = policy.init_state(64), torch.tensor([0])
    s, a, r = torch.tensor([[0.11, -0.22]]), torch.tensor([[0.01, -0.02]]), torch.tensor([-0.5])
    out = np.empty(n)
    with torch.inference_mode():
        for i in range(n + 200):
            t0 = time.perf_counter()
            new = policy.update(select_state(state, idx), s, a, r, s)
            put_state(state, idx, new)
            policy.act(s, policy.belief(new), True)
            if i >= 200:
                out[i - 200] = (time.perf_counter() - t0) * 1e6
    return out


def handle_cost(checkpoint: Path, n: int, waves: int) -> np.ndarray:
    """The server's own work per request, in this process: `Server.handle` on a drained batch of n plain
    steps of n sessions (one wave), no client; microseconds per request, one value per batch."""
    import torch

    from runtime.logs import configure_logging
    from runtime.server import Server

    configure_logging(json=True, stream=open(os.devnull, "w"))  # noqa: SIM115 (kept for the process)
    torch.set_num_threads(1)  # as serve_forever does
    srv = Server.from_checkpoint(
        checkpoint, bind="tcp://127.0.0.1:*", max_sessions=max(n, 1), torch_threads=1
    )
    peers = [b"\x00peer%d" % (k // 16) for k in range(n)]  # unknown peers: ZeroMQ drops the replies
    for k in range(n):
        srv.handle([([peers[k], P.pack({"op": "open", "obs": [0.0, 0.0], "session": f"s{k}"})], 0.0)])
    rest = {k: v for k, v in STEP.items() if k != "id"}
    bodies = [P.pack({"id": k, **rest, "session": f"s{k}"}) for k in range(n)]
    out = np.empty(waves)
    with torch.inference_mode():
        for i in range(waves + 20):
            now = time.perf_counter()
            srv.handle([([peers[k], bodies[k]], now) for k in range(n)])
            if i >= 20:  # warm-up
                out[i - 20] = (time.perf_counter() - now) * 1e6 / n
    srv.close()
    return out


def stats_of(endpoint: str) -> dict:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    s.send(P.pack({"op": "stats"}))
    r = msgpack.unpackb(s.recv())
    s.close()
    return r


def echo_load(n: int, seconds: float) -> dict:
    """The load generator against a bare ROUTER echo (another process): the transport ceiling."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    echo = ctx.Process(target=echo_server, args=(q,))
    echo.start()
    try:
        endpoint = q.get()
        p = ctx.Process(target=loadgen, args=(endpoint, n, seconds, q))
        p.start()
        res = q.get()
        p.join()
    finally:
        echo.terminate()
        echo.join()
    res["steps_s"] = float(np.median(res["windows"]))
    return res


def load(endpoint: str, n: int, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    before = stats_of(endpoint)
    p = ctx.Process(target=loadgen, args=(endpoint, n, seconds, q))
    p.start()
    res = q.get()
    p.join()
    if res["errors"]:  # a refused step is no step served
        raise RuntimeError(f"{res['errors']} of the replies were errors ({n} sessions)")
    after = stats_of(endpoint)
    waves = after["batches"] - before["batches"]
    res["steps_s"] = float(np.median(res["windows"]))
    res["mean_batch"] = (after["steps"] - before["steps"] + n) / max(waves, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--spin-us", type=float, help="the servers' --spin-us (default: runtime serve's)")
    ap.add_argument(
        "--quick", action="store_true", help="--seconds 3 --requests 1500 --sessions 1 64 256 (a shorter run)"
    )
    ap.add_argument(
        "--handle-only",
        action="store_true",
        help="only the server's own work per request in-process (Server.handle on a batch of N steps), per --sessions",
    )
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.requests, args.sessions = 3.0, 1500, [1, 64, 256]
    tmp = Path(tempfile.mkdtemp())
    ck = args.checkpoint or build_checkpoint(tmp / "moss.pt")
    if args.handle_only:
        for n in args.sessions:
            us = handle_cost(ck, n, max(20, min(3000, 40_000 // n)))
            print(
                f"Server.handle, {n} sessions x 1 step per batch: {np.median(us):.2f} us per request (median)"
            )
        return
    payload = P.pack(STEP)
    rows = []

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    echo = ctx.Process(target=echo_server, args=(q,))
    echo.start()
    ep = q.get()
    floor = round_trips(ep, lambda i: payload, args.requests)
    echo.terminate()
    echo.join()
    rows.append(
        (
            "(a) floor: bare ROUTER echo, same payload",
            "1",
            np.median(floor),
            np.percentile(floor, 99),
            None,
            None,
        )
    )

    alone = policy_alone(ck, args.requests)
    rows.append(
        (
            "policy calls alone (update+belief+act, batch 1, no server)",
            "1",
            np.median(alone),
            np.percentile(alone, 99),
            None,
            None,
        )
    )

    def one_session(ep: str) -> tuple[np.ndarray, dict]:
        c = zmq.Context.instance().socket(zmq.DEALER)
        c.connect(ep)
        c.send(P.pack({"op": "open", "obs": [0.0, 0.0], "session": "one"}))
        c.recv()
        c.close(0)
        one = round_trips(ep, lambda i: P.pack({**STEP, "id": i, "session": "one"}), args.requests)
        return one, stats_of(ep)["latency_us"]["request"]

    proc, ep = start_serve(ck, True, spin_us=0)
    try:
        one_blocking, server_blocking = one_session(ep)
    finally:
        stop_serve(proc)

    results = {}
    for n in [n for n in args.sessions if n > 1]:
        r = echo_load(n, args.seconds)
        results[("echo", n)] = r
        rows.append(("(e) bare ROUTER echo, pipelined: the transport ceiling", str(n), r["p50"], r["p99"], r["steps_s"], None))
    for batching in (True, False):
        proc, ep = start_serve(ck, batching, args.spin_us)
        try:
            if batching:
                one, server_one = one_session(ep)
                spin = "default" if args.spin_us is None else f"{args.spin_us:g}"
                rows.append(
                    (
                        f"(b) one session, step round trip (--spin-us {spin})",
                        "1",
                        np.median(one),
                        np.percentile(one, 99),
                        None,
                        None,
                    )
                )
                rows.append(
                    (
                        "(b) one session, step round trip (--spin-us 0)",
                        "1",
                        np.median(one_blocking),
                        np.percentile(one_blocking, 99),
                        None,
                        None,
                    )
                )
            for n in args.sessions:
                r = load(ep, n, args.seconds)
                results[(batching, n)] = r
                label = "(c) batched, pipelined" if batching else "(d) --no-batching, pipelined"
                rows.append((label, str(n), r["p50"], r["p99"], r["steps_s"], r["mean_batch"]))
        finally:
            stop_serve(proc)

    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end; torch threads 1 in the server; checkpoint {Path(ck).name}\n"
    )
    print("| measurement | sessions | p50 (us) | p99 (us) | steps/s | mean batch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, p50, p99, sps, mb in rows:
        sps_s = f"{sps:,.0f}" if sps is not None else ""
        mb_s = f"{mb:.1f}" if mb is not None else ""
        print(f"| {name} | {n} | {p50:,.0f} | {p99:,.0f} | {sps_s} | {mb_s} |")
    fl, one_p50 = float(np.median(floor)), float(np.median(one))
    print(
        f"\nServer-side time of a one-session step (arrival to reply sent, p50/p99 us): "
        f"{server_one['p50']}/{server_one['p99']} (spin as in (b)), "
        f"{server_blocking['p50']}/{server_blocking['p99']} (--spin-us 0)"
    )
    print("\nTargets:")
    bound = fl + float(np.median(alone)) + 50
    print(
        f"- one-session p50 <= floor + batch-1 compute + 50 us: {one_p50:,.0f} vs {bound:,.0f} -> {'met' if one_p50 <= bound else 'missed'}"
    )
    big = max(args.sessions)
    if ("echo", big) in results and (True, big) in results:
        share = results[(True, big)]["steps_s"] / max(results[("echo", big)]["steps_s"], 1)
        print(f"- {big} sessions: batched serving / echo ceiling = {share:.2f} (target >= 0.6) -> {'met' if share >= 0.6 else 'missed'}")
    if (True, big) in results and (False, big) in results:
        ratio = results[(True, big)]["steps_s"] / max(results[(False, big)]["steps_s"], 1)
        print(
            f"- {big} sessions: batched / one pass per request = {ratio:.1f}x (target >= 5x) -> {'met' if ratio >= 5 else 'missed'}"
        )
        rb = results[(True, big)]
        print(
            f"- p99 <= 3x p50 under load ({big} sessions): {rb['p99']:,.0f} vs {3 * rb['p50']:,.0f} -> "
            f"{'met' if rb['p99'] <= 3 * rb['p50'] else 'missed'}"
        )


if __name__ == "__main__":
    main()
