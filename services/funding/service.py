"""The funding/expiry service: the scheduler (services/funding/core) on Kafka.

It tails `oracle.prices` and `trade.log` without a consumer group, from the beginning of every
partition: the scheduler's state is a function of those logs, so it is rebuilt on every start and
nothing is committed. It first reads both topics up to the ends they had at start (catch-up: no
ticks, nothing sent), then ticks once a second with the wall clock and produces the scheduler's
commands to `matcher.commands`, keyed by market, with an idempotent (not transactional) producer:
exactly once rests on the deterministic command ids and on the matcher refusing an interval it
already applied (docs/derivatives.md, "Exactly once").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from services.common.bus import Bus, Outbound, TypedProducer, read_topic, take_batch, watermarks
from services.common.observability import watch_consumer
from services.common.records import ImpliedVolatility, IndexPrice, MatcherCommand
from services.common.serde import UndecodableRecord
from services.common.settings import Settings
from services.common.topics import MATCHER_COMMANDS, OPTIONS_IV, ORACLE_PRICES, TRADE_LOG, TopicSpec
from services.funding.core.scheduler import ImpliedVolObserved, IndexObserved, Scheduler, SchedulerConfig

log = logging.getLogger(__name__)

TICK_S = 1.0


def scheduler_config(settings: Settings) -> SchedulerConfig:
    """The scheduler's parameters from the settings."""
    return SchedulerConfig(
        interval_s=settings.funding_interval_s,
        cap_e9=settings.funding_cap_e9,
        mark_rounds=settings.mark_basis_rounds,
        mark_clamp_bps=settings.mark_clamp_bps,
        mark_max_age_s=max(60, 2 * settings.oracle_interval_s),
        settlement_window_s=settings.settlement_window_s,
        option_vols=parse_vols(settings.option_vols),
        option_vol_default=settings.option_vol_default,
    )


def parse_vols(text: str) -> dict[str, float]:
    """`BTC-USD=0.6,ETH-USD=0.75` → {index: vol}."""
    vols = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        symbol, _, vol = item.partition("=")
        vols[symbol.strip()] = float(vol)
    return vols


class FundingService:
    """Rebuilds the scheduler from the logs, then ticks and sends its commands."""

    def __init__(self, bus: Bus, clock: Callable[[], int] | None = None) -> None:
        self.bus = bus
        self.scheduler = Scheduler(scheduler_config(bus.settings))
        self._clock = clock or (lambda: time.time_ns() // 1_000)
        self._producer = TypedProducer(bus)
        self._consumer = Consumer(bus.consumer_config(f"funding-tail-{uuid.uuid4().hex}"))
        watch_consumer(self._consumer, "funding")
        self._topics = {bus.topic(ORACLE_PRICES).name: ORACLE_PRICES, bus.topic(TRADE_LOG).name: TRADE_LOG}
        self.sent = 0
        self._iv_published: dict[str, int] = {}
        """Per option market, the highest trade id on options.iv: the replay of the log on start
        publishes only what comes after (a trade's IV is published once, give or take a crash
        between send and delivery; consumers key it by (market, trade_id))."""

    def run(self, stop: threading.Event) -> None:
        """Catch up, then tick every second until `stop` is set."""
        try:
            self.catch_up()
            next_tick = time.monotonic()
            while not stop.is_set():
                self._read(timeout_s=max(0.0, min(0.2, next_tick - time.monotonic())))
                if time.monotonic() >= next_tick:
                    self.tick()
                    next_tick += TICK_S
        finally:
            self.close()

    def catch_up(self) -> None:
        """Assign every partition from its beginning and read up to the ends seen now."""
        self._iv_published = published_ivs(self.bus)
        assignment, ends = [], {}
        for name in self._topics:
            metadata = self._consumer.list_topics(name, timeout=10).topics[name]
            for p in metadata.partitions:
                _, high = watermarks(self._consumer, TopicPartition(name, p))
                assignment.append(TopicPartition(name, p, OFFSET_BEGINNING))
                if high > 0:
                    ends[(name, p)] = high
        self._consumer.assign(assignment)
        while ends:
            self._read(timeout_s=0.5)
            # Positions, not offsets of records seen: transaction markers take offsets too.
            for tp in self._consumer.position([TopicPartition(n, p) for n, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
        self._producer.flush()
        log.info("funding: caught up; markets %s", sorted(self.scheduler.markets))

    def tick(self) -> None:
        """One clock tick: send what the scheduler says is due."""
        now = self._clock()
        commands = self.scheduler.on_tick(now)
        for command in commands:
            self._producer.send(Outbound(MATCHER_COMMANDS, key=command.market, value=command))
        self._producer.flush()  # delivered before the next tick may resend anything (and the IVs)
        if commands:
            self.sent += len(commands)
            log.info("funding: sent %s", ", ".join(_describe(c) for c in commands))

    def close(self) -> None:
        self._producer.flush()
        self._consumer.close()

    def _read(self, timeout_s: float) -> None:
        for message in take_batch(self._consumer, 500, timeout_s):
            if message.error() is None:
                self._apply(message)

    def _apply(self, message: Message) -> None:
        spec: TopicSpec = self._topics[message.topic() or ""]
        try:
            record = self.bus.serde(spec).decode_record(message.value())
        except UndecodableRecord as exc:
            log.warning("funding: skipped an undecodable record at %s: %s", message.offset(), exc)
            return
        if isinstance(record, IndexPrice):
            self.scheduler.apply(IndexObserved(record.index_symbol, record.ts_event, record.price_e9))
            return
        output = self.scheduler.apply(record)
        for vol in output.implied_vols:
            if vol.trade_id > self._iv_published.get(vol.market, 0):
                self._producer.send(Outbound(OPTIONS_IV, key=vol.market, value=iv_record(vol)))
                self._iv_published[vol.market] = vol.trade_id


def iv_record(vol: ImpliedVolObserved) -> ImpliedVolatility:
    """The options.iv record of one observation."""
    return ImpliedVolatility(
        market=vol.market,
        trade_id=vol.trade_id,
        ts_event=vol.ts_event,
        trade_price=vol.trade_price,
        index_price=vol.index_price,
        strike=vol.strike,
        option_type=vol.option_type,
        t_years=vol.t_years,
        implied_vol=vol.implied_vol,
        failure=None if vol.failure is None else str(vol.failure),
    )


def published_ivs(bus: Bus) -> dict[str, int]:
    """Per option market, the highest trade id already on options.iv."""
    published: dict[str, int] = {}
    for message in read_topic(bus, OPTIONS_IV):
        record = bus.serde(OPTIONS_IV).decode_record(message.value())
        published[record.market] = max(published.get(record.market, 0), record.trade_id)
    return published


def _describe(command: MatcherCommand) -> str:
    return f"{type(command.body).__name__}({command.market})"
