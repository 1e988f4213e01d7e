"""Avro encode and decode per record: the compiled codec against fastavro (one core, in process).

    python bench/avro_codec.py [--records 20000]

The records are what the matcher reads and writes on a realistic flow (`services/replay/flows.py`):
its `MatcherCommand`s, and the `TradeLogEntry` each one became. Each path is timed over all records,
best of three; fastavro's includes the record ↔ dict conversion (`to_avro` / `from_avro`) it needs.
Ends with one JSON line (µs per record).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from services.common.avro_codec import compile_codec
from services.common.binding import ENUM_CLASSES, RECORD_CLASSES, from_avro, to_avro
from services.common.records import MatcherCommand, TradeLogEntry
from services.common.schemas import load_current
from services.common.serde import without_logical_types
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.flows import realistic_flow


def per_record_us(work: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Best of three passes over `items`, in µs per item."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for item in items:
            work(item)
        best = min(best, time.perf_counter() - started)
    return round(best / len(items) * 1e6, 2)


def measure(name: str, cls: type[Any], records: Sequence[Any]) -> dict[str, float]:
    schema = without_logical_types(load_current(name))  # as AvroSerde compiles and parses it
    codec = compile_codec(schema, RECORD_CLASSES, ENUM_CLASSES)
    parsed = parse_schema(schema)
    encoded = [codec.encode(r) for r in records]

    def fastavro_encode(record: Any) -> bytes:
        out = io.BytesIO()
        schemaless_writer(out, parsed, to_avro(record))
        return out.getvalue()

    def fastavro_decode(data: bytes) -> Any:
        tagged = schemaless_reader(  # unions as (name, value), as the service's fallback reads them
            io.BytesIO(data), parsed, None, return_record_name=True, return_record_name_override=True
        )
        return from_avro(cls, tagged)  # type: ignore[arg-type]

    assert all(fastavro_encode(r) == b for r, b in zip(records[:500], encoded, strict=False))
    return {
        "encode_us": per_record_us(codec.encode, records),
        "decode_us": per_record_us(codec.decode, encoded),
        "fastavro_encode_us": per_record_us(fastavro_encode, records),
        "fastavro_decode_us": per_record_us(fastavro_decode, encoded),
        "bytes_avg": round(sum(map(len, encoded)) / len(encoded)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    commands = realistic_flow(args.records)
    engine = MatchingEngine()
    entries = [log_entry(c, engine.apply(c), f"matcher.commands:0:{i}") for i, c in enumerate(commands)]
    command = measure("MatcherCommand", MatcherCommand, commands)
    entry = measure("TradeLogEntry", TradeLogEntry, entries)
    for label, figures in (("MatcherCommand", command), ("TradeLogEntry", entry)):
        print(f"{label:15} " + "  ".join(f"{k} {v}" for k, v in figures.items()), file=sys.stderr)
    result: dict[str, Any] = {"bench": "avro_codec", "records": len(commands)}
    result |= {f"command_{k}": v for k, v in command.items()}
    result |= {f"entry_{k}": v for k, v in entry.items()}
    result["events_per_entry"] = round(sum(len(e.events) for e in entries) / len(entries), 2)
    result["python"] = platform.python_version()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
