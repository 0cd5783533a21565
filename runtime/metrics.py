"""Prometheus metrics of a running `runtime serve` (`--metrics-port`).

Nothing is recorded per request for Prometheus: a scrape reads the server's own counters and cumulative
histograms (`runtime.server.Stats`, kept for the `stats` op too) and its session store, from the HTTP
server's thread. Names and labels:

    metarl_requests_total{op}                  valid requests by op (hello, open, step, reset, close, stats)
    metarl_errors_total{code}                  error replies by code (docs/serving.md)
    metarl_steps_total                         transitions applied to beliefs
    metarl_request_latency_seconds             histogram: arrival to reply sent, per request
    metarl_batch_size                          histogram: requests per model pass (wave)
    metarl_sessions_open, metarl_sessions_max  open sessions and the limit
    metarl_sessions_evicted_total              sessions evicted after the idle timeout
    metarl_uptime_seconds
    metarl_snapshots_total, metarl_snapshot_failures_total, metarl_snapshot_age_seconds
                                               with --snapshot-every: snapshots written, failed, and the age
                                               of the sessions in the last one written
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.server import LATENCY_BOUNDS_S, WAVE_BOUNDS, Server


def _buckets(bounds: tuple[float, ...], counts: Any) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs from per-bucket counts whose last entry is above every bound."""
    total, out = 0, []
    for le, n in zip((*map(str, bounds), "+Inf"), counts.tolist(), strict=True):
        total += n
        out.append((le, total))
    return out


class ServerCollector(Collector):
    """Reads a `Server`'s statistics when Prometheus scrapes."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        st, store = self.server.stats, self.server.store
        requests = CounterMetricFamily("metarl_requests", "Valid requests received, by op", labels=["op"])
        for op, n in sorted(st.ops.items()):
            requests.add_metric([op], n)
        yield requests
        errors = CounterMetricFamily("metarl_errors", "Error replies, by error code", labels=["code"])
        for code, n in sorted(st.errors.items()):
            errors.add_metric([code], n)
        yield errors
        yield CounterMetricFamily("metarl_steps", "Transitions applied to session beliefs", value=st.steps)
        latency = st.latency_counts.copy()  # the loop thread adds to it while we read
        yield HistogramMetricFamily(
            "metarl_request_latency_seconds", "Per request: arrival to reply sent",
            buckets=_buckets(LATENCY_BOUNDS_S, latency), sum_value=st.latency_sum_s,
        )  # fmt: skip
        waves = st.wave_counts.copy()
        yield HistogramMetricFamily(
            "metarl_batch_size", "Requests per model pass", buckets=_buckets(WAVE_BOUNDS, waves), sum_value=st.wave_items
        )
        yield GaugeMetricFamily("metarl_sessions_open", "Open sessions", value=len(store))
        yield GaugeMetricFamily("metarl_sessions_max", "The open-session limit", value=store.max_sessions)
        yield CounterMetricFamily("metarl_sessions_evicted", "Sessions evicted after the idle timeout", value=store.n_evicted)
        yield GaugeMetricFamily("metarl_uptime_seconds", "Seconds since the server started", value=st.uptime_s())
        if self.server.snapshot_every is not None:
            yield CounterMetricFamily("metarl_snapshots", "Session snapshots written (--snapshot-every)", value=st.snapshots)
            yield CounterMetricFamily("metarl_snapshot_failures", "Session snapshots that could not be written", value=st.snapshot_failures)
            if st.last_snapshot is not None:
                age = time.monotonic() - st.last_snapshot
                yield GaugeMetricFamily("metarl_snapshot_age_seconds", "Age of the sessions in the last written snapshot", value=age)


@dataclass
class MetricsEndpoint:
    """A running metrics HTTP server: `http://{addr}:{port}/metrics`."""

    addr: str
    port: int
    _httpd: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def start_metrics(server: Server, port: int, addr: str = "127.0.0.1") -> MetricsEndpoint:
    """Serve `server`'s metrics over HTTP on addr:port (port 0: a free one) from a daemon thread."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServerCollector(server))
    httpd, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsEndpoint(addr, int(httpd.server_address[1]), httpd, thread)
