"""L2 depth: a pure fold of trade-log entries into per-market price levels (price → resting lots).

Which events change resting quantity, and why (the matcher's event order is in docs/matching.md):

| event | effect on the book |
|---|---|
| `OrderRested` | the order starts resting: its `leaves_qty` joins its price level |
| `OrderFilled`, MAKER | a resting order traded: its level loses `last_qty` |
| `OrderFilled`, TAKER | nothing: a taker matches, it does not rest (1) |
| `OrderCancelled`, resting | its `leaves_qty` leaves the level (user, STP, expiry, closed) |
| `OrderCancelled`, not rested | nothing: an IOC/FOK remainder or an STP-cancelled taker |
| `OrderAmended` | leaves its old level, joins the new one with its new `leaves_qty` |
| anything else | nothing (`OrderAccepted` precedes matching; refusals move no order) |

(1) A resting order is never a taker: an amend that would cross is refused.

So the fold keeps each resting order (side, price, leaves) by id: an order rests only after its
`OrderRested`, and every later event about it names it by id. An event that contradicts what the
fold holds (a maker fill of an order it never saw rest, quantities that do not add up) raises
`DepthInvariantError`: a corrupt view is worse than none.

`apply(entry)` returns the level changes the entry made, each with the level's total after it
(0: the level is gone) — what ws-push sends as depth deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.records import (
    LiquiditySide,
    MarketCreated,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    OrderRested,
    Side,
    TradeLogEntry,
)
from services.common.twap import round_half_down


class DepthInvariantError(AssertionError):
    """The trade log contradicts the depth fold: a bug or a corrupt log, never a business outcome."""


@dataclass(frozen=True, slots=True)
class LevelChange:
    """A price level after an entry changed it: `qty` lots rest there now (0: the level is gone)."""

    market: str
    side: Side
    price: int
    qty: int


@dataclass(slots=True)
class _Resting:
    side: Side
    price: int
    leaves: int


@dataclass(slots=True)
class MarketDepth:
    """One market's resting orders and its levels (price → total leaves, per side)."""

    orders: dict[str, _Resting] = field(default_factory=dict)
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)

    def levels(self, side: Side) -> list[tuple[int, int]]:
        """(price, lots) of `side`, best first."""
        book = self.bids if side is Side.BUY else self.asks
        return sorted(book.items(), reverse=side is Side.BUY)

    def best_bid(self) -> int | None:
        """Highest resting buy price, or None."""
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        """Lowest resting sell price, or None."""
        return min(self.asks) if self.asks else None

    def mid(self) -> int | None:
        """(best bid + best ask) / 2 in ticks, rounded half down; None unless the book is two-sided."""
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return None
        return round_half_down(bid + ask, 2)

    def _add(self, side: Side, price: int, qty: int, touched: set[tuple[Side, int]]) -> None:
        book = self.bids if side is Side.BUY else self.asks
        total = book.get(price, 0) + qty
        _check(total >= 0, f"level {side} {price} would hold {total} lots")
        if total:
            book[price] = total
        else:
            del book[price]
        touched.add((side, price))

    def _qty(self, side: Side, price: int) -> int:
        return (self.bids if side is Side.BUY else self.asks).get(price, 0)


class DepthBook:
    """The depth of every market the log listed; `apply` folds one entry in."""

    def __init__(self) -> None:
        self.markets: dict[str, MarketDepth] = {}

    def market(self, symbol: str) -> MarketDepth | None:
        """The market's depth, or None if the log never listed it."""
        return self.markets.get(symbol)

    def apply(self, entry: TradeLogEntry) -> list[LevelChange]:
        """Fold `entry` in; returns each level it changed, with its total after (sorted)."""
        depth = self.markets.get(entry.market)
        touched: set[tuple[Side, int]] = set()
        for event in entry.events:
            if isinstance(event, MarketCreated):
                depth = self.markets.setdefault(entry.market, MarketDepth())
            elif depth is not None:
                _apply_event(depth, event, touched)
        if depth is None:
            return []
        return [
            LevelChange(entry.market, side, price, depth._qty(side, price)) for side, price in sorted(touched)
        ]


def _apply_event(depth: MarketDepth, event: object, touched: set[tuple[Side, int]]) -> None:
    match event:
        case OrderRested():
            _check(event.order_id not in depth.orders, f"{event.order_id} rests twice")
            depth.orders[event.order_id] = _Resting(event.side, event.price, event.leaves_qty)
            depth._add(event.side, event.price, event.leaves_qty, touched)
        case OrderFilled(liquidity_side=LiquiditySide.MAKER):
            order = _resting(depth, event.order_id)
            _check(order.leaves - event.last_qty == event.leaves_qty, f"{event.order_id} fill quantities")
            _check(order.price == event.last_px, f"{event.order_id} filled off its level")
            depth._add(order.side, order.price, -event.last_qty, touched)
            order.leaves = event.leaves_qty
            if not order.leaves:
                del depth.orders[event.order_id]
        case OrderCancelled():
            order_or_none = depth.orders.pop(event.order_id, None)
            if order_or_none is not None:  # else: a remainder that never rested
                _check(order_or_none.leaves == event.cancelled_qty, f"{event.order_id} cancel quantity")
                depth._add(order_or_none.side, order_or_none.price, -order_or_none.leaves, touched)
        case OrderAmended():
            order = _resting(depth, event.order_id)
            depth._add(order.side, order.price, -order.leaves, touched)
            order.price, order.leaves = event.price, event.leaves_qty
            depth._add(order.side, order.price, order.leaves, touched)
        case _:
            pass


def _resting(depth: MarketDepth, order_id: str) -> _Resting:
    order = depth.orders.get(order_id)
    _check(order is not None, f"{order_id} is not resting")
    assert order is not None  # for the type checker; _check raised otherwise
    return order


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DepthInvariantError(message)
