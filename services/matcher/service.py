"""Matcher service: matcher.commands → engine → trade.log (+ risk.postings), exactly once.

One `MatchingEngine` per assigned input partition (markets hash to partitions). The partition's
state goes to `matcher.snapshots` in the same transaction as the outputs and input offsets it
reflects, so a snapshot never runs ahead of, or behind, what was committed. A snapshot costs time in
proportion to the orders resting (~4 µs each: hash, export, JSON, zlib), so it is taken once at
least `snapshot_every` commands *and* `snapshot_commands_per_order` commands per resting order have
passed since the last: its cost per command stays bounded however deep the books grow, and a
recovery replays at most that many commands. On assignment (start, rebalance, aborted
transaction) the state is rebuilt to the committed offset: the latest snapshot, then a replay of
the commands after it — whose outputs were committed before, so the replay emits nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from services.common.binding import from_avro, to_avro
from services.common.bus import Bus, Inbound, Outbound, TransactionalProcessor, decode_message, read_partition
from services.common.observability import observe_command
from services.common.partitioning import partition_for
from services.common.records import EngineSnapshot, MarketDefinition, MatcherCommand
from services.common.serde import UndecodableRecord
from services.common.topics import MATCHER_COMMANDS, MATCHER_SNAPSHOTS, RISK_POSTINGS, TRADE_LOG
from services.matcher.core.engine import (
    MARKET_EVENTS,
    CommandResult,
    Event,
    MatchingEngine,
    export_state,
    import_state,
    log_entry,
)

log = logging.getLogger(__name__)

GROUP_ID = "matcher"
CODEC = "json-zlib-1"


class SnapshotMismatch(Exception):
    """A loaded snapshot does not hash to what was recorded: refuse to trade on corrupt state."""


def outputs(message: Inbound, command: MatcherCommand, result: CommandResult) -> list[Outbound]:
    """The records one command produces: its trade-log entry, on trade.log and on risk.postings.

    The same entry (encoded once) goes to every risk partition that owns one of its traders, and
    to all of them when it carries a market event (a listing, status change, mark, funding or
    settlement concerns everyone).
    """
    entry = log_entry(command, result, message.position)
    produced = [Outbound(TRADE_LOG, key=result.market, value=entry)]
    for partition in risk_partitions(result.events):
        produced.append(Outbound(RISK_POSTINGS, key=result.market, value=entry, partition=partition))
    return produced


def risk_partitions(events: list[Event]) -> list[int]:
    """The risk.postings partitions that must see an entry with `events`."""
    count = RISK_POSTINGS.partitions
    partitions = set()
    for event in events:
        if isinstance(event, MARKET_EVENTS):
            return list(range(count))
        trader = getattr(event, "trader", None)
        if trader:
            partitions.add(partition_for(trader, count))
    return sorted(partitions)


def snapshot_due(since: int, every: int, per_order: int, engine: MatchingEngine) -> bool:
    """Whether `since` commands after the last snapshot call for the next (module doc)."""
    return since >= every and since >= per_order * engine.resting_orders()


def encode_state(engine: MatchingEngine) -> bytes:
    """The engine as codec json-zlib-1: `export_state` as compact JSON, definitions as Avro dicts.

    msgspec writes the same JSON as `json.dumps` 5x faster; zlib level 1 is 3.5x faster than 6
    for a third more bytes (a 10k-order book: 0.23 MB instead of 0.17 MB, 6 ms instead of 20 ms).
    """
    markets = [item | {"definition": to_avro(item["definition"])} for item in export_state(engine)]
    return zlib.compress(msgspec.json.encode(markets), 1)


def decode_state(payload: bytes) -> MatchingEngine:
    markets: list[dict[str, Any]] = json.loads(zlib.decompress(payload))
    return import_state([m | {"definition": from_avro(MarketDefinition, m["definition"])} for m in markets])


class MatcherService:
    """The matcher process: engines per partition, wired to the transactional loop."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.snapshot_every = bus.settings.snapshot_every
        self.snapshot_per_order = bus.settings.snapshot_commands_per_order
        self.engines: dict[int, MatchingEngine] = {}
        self._since_snapshot: dict[int, int] = {}
        self.processor = TransactionalProcessor(
            bus,
            group_id=GROUP_ID,
            inputs=[MATCHER_COMMANDS],
            handler=self.handle,
            transactional_id=f"{bus.settings.topic_prefix}matcher-{bus.settings.instance_id}",
            on_assign=self.recover,
            on_revoke=self.forget,
        )

    def run(self, stop: threading.Event) -> None:
        self.processor.run(stop)

    def handle(self, message: Inbound) -> list[Outbound]:
        """Apply one command to its partition's engine; snapshot when one is due (module doc)."""
        engine = self.engines[message.partition]
        command: MatcherCommand = message.record
        result = engine.apply(command)
        observe_command(command, result.events)  # order → fill latency (replays do not pass here)
        produced = outputs(message, command, result)
        count = self._since_snapshot.get(message.partition, 0) + 1
        if snapshot_due(count, self.snapshot_every, self.snapshot_per_order, engine):
            produced.append(self._snapshot(message, engine, command.ts_init))
            count = 0
        self._since_snapshot[message.partition] = count
        return produced

    def recover(self, committed: dict[tuple[str, int], int | None]) -> None:
        """Rebuild each partition's engine at its committed offset."""
        for (topic, partition), offset in committed.items():
            self.engines[partition] = rebuild(self.bus, topic, partition, offset)
            self._since_snapshot[partition] = 0

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        for _, partition in partitions:
            self.engines.pop(partition, None)
            self._since_snapshot.pop(partition, None)

    def _snapshot(self, message: Inbound, engine: MatchingEngine, ts: int) -> Outbound:
        key = f"{message.topic}:{message.partition}"
        snapshot = EngineSnapshot(
            input_partition=key,
            next_offset=message.offset + 1,
            state_hash=engine.state_hash(),
            codec=CODEC,
            payload=encode_state(engine),
            ts_snapshot=ts,
        )
        return Outbound(MATCHER_SNAPSHOTS, key=key, value=snapshot)


def rebuild(bus: Bus, topic: str, partition: int, committed: int | None) -> MatchingEngine:
    """The engine state after every command of `topic`[`partition`] before offset `committed`."""
    if committed is None:
        return MatchingEngine()
    snapshot = latest_snapshot(bus, f"{topic}:{partition}")
    engine = MatchingEngine()
    start = OFFSET_BEGINNING
    if snapshot is not None:
        engine = decode_state(snapshot.payload)
        if engine.state_hash() != snapshot.state_hash:
            raise SnapshotMismatch(f"{topic}:{partition} snapshot at {snapshot.next_offset} is corrupt")
        start = snapshot.next_offset
    replayed = replay(bus, TopicPartition(topic, partition, start), until=committed, engine=engine)
    log.info(
        "recovered %s:%s at offset %s (snapshot %s, replayed %d)",
        topic, partition, committed, snapshot.next_offset if snapshot else None, replayed,
    )  # fmt: skip
    return engine


def replay(bus: Bus, start: TopicPartition, *, until: int, engine: MatchingEngine) -> int:
    """Apply the commands from `start` up to (not including) offset `until`; returns how many."""
    applied = 0
    for message in read_partition(bus, start, until):
        try:
            command = decode_message(bus, message, MATCHER_COMMANDS).record
        except UndecodableRecord:
            continue  # it was dead-lettered when first seen, and produced nothing then either
        engine.apply(command)
        applied += 1
    return applied


def latest_snapshot(bus: Bus, key: str) -> EngineSnapshot | None:
    """The newest committed snapshot for `key`, or None."""
    spec = bus.topic(MATCHER_SNAPSHOTS)
    latest = None
    for message in read_partition(bus, TopicPartition(spec.name, 0, OFFSET_BEGINNING), None):
        if message.key() == key.encode():
            latest = message
    if latest is None:
        return None
    snapshot: EngineSnapshot = decode_message(bus, latest, MATCHER_SNAPSHOTS).record
    return snapshot
