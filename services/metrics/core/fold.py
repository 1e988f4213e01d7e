"""The metrics fold: log records → rows of the cold tables (and the depth table). Pure, no I/O.

Every row ends with `(log_partition, log_offset)`, the Kafka position of the record it came from;
the adapter inserts only rows past each table's stored high-water position (docs/analytics.md,
"Idempotence"). The fold holds state that must be rebuilt from offset 0 on every start: the L2
depth of every book and the acceptance time of every open order. Both are deterministic
functions of the log, so a replay yields the same rows.

Order → fill latency, the SLO's definition: for an order, the time from its `OrderAccepted`
entry's `ts_event` (the command time stamped by the gateway on arrival) to the Kafka record
timestamp of the trade-log entry holding its first `OrderFilled` (when the matcher wrote it).
`immediate` marks orders whose first fill is in the entry that accepted them (marketable
orders): the SLO (p95 < 100 ms) is over those only — a resting order's wait for a counterparty
is the market's doing, not the exchange's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.records import (
    AccountEvent,
    FundingApplied,
    FundingPaid,
    ImpliedVolatility,
    IndexPrice,
    MarketCreated,
    MarkPriceSet,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    PositionChanged,
    QuoteStatus,
    TradeExecuted,
    TradeLogEntry,
)
from services.marketdata.core.depth import DepthBook, MarketDepth
from services.projector.core import account_event_row

Row = tuple[Any, ...]
Rows = dict[str, list[Row]]

# Column order of the rows the fold returns, per table (the migration 0002_metrics.sql DDL).
COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": ("market", "trade_id", "ts", "price", "size", "notional", "maker_fee", "taker_fee",
               "aggressor_side", "maker_trader", "taker_trader", "maker_order_id", "taker_order_id",
               "event_id", "log_partition", "log_offset"),
    "order_latency": ("market", "order_id", "trader", "accepted_at", "filled_at", "latency_us",
                      "immediate", "log_partition", "log_offset"),
    "marks": ("market", "ts", "seq", "mark_price", "index_price", "log_partition", "log_offset"),
    "funding_rates": ("market", "ts", "interval_start", "interval_end", "rate_e9", "index_price",
                      "mark_twap", "index_twap", "log_partition", "log_offset"),
    "markets": ("market", "ts", "kind", "base_asset", "quote_per_tick_lot", "tick_size_e9",
                "lot_size_e9", "maker_fee_bps", "taker_fee_bps", "expiry", "strike", "option_type",
                "index_symbol", "log_partition", "log_offset"),
    "depth": ("market", "ts", "seq", "mid", "bid_1bp", "ask_1bp", "bid_5bp", "ask_5bp"),
    "account_events": ("event_id", "trader", "ts_event", "kind", "amount", "detail",
                       "log_partition", "log_offset"),
    "position_changes": ("trader", "market", "ts", "event_id", "order_id", "trade_id", "size",
                         "delta_size", "basis", "collateral", "realized_pnl", "last_px", "oi_delta",
                         "log_partition", "log_offset"),
    "funding_payments": ("trader", "market", "ts", "event_id", "interval_end", "size", "rate_e9",
                         "index_price", "amount", "realized_pnl", "log_partition", "log_offset"),
    "index_prices": ("index_symbol", "ts", "price_e9", "quotes", "accepted", "log_partition",
                     "log_offset"),
    "implied_vols": ("market", "trade_id", "ts", "trade_price", "index_price", "strike",
                     "option_type", "t_years", "implied_vol", "failure", "log_partition", "log_offset"),
}  # fmt: skip

# Tables whose rows carry a log position (all but `depth`, which is idempotent by construction:
# keyed by sequence number, aggregated with argMax).
POSITIONED = tuple(t for t, cols in COLUMNS.items() if cols[-1] == "log_offset")

DEPTH_BPS = (1, 5)


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where a record sits in Kafka, and the record's timestamp (ms)."""

    partition: int
    offset: int
    timestamp_ms: int = 0


def utc(ts_us: int) -> dt.datetime:
    """A µs epoch timestamp as an aware UTC datetime (exact: no float on the way)."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ts_us)


def minute_bucket(ts_us: int) -> int:
    """Start of the 1-minute bucket holding `ts_us`, in epoch seconds (ClickHouse toStartOfMinute)."""
    return ts_us // 60_000_000 * 60


def oi_delta(size: int, delta_size: int) -> int:
    """Change of open interest (the long side's lots) a position change causes: every open contract
    has one long holder, so OI = Σ max(size, 0) over positions."""
    return max(size, 0) - max(size - delta_size, 0)


def depth_within(depth: MarketDepth, bps: int) -> tuple[int, int]:
    """(bid lots, ask lots) resting within `bps` basis points of the mid; (0, 0) if one-sided.

    Exact integers: with m2 = best bid + best ask (twice the mid), a bid at p counts when
    p·20 000 ≥ m2·(10 000 − bps), an ask when p·20 000 ≤ m2·(10 000 + bps).
    """
    bid, ask = depth.best_bid(), depth.best_ask()
    if bid is None or ask is None:
        return 0, 0
    m2 = bid + ask
    bids = sum(q for p, q in depth.bids.items() if p * 20_000 >= m2 * (10_000 - bps))
    asks = sum(q for p, q in depth.asks.items() if p * 20_000 <= m2 * (10_000 + bps))
    return bids, asks


@dataclass
class MetricsFold:
    """Folds the four input topics into table rows; see the module docstring."""

    depth: DepthBook = field(default_factory=DepthBook)
    accepted: dict[str, int] = field(default_factory=dict)
    """Open orders not yet filled: order id → its OrderAccepted entry's ts_event (µs)."""

    def trade_entry(self, entry: TradeLogEntry, pos: LogPosition) -> Rows:
        """Rows for one trade-log entry: trades, marks, funding, listings, latency, depth."""
        rows: Rows = {}
        at = utc(entry.ts_event)
        where = (pos.partition, pos.offset)
        accepted_here: set[str] = set()
        for i, event in enumerate(entry.events):
            match event:
                case TradeExecuted():
                    rows.setdefault("trades", []).append(
                        (entry.market, event.trade_id, at, event.price, event.size, event.notional,
                         event.maker_fee, event.taker_fee, str(event.aggressor_side), event.maker_trader,
                         event.taker_trader, event.maker_order_id, event.taker_order_id,
                         f"{entry.source}:{i}", *where)
                    )  # fmt: skip
                case OrderAccepted():
                    self.accepted[event.order_id] = entry.ts_event
                    accepted_here.add(event.order_id)
                case OrderFilled():
                    since = self.accepted.pop(event.order_id, None)
                    if since is not None:
                        filled_us = pos.timestamp_ms * 1_000
                        rows.setdefault("order_latency", []).append(
                            (entry.market, event.order_id, event.trader, utc(since), utc(filled_us),
                             max(filled_us - since, 0), int(event.order_id in accepted_here), *where)
                        )  # fmt: skip
                case OrderCancelled():
                    self.accepted.pop(event.order_id, None)
                case MarkPriceSet():
                    rows.setdefault("marks", []).append(
                        (entry.market, at, entry.first_seq + i, event.mark_price, event.index_price, *where)
                    )
                case FundingApplied():
                    rows.setdefault("funding_rates", []).append(
                        (entry.market, at, utc(event.interval_start), utc(event.interval_end),
                         event.rate_e9, event.index_price, event.mark_twap, event.index_twap, *where)
                    )  # fmt: skip
                case MarketCreated():
                    d = event.definition
                    rows.setdefault("markets", []).append(
                        (d.market, at, str(d.kind), d.base_asset, d.quote_per_tick_lot, d.tick_size_e9,
                         d.lot_size_e9, d.maker_fee_bps, d.taker_fee_bps,
                         None if d.expiry is None else utc(d.expiry), d.strike,
                         None if d.option_type is None else str(d.option_type), d.index_symbol, *where)
                    )  # fmt: skip
                case _:
                    pass
        if self.depth.apply(entry):
            rows["depth"] = [self._depth_row(entry, at)]
        return rows

    def _depth_row(self, entry: TradeLogEntry, at: dt.datetime) -> Row:
        book = self.depth.markets[entry.market]
        (b1, a1), (b5, a5) = (depth_within(book, bps) for bps in DEPTH_BPS)
        return (entry.market, at, entry.first_seq + len(entry.events) - 1, book.mid(), b1, a1, b5, a5)

    def account_event(self, event: AccountEvent, raw: Mapping[str, Any], pos: LogPosition) -> Rows:
        """Rows for one account event: the ledger row, and position / funding rows where it has one."""
        where = (pos.partition, pos.offset)
        r = account_event_row(dict(raw))
        rows: Rows = {
            "account_events": [(r.event_id, r.trader, utc(r.ts_event_us), r.kind, r.amount, r.detail, *where)]
        }
        at = utc(event.ts_event)
        body = event.body
        if isinstance(body, PositionChanged):
            rows["position_changes"] = [
                (body.trader, body.market, at, event.event_id, body.order_id, body.trade_id, body.size,
                 body.delta_size, body.basis, body.collateral, body.realized_pnl, body.last_px,
                 oi_delta(body.size, body.delta_size), *where)
            ]  # fmt: skip
        elif isinstance(body, FundingPaid):
            rows["funding_payments"] = [
                (body.trader, body.market, at, event.event_id, utc(body.interval_end), body.size,
                 body.rate_e9, body.index_price, body.amount, body.realized_pnl, *where)
            ]  # fmt: skip
        return rows

    def index_price(self, price: IndexPrice, pos: LogPosition) -> Rows:
        """The row for one oracle round."""
        accepted = sum(1 for q in price.quotes if q.status is QuoteStatus.ACCEPTED)
        return {
            "index_prices": [
                (price.index_symbol, utc(price.ts_event), price.price_e9, len(price.quotes), accepted,
                 pos.partition, pos.offset)
            ]
        }  # fmt: skip

    def implied_vol(self, iv: ImpliedVolatility, pos: LogPosition) -> Rows:
        """The row for one option trade's implied volatility."""
        return {
            "implied_vols": [
                (iv.market, iv.trade_id, utc(iv.ts_event), iv.trade_price, iv.index_price, iv.strike,
                 str(iv.option_type), iv.t_years, iv.implied_vol, iv.failure, pos.partition, pos.offset)
            ]
        }  # fmt: skip


def merge(into: Rows, more: Rows) -> None:
    """Append `more`'s rows to `into`, table by table."""
    for table, rows in more.items():
        into.setdefault(table, []).extend(rows)


def past_watermark(rows: Rows, marks: Mapping[str, Mapping[int, int]]) -> Rows:
    """The rows whose log position is past their table's high-water offset for that partition
    (`marks[table][partition]`); rows of tables without positions pass."""
    kept: Rows = {}
    for table, found in rows.items():
        table_marks = marks.get(table)
        if table not in POSITIONED or not table_marks:
            kept[table] = found
            continue
        fresh = [r for r in found if r[-1] > table_marks.get(r[-2], -1)]
        if fresh:
            kept[table] = fresh
    return kept


def advance(marks: dict[str, dict[int, int]], rows: Rows) -> None:
    """Raise the high-water offsets to cover `rows` (after they were written)."""
    for table, found in rows.items():
        if table in POSITIONED:
            table_marks = marks.setdefault(table, {})
            for r in found:
                if r[-1] > table_marks.get(r[-2], -1):
                    table_marks[r[-2]] = r[-1]


__all__ = [
    "COLUMNS", "DEPTH_BPS", "POSITIONED", "LogPosition", "MetricsFold", "Row", "Rows",
    "advance", "depth_within", "merge", "minute_bucket", "oi_delta", "past_watermark", "utc",
]  # fmt: skip
