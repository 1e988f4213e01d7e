"""Recorded market data as matcher commands: what a backtest re-enters into the real engine.

The trade log records what each command *did*, and that is enough to send the command again:
an entry's first order event names it — `OrderAccepted` carries the whole order, `OrderAmended`
the new price and size, a user's `OrderCancelled` the order it removed — and the market events
name the admin command (`MarketCreated` ← `CreateMarket`, `MarkPriceSet` ← `SetMarkPrice`, …).
What the engine does on its own is not re-sent: expiries, IOC remainders, self-trade
cancellations, the cancels of a closing book. Refusals (`OrderRejected`, `CommandRejected`) did
nothing to the book and are left out too.

Re-entered, the same commands meet a book that also holds a strategy's orders, so their outcome
may differ from the recording (a recorded cancel of an order the strategy has since filled is
refused `UNKNOWN_ORDER`): that is the market impact a backtest measures.

A matcher.commands file or range needs none of this: its commands are sent as recorded.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from services.common.codes import CancelReason
from services.common.records import (
    AmendOrder,
    ApplyFunding,
    CancelOrder,
    CreateMarket,
    FundingApplied,
    MarketCreated,
    MarketSettled,
    MarketStatusChanged,
    MarkPriceSet,
    MatcherCommand,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    PlaceOrder,
    SetMarketStatus,
    SetMarkPrice,
    SettleMarket,
    TradeLogEntry,
)

_USER_CANCEL = CancelReason.USER_CANCELLED.name
_EXPIRED = CancelReason.EXPIRED.name


def commands_from_entry(entry: TradeLogEntry) -> list[MatcherCommand]:  # noqa: PLR0911 - a table of kinds
    """The commands that re-enter what `entry`'s command did (none for a refusal or an unknown
    market; one per order for a cancel-all, so each can be refused on its own)."""
    if not entry.first_seq:
        return []
    # Expiries come first in an entry (the engine runs them before the command): skip them.
    events = [e for e in entry.events if not (isinstance(e, OrderCancelled) and e.reason == _EXPIRED)]
    if not events:
        return []
    head = events[0]
    wrap = _Wrapper(entry)
    if isinstance(head, OrderAccepted):
        return [wrap(head.trader, _place(entry.market, head))]
    if isinstance(head, OrderAmended):
        body = AmendOrder(
            market=entry.market, order_id=head.order_id, new_price=head.price, new_size=head.size,
            nonce=0, signature=b"",
        )  # fmt: skip
        return [wrap(head.trader, body)]
    if isinstance(head, OrderCancelled) and head.reason == _USER_CANCEL:
        cancelled = [e for e in events if isinstance(e, OrderCancelled) and e.reason == _USER_CANCEL]
        return [
            wrap(c.trader, CancelOrder(market=entry.market, order_id=c.order_id, nonce=0, signature=b""))
            for c in cancelled
        ]
    if isinstance(head, MarketCreated):
        return [wrap(None, CreateMarket(definition=head.definition))]
    if isinstance(head, MarkPriceSet):
        return [wrap(None, SetMarkPrice(mark_price=head.mark_price, index_price=head.index_price))]
    if isinstance(head, FundingApplied):
        body_f = ApplyFunding(
            interval_start=head.interval_start, interval_end=head.interval_end, rate_e9=head.rate_e9,
            index_price=head.index_price, mark_twap=head.mark_twap, index_twap=head.index_twap,
        )  # fmt: skip
        return [wrap(None, body_f)]
    if isinstance(head, MarketStatusChanged):
        settled = next((e for e in events if isinstance(e, MarketSettled)), None)
        if settled is not None:
            body_s = SettleMarket(settlement_price=settled.settlement_price, method="replayed")
            return [wrap(None, body_s)]
        return [wrap(None, SetMarketStatus(status=head.status, reason=head.reason or ""))]
    return []  # OrderRejected, CommandRejected: the recorded command changed nothing


class _Wrapper:
    """Builds the MatcherCommands of one entry: its id (suffixed when it yields several), market, time."""

    def __init__(self, entry: TradeLogEntry) -> None:
        self.entry = entry
        self.count = 0

    def __call__(self, trader: str | None, body: Any) -> MatcherCommand:
        entry = self.entry
        suffix = f":{self.count}" if self.count else ""
        self.count += 1
        return MatcherCommand(
            command_id=entry.command_id + suffix, market=entry.market, trader=trader,
            ts_init=entry.ts_event, body=body,
        )  # fmt: skip


def _place(market: str, accepted: OrderAccepted) -> PlaceOrder:
    return PlaceOrder(
        market=market,
        order_id=accepted.order_id,
        client_order_id=accepted.client_order_id,
        side=accepted.side,
        order_type=accepted.order_type,
        price=accepted.price,
        size=accepted.size,
        time_in_force=accepted.time_in_force,
        post_only=accepted.post_only,
        reduce_only=accepted.reduce_only,
        expire_at=accepted.expire_at,
        nonce=0,
        signature=b"",
    )


def partition_of(source: str) -> str:
    """The stream a log position belongs to: `topic:partition` of `topic:partition:offset` (`file`
    of `file:index`, the position of a record in a file exported without positions)."""
    return source.rsplit(":", 1)[0]


def merge_by_time(
    streams: Iterable[Iterable[tuple[str, MatcherCommand]]],
) -> Iterator[tuple[str, MatcherCommand]]:
    """One time-ordered stream from per-partition streams, each kept in its own (log) order.

    Markets never share a partition, so a partition's order is the only one that matters for its
    books; across partitions the commands are interleaved by `ts_init` (ties: the earlier stream).
    """
    return heapq.merge(*streams, key=lambda item: item[1].ts_init)


def recorded_commands(items: Iterable[tuple[str, MatcherCommand]]) -> Iterator[tuple[str, MatcherCommand]]:
    """(source, command) pairs of several partitions, re-interleaved by time per `merge_by_time`."""
    by_partition: dict[str, list[tuple[str, MatcherCommand]]] = {}
    for source, command in items:
        by_partition.setdefault(partition_of(source), []).append((source, command))
    return merge_by_time(by_partition.values())


def entries_as_commands(entries: Iterable[TradeLogEntry]) -> Iterator[tuple[str, MatcherCommand]]:
    """(source, command) pairs re-entering a trade log (see `commands_from_entry`)."""
    for entry in entries:
        for command in commands_from_entry(entry):
            yield entry.source, command
