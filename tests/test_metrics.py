"""Prometheus metrics of `runtime serve`, scraped over HTTP while real ZeroMQ clients load the server."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families
from serving_helpers import make_checkpoint, running_server, serve_process

from runtime import protocol as P
from runtime.client import Client, ClientError
from runtime.metrics import start_metrics


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} of every sample at `url`."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def drive(endpoint: str, sessions: int, steps: int, stop: threading.Event) -> None:
    rng = np.random.default_rng(0)
    with Client(endpoint) as c:
        sids = [c.open([0.0, 0.0])["session"] for _ in range(sessions)]
        for _ in range(steps):
            if stop.is_set():
                break
            for sid in sids:
                c.step(sid, rng.uniform(-0.1, 0.1, 2).tolist(), -1.0, rng.uniform(-1, 1, 2).tolist())


def test_metrics_count_requests_errors_latency_and_sessions_under_load(tmp_path: Path) -> None:
    ck = make_checkpoint(tmp_path / "moss.pt")
    with running_server(ck) as srv:
        metrics = start_metrics(srv, 0)
        try:
            stop = threading.Event()
            load = [threading.Thread(target=drive, args=(srv.endpoint, 4, 150, stop)) for _ in range(2)]
            for t in load:
                t.start()
            time.sleep(0.5)
            during = scrape(metrics.url)  # while the load runs
            with Client(srv.endpoint) as c, pytest.raises(ClientError) as refused:  # one refused request
                c.step("s0000000000000000", [0.0, 0.0], 0.0, [0.0, 0.0])
            assert refused.value.code == "unknown_session"
            for t in load:
                t.join(60)
            # the server books a request's latency once its reply is sent, so the client may see the last
            # reply before the bookkeeping: wait for it
            deadline = time.monotonic() + 5
            while (after := scrape(metrics.url))["metarl_request_latency_seconds_count"][()] < 2 * 4 * 151 + 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            metrics.close()
    steps_during = during["metarl_requests_total"][(("op", "step"),)]
    assert 0 < steps_during < after["metarl_requests_total"][(("op", "step"),)] == 2 * 4 * 150 + 1  # + the refused one
    assert after["metarl_requests_total"][(("op", "open"),)] == 8
    assert after["metarl_errors_total"][(("code", "unknown_session"),)] == 1
    assert after["metarl_steps_total"][()] == 2 * 4 * 150
    assert during["metarl_sessions_open"][()] == 8 and after["metarl_sessions_max"][()] == 1024
    # histograms: cumulative buckets ending at the count of requests answered
    lat = after["metarl_request_latency_seconds_bucket"]
    counts = [lat[(("le", le),)] for le in sorted({k[0][1] for k in lat}, key=lambda v: float(v))]
    assert counts == sorted(counts) and counts[-1] == after["metarl_request_latency_seconds_count"][()] >= 2 * 4 * 151 + 1
    assert 0 < after["metarl_request_latency_seconds_sum"][()] / counts[-1] < 1.0
    waves = after["metarl_batch_size_count"][()]
    assert waves > 0 and after["metarl_batch_size_sum"][()] >= 2 * 4 * 150


def test_runtime_serve_metrics_port_logs_its_url_and_answers(tmp_path: Path) -> None:
    ck = make_checkpoint(tmp_path / "moss.pt")
    proc, endpoint = serve_process(["--checkpoint", str(ck), "--metrics-port", "0"], tmp_path / "serve.log")
    try:
        url = next(json.loads(x)["url"] for x in (tmp_path / "serve.log").read_text().splitlines() if json.loads(x).get("event") == "metrics")
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.connect(endpoint)
        s.send(P.pack({"op": "hello"}))
        assert s.poll(10_000) and P.unpack(s.recv())["ok"]
        s.close(0)
        got = scrape(url)
        assert got["metarl_requests_total"][(("op", "hello"),)] == 1 and got["metarl_uptime_seconds"][()] > 0
    finally:
        proc.terminate()
        proc.wait(30)


def test_snapshot_metrics_report_how_old_the_last_snapshot_is(tmp_path: Path) -> None:
    ck = make_checkpoint(tmp_path / "moss.pt")
    with running_server(ck, state_dir=tmp_path / "state", snapshot_every=0.05) as srv:
        metrics = start_metrics(srv, 0)
        try:
            with Client(srv.endpoint) as c:
                c.open([0.0, 0.0])
            deadline = time.monotonic() + 10
            while srv.stats.snapshots < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            got = scrape(metrics.url)
        finally:
            metrics.close()
    assert got["metarl_snapshots_total"][()] >= 2 and got["metarl_snapshot_failures_total"][()] == 0
    assert 0 <= got["metarl_snapshot_age_seconds"][()] < 5
