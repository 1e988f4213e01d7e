"""Observability shared by the services: Prometheus metrics and the `/metrics` `/health` `/ready` endpoint.

Every Kafka service without an HTTP server of its own starts `serve(...)` in its `__main__`: a
small HTTP server in a daemon thread, on the service's `<SERVICE>_METRICS_PORT` (distinct defaults,
so they all fit on one host; 0 turns it off):

    GET /metrics  Prometheus text: the default registry (below) and the service's own registries
    GET /health   200 while the process answers (liveness)
    GET /ready    200 once the service says it is ready (its partitions recovered, caught up), else 503

The standard metrics (default registry; `group` is the consumer group or service):

    cxpt_records_consumed_total{group,topic}        records taken from Kafka
    cxpt_batch_records{group}                       histogram: records per batch (per transaction)
    cxpt_transaction_seconds{group}                 histogram: process + commit time of one batch
    cxpt_processing_errors_total{group,kind}        aborted transactions, failed batches
    cxpt_dead_letters_total{group,reason_code}      records sent to dead.letters
    cxpt_consumer_lag{group,topic,partition}        last stable offset − position, refreshed ≤ 1/s
    cxpt_order_fill_latency_seconds                 matcher: a marketable order's ts_init → its fill
    cxpt_matcher_command_latency_seconds            matcher: any command's ts_init → handled
    cxpt_http_requests_total{service,method,route,status}, cxpt_http_request_seconds{service,route}
    cxpt_service_stats{service,stat}                the counters a service keeps in its `stats` dict
    cxpt_settlement_batches_unconfirmed             settlement batches built and not yet CONFIRMED

The gateway (:8080), ws-push (:8090) and the oracle keep their own registries (`gateway_*`,
`wspush_*`, `oracle_*`); docs/observability.md lists everything per service.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Consumer, KafkaException
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common import tracing
from services.common.records import MatcherCommand, OrderFilled, PlaceOrder

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds; dense around the 100 ms order → fill SLO (docs/analytics.md, "Latency SLO")."""
SLO_ORDER_FILL_P95_S = 0.1

# -- the loops (services/common/bus.py) -------------------------------------------------------------

RECORDS_CONSUMED = Counter("cxpt_records_consumed", "Records consumed from Kafka", ["group", "topic"])
BATCH_RECORDS = Histogram(
    "cxpt_batch_records", "Records per batch (one Kafka transaction in the exactly-once loop)", ["group"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)  # fmt: skip
TRANSACTION_SECONDS = Histogram(
    "cxpt_transaction_seconds", "Time to process and commit one batch", ["group"], buckets=LATENCY_BUCKETS
)
PROCESSING_ERRORS = Counter(
    "cxpt_processing_errors", "Batches aborted (redone) or failed (the loop stopped)", ["group", "kind"]
)
DEAD_LETTERS = Counter("cxpt_dead_letters", "Records sent to dead.letters", ["group", "reason_code"])

# -- the matcher --------------------------------------------------------------------------------------

ORDER_FILL_SECONDS = Histogram(
    "cxpt_order_fill_latency_seconds",
    "Marketable order: from its ts_init (gateway arrival) to the matcher filling it; SLO p95 < 100 ms",
    buckets=LATENCY_BUCKETS,
)
COMMAND_SECONDS = Histogram(
    "cxpt_matcher_command_latency_seconds",
    "Any matcher command: from its ts_init to the matcher handling it",
    buckets=LATENCY_BUCKETS,
)

# -- HTTP (instrumented ASGI apps) -------------------------------------------------------------------

HTTP_REQUESTS = Counter("cxpt_http_requests", "HTTP requests", ["service", "method", "route", "status"])
HTTP_SECONDS = Histogram(
    "cxpt_http_request_seconds", "HTTP request latency", ["service", "route"], buckets=LATENCY_BUCKETS
)


# -- collectors computed at scrape time ---------------------------------------------------------------


class _LagCollector(Collector):
    """`cxpt_consumer_lag`: per assigned partition of each watched consumer, the partition's last
    stable offset (as of the consumer's latest fetch) minus the consumer's position.

    Computed in the consumer's own thread (`refresh`, called by `take_batch` before each poll, at
    most once a second), never at scrape time: the client serialises calls on one consumer, so
    `assignment()` from the scrape thread would wait for the loop's `poll` to return.
    """

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._groups: dict[int, str] = {}
        self._next: dict[int, float] = {}
        self._lags: dict[int, list[tuple[str, int, int]]] = {}

    def watch(self, consumer: Consumer, group: str) -> None:
        with self._lock:
            self._groups[id(consumer)] = group
            self._next[id(consumer)] = 0.0

    def unwatch(self, consumer: Consumer) -> None:
        with self._lock:
            self._groups.pop(id(consumer), None)
            self._next.pop(id(consumer), None)
            self._lags.pop(id(consumer), None)

    def refresh(self, consumer: Consumer, now: float | None = None) -> None:
        """Recompute `consumer`'s lag if it is watched and its last computation is a second old."""
        key = id(consumer)
        due = self._next.get(key)
        now = time.monotonic() if now is None else now
        if due is None or now < due:
            return
        try:
            lags = consumer_lag(consumer)
        except (RuntimeError, KafkaException):  # closed, or the cluster unreachable: try later
            lags = []
        with self._lock:
            if key in self._groups:
                self._lags[key] = lags
                self._next[key] = now + self.every_s

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "cxpt_consumer_lag",
            "Records behind the end of the partition",
            labels=["group", "topic", "partition"],
        )
        with self._lock:
            current = [(self._groups[key], lags) for key, lags in self._lags.items() if key in self._groups]
        for group, lags in current:
            for topic, partition, lag in lags:
                family.add_metric([group, topic, str(partition)], lag)
        yield family


def consumer_lag(consumer: Consumer) -> list[tuple[str, int, int]]:
    """(topic, partition, lag) for every assigned partition the consumer has fetched."""
    assignment = consumer.assignment()
    if not assignment:
        return []
    lags = []
    for tp in consumer.position(assignment):
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if high >= 0 and tp.offset >= 0:
            lags.append((tp.topic, tp.partition, max(0, high - tp.offset)))
    return lags


class _StatsCollector(Collector):
    """`cxpt_service_stats{service,stat}` (and settlement's unconfirmed batches) from the services'
    own counters, read at scrape time: no edit of their loops."""

    def __init__(self) -> None:
        self._stats: dict[str, Callable[[], Mapping[str, int]]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def add_stats(self, service: str, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats[service] = stats

    def add_gauge(self, name: str, value: Callable[[], float]) -> None:
        self._gauges[name] = value

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "cxpt_service_stats",
            "Counters a service keeps (monotonic per process)",
            labels=["service", "stat"],
        )
        for service, stats in list(self._stats.items()):
            for stat, value in dict(stats()).items():
                family.add_metric([service, stat], value)
        yield family
        for name, documentation in GAUGES.items():
            gauge = GaugeMetricFamily(name, documentation)
            read = self._gauges.get(name)
            if read is not None:
                try:
                    gauge.add_metric([], read())
                except RuntimeError:  # the loop changed what was being counted: next scrape
                    continue
            yield gauge


GAUGES = {
    "cxpt_settlement_batches_unconfirmed": "Settlement batches built and not yet CONFIRMED on chain",
}
"""Gauges a service sets with `gauge(name, fn)`; declared here so dashboards can rely on them."""

LAG = _LagCollector()
STATS = _StatsCollector()
REGISTRY.register(LAG)
REGISTRY.register(STATS)


def watch_consumer(consumer: Consumer, group: str) -> None:
    """Export `consumer`'s lag as `cxpt_consumer_lag{group=group}` until it is closed."""
    LAG.watch(consumer, group)


def unwatch_consumer(consumer: Consumer) -> None:
    LAG.unwatch(consumer)


def refresh_lag(consumer: Consumer) -> None:
    """In the consumer's thread: update its lag if it is watched and due (see `_LagCollector`)."""
    LAG.refresh(consumer)


def watch_stats(service: str, stats: Callable[[], Mapping[str, int]]) -> None:
    """Export the counters `stats()` returns as `cxpt_service_stats{service=service}`."""
    STATS.add_stats(service, stats)


def gauge(name: str, value: Callable[[], float]) -> None:
    """Give the declared gauge `name` (see `GAUGES`) its value function."""
    if name not in GAUGES:
        raise KeyError(f"{name} is not a declared gauge")
    STATS.add_gauge(name, value)


# -- the loop's hooks ----------------------------------------------------------------------------------


class LoopMetrics:
    """The standard metrics of one consume → process → produce loop, children bound once."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._batch = BATCH_RECORDS.labels(group)
        self._seconds = TRANSACTION_SECONDS.labels(group)
        self._consumed: dict[str, Counter] = {}

    def batch(self, topics: Iterable[str], seconds: float) -> None:
        """A batch committed: its records (by topic) and how long it took."""
        count = 0
        by_topic: dict[str, int] = {}
        for topic in topics:
            by_topic[topic] = by_topic.get(topic, 0) + 1
            count += 1
        for topic, n in by_topic.items():
            child = self._consumed.get(topic)
            if child is None:
                child = self._consumed[topic] = RECORDS_CONSUMED.labels(self.group, topic)
            child.inc(n)
        self._batch.observe(count)
        self._seconds.observe(seconds)

    def error(self, kind: str) -> None:
        PROCESSING_ERRORS.labels(self.group, kind).inc()

    def dead_letter(self, reason_code: str) -> None:
        DEAD_LETTERS.labels(self.group, reason_code).inc()


def observe_command(command: MatcherCommand, events: Sequence[object], now_us: int | None = None) -> None:
    """Matcher: the latency of a command, and of the order's fill if it filled at once.

    The SLO counts marketable orders only (their first fill is in the entry that accepted them);
    a resting order's wait for a counterparty is the market's doing (docs/analytics.md).
    """
    now = time.time_ns() // 1_000 if now_us is None else now_us
    seconds = max(0, now - command.ts_init) / 1e6
    COMMAND_SECONDS.observe(seconds)
    if type(command.body) is PlaceOrder and OrderFilled in map(type, events):  # C loop: per command
        ORDER_FILL_SECONDS.observe(seconds)


# -- the HTTP endpoint ---------------------------------------------------------------------------------


def _exposition(registries: Sequence[CollectorRegistry]) -> bytes:
    return b"".join(generate_latest(r) for r in registries)


class ObservabilityServer:
    """`/metrics`, `/health` and `/ready` on `host:port` (0: any free port), in a daemon thread."""

    def __init__(
        self,
        port: int,
        *,
        service: str,
        host: str = "127.0.0.1",
        registries: Sequence[CollectorRegistry] = (),
        ready: Callable[[], bool] | None = None,
    ) -> None:
        all_registries = [REGISTRY, *registries]
        is_ready = ready or (lambda: True)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, _exposition(all_registries), CONTENT_TYPE_LATEST)
                elif path == "/health":
                    self._json(200, {"status": "ok", "service": service})
                elif path == "/ready":
                    ok = _safe(is_ready)
                    self._json(
                        200 if ok else 503, {"status": "ready" if ok else "not ready", "service": service}
                    )
                else:
                    self._json(404, {"status": "not found"})

            def _json(self, status: int, body: dict[str, str]) -> None:
                self._answer(status, json.dumps(body).encode(), "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a line per scrape would drown the service's own logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{service}-observability", daemon=True
        )
        self._thread.start()
        log.info("%s: /metrics /health /ready on %s:%s", service, host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a failing check means: not ready
        return False


def serve(
    port: int,
    *,
    service: str,
    host: str,
    registries: Sequence[CollectorRegistry] = (),
    ready: Callable[[], bool] | None = None,
) -> ObservabilityServer | None:
    """The endpoint of `service` on `port`, or None when the port setting is 0 (off)."""
    if port == 0:
        return None
    return ObservabilityServer(port, service=service, host=host, registries=registries, ready=ready)


# -- ASGI apps -------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InstrumentedApp:
    """ASGI middleware: a span per request (when tracing is on), `cxpt_http_*` metrics (when
    `measure`), and with `ops_routes` the app's `GET /metrics` and `GET /ready` answered here.

    The route label is the matched route's template (Starlette stores it in the shared scope),
    never the raw path, so label values stay bounded.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        measure: bool = True,
        ops_routes: bool = False,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.measure = measure
        self.ops_routes = ops_routes
        self.ready = ready or (lambda: True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if self.ops_routes and method == "GET" and path in ("/metrics", "/ready"):
            await self._ops(path, send)
            return
        status = [500]

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            if tracing.enabled():
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
                with tracing.http_span(method, path, headers) as span:
                    await self.app(scope, receive, sending)
                    route = _route(scope)
                    span.update_name(f"HTTP {method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status[0])
            else:
                await self.app(scope, receive, sending)
        finally:
            if self.measure:
                route = _route(scope)
                HTTP_REQUESTS.labels(self.service, method, route, str(status[0])).inc()
                HTTP_SECONDS.labels(self.service, route).observe(time.perf_counter() - started)

    async def _ops(self, path: str, send: Send) -> None:
        if path == "/metrics":
            status, body, content_type = 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        else:
            ok = _safe(self.ready)
            status, content_type = (200 if ok else 503), "application/json"
            body = json.dumps({"status": "ready" if ok else "not ready", "service": self.service}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _route(scope: Scope) -> str:
    return str(getattr(scope.get("route"), "path", "unmatched"))
