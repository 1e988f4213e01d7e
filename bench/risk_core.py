"""Risk core throughput: pre-trade checks and post-trade postings on a realistic flow (one core).

    python bench/risk_core.py [--commands 100000]

The flow of `services/replay/flows.py` (adds near the touch, cancels, takers, market orders) is
sent as trader commands to `RiskEngine.apply_command`; what risk forwards runs through the real
matcher *untimed*, and the matcher's events come back through `apply_posting` (timed). 200 traders,
each credited 100,000,000 USDC first, so nearly every order passes and produces postings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.records import (
    CancelOrder,
    CreateMarket,
    DepositConfirmed,
    PlaceOrder,
    TraderCommand,
)
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.flows import realistic_flow
from services.risk.core import RiskEngine, postings


def percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=100_000)
    args = parser.parse_args()
    flow = realistic_flow(args.commands)
    listing, orders = flow[0], flow[1:]
    assert isinstance(listing.body, CreateMarket)
    risk, matcher = RiskEngine(), MatchingEngine()
    risk.apply_market(listing.body.definition)
    matcher.apply(listing)
    for n, trader in enumerate(sorted({c.trader for c in orders if c.trader})):
        deposit = DepositConfirmed(
            amount=100_000_000 * 1_000_000, chain_id=0, tx_hash=f"b{n}", log_index=0, block_number=0
        )
        risk.apply_deposit(trader, deposit)

    clock = time.perf_counter_ns
    pre_ns: list[int] = []
    post_ns = 0
    applied = forwarded = 0
    for command in orders:
        assert command.trader is not None
        assert isinstance(command.body, PlaceOrder | CancelOrder), "the flow lists the market only once"
        trader_command = TraderCommand(
            command_id=command.command_id, trader=command.trader, ts_init=command.ts_init, body=command.body
        )
        t0 = clock()
        result = risk.apply_command(trader_command)
        pre_ns.append(clock() - t0)
        for forward in result.forward:
            forwarded += 1
            entry = log_entry(forward, matcher.apply(forward), f"bench:{forwarded}")
            t0 = clock()
            for posting in postings(entry):
                risk.apply_posting(posting)
                applied += 1
            post_ns += clock() - t0
    risk.validate()
    pre_ns.sort()
    pre_total_s = sum(pre_ns) / 1e9
    print(
        json.dumps(
            {
                "bench": "risk_core",
                "commands": len(orders),
                "forwarded": forwarded,
                "postings": applied,
                "pretrade_commands_per_s": round(len(orders) / pre_total_s),
                "pretrade_p50_us": percentile(pre_ns, 0.5),
                "pretrade_p99_us": percentile(pre_ns, 0.99),
                "posttrade_postings_per_s": round(applied / (post_ns / 1e9)),
                "combined_commands_per_s": round(len(orders) / (pre_total_s + post_ns / 1e9)),
            }
        )
    )


if __name__ == "__main__":
    main()
