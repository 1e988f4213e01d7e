"""Replay and backtesting from the log — docs/replay.md has every subcommand with an example.

    python -m services.replay sample --commands 100000 --output cmds.avro      # a sample command flow
    python -m services.replay engine --input cmds.avro --output entries.avro   # the engine over it
    python -m services.replay export --topic trade.log --output log.avro \\
        [--partition N --start A --end B | --range P:A:B ... | --since T --until T]
    python -m services.replay rebuild [--keyspace NEW] [--live cxpt]           # exit 1 on a difference
    python -m services.replay compare --rebuilt NEW [--live cxpt]
    python -m services.replay check-determinism [--commands cmds.avro --trade-log log.avro]
    python -m services.replay backtest --strategy examples/strategies/market_maker.py:MarketMaker \\
        --data log.avro --report out/

Topic ranges read committed records only; without `--partition` every partition is read in turn
(markets never interact, so this gives the same events as the live service, partition by
partition). `engine` and `check-determinism` use exactly the matcher core and `log_entry` the
service runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from services.common.binding import RECORD_CLASSES, to_avro
from services.common.bus import Bus
from services.common.records import MatcherCommand, TradeLogEntry
from services.common.settings import Settings, get_settings
from services.common.topics import MATCHER_COMMANDS, TRADE_LOG, TopicSpec
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay import determinism, rebuild
from services.replay.flows import realistic_flow
from services.replay.market_data import entries_as_commands, partition_of, recorded_commands
from services.replay.sources import (
    SYNC_MARKER,
    Range,
    UnreadableFile,
    container_schema,
    file_schema,
    parse_time_ms,
    plan_ranges,
    range_sizes,
    read_commands,
    read_entries,
    read_ranges,
    read_records,
    snapshot_engine,
    snapshots,
    topic_spec,
    write_container,
)

__all__ = ["SYNC_MARKER", "main", "read_commands", "read_topic", "read_topic_commands", "replay_engine"]


def read_topic(
    bus: Bus, spec: TopicSpec, partition: int | None, start: int, end: int | None
) -> Iterator[tuple[str, Any]]:
    """(topic position, record) pairs of a committed range of one partition, or of each in turn."""
    return read_ranges(bus, spec, plan_ranges(bus, spec, partition=partition, start=start, end=end))


def read_topic_commands(
    bus: Bus, spec: TopicSpec, partition: int | None, start: int, end: int | None
) -> Iterator[tuple[str, MatcherCommand]]:
    """(topic position, command) pairs of a committed topic range (see `read_topic`)."""
    yield from read_topic(bus, spec, partition, start, end)


def replay_engine(
    commands: Iterator[tuple[str, MatcherCommand]],
) -> tuple[MatchingEngine, Iterator[dict[str, Any]]]:
    """The engine, and a lazy stream of the TradeLogEntry records it produces (one per command)."""
    engine = MatchingEngine()

    def entries() -> Iterator[dict[str, Any]]:
        for source, command in commands:
            yield to_avro(log_entry(command, engine.apply(command), source))

    return engine, entries()


def _bar(desc: str, total: int | None = None, unit: str = "rec") -> tqdm[Any]:
    # Progress goes to stderr; stdout keeps the one JSON result line scripts read.
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


# -- sample, engine (the original tools) ---------------------------------------------------------------


def _cmd_sample(args: argparse.Namespace) -> int:
    flow = realistic_flow(args.commands, seed=args.seed)
    with _bar("sample", len(flow), "cmd") as bar:
        write_container(Path(args.output), "MatcherCommand", (to_avro(c) for c in bar_iter(flow, bar)))
    print(f"wrote {len(flow)} commands to {args.output}")
    return 0


def bar_iter(items: Any, bar: tqdm[Any]) -> Iterator[Any]:
    """`items`, advancing `bar` by one each."""
    for item in items:
        bar.update(1)
        yield item


def _cmd_engine(args: argparse.Namespace) -> int:
    if args.input:
        commands = read_commands(Path(args.input))
    else:
        commands = read_topic_commands(
            Bus(args.settings), topic_spec(args.topic), args.partition, args.start, args.end
        )
    with _bar("replay", unit="cmd") as bar:
        engine, entries = replay_engine(bar_iter(commands, bar))
        started = time.perf_counter()
        count = 0

        def counted() -> Iterator[dict[str, Any]]:
            nonlocal count
            for entry in entries:
                count += len(entry["events"])
                yield entry

        write_container(Path(args.output), "TradeLogEntry", counted())
    elapsed = time.perf_counter() - started
    engine.validate()
    print(json.dumps({"events": count, "seconds": round(elapsed, 3), "state_hash": engine.state_hash()}))
    return 0


# -- export -----------------------------------------------------------------------------------------


def _ranges(args: argparse.Namespace, bus: Bus, spec: TopicSpec) -> list[Range]:
    return plan_ranges(
        bus,
        spec,
        partition=args.partition,
        start=args.start,
        end=args.end,
        ranges=[Range.parse(r) for r in args.range or []],
        since_ms=parse_time_ms(args.since) if args.since else None,
        until_ms=parse_time_ms(args.until) if args.until else None,
    )


def _cmd_export(args: argparse.Namespace) -> int:
    spec = topic_spec(args.topic)
    bus = Bus(args.settings)
    ranges = _ranges(args, bus, spec)
    records, sources = [], []
    with _bar(f"export {spec.name}", range_sizes(bus, spec, ranges)) as bar:
        for source, record in read_ranges(bus, spec, ranges):
            records.append(to_avro(record))
            sources.append(source)
            bar.update(1)
    write_container(Path(args.output), spec.value_schema, records, sources)
    where = ", ".join(f"{r.partition}:[{r.start},{'end' if r.end is None else r.end})" for r in ranges)
    print(f"wrote {len(records)} {spec.value_schema} records ({spec.name} {where}) to {args.output}")
    return 0


# -- rebuild, compare -------------------------------------------------------------------------------


def _cmd_rebuild(args: argparse.Namespace) -> int:
    settings = args.settings
    keyspace = args.keyspace or f"cxpt_rebuild_{uuid.uuid4().hex[:8]}"
    parts = tuple(args.parts.split(","))
    with _bar(f"rebuild {keyspace}") as bar:
        read = rebuild.rebuild_cassandra(settings, keyspace, parts=parts, progress=bar.update)
    print(f"rebuilt {keyspace} from offset 0: " + ", ".join(f"{k} {v} records" for k, v in read.items()))
    failed = 0
    if not args.no_compare:
        failed = _compare(settings, args.live or settings.cassandra_keyspace, keyspace, parts)
    failed |= _clickhouse(settings, args)
    return failed


def _compare(settings: Any, live: str, rebuilt: str, parts: tuple[str, ...]) -> int:
    from services.common.stores import cassandra

    session = cassandra.connect(settings)
    try:
        diffs = rebuild.compare_cassandra(session, live, rebuilt, parts=parts)
    finally:
        session.cluster.shutdown()
    print(f"compare {live} (live) with {rebuilt} (rebuilt):")
    for diff in diffs:
        print("  " + diff.describe().replace("\n", "\n  "))
    different = [d.table for d in diffs if not d.identical]
    print("IDENTICAL" if not different else f"DIFFERENT: {', '.join(different)}")
    return 1 if different else 0


def _cmd_compare(args: argparse.Namespace) -> int:
    settings = args.settings
    return _compare(
        settings, args.live or settings.cassandra_keyspace, args.rebuilt, tuple(args.parts.split(","))
    )


def _clickhouse(settings: Any, args: argparse.Namespace) -> int:
    if args.no_clickhouse:
        return 0
    database = args.clickhouse_database or f"cxpt_rebuild_{uuid.uuid4().hex[:8]}"
    live = args.clickhouse_live or settings.clickhouse_database
    differences = rebuild.rebuild_clickhouse(settings, database, live)
    print(f"clickhouse: {live} (live) against {database} (rebuilt from offset 0):")
    for line in differences:
        print(f"  {line}")
    print("IDENTICAL" if not differences else f"DIFFERENT: {len(differences)} tables")
    return 1 if differences else 0


# -- check-determinism ------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    engines: dict[str, MatchingEngine] = {}
    marks: dict[str, dict[int, str]] = {}
    if args.commands:
        if not args.trade_log:
            raise SystemExit("error: --commands FILE needs --trade-log FILE")
        commands: Iterator[tuple[str, MatcherCommand]] = read_commands(Path(args.commands))
        recorded: Iterator[TradeLogEntry] = read_entries(Path(args.trade_log))
        total = None
    else:
        bus = Bus(args.settings)
        ranges = plan_ranges(bus, MATCHER_COMMANDS, partition=args.partition, start=args.start, end=args.end)
        if not args.no_snapshots:
            ranges, engines, marks = _from_snapshots(bus, ranges)
        commands = read_ranges(bus, MATCHER_COMMANDS, ranges)
        recorded = _recorded_entries(bus, ranges)
        total = range_sizes(bus, MATCHER_COMMANDS, ranges)
    with _bar("check-determinism", total, "cmd") as bar:
        result = determinism.check(commands, recorded, engines=engines, snapshots=marks, progress=bar.update)
    print(json.dumps(result.as_json()))
    if result.divergence is not None:
        print("NOT DETERMINISTIC — " + result.divergence.describe(), file=sys.stderr)
        return 1
    print(f"deterministic: {result.entries} entries, {result.events} events, "
          f"{result.snapshots_checked} snapshot hashes matched", file=sys.stderr)  # fmt: skip
    return 0


def _from_snapshots(
    bus: Bus, ranges: list[Range]
) -> tuple[list[Range], dict[str, MatchingEngine], dict[str, dict[int, str]]]:
    """Ranges starting past 0 begin at the newest snapshot at or before their start (the engine
    needs the state); every recorded snapshot hash inside a range is checked on the way."""
    name = bus.topic(MATCHER_COMMANDS).name
    found = snapshots(bus)
    marks: dict[str, dict[int, str]] = {}
    for snapshot in found:
        marks.setdefault(snapshot.input_partition, {})[snapshot.next_offset] = snapshot.state_hash
    engines: dict[str, MatchingEngine] = {}
    adjusted = []
    for r in ranges:
        key = f"{name}:{r.partition}"
        start = r.start
        if start > 0:
            usable = [s for s in found if s.input_partition == key and s.next_offset <= start]
            best = max(usable, key=lambda s: s.next_offset, default=None)
            start = 0 if best is None else best.next_offset
            if best is not None:
                engines[key] = snapshot_engine(best)
        adjusted.append(Range(r.partition, start, r.end))
    return adjusted, engines, marks


def _recorded_entries(bus: Bus, command_ranges: list[Range]) -> Iterator[TradeLogEntry]:
    """The trade-log entries whose commands are in `command_ranges`, in the same order (trade.log
    partition p holds the entries of matcher.commands partition p: same key, same count)."""
    commands_topic = bus.topic(MATCHER_COMMANDS).name
    for r in command_ranges:
        wanted = f"{commands_topic}:{r.partition}"
        for _, entry in read_ranges(bus, TRADE_LOG, [Range(r.partition, 0)]):
            if partition_of(entry.source) != wanted:
                yield entry  # not this range's: let the comparison report it
                continue
            offset = int(entry.source.rsplit(":", 1)[1])
            if offset >= r.start and (r.end is None or offset < r.end):
                yield entry


# -- backtest ---------------------------------------------------------------------------------------


def _cmd_backtest(args: argparse.Namespace) -> int:
    from services.replay.backtest import Backtest, load_strategy
    from services.replay.report import write_report

    params = dict(_param(p) for p in args.param or [])
    strategy = load_strategy(args.strategy, params)
    pairs: Iterator[tuple[str, Any]]
    if args.data:
        path = Path(args.data)
        schema, data_name = container_schema(path), str(path)
    else:
        bus = Bus(args.settings)
        spec = topic_spec(args.topic)
        schema, data_name = spec.value_schema, f"topic {spec.name}"
    if schema not in ("TradeLogEntry", "MatcherCommand"):
        raise SystemExit(
            f"error: backtest data must be TradeLogEntry or MatcherCommand records, not {schema}"
        )
    if args.data:
        pairs = read_records(path, RECORD_CLASSES[schema])
    else:
        pairs = read_ranges(bus, spec, _ranges(args, bus, spec))
    items = entries_as_commands(entry for _, entry in pairs) if schema == "TradeLogEntry" else pairs
    commands = list(recorded_commands(items))
    with _bar("backtest", len(commands), "cmd") as bar:
        backtest = Backtest(
            strategy, deposit_micro=int(args.deposit * 1_000_000), latency_us=args.latency_us,
            depth_levels=args.depth, progress=bar.update,
        )  # fmt: skip
        outcome = backtest.run(commands)
    result = write_report(
        outcome, Path(args.report), strategy=args.strategy, params=params, data=data_name,
        latency_us=args.latency_us,
    )  # fmt: skip
    shown = ("fills", "fees_micro", "realized_pnl_micro", "unrealized_pnl_micro", "total_pnl_micro",
             "equity_micro", "positions")  # fmt: skip
    print(json.dumps({k: result[k] for k in shown}))
    print(f"report: {args.report}/summary.json, fills.csv, equity.csv, plot.png", file=sys.stderr)
    return 0


def _param(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


# -- the parser -------------------------------------------------------------------------------------


def _range_options(cmd: argparse.ArgumentParser, topic: str) -> None:
    cmd.add_argument("--topic", default=topic, help=f"topic name without prefix (default {topic})")
    cmd.add_argument("--partition", type=int, default=None, help="default: every partition in turn")
    cmd.add_argument("--start", type=int, default=0, help="first offset (default: the beginning)")
    cmd.add_argument("--end", type=int, default=None, help="stop before this offset (default: the end)")
    cmd.add_argument(
        "--range", action="append", metavar="P:FROM:TO", help="a partition's offsets (repeatable)"
    )
    cmd.add_argument("--since", help="first record at or after this time (ISO 8601, or ms since 1970)")
    cmd.add_argument("--until", help="stop at the first record at or after this time")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    sample = sub.add_parser("sample", help="write a sample commands file")
    sample.add_argument("--commands", type=int, default=100_000)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--output", required=True)
    sample.set_defaults(run=_cmd_sample)

    export = sub.add_parser("export", help="a topic range (offsets or times) to an Avro container file")
    _range_options(export, "matcher.commands")
    export.add_argument("--output", required=True)
    export.set_defaults(run=_cmd_export)

    engine = sub.add_parser("engine", help="run the engine over a commands file or topic range")
    engine.add_argument("--topic", default="matcher.commands")
    engine.add_argument("--partition", type=int, default=None, help="default: every partition in turn")
    engine.add_argument("--start", type=int, default=0)
    engine.add_argument("--end", type=int, default=None)
    engine.add_argument("--input", help="commands file; without it the topic range is read")
    engine.add_argument("--output", required=True)
    engine.set_defaults(run=_cmd_engine)

    for name, helptext in (("rebuild", "project the log from offset 0 into a fresh keyspace, then compare"),
                           ("compare", "compare a rebuilt keyspace with the live one")):  # fmt: skip
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--live", help="the live keyspace (default: CASSANDRA_KEYSPACE)")
        cmd.add_argument("--parts", default="read-model,accounts", help="read-model, accounts or both")
        if name == "rebuild":
            cmd.add_argument("--keyspace", help="the fresh keyspace (default: cxpt_rebuild_<random>)")
            cmd.add_argument("--no-compare", action="store_true", help="only rebuild")
            cmd.add_argument("--clickhouse-database", help="fresh metrics database (default: random)")
            cmd.add_argument(
                "--clickhouse-live", help="the live metrics database (default: CLICKHOUSE_DATABASE)"
            )
            cmd.add_argument("--no-clickhouse", action="store_true", help="Cassandra only")
            cmd.set_defaults(run=_cmd_rebuild)
        else:
            cmd.add_argument("--rebuilt", required=True, help="the rebuilt keyspace")
            cmd.set_defaults(run=_cmd_compare)

    check = sub.add_parser(
        "check-determinism", help="recorded commands through the engine = recorded trade log"
    )
    check.add_argument("--commands", help="a MatcherCommand file (with --trade-log); default: the topics")
    check.add_argument("--trade-log", help="the TradeLogEntry file recorded for those commands")
    check.add_argument("--partition", type=int, default=None, help="default: every partition in turn")
    check.add_argument(
        "--start", type=int, default=0, help="first command offset (from the snapshot before it)"
    )
    check.add_argument("--end", type=int, default=None, help="stop before this command offset")
    check.add_argument("--no-snapshots", action="store_true", help="neither start from nor check snapshots")
    check.set_defaults(run=_cmd_check)

    bt = sub.add_parser("backtest", help="a strategy against recorded market data, with a report")
    bt.add_argument("--strategy", required=True, help="path/to/strategy.py:ClassName")
    bt.add_argument("--param", action="append", metavar="NAME=VALUE", help="strategy keyword (JSON value)")
    bt.add_argument("--data", help="a trade-log (or matcher-commands) Avro file; default: the topic range")
    _range_options(bt, "trade.log")
    bt.add_argument(
        "--report", required=True, help="folder for fills.csv, equity.csv, summary.json, plot.png"
    )
    bt.add_argument("--deposit", type=float, default=100_000, help="USDC deposited for the strategy")
    bt.add_argument("--latency-us", type=int, default=0, help="delay of the strategy's commands (µs)")
    bt.add_argument("--depth", type=int, default=5, help="levels a side passed to on_book")
    bt.set_defaults(run=_cmd_backtest)
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    """Run one subcommand; `settings` default to the environment's (tests pass their own)."""
    args = build_parser().parse_args(argv)
    args.settings = settings or get_settings()
    try:
        result: int = args.run(args)
    except UnreadableFile as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result


# Kept for callers of the original module: the file schema helper.
_file_schema = file_schema
