"""The metrics fold: rows from the real matching engine's trade-log entries, open interest,
depth within 1 and 5 bp, order → fill latency, and the watermark filter."""

from __future__ import annotations

from services.common.records import Side, TimeInForce, TradeLogEntry
from services.marketdata.core.depth import MarketDepth
from services.matcher.core.engine import MatchingEngine, log_entry
from services.metrics.core.fold import (
    COLUMNS,
    LogPosition,
    MetricsFold,
    Rows,
    advance,
    depth_within,
    minute_bucket,
    oi_delta,
    past_watermark,
    utc,
)
from tests.kit import Commands, order_id, trader_address

ALICE, BOB = trader_address(0xA11CE), trader_address(0xB0B)
MID = 650_000


def entries() -> list[TradeLogEntry]:
    engine, btc = MatchingEngine(), Commands("BTC-PERP")
    commands = [
        btc.create(),
        btc.limit(ALICE, Side.SELL, 3, MID),  # order 2 rests
        btc.limit(BOB, Side.BUY, 2, MID),  # order 3: trades 2 lots at once
        btc.limit(BOB, Side.BUY, 5, MID - 100, time_in_force=TimeInForce.IOC),  # order 4: nothing
    ]
    return [log_entry(c, engine.apply(c), f"matcher.commands:0:{n}") for n, c in enumerate(commands)]


def fold_all(fold: MetricsFold, found: list[TradeLogEntry], record_ms: int) -> Rows:
    rows: Rows = {}
    for offset, entry in enumerate(found):
        for table, more in fold.trade_entry(entry, LogPosition(3, offset, record_ms)).items():
            rows.setdefault(table, []).extend(more)
    return rows


def test_a_trade_gives_a_trade_row_a_listing_and_latency_rows() -> None:
    # State: a listing, a resting sell, a crossing buy, an IOC that finds nothing.
    found = entries()
    # Action: fold them; every record was written 5 ms after its command time.
    record_ms = found[2].ts_event // 1_000 + 5
    rows = fold_all(MetricsFold(), found, record_ms)
    # Expectation: one trade row at the entry's time and position, with the engine's amounts.
    (trade,) = rows["trades"]
    row = dict(zip(COLUMNS["trades"], trade, strict=True))
    assert (row["market"], row["trade_id"], row["price"], row["size"]) == ("BTC-PERP", 1, MID, 2)
    assert row["notional"] == MID * 2 * 100 and row["ts"] == utc(found[2].ts_event)
    assert (row["event_id"], row["log_partition"], row["log_offset"]) == ("matcher.commands:0:2:1", 3, 2)
    assert [r[0] for r in rows["markets"]] == ["BTC-PERP"]
    # The taker filled in its accepting entry (immediate, 5 ms); the maker waited for the taker.
    latency = {r[1]: dict(zip(COLUMNS["order_latency"], r, strict=True)) for r in rows["order_latency"]}
    assert latency[order_id(3)]["latency_us"] == 5_000 and latency[order_id(3)]["immediate"] == 1
    assert latency[order_id(2)]["immediate"] == 0
    assert latency[order_id(2)]["latency_us"] == record_ms * 1_000 - found[1].ts_event
    assert order_id(4) not in latency  # cancelled unfilled: no latency, and forgotten
    assert MetricsFold().accepted == {}


def test_depth_rows_follow_the_book() -> None:
    rows = fold_all(MetricsFold(), entries(), 0)
    # Expectation: seq = the entry's last; after the resting sell only asks (one-sided: no mid, no
    # depth); after the trade still one-sided with 1 lot left; the IOC changed no level: no row.
    assert [(r[2], r[3], r[4:]) for r in rows["depth"]] == [(3, None, (0, 0, 0, 0)), (7, None, (0, 0, 0, 0))]


def test_depth_within_counts_levels_exactly_at_the_band_edges() -> None:
    # State: best bid 9_999, best ask 10_001 (mid 10_000); 1 bp = 1 tick, 5 bp = 5 ticks.
    depth = MarketDepth(bids={9_999: 1, 9_995: 2, 9_994: 4}, asks={10_001: 3, 10_005: 5, 10_006: 7})
    assert depth_within(depth, 1) == (1, 3)
    assert depth_within(depth, 5) == (3, 8)
    assert depth_within(MarketDepth(bids={1: 1}), 5) == (0, 0)


def test_open_interest_is_the_long_side() -> None:
    assert oi_delta(2, 2) == 2  # opens long
    assert oi_delta(-2, -2) == 0  # opens short: the long side already counted it
    assert oi_delta(-1, -3) == -2  # a long of 2 flips to a short of 1
    assert oi_delta(1, -1) == -1


def test_buckets_are_utc_minutes() -> None:
    assert minute_bucket(1_795_392_059_999_999) == 1_795_392_000
    assert utc(1_795_392_000_000_001).isoformat() == "2026-11-23T00:00:00.000001+00:00"


def test_rows_at_or_below_the_watermark_are_not_written_twice() -> None:
    # State: trades already stored up to offset 7 of partition 0; nothing of partition 1.
    marks = {"trades": {0: 7}}
    rows: Rows = {"trades": [("m", 1, 0, 7), ("m", 2, 0, 8), ("m", 3, 1, 0)], "depth": [("d",)]}
    # Action / Expectation: only the rows past it pass; depth (idempotent) always passes.
    fresh = past_watermark(rows, marks)
    assert fresh == {"trades": [("m", 2, 0, 8), ("m", 3, 1, 0)], "depth": [("d",)]}
    advance(marks, fresh)
    assert marks == {"trades": {0: 8, 1: 0}}
    assert past_watermark(fresh, marks) == {"depth": [("d",)]}
