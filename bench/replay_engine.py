"""Engine replay throughput from an Avro commands file: events/s on one core.

    python bench/replay_engine.py [--commands 200000] [--profile]

A realistic flow (`services/replay/flows.py`) is written to a temporary MatcherCommand container
file, then replayed the way `python -m services.replay engine` and `check-determinism` do: read the
file (fastavro reads the container's blocks, the compiled codec decodes them into commands),
`MatchingEngine.apply`, `log_entry`. Timed in stages so the cost of each is visible, with the
former reading path (fastavro's dicts, then `from_avro`) beside it; the headline `events_per_s` is
the whole path, file to trade-log entries, counting the events the engine emitted. Ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastavro import reader

from services.common.binding import from_avro, to_avro
from services.common.records import MatcherCommand
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.flows import realistic_flow
from services.replay.sources import read_commands, write_container


def replay(path: Path) -> tuple[int, int]:
    """(commands, events): the file through the engine, entries built as the service builds them."""
    engine = MatchingEngine()
    commands = events = 0
    for source, command in read_commands(path):
        entry = log_entry(command, engine.apply(command), source)
        commands += 1
        events += len(entry.events)
    return commands, events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="print the top functions of the whole path")
    args = parser.parse_args()
    flow = realistic_flow(args.commands)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cmds.avro"
        sources = [f"matcher.commands:0:{i}" for i in range(len(flow))]
        write_container(path, "MatcherCommand", [to_avro(c) for c in flow], sources)
        gc.collect()

        started = time.perf_counter()
        with path.open("rb") as fh:
            records = list(reader(fh, return_record_name=True, return_record_name_override=True))
        dicts: list[MatcherCommand] = [from_avro(MatcherCommand, r) for r in records]  # type: ignore[arg-type]
        fastavro_s = time.perf_counter() - started

        started = time.perf_counter()
        decoded = [command for _, command in read_commands(path)]
        read_s = time.perf_counter() - started
        assert decoded == dicts

        engine = MatchingEngine()
        started = time.perf_counter()
        events = 0
        for i, command in enumerate(decoded):
            events += len(log_entry(command, engine.apply(command), sources[i]).events)
        engine_s = time.perf_counter() - started

        started = time.perf_counter()
        commands, total_events = replay(path)
        whole_s = time.perf_counter() - started
        assert total_events == events

        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(replay, path)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(12)

    print(
        f"{commands} commands, {events} events: read {read_s:.2f} s (fastavro dicts + from_avro "
        f"{fastavro_s:.2f} s), "
        f"engine+log_entry {engine_s:.2f} s ({events / engine_s:,.0f} events/s); "
        f"whole path {whole_s:.2f} s; {platform.python_implementation()} {platform.python_version()}",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "bench": "replay_engine",
                "commands": commands,
                "events": events,
                "events_per_s": round(events / whole_s),
                "commands_per_s": round(commands / whole_s),
                "engine_events_per_s": round(events / engine_s),
                "read_s": round(read_s, 3),
                "fastavro_read_s": round(fastavro_s, 3),
                "engine_s": round(engine_s, 3),
                "whole_s": round(whole_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
