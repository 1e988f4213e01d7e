"""The funding/expiry service: the scheduler (services/funding/core) on Kafka.

It tails `oracle.prices` and `trade.log` without a consumer group: the scheduler's state is a
function of those logs, so nothing is committed and every start rebuilds it (from the latest
snapshot and what follows it, below). It first reads
both topics up to the ends they had at start (catch-up: no ticks, nothing sent), then ticks once a
second with the wall clock and produces the scheduler's commands to `matcher.commands`, keyed by
market, with an idempotent (not transactional) producer: exactly once rests on the deterministic
command ids and on the matcher refusing an interval it already applied (docs/derivatives.md,
"Exactly once").

**Snapshots.** After catch-up and every FUNDING_SNAPSHOT_EVERY_S, the scheduler's state and the
position reached in every input partition go to `funding.snapshots` (compacted, one key). A start
loads the latest and reads from those positions instead of from the beginning; a snapshot it
cannot read (another version's state) is skipped with a warning, and the logs are read whole.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from services.common.bus import Bus, Outbound, TypedProducer, read_topic, take_batch, watermarks
from services.common.observability import watch_consumer
from services.common.records import (
    FundingSnapshot,
    ImpliedVolatility,
    IndexPrice,
    InputPosition,
    MatcherCommand,
)
from services.common.serde import UndecodableRecord
from services.common.settings import Settings
from services.common.topics import (
    FUNDING_SNAPSHOTS,
    MATCHER_COMMANDS,
    OPTIONS_IV,
    ORACLE_PRICES,
    TRADE_LOG,
    TopicSpec,
)
from services.funding.core.scheduler import (
    ImpliedVolObserved,
    IndexObserved,
    Scheduler,
    SchedulerConfig,
    decode_state,
    encode_state,
)

log = logging.getLogger(__name__)

TICK_S = 1.0
SNAPSHOT_CODEC = "msgpack-zlib-1"
SNAPSHOT_KEY = "funding"


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
        self.read = 0
        """Input records applied since start (a start from a snapshot reads only the tail)."""
        self._starts: dict[tuple[str, int], int] = {}
        """Where each input partition was assigned from (its position until a record is read)."""
        self._last_snapshot = 0.0
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
                if time.monotonic() - self._last_snapshot >= self.bus.settings.funding_snapshot_every_s:
                    self.snapshot()
        finally:
            self.close()

    def catch_up(self) -> None:
        """Load the latest snapshot, assign every partition from where it ends (else from the
        beginning), read up to the ends seen now, and take a snapshot."""
        self._iv_published = published_ivs(self.bus)
        positions = self._restore()
        assignment, ends = [], {}
        for name, spec in self._topics.items():
            metadata = self._consumer.list_topics(name, timeout=10).topics[name]
            for p in metadata.partitions:
                _, high = watermarks(self._consumer, TopicPartition(name, p))
                start = positions.get((spec.name, p), OFFSET_BEGINNING)
                self._starts[(name, p)] = start
                assignment.append(TopicPartition(name, p, start))
                if high > max(start, 0):
                    ends[(name, p)] = high
        self._consumer.assign(assignment)
        while ends:
            self._read(timeout_s=0.5)
            # Positions, not offsets of records seen: transaction markers take offsets too.
            for tp in self._consumer.position([TopicPartition(n, p) for n, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
        self._producer.flush()
        log.info(
            "funding: caught up (%d records read%s); markets %s",
            self.read, " after a snapshot" if positions else "", sorted(self.scheduler.markets),
        )  # fmt: skip
        self.snapshot()

    def snapshot(self) -> None:
        """Write the scheduler's state and the position reached in every input partition."""
        assigned = [TopicPartition(name, p) for name, p in self._starts]
        positions = [
            InputPosition(
                topic=self._topics[tp.topic].name, partition=tp.partition, next_offset=self._resume_at(tp)
            )
            for tp in self._consumer.position(assigned)
        ]
        record = FundingSnapshot(
            positions=positions,
            codec=SNAPSHOT_CODEC,
            payload=zlib.compress(encode_state(self.scheduler), 1),
            ts_snapshot=self._clock(),
        )
        self._producer.send(Outbound(FUNDING_SNAPSHOTS, key=SNAPSHOT_KEY, value=record))
        self._producer.flush()
        self._last_snapshot = time.monotonic()

    def _latest_snapshot(self, timeout_s: float = 10) -> FundingSnapshot | None:
        """The last record of funding.snapshots, fetched alone with the service's own consumer (no
        reader of the whole topic: a start should not wait for one), or None if it is empty."""
        snapshots = TopicPartition(self.bus.topic(FUNDING_SNAPSHOTS).name, 0)
        low, high = watermarks(self._consumer, snapshots)
        if high <= low:
            return None
        self._consumer.assign([TopicPartition(snapshots.topic, 0, high - 1)])
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                message = self._consumer.poll(0.5)
                if message is not None and message.error() is None:
                    record: FundingSnapshot = self.bus.serde(FUNDING_SNAPSHOTS).decode_record(message.value())
                    return record
            raise TimeoutError(f"the last funding snapshot (offset {high - 1}) not read within {timeout_s} s")
        finally:
            # An assigned partition keeps a fetch long-polling the broker, which holds up every
            # watermark query catch-up makes next (0.5 s each, measured).
            self._consumer.unassign()

    def _resume_at(self, position: TopicPartition) -> int:
        """The offset to resume `position`'s partition at: the consumer's position, or where the
        partition was assigned from while nothing has been read from it (the position is unset)."""
        if position.offset >= 0:
            return int(position.offset)
        return max(self._starts[(position.topic, position.partition)], 0)

    def _restore(self) -> dict[tuple[str, int], int]:
        """The scheduler from the latest snapshot, and where it ends per (topic, partition); nothing
        (the logs read whole) when there is none or it cannot be read."""
        latest = self._latest_snapshot()
        if latest is None:
            return {}
        try:
            if latest.codec != SNAPSHOT_CODEC:
                raise ValueError(f"codec {latest.codec!r}")
            self.scheduler = decode_state(self.scheduler.config, zlib.decompress(latest.payload))
        except (ValueError, zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("funding: snapshot unreadable (%s); reading the logs from the beginning", exc)
            return {}
        return {(p.topic, p.partition): p.next_offset for p in latest.positions}

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
                self.read += 1

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
