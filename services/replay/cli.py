"""Replay tooling.

    # a sample flow of commands to play with (a listing and a realistic order flow)
    python -m services.replay sample --commands 100000 --output cmds.avro
    # a range of a topic, as an Avro container file (records keep their topic position)
    python -m services.replay export --topic matcher.commands --output cmds.avro   # [--partition N]
    # the engine over a commands file (or a topic range) → a trade-log file (one entry per command)
    python -m services.replay engine --input cmds.avro --output entries.avro
    python -m services.replay engine --topic matcher.commands --output entries.avro

Without `--partition`, every partition is read in turn: markets never interact, so this gives the
same events as the live service, partition by partition.

`engine` uses exactly the matcher core the service runs and prints the final state hash, so two
runs over the same commands can be compared by one line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import AdminClient
from fastavro import parse_schema, reader, writer
from tqdm import tqdm

from services.common.binding import from_avro, to_avro
from services.common.bus import Bus, decode_message, read_partition
from services.common.records import MatcherCommand
from services.common.schemas import load_current
from services.common.serde import UndecodableRecord, without_logical_types
from services.common.settings import get_settings
from services.common.topics import TOPICS, TopicSpec
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.flows import realistic_flow

# Position of a record in its source: the event ids of replayed outputs derive from it.
_SOURCE = "cxpt.source"
# A fixed sync marker makes equal contents give byte-equal files (`cmp` is a determinism check).
SYNC_MARKER = b"cxpt-replay-v1.."


def _file_schema(name: str) -> Any:
    # Plain ints and strings in files too, exactly as on the wire (see services.common.serde).
    return parse_schema(without_logical_types(load_current(name)))


def read_commands(path: Path) -> Iterator[tuple[str, MatcherCommand]]:
    """(source position, command) pairs from an Avro container file of MatcherCommand."""
    with path.open("rb") as fh:
        container = reader(fh, return_record_name=True, return_record_name_override=True)
        sources = json.loads(container.metadata.get(_SOURCE, "null") or "null")
        for index, record in enumerate(container):
            source = sources[index] if sources else f"{path.name}:{index}"
            yield source, from_avro(MatcherCommand, record)  # type: ignore[arg-type]


def read_topic(
    bus: Bus, spec: TopicSpec, partition: int | None, start: int, end: int | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(topic position, record) pairs of a committed range of one partition, or of each in turn.

    Poison records are skipped: they were dead-lettered when first consumed.
    """
    name = bus.topic(spec).name
    begin = start if start > 0 else OFFSET_BEGINNING
    for number in [partition] if partition is not None else partitions_of(bus, name):
        for message in read_partition(bus, TopicPartition(name, number, begin), end):
            try:
                value = decode_message(bus, message, spec).value
            except UndecodableRecord:
                continue
            yield f"{message.topic()}:{message.partition()}:{message.offset()}", value


def read_topic_commands(
    bus: Bus, spec: TopicSpec, partition: int | None, start: int, end: int | None
) -> Iterator[tuple[str, MatcherCommand]]:
    """(topic position, command) pairs of a committed topic range (see `read_topic`)."""
    for source, value in read_topic(bus, spec, partition, start, end):
        yield source, from_avro(MatcherCommand, value)


def partitions_of(bus: Bus, topic: str) -> list[int]:
    """The partition numbers of `topic`, ascending."""
    admin = AdminClient({"bootstrap.servers": bus.settings.kafka_bootstrap_servers})
    return sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def replay_engine(
    commands: Iterator[tuple[str, MatcherCommand]],
) -> tuple[MatchingEngine, Iterator[dict[str, Any]]]:
    """The engine, and a lazy stream of the TradeLogEntry records it produces (one per command)."""
    engine = MatchingEngine()

    def entries() -> Iterator[dict[str, Any]]:
        for source, command in commands:
            yield to_avro(log_entry(command, engine.apply(command), source))

    return engine, entries()


def _cmd_sample(args: argparse.Namespace) -> int:
    flow = realistic_flow(args.commands, seed=args.seed)
    with Path(args.output).open("wb") as fh:
        writer(
            fh, _file_schema("MatcherCommand"), (to_avro(c) for c in tqdm(flow, desc="sample", unit="cmd"))
        )
    print(f"wrote {len(flow)} commands to {args.output}")
    return 0


def _topic(name: str) -> TopicSpec:
    spec = next((t for t in TOPICS if t.name == name), None)
    if spec is None:
        raise SystemExit(f"error: unknown topic {name!r}; known: {', '.join(t.name for t in TOPICS)}")
    return spec


def _cmd_export(args: argparse.Namespace) -> int:
    spec = _topic(args.topic)
    bus = Bus(get_settings())
    records, sources = [], []
    for source, value in tqdm(read_topic(bus, spec, args.partition, args.start, args.end), desc="export"):
        records.append(value)
        sources.append(source)
    with Path(args.output).open("wb") as fh:
        metadata = {_SOURCE: json.dumps(sources)}
        writer(fh, _file_schema(spec.value_schema), records, metadata=metadata, sync_marker=SYNC_MARKER)
    where = "every partition" if args.partition is None else f"partition {args.partition}"
    print(f"wrote {len(records)} {spec.value_schema} records ({where}) to {args.output}")
    return 0


def _cmd_engine(args: argparse.Namespace) -> int:
    if args.input:
        commands = read_commands(Path(args.input))
    else:
        commands = read_topic_commands(
            Bus(get_settings()), _topic(args.topic), args.partition, args.start, args.end
        )
    engine, entries = replay_engine(iter(tqdm(commands, desc="replay", unit="cmd")))
    started = time.perf_counter()
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for entry in entries:
            count += len(entry["events"])
            yield entry

    with Path(args.output).open("wb") as fh:
        writer(fh, _file_schema("TradeLogEntry"), counted(), sync_marker=SYNC_MARKER)
    elapsed = time.perf_counter() - started
    engine.validate()
    print(json.dumps({"events": count, "seconds": round(elapsed, 3), "state_hash": engine.state_hash()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="write a sample commands file")
    sample.add_argument("--commands", type=int, default=100_000)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--output", required=True)
    sample.set_defaults(run=_cmd_sample)
    for name, helptext in (("export", "a topic range to an Avro file"), ("engine", "run the engine")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--topic", default="matcher.commands")
        cmd.add_argument("--partition", type=int, default=None, help="default: every partition in turn")
        cmd.add_argument("--start", type=int, default=0, help="first offset (default: the beginning)")
        cmd.add_argument("--end", type=int, default=None, help="stop before this offset (default: the end)")
        cmd.add_argument("--output", required=True)
        if name == "engine":
            cmd.add_argument("--input", help="commands file; without it the topic range is read")
        cmd.set_defaults(run=_cmd_export if name == "export" else _cmd_engine)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result
