"""One market's order book: price levels in price-time priority, and the indexes to reach orders.

Levels live in a `SortedDict` per side keyed so that index 0 is always the best price (asks by
price, bids by negated price); each level is an `OrderedDict` in arrival order, so the oldest order
at the best price is `next(iter(level.values()))` and any order leaves in O(1).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from collections.abc import Iterator

from sortedcontainers import SortedDict

from services.common.records import SelfTradePrevention, Side


class RestingOrder:
    """An order the book holds (or is matching as the taker). Mutable: fills change it."""

    __slots__ = (
        "arrival",
        "client_order_id",
        "cum_qty",
        "expire_at",
        "leaves_qty",
        "order_id",
        "price",
        "side",
        "size",
        "stp",
        "trader",
    )

    def __init__(
        self,
        *,
        order_id: str,
        client_order_id: str,
        trader: str,
        side: Side,
        price: int,
        size: int,
        expire_at: int | None,
        stp: SelfTradePrevention,
        arrival: int,
    ) -> None:
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.trader = trader
        self.side = side
        self.price = price
        self.size = size
        self.leaves_qty = size
        self.cum_qty = 0
        self.expire_at = expire_at
        self.stp = stp
        self.arrival = arrival

    def state(self) -> tuple[object, ...]:
        """Every field, in a fixed order (for hashing and comparison)."""
        return tuple(getattr(self, name) for name in self.__slots__)


Level = OrderedDict[str, RestingOrder]


class BookInvariantError(AssertionError):
    """The book's internal state is inconsistent: a bug, never a business outcome."""


class OrderBook:
    """Resting orders of one market, with indexes by id, by client id and by trader."""

    __slots__ = ("_expiries", "asks", "bids", "by_client", "by_trader", "orders")

    def __init__(self) -> None:
        self.bids: SortedDict[int, Level] = SortedDict()
        self.asks: SortedDict[int, Level] = SortedDict()
        self.orders: dict[str, RestingOrder] = {}
        self.by_client: dict[tuple[str, str], str] = {}
        self.by_trader: dict[str, dict[str, None]] = {}
        self._expiries: list[tuple[int, int, str]] = []

    # -- reading ---------------------------------------------------------------------------

    def levels(self, side: Side) -> SortedDict[int, Level]:
        return self.bids if side is Side.BUY else self.asks

    def best_price(self, side: Side) -> int | None:
        """Best resting price on `side`, or None when that side is empty."""
        levels = self.bids if side is Side.BUY else self.asks
        if not levels:
            return None
        key: int = levels.keys()[0]
        return -key if side is Side.BUY else key

    def in_priority(self, side: Side) -> Iterator[RestingOrder]:
        """Resting orders of `side`, best price first, oldest first within a price."""
        for level in self.levels(side).values():
            yield from level.values()

    def trader_orders(self, trader: str) -> list[RestingOrder]:
        """The trader's resting orders, in the order they arrived on the book."""
        return [self.orders[oid] for oid in self.by_trader.get(trader, ())]

    # -- changing --------------------------------------------------------------------------

    def add(self, order: RestingOrder) -> None:
        """Rest `order` at the back of its price level."""
        levels = self.bids if order.side is Side.BUY else self.asks
        key = -order.price if order.side is Side.BUY else order.price
        level = levels.get(key)
        if level is None:
            level = levels[key] = OrderedDict()
        level[order.order_id] = order
        self.orders[order.order_id] = order
        self.by_client[(order.trader, order.client_order_id)] = order.order_id
        self.by_trader.setdefault(order.trader, {})[order.order_id] = None
        if order.expire_at is not None:
            heapq.heappush(self._expiries, (order.expire_at, order.arrival, order.order_id))

    def remove(self, order: RestingOrder) -> None:
        """Take `order` off the book."""
        levels = self.bids if order.side is Side.BUY else self.asks
        key = -order.price if order.side is Side.BUY else order.price
        level = levels[key]
        del level[order.order_id]
        if not level:
            del levels[key]
        del self.orders[order.order_id]
        del self.by_client[(order.trader, order.client_order_id)]
        mine = self.by_trader[order.trader]
        del mine[order.order_id]
        if not mine:
            del self.by_trader[order.trader]

    def pop_expired(self, now: int) -> list[RestingOrder]:
        """Remove and return orders whose expiry is at or before `now`, in expiry order."""
        expired = []
        while self._expiries and self._expiries[0][0] <= now:
            _, arrival, order_id = heapq.heappop(self._expiries)
            order = self.orders.get(order_id)
            if order is not None and order.arrival == arrival:  # not a stale entry from an amend
                self.remove(order)
                expired.append(order)
        return expired

    # -- checking --------------------------------------------------------------------------

    def state_hash(self) -> str:
        """A digest of every resting order in priority order; equal books hash equal."""
        digest = hashlib.blake2b(digest_size=16)
        for side in (Side.BUY, Side.SELL):
            for order in self.in_priority(side):
                digest.update(repr(order.state()).encode())
        return digest.hexdigest()

    def validate(self) -> None:
        """Raise BookInvariantError unless every index agrees and the book is not crossed."""
        bid, ask = self.best_price(Side.BUY), self.best_price(Side.SELL)
        _check(bid is None or ask is None or bid < ask, f"book crossed: bid {bid} >= ask {ask}")
        seen = 0
        for side in (Side.BUY, Side.SELL):
            for key, level in self.levels(side).items():
                _check(bool(level), f"empty level {key}")
                last_arrival = -1
                for order_id, order in level.items():
                    price = -key if side is Side.BUY else key
                    _check(order.side is side and order.price == price, f"{order_id} on the wrong level")
                    _check(self.orders.get(order_id) is order, f"{order_id} missing from the id index")
                    _check(order.leaves_qty > 0, f"{order_id} rests with nothing left")
                    _check(order.cum_qty + order.leaves_qty == order.size, f"{order_id} quantities")
                    _check(order.arrival > last_arrival, f"{order_id} out of time priority")
                    last_arrival = order.arrival
                    seen += 1
        _check(seen == len(self.orders), "id index holds orders that are not on a level")
        _check(len(self.by_client) == seen, "client-id index out of step")
        _check(sum(len(v) for v in self.by_trader.values()) == seen, "trader index out of step")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise BookInvariantError(message)
