"""A realistic, seeded order flow for one market: adds near the touch, cancels, takers, market orders."""

from __future__ import annotations

import random

from services.common.presets import preset
from services.common.records import (
    CancelOrder,
    CreateMarket,
    MatcherCommand,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)

MARKET = "BTC-PERP"
MID = 650_000
START_US = 1_795_392_000_000_000


def realistic_flow(n: int, *, seed: int = 7, traders: int = 200) -> list[MatcherCommand]:
    """`n` commands after the listing: ~60 % passive adds within 20 ticks of the touch, ~25 % cancels
    of live orders, ~10 % crossing limit orders, ~5 % market orders; the mid drifts slowly."""
    rng = random.Random(seed)
    names = [f"0x{i:040x}" for i in range(1, traders + 1)]
    live: list[tuple[str, str]] = []
    commands = [_wrap(0, None, CreateMarket(definition=preset(MARKET)))]
    mid = MID
    for i in range(1, n + 1):
        nonce = START_US + i * 50  # signers' nonces are µs timestamps: the command's own time
        mid += rng.choice((-1, 0, 0, 1))
        roll = rng.random()
        trader = rng.choice(names)
        if roll < 0.25 and live:
            owner, oid = live.pop(rng.randrange(len(live)))
            body: object = CancelOrder(
                market=MARKET, order_id=oid, client_order_id=None, nonce=nonce, signature=b""
            )
            trader = owner
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            sign = 1 if side is Side.BUY else -1
            if roll < 0.85:
                price, kind, tif = mid - sign * rng.randint(1, 20), OrderType.LIMIT, TimeInForce.GTC
            elif roll < 0.95:
                price, kind, tif = mid + sign * rng.randint(0, 5), OrderType.LIMIT, TimeInForce.GTC
            else:
                price, kind, tif = mid + sign * 50, OrderType.MARKET, TimeInForce.IOC
            oid = f"00000000-0000-7000-8000-{i:012x}"
            body = PlaceOrder(
                market=MARKET, order_id=oid, client_order_id=f"c{i}", side=side, order_type=kind,
                price=price, size=rng.randint(1, 20), time_in_force=tif, nonce=nonce, signature=b"",
            )  # fmt: skip
            if kind is OrderType.LIMIT:
                live.append((trader, oid))
        commands.append(_wrap(i, trader, body))
    return commands


def _wrap(i: int, trader: str | None, body: object) -> MatcherCommand:
    return MatcherCommand(
        command_id=f"10000000-0000-7000-8000-{i:012x}", market=MARKET, trader=trader,
        ts_init=START_US + i * 50, body=body,  # type: ignore[arg-type]
    )  # fmt: skip
