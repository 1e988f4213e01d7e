"""Matcher core throughput and per-command latency on a realistic flow (one core, in process).

python bench/matcher_core.py [--commands 300000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.matcher.core.engine import MatchingEngine
from services.replay.flows import realistic_flow


def percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=300_000)
    args = parser.parse_args()
    flow = realistic_flow(args.commands)
    # Warm-up on a separate engine so the timed run starts from an empty book like production.
    warm = MatchingEngine()
    for command in flow[:20_000]:
        warm.apply(command)

    engine = MatchingEngine()
    apply = engine.apply
    clock = time.perf_counter_ns
    latencies = [0] * len(flow)
    events = 0
    gc.collect()
    gc.disable()  # measured separately below: the engine allocates little that outlives a command
    started = clock()
    for i, command in enumerate(flow):
        t0 = clock()
        events += len(apply(command).events)
        latencies[i] = clock() - t0
    elapsed_s = (clock() - started) / 1e9
    gc.enable()

    # Throughput without the per-command timer, with the garbage collector on (the honest figure).
    engine2 = MatchingEngine()
    untimed_start = time.perf_counter()
    for command in flow:
        engine2.apply(command)
    throughput = len(flow) / (time.perf_counter() - untimed_start)
    engine2.validate()

    latencies.sort()
    book = engine.markets["BTC-PERP"].book
    result = {
        "bench": "matcher_core",
        "commands": len(flow),
        "events": events,
        "commands_per_s": round(throughput),
        "commands_per_s_timed_gc_off": round(len(flow) / elapsed_s),
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "p999_us": percentile(latencies, 0.999),
        "max_us": latencies[-1] / 1000,
        "resting_orders_at_end": len(book.orders),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
