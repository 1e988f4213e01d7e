"""Matcher core throughput and per-command latency on a realistic flow (one core, in process).

python bench/matcher_core.py [--commands 300000] [--deep-orders 25000]

The flow's book settles near 1,500 resting orders. A second untimed-per-command run first rests
`--deep-orders` more orders thousands of ticks from the touch, where the flow never reaches: the
same commands against a deep book (larger indexes, more cache misses), `commands_per_s_deep_book`.
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

from services.common.records import MatcherCommand, OrderType, PlaceOrder, Side, TimeInForce
from services.matcher.core.engine import MatchingEngine
from services.replay.flows import MARKET, MID, START_US, realistic_flow


def percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000


def far_orders(count: int) -> list[MatcherCommand]:
    """`count` GTC orders 3,000-5,000 ticks either side of the mid: the flow's mid drifts by a few
    hundred ticks, so they rest untouched for the whole run."""
    commands = []
    for i in range(count):
        side = Side.BUY if i % 2 else Side.SELL
        distance = 3_000 + (i * 7919) % 2_000
        order_id = f"d0000000-0000-7000-8000-{i:012x}"
        body = PlaceOrder(
            market=MARKET, order_id=order_id, client_order_id=f"d{i}", side=side,
            order_type=OrderType.LIMIT, price=MID + (-distance if side is Side.BUY else distance),
            size=1 + i % 20, time_in_force=TimeInForce.GTC, nonce=START_US, signature=b"",
        )  # fmt: skip
        trader = f"0x{1 + i % 200:040x}"
        commands.append(
            MatcherCommand(command_id=order_id, market=MARKET, trader=trader, ts_init=START_US, body=body)
        )
    return commands


def untimed_throughput(flow: list[MatcherCommand], preload: list[MatcherCommand]) -> float:
    """Commands per second over `flow` (the listing first, then `preload` untimed), gc on."""
    engine = MatchingEngine()
    engine.apply(flow[0])
    for command in preload:
        engine.apply(command)
    started = time.perf_counter()
    for command in flow[1:]:
        engine.apply(command)
    elapsed = time.perf_counter() - started
    engine.validate()
    return (len(flow) - 1) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--deep-orders", type=int, default=25_000)
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
    throughput = untimed_throughput(flow, [])
    deep_throughput = untimed_throughput(flow, far_orders(args.deep_orders))

    latencies.sort()
    book = engine.markets["BTC-PERP"].book
    result = {
        "bench": "matcher_core",
        "commands": len(flow),
        "events": events,
        "commands_per_s": round(throughput),
        "commands_per_s_deep_book": round(deep_throughput),
        "deep_orders": args.deep_orders,
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
