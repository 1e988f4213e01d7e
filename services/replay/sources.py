"""Where replays read from and write to: Avro container files and committed topic ranges.

A container file holds records of one schema (the topic's value schema, plain ints and strings as
on the wire) and, in its metadata, each record's topic position (`cxpt.source`): event ids derive
from positions, so a file replays exactly like the topic it came from. A range is per partition,
[start, end) in offsets — given as offsets, or as times through Kafka's `offsets_for_times`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from fastavro import block_reader, parse_schema, reader, writer
from fastavro.schema import to_parsing_canonical_form

from services.common.binding import from_avro
from services.common.bus import Bus, decode_message, read_partition, watermarks
from services.common.records import EngineSnapshot, MatcherCommand, TradeLogEntry
from services.common.schemas import load_current
from services.common.serde import UndecodableRecord, compiled_codec, without_logical_types
from services.common.topics import MATCHER_SNAPSHOTS, TOPICS, TopicSpec
from services.matcher.core.engine import MatchingEngine
from services.matcher.service import CODEC as SNAPSHOT_CODEC
from services.matcher.service import decode_state

R = TypeVar("R")

SOURCE = "cxpt.source"
"""Metadata key of a container file: the JSON list of its records' topic positions."""
SYNC_MARKER = b"cxpt-replay-v1.."
"""A fixed sync marker makes equal contents give byte-equal files (`cmp` is a determinism check)."""


def file_schema(name: str) -> Any:
    """The parsed current schema `name`, without logical types (plain ints and strings, as on the wire)."""
    return parse_schema(without_logical_types(load_current(name)))


def topic_spec(name: str) -> TopicSpec:
    """The declared topic called `name` (without prefix); SystemExit naming the known ones if none."""
    spec = next((t for t in TOPICS if t.name == name), None)
    if spec is None:
        raise SystemExit(f"error: unknown topic {name!r}; known: {', '.join(t.name for t in TOPICS)}")
    return spec


# -- files ------------------------------------------------------------------------------------------


class UnreadableFile(Exception):
    """A file that is not an Avro container file of the records asked for (the CLI says so, exit 2)."""


def container_schema(path: Path) -> str:
    """The short name of the record schema a container file holds (e.g. `TradeLogEntry`)."""
    try:
        with path.open("rb") as fh:
            schema = block_reader(fh).writer_schema
    except (ValueError, EOFError) as exc:
        raise UnreadableFile(f"{path} is not an Avro container file ({exc})") from exc
    return str(schema.get("name", "") if isinstance(schema, dict) else "").rsplit(".", 1)[-1]


def read_records(path: Path, record_class: type[R]) -> Iterator[tuple[str, R]]:
    """(source position, record) pairs from a container file of `record_class`'s schema.

    fastavro reads the container (header, blocks, sync markers, compression); a file written with
    the current schema has its blocks decoded by the compiled codec straight into records, ~3x
    cheaper than fastavro's dicts then `from_avro` (docs/performance.md). A file of another schema
    version goes through fastavro, resolved to the current schema.
    """
    name = record_class.__name__
    try:
        yield from _read_records(path, record_class, name)
    except (ValueError, EOFError) as exc:
        raise UnreadableFile(f"{path} is not an Avro container file of {name} records ({exc})") from exc


def _read_records(path: Path, record_class: type[R], name: str) -> Iterator[tuple[str, R]]:
    with path.open("rb") as fh:
        blocks = block_reader(fh)
        sources = json.loads(blocks.metadata.get(SOURCE, "null") or "null")
        codec = compiled_codec(name)
        current = to_parsing_canonical_form(file_schema(name))
        if codec is None or to_parsing_canonical_form(blocks.writer_schema) != current:
            fh.seek(0)
            dicts = reader(fh, file_schema(name), return_record_name=True, return_record_name_override=True)
            decoded: Iterator[R] = (from_avro(record_class, cast(dict[str, Any], r)) for r in dicts)
        else:
            decoded = (r for block in blocks for r in codec.decode_many(_data(block), block.num_records))
        for index, record in enumerate(decoded):
            yield (sources[index] if sources else f"{path.name}:{index}"), record


def _data(block: Any) -> bytes:
    """A block's records, decompressed: fastavro keeps them in `bytes_` (a BytesIO, in both its C
    and pure-Python readers), which its type stub leaves out."""
    return cast(BytesIO, block.bytes_).getvalue()


def read_commands(path: Path) -> Iterator[tuple[str, MatcherCommand]]:
    """(source position, command) pairs from an Avro container file of MatcherCommand."""
    return read_records(path, MatcherCommand)


def read_entries(path: Path) -> Iterator[TradeLogEntry]:
    """The TradeLogEntry records of an Avro container file, in file order."""
    return (entry for _, entry in read_records(path, TradeLogEntry))


def write_container(
    path: Path, schema_name: str, records: Iterable[dict[str, Any]], sources: list[str] | None = None
) -> None:
    """Write `records` of `schema_name` to `path` (with their positions when given)."""
    metadata = {SOURCE: json.dumps(sources)} if sources is not None else None
    with path.open("wb") as fh:
        writer(fh, file_schema(schema_name), records, metadata=metadata, sync_marker=SYNC_MARKER)


# -- topic ranges -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Offsets [start, end) of one partition (`end` None: to the end it has when reached)."""

    partition: int
    start: int
    end: int | None = None

    @classmethod
    def parse(cls, text: str) -> Range:
        """`P:FROM:TO`, `P:FROM:` or `P:FROM` (offsets)."""
        parts = text.split(":")
        if not 2 <= len(parts) <= 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise ValueError(f"expected PARTITION:FROM[:TO], got {text!r}")
        end = parts[2] if len(parts) == 3 and parts[2] else None
        return cls(int(parts[0]), int(parts[1]), None if end is None else int(end))


def parse_time_ms(text: str) -> int:
    """Milliseconds since 1970 from an integer (ms) or an ISO 8601 time (UTC unless it says)."""
    if text.isdigit():
        return int(text)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def partitions_of(bus: Bus, topic: str) -> list[int]:
    """The partition numbers of `topic`, ascending."""
    admin = AdminClient(bus.client_config())
    return sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def plan_ranges(
    bus: Bus,
    spec: TopicSpec,
    *,
    partition: int | None = None,
    start: int = 0,
    end: int | None = None,
    ranges: list[Range] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[Range]:
    """The ranges to read: explicit `ranges`, else `start`/`end` on `partition` (or on every
    partition), narrowed to [since, until) by record timestamps when either is given."""
    name = bus.topic(spec).name
    if ranges:
        planned = list(ranges)
    else:
        numbers = [partition] if partition is not None else partitions_of(bus, name)
        planned = [Range(p, start, end) for p in numbers]
    if since_ms is None and until_ms is None:
        return planned
    consumer = Consumer(bus.consumer_config("replay-times"))
    try:

        def offsets_at(ms: int) -> dict[int, int]:
            asked = [TopicPartition(name, r.partition, ms) for r in planned]
            found = consumer.offsets_for_times(asked, timeout=10)
            # -1: no record at or after that time; the range then ends (or starts) at the end.
            return {
                tp.partition: tp.offset
                if tp.offset >= 0
                else watermarks(consumer, TopicPartition(name, tp.partition))[1]
                for tp in found
            }

        lows = offsets_at(since_ms) if since_ms is not None else {}
        highs = offsets_at(until_ms) if until_ms is not None else {}
    finally:
        consumer.close()
    narrowed = []
    for r in planned:
        low = max(r.start, lows.get(r.partition, 0))
        high = min(x for x in (r.end, highs.get(r.partition)) if x is not None) if (
            r.end is not None or r.partition in highs
        ) else None  # fmt: skip
        narrowed.append(Range(r.partition, low, high))
    return narrowed


def range_sizes(bus: Bus, spec: TopicSpec, ranges: list[Range]) -> int:
    """How many offsets the ranges span now (an upper bound of records: markers take offsets)."""
    name = bus.topic(spec).name
    consumer = Consumer(bus.consumer_config("replay-watermarks"))
    try:
        total = 0
        for r in ranges:
            low, high = watermarks(consumer, TopicPartition(name, r.partition))
            total += max(0, min(high, r.end if r.end is not None else high) - max(low, r.start))
        return total
    finally:
        consumer.close()


def read_ranges(bus: Bus, spec: TopicSpec, ranges: list[Range]) -> Iterator[tuple[str, Any]]:
    """(topic position, generated record) pairs of committed ranges, one after the other.

    Poison records are skipped: they were dead-lettered when first consumed.
    """
    name = bus.topic(spec).name
    for r in ranges:
        if r.end is not None and r.end <= r.start:
            continue
        begin = r.start if r.start > 0 else OFFSET_BEGINNING
        for message in read_partition(bus, TopicPartition(name, r.partition, begin), r.end):
            try:
                record = decode_message(bus, message, spec).record
            except UndecodableRecord:
                continue
            yield f"{message.topic()}:{message.partition()}:{message.offset()}", record


# -- matcher snapshots ------------------------------------------------------------------------------


def snapshots(bus: Bus) -> list[EngineSnapshot]:
    """Every matcher snapshot still on matcher.snapshots (a compacted topic: at least the latest
    per input partition), in log order."""
    return [snapshot for _, snapshot in read_ranges(bus, MATCHER_SNAPSHOTS, [Range(0, 0)])]


def snapshot_engine(snapshot: EngineSnapshot) -> MatchingEngine:
    """The engine a snapshot holds (the matcher service's codec), checked against its recorded hash."""
    if snapshot.codec != SNAPSHOT_CODEC:
        raise ValueError(f"unknown snapshot codec {snapshot.codec!r}")
    engine = decode_state(snapshot.payload)
    if engine.state_hash() != snapshot.state_hash:
        raise ValueError(f"snapshot of {snapshot.input_partition} at {snapshot.next_offset} is corrupt")
    return engine
