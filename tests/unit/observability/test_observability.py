"""The shared observability: the endpoint, the loop's hooks, the correlation id in the logs."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from confluent_kafka import TopicPartition
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry

from services.common import observability as obs
from services.common.binding import to_avro
from services.common.bus import CORRELATION_HEADER, Bus, Inbound, Outbound, TransactionalProcessor
from services.common.logs import configure_logging, correlation, render_correlation_id
from services.common.observability import InstrumentedApp, ObservabilityServer, observe_command
from services.common.records import CancelOrder, LiquiditySide, MatcherCommand, OrderFilled, Side
from services.common.settings import Settings
from services.common.topics import MATCHER_COMMANDS, TRADE_LOG
from tests.kit import TS_2026_11_23, limit_order, order_id

GATEWAY_ID = bytes(range(16))
"""A correlation id as the gateway makes them: 16 raw bytes (a UUID)."""


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# -- the endpoint ------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[ObservabilityServer, threading.Event]]:
    ready = threading.Event()
    server = ObservabilityServer(0, service="test", ready=ready.is_set)
    yield server, ready
    server.close()


def test_the_endpoint_answers_metrics_health_and_ready(
    server: tuple[ObservabilityServer, threading.Event],
) -> None:
    # State: a server whose service is not ready yet.
    endpoint, ready = server
    base = f"http://127.0.0.1:{endpoint.port}"
    # Action / Expectation: live, not ready, metrics in the Prometheus text format.
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/ready").status_code == 503
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE cxpt_batch_records histogram" in metrics.text
    assert "# TYPE cxpt_consumer_lag gauge" in metrics.text
    # Action: the service becomes ready. Expectation: /ready says so.
    ready.set()
    assert httpx.get(f"{base}/ready").status_code == 200
    assert httpx.get(f"{base}/nothing").status_code == 404


def test_a_port_of_zero_in_the_settings_means_no_endpoint() -> None:
    assert obs.serve(0, service="test", host="127.0.0.1") is None


# -- the loop's metrics ------------------------------------------------------------------------------


def test_loop_metrics_count_records_by_topic_and_observe_the_batch() -> None:
    # State: a loop's metrics.
    metrics = obs.LoopMetrics("unit-loop")
    before = sample("cxpt_batch_records_count", {"group": "unit-loop"})
    # Action: a batch of three records from two topics, then a dead letter and an abort.
    metrics.batch(["a", "b", "a"], 0.004)
    metrics.dead_letter("UNKNOWN_SCHEMA")
    metrics.error("aborted")
    # Expectation: counted per topic, one batch of 3, one dead letter, one abort.
    assert sample("cxpt_records_consumed_total", {"group": "unit-loop", "topic": "a"}) == 2
    assert sample("cxpt_batch_records_count", {"group": "unit-loop"}) == before + 1
    assert sample("cxpt_batch_records_sum", {"group": "unit-loop"}) == 3
    assert sample("cxpt_dead_letters_total", {"group": "unit-loop", "reason_code": "UNKNOWN_SCHEMA"}) == 1
    assert sample("cxpt_processing_errors_total", {"group": "unit-loop", "kind": "aborted"}) == 1


class FakeConsumer:
    """What the lag collector asks of a consumer: its assignment, positions, cached ends."""

    def __init__(self, positions: dict[int, int], ends: dict[int, int]) -> None:
        self.positions, self.ends = positions, ends

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", p) for p in self.positions]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions[tp.partition]) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, self.ends[tp.partition]


def test_consumer_lag_is_the_end_minus_the_position_refreshed_at_most_once_a_second() -> None:
    # State: partition 0 is 40 behind, partition 1 caught up, partition 2 not fetched yet.
    consumer = FakeConsumer({0: 60, 1: 7, 2: -1001}, {0: 100, 1: 7, 2: -1001})
    lag = obs._LagCollector()
    lag.watch(consumer, "unit-lag")  # type: ignore[arg-type]
    registry = CollectorRegistry()
    registry.register(lag)
    labels = {"group": "unit-lag", "topic": "t"}
    # Action: the loop's thread refreshes it.
    lag.refresh(consumer, now=100.0)  # type: ignore[arg-type]
    # Expectation: per partition.
    assert registry.get_sample_value("cxpt_consumer_lag", labels | {"partition": "0"}) == 40
    assert registry.get_sample_value("cxpt_consumer_lag", labels | {"partition": "1"}) == 0
    assert registry.get_sample_value("cxpt_consumer_lag", labels | {"partition": "2"}) is None
    # Action: it catches up; refreshed within the second, then after it.
    consumer.positions[0] = 100
    lag.refresh(consumer, now=100.5)  # type: ignore[arg-type]
    assert registry.get_sample_value("cxpt_consumer_lag", labels | {"partition": "0"}) == 40
    lag.refresh(consumer, now=101.0)  # type: ignore[arg-type]
    assert registry.get_sample_value("cxpt_consumer_lag", labels | {"partition": "0"}) == 0
    # Action: the consumer closes. Expectation: no samples, the scrape still works.
    lag.unwatch(consumer)  # type: ignore[arg-type]
    assert registry.get_sample_value("cxpt_consumer_lag", labels | {"partition": "0"}) is None


def a_fill() -> OrderFilled:
    """An OrderFilled event: only its type matters to the latency hook."""
    return OrderFilled(
        order_id="o1", trader="0xb0b", trade_id=1, side=Side.BUY, liquidity_side=LiquiditySide.TAKER,
        last_px=100, last_qty=1, cum_qty=1, leaves_qty=0, fee=0,
    )  # fmt: skip


def test_order_to_fill_latency_is_observed_for_marketable_orders_only() -> None:
    # State: a placed order that filled at once, one that rested, and a cancel — all 30 ms old.
    place = MatcherCommand(
        command_id="c1", market="BTC-PERP", trader="0x" + "1" * 40, ts_init=TS_2026_11_23,
        body=limit_order(1, Side.BUY, 1, 1),
    )  # fmt: skip
    cancel = MatcherCommand(
        command_id="c2", market="BTC-PERP", trader="0x" + "1" * 40, ts_init=TS_2026_11_23,
        body=CancelOrder(market="BTC-PERP", order_id=order_id(1), nonce=1, signature=b""),
    )  # fmt: skip
    fills, commands = (
        sample("cxpt_order_fill_latency_seconds_count"),
        sample("cxpt_matcher_command_latency_seconds_count"),
    )
    fill_sum = sample("cxpt_order_fill_latency_seconds_sum")
    # Action
    now = TS_2026_11_23 + 30_000
    observe_command(place, [a_fill()], now_us=now)
    observe_command(place, [], now_us=now)
    observe_command(cancel, [a_fill()], now_us=now)
    # Expectation: three command latencies, one fill latency of 30 ms.
    assert sample("cxpt_matcher_command_latency_seconds_count") == commands + 3
    assert sample("cxpt_order_fill_latency_seconds_count") == fills + 1
    assert sample("cxpt_order_fill_latency_seconds_sum") == pytest.approx(fill_sum + 0.03)


# -- HTTP apps --------------------------------------------------------------------------------------


def test_an_instrumented_app_times_routes_by_template_and_serves_metrics_and_ready() -> None:
    # State: an app with a templated route, wrapped with the ops routes.
    app = FastAPI()

    @app.get("/items/{item}")
    def item(item: str) -> dict[str, str]:
        return {"item": item}

    client = TestClient(InstrumentedApp(app, service="unit-http", ops_routes=True))
    # Action: two requests to two items, one to nowhere.
    assert client.get("/items/a").status_code == 200
    assert client.get("/items/b").status_code == 200
    assert client.get("/nowhere").status_code == 404
    # Expectation: counted under the template (bounded labels), and the ops routes answer.
    labels = {"service": "unit-http", "method": "GET"}
    assert sample("cxpt_http_requests_total", labels | {"route": "/items/{item}", "status": "200"}) == 2
    assert sample("cxpt_http_requests_total", labels | {"route": "unmatched", "status": "404"}) == 1
    assert "cxpt_http_request_seconds_bucket" in client.get("/metrics").text
    assert client.get("/ready").json()["status"] == "ready"


# -- the correlation id --------------------------------------------------------------------------------


def test_correlation_ids_render_as_uuid_text_or_hex() -> None:
    assert render_correlation_id(GATEWAY_ID) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert render_correlation_id(b"req-42") == "req-42"
    assert render_correlation_id(b"\x00\xff") == "00ff"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The JSON log lines the process writes, captured; the root logger restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(Settings(log_json=True), service="unit")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], root.level = handlers, level
    structlog.contextvars.clear_contextvars()


def test_a_line_logged_while_a_record_is_handled_carries_its_correlation_id(json_log: io.StringIO) -> None:
    # Action: a stdlib log line inside the block, one after it.
    with correlation(GATEWAY_ID):
        logging.getLogger("services.risk").warning("refused")
    logging.getLogger("services.risk").warning("later")
    # Expectation: JSON lines; the id on the first only, the service on both.
    first, second = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert first["correlation_id"] == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert first["service"] == second["service"] == "unit"
    assert "correlation_id" not in second


class FakeMessage:
    """A consumed Kafka message, as far as the loop reads one."""

    def __init__(self, topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self._topic, self._value, self._headers = topic, value, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 5

    def key(self) -> bytes:
        return b"BTC-PERP"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return 1, 1

    def error(self) -> None:
        return None


def processor_without_kafka(bus: Bus, handler: Any) -> TransactionalProcessor:
    """A loop with its per-record path only (no producer, no consumer): enough for one hop."""
    processor = TransactionalProcessor.__new__(TransactionalProcessor)
    processor.bus, processor.handler, processor.group_id = bus, handler, "unit"
    processor._inputs = {bus.topic(MATCHER_COMMANDS).name: MATCHER_COMMANDS}
    processor._traced = False
    processor.stats = {"dead_lettered": 0}
    processor.metrics = obs.LoopMetrics("unit")
    return processor


def test_a_hop_logs_under_and_forwards_the_correlation_id_of_its_input(json_log: io.StringIO) -> None:
    # State: a matcher.commands record from the gateway, and a handler that logs and emits one output.
    bus = Bus(Settings())
    command = MatcherCommand(
        command_id="c1", market="BTC-PERP", trader="0x" + "1" * 40, ts_init=TS_2026_11_23,
        body=limit_order(1, Side.BUY, 1, 1),
    )  # fmt: skip
    value = bus.serde(MATCHER_COMMANDS).encode(to_avro(command))
    seen: list[Inbound] = []

    def handler(message: Inbound) -> list[Outbound]:
        seen.append(message)
        logging.getLogger("services.matcher").warning("handling %s", message.position)
        return [Outbound(TRADE_LOG, key="BTC-PERP", value=None)]

    processor = processor_without_kafka(bus, handler)
    message = FakeMessage(bus.topic(MATCHER_COMMANDS).name, value, [(CORRELATION_HEADER, GATEWAY_ID)])
    # Action: the loop's per-record path.
    produced = processor._outputs_for(message)  # type: ignore[arg-type]
    # Expectation: the output carries the header; the handler's log line names the request.
    assert (CORRELATION_HEADER, GATEWAY_ID) in produced[0]["headers"]
    line = json.loads(json_log.getvalue().splitlines()[0])
    assert line["correlation_id"] == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert line["event"].startswith("handling")


def test_a_dead_lettered_record_is_logged_under_its_correlation_id(json_log: io.StringIO) -> None:
    # State: an undecodable record with a correlation id.
    bus = Bus(Settings())
    processor = processor_without_kafka(bus, lambda message: [])
    message = FakeMessage(bus.topic(MATCHER_COMMANDS).name, b"not avro", [(CORRELATION_HEADER, b"req-7")])
    # Action
    produced = processor._outputs_for(message)  # type: ignore[arg-type]
    # Expectation: one dead letter; the warning names the request.
    assert len(produced) == 1
    line = json.loads(json_log.getvalue().splitlines()[0])
    assert line["correlation_id"] == "req-7"
    assert "dead-lettering" in line["event"]
