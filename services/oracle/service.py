"""Oracle service: every `ORACLE_INTERVAL_S`, poll the sources, run a round, publish to oracle.prices.

    clock ─▶ now_us ─┐
    sources ─▶ items ─┴─▶ core.run_round ─▶ IndexPrice per index ─▶ oracle.prices (key: index)
                                          └▶ rejected quotes logged; metrics

Delivery: an idempotent producer (no transactions). A round is a set of observations, not a command:
if one is published twice (a retry after a crash between send and acknowledgement), consumers key
it by (index, ts_event) — the Cassandra rows, the TWAP history on restart — so the copy changes
nothing. Each record's Kafka timestamp is its round time, so the restart can find the tail by time.

Restart: the TWAP history is rebuilt from the rounds of the last (longest window + `LOOKBACK_MARGIN_S`)
read back from oracle.prices, so a restart does not reset the TWAPs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.bus import Bus, Outbound, decode_message, encode_outbound, read_partition
from services.common.records import IndexPrice, QuoteStatus
from services.common.serde import UndecodableRecord
from services.common.topics import ORACLE_PRICES
from services.oracle.adapters.clock import Clock, system_clock
from services.oracle.core import ClockWentBack, OraclePolicy, OracleState, remember, run_round
from services.oracle.ports import PriceSource, SourceFailure, SourceQuote

log = structlog.get_logger(__name__)
_std_log = logging.getLogger(__name__)

LOOKBACK_MARGIN_S = 600
"""Read back this much more than the longest window: the price that holds into it is older."""


class OracleMetrics:
    """The oracle's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rounds = Counter("oracle_rounds", "Oracle rounds published", registry=self.registry)
        self.quotes = Counter(
            "oracle_quotes", "Quotes judged, by source and verdict", ["source", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.price = Gauge(
            "oracle_index_price_e9", "Latest index price × 1e9 (absent: never priced)", ["index"],
            registry=self.registry,
        )  # fmt: skip
        self.accepted = Gauge(
            "oracle_accepted_quotes", "Accepted quotes in the latest round", ["index"], registry=self.registry
        )
        self.last_round = Gauge(
            "oracle_last_round_timestamp_seconds", "Time of the latest round", registry=self.registry
        )
        self.round_seconds = Histogram(
            "oracle_round_seconds", "Time to poll every source and publish a round", registry=self.registry
        )

    def observe(self, prices: Sequence[IndexPrice]) -> None:
        self.rounds.inc()
        for price in prices:
            for q in price.quotes:
                self.quotes.labels(q.source, str(q.status)).inc()
            self.accepted.labels(price.index_symbol).set(
                sum(1 for q in price.quotes if q.status is QuoteStatus.ACCEPTED)
            )
            if price.price_e9 is not None:
                self.price.labels(price.index_symbol).set(price.price_e9)
            self.last_round.set(price.ts_event / 1_000_000)


class OracleService:
    """The oracle process: sources, the core's state, the producer, the metrics."""

    def __init__(
        self,
        bus: Bus,
        sources: Sequence[PriceSource],
        policy: OraclePolicy,
        *,
        clock: Clock = system_clock,
        interval_s: int | None = None,
        metrics: OracleMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.sources = tuple(sources)
        self.policy = policy
        self.clock = clock
        self.interval_s = interval_s or bus.settings.oracle_interval_s
        self.metrics = metrics or OracleMetrics()
        self._producer = Producer(bus.producer_config())
        self.state = rebuild_state(bus, policy, clock())

    def run(self, stop: threading.Event) -> None:
        """A round every `interval_s` (from the start of the previous one) until `stop` is set."""
        try:
            while not stop.is_set():
                started = time.monotonic()
                self.run_once()
                stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            self.close()

    def run_once(self) -> list[IndexPrice]:
        """Poll, judge, publish one round; returns its records (none if the clock went back)."""
        with self.metrics.round_seconds.time():
            now_us = self.clock()
            items = self.poll()
            try:
                result = run_round(self.policy, self.state, now_us, items)
            except ClockWentBack as exc:
                log.warning("round skipped", reason=str(exc))
                return []
            self.publish(result.prices)
            self.state = result.state  # only once the round is on the log
        self.metrics.observe(result.prices)
        for price in result.prices:
            report(price)
        return result.prices

    def poll(self) -> list[SourceQuote | SourceFailure]:
        """Every source's items, in source order. A source that breaks its promise not to raise
        is logged and contributes nothing this round."""
        items: list[SourceQuote | SourceFailure] = []
        for source in self.sources:
            try:
                items += source.fetch()
            except Exception:  # noqa: BLE001 - one broken adapter must not stop the others
                _std_log.exception("source %s raised; skipped this round", source.name)
        return items

    def publish(self, prices: Sequence[IndexPrice]) -> None:
        """Produce the round's records, stamped with the round time, and wait for their delivery."""
        for price in prices:
            out = Outbound(ORACLE_PRICES, key=price.index_symbol, value=price)
            self._producer.produce(**encode_outbound(self.bus, out), timestamp=price.ts_event // 1000)
        remaining = self._producer.flush(30)
        if remaining:
            raise KafkaException(f"{remaining} oracle records not delivered within 30 s")

    def close(self) -> None:
        self._producer.flush(10)
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()


def report(price: IndexPrice) -> None:
    """Log the round: one line per rejected quote with its reason, one for the index."""
    for q in price.quotes:
        if q.status is not QuoteStatus.ACCEPTED:
            log.warning(
                "quote rejected", index=price.index_symbol, source=q.source, feed=q.feed,
                status=str(q.status), reason=q.reason, price_e9=q.price_e9, ts_event=price.ts_event,
            )  # fmt: skip
    log.info(
        "index priced" if price.price_e9 is not None else "index unpriced",
        index=price.index_symbol, price_e9=price.price_e9, ts_event=price.ts_event,
        accepted=sum(1 for q in price.quotes if q.status is QuoteStatus.ACCEPTED), quotes=len(price.quotes),
        twaps={t.window_s: t.price_e9 for t in price.twaps},
    )  # fmt: skip


def rebuild_state(bus: Bus, policy: OraclePolicy, now_us: int) -> OracleState:
    """The TWAP history as of the rounds published in the lookback before `now_us`."""
    spec = bus.topic(ORACLE_PRICES)
    since_ms = (now_us - policy.longest_window_us) // 1000 - LOOKBACK_MARGIN_S * 1000
    state, read = OracleState(), 0
    for start in _offsets_at(bus, spec.name, since_ms):
        for message in read_partition(bus, start, None):
            try:
                record = decode_message(bus, message, ORACLE_PRICES).record
            except UndecodableRecord:
                continue  # not ours to judge here; the log keeps it for whoever can read it
            state = remember(policy, state, record)
            read += 1
    log.info("oracle state rebuilt", rounds_read=read, indexes=sorted(state.history))
    return state


def _offsets_at(bus: Bus, topic: str, since_ms: int, timeout_s: float = 30) -> list[TopicPartition]:
    """Per partition of `topic`, the first offset stamped at or after `since_ms` (none: nothing newer).

    Retried while the cluster's metadata settles (a topic just created, a leader moving): the
    broker answers those lookups with errors librdkafka does not always mark retriable.
    """
    # Lookups only: the group id is required by the client but never joined.
    reader = Consumer(bus.consumer_config("oracle.rebuild"))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
                wanted = [TopicPartition(topic, p, since_ms) for p in partitions]
                found = reader.offsets_for_times(wanted, timeout=10)
                return [tp for tp in found if tp.offset >= 0]
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if time.monotonic() > deadline or not (error.retriable() or error.code() in _SETTLING):
                    raise
                time.sleep(0.2)
    finally:
        reader.close()


_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._TIMED_OUT,
}
