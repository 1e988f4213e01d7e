"""A realistic, seeded order flow for one market: adds near the touch, cancels, takers, market orders."""

from __future__ import annotations

import random

from services.common.presets import preset
from services.common.records import (
    CancelOrder,
    CreateMarket,
    MatcherCommand,
    OrderCancelled,
    OrderFilled,
    OrderRested,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)
from services.matcher.core.engine import Event, MatchingEngine

MARKET = "BTC-PERP"
MID = 650_000
START_US = 1_795_392_000_000_000


def realistic_flow(n: int, *, seed: int = 7, traders: int = 200) -> list[MatcherCommand]:
    """`n` commands after the listing: ~60 % passive adds within 20 ticks of the touch, ~25 % cancels
    of live orders, ~10 % crossing limit orders, ~5 % market orders; the mid drifts slowly.

    The generator runs each command through a matching engine of its own to know which orders are
    still live: a cancel names an order resting at that moment, as a trader's would.
    """
    rng = random.Random(seed)
    names = [f"0x{i:040x}" for i in range(1, traders + 1)]
    engine, live = MatchingEngine(), _LiveOrders()
    commands = [_wrap(0, None, CreateMarket(definition=preset(MARKET)))]
    engine.apply(commands[0])
    mid = MID
    for i in range(1, n + 1):
        nonce = START_US + i * 50  # signers' nonces are µs timestamps: the command's own time
        mid += rng.choice((-1, 0, 0, 1))
        roll = rng.random()
        trader = rng.choice(names)
        if roll < 0.25 and live:
            trader, oid = live.pick(rng)
            body: object = CancelOrder(
                market=MARKET, order_id=oid, client_order_id=None, nonce=nonce, signature=b""
            )
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            sign = 1 if side is Side.BUY else -1
            if roll < 0.85:
                price, kind, tif = mid - sign * rng.randint(1, 20), OrderType.LIMIT, TimeInForce.GTC
            elif roll < 0.95:
                price, kind, tif = mid + sign * rng.randint(0, 5), OrderType.LIMIT, TimeInForce.GTC
            else:
                price, kind, tif = mid + sign * 50, OrderType.MARKET, TimeInForce.IOC
            body = PlaceOrder(
                market=MARKET, order_id=f"00000000-0000-7000-8000-{i:012x}", client_order_id=f"c{i}",
                side=side, order_type=kind, price=price, size=rng.randint(1, 20), time_in_force=tif,
                nonce=nonce, signature=b"",
            )  # fmt: skip
        command = _wrap(i, trader, body)
        commands.append(command)
        live.follow(engine.apply(command).events)
    return commands


class _LiveOrders:
    """The orders resting on the book, as (trader, order id), with O(1) random pick and removal."""

    def __init__(self) -> None:
        self._orders: list[tuple[str, str]] = []
        self._position: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def pick(self, rng: random.Random) -> tuple[str, str]:
        return self._orders[rng.randrange(len(self._orders))]

    def follow(self, events: list[Event]) -> None:
        """Track what the engine did: a rested order is live until it fills or is cancelled."""
        for event in events:
            if isinstance(event, OrderRested):
                self._position[event.order_id] = len(self._orders)
                self._orders.append((event.trader, event.order_id))
            elif isinstance(event, OrderCancelled) or (
                isinstance(event, OrderFilled) and not event.leaves_qty
            ):
                self._remove(event.order_id)

    def _remove(self, order_id: str) -> None:
        position = self._position.pop(order_id, None)
        if position is None:  # a taker that never rested
            return
        last = self._orders.pop()
        if position < len(self._orders):  # move the last order into the hole
            self._orders[position] = last
            self._position[last[1]] = position


def _wrap(i: int, trader: str | None, body: object) -> MatcherCommand:
    return MatcherCommand(
        command_id=f"10000000-0000-7000-8000-{i:012x}", market=MARKET, trader=trader,
        ts_init=START_US + i * 50, body=body,  # type: ignore[arg-type]
    )  # fmt: skip
