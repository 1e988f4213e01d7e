"""Realistic trade logs for the projector's tests: commands through the real matching engine.

`varied_flow` mixes every order shape the book knows (GTC, GTT with expiries, IOC, FOK, post-only,
market orders, self-trades), cancels by either id, cancel-alls, amends, refused commands and a
pause/resume, so a projection sees every event kind and every refusal shape.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from services.common.records import (
    MarketStatus,
    MatcherCommand,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TradeLogEntry,
)
from services.matcher.core.engine import MatchingEngine, log_entry
from tests.kit import Commands, trader_address

MID = 650_000


def trade_log(commands: Iterable[MatcherCommand], *, partition: int = 0) -> list[TradeLogEntry]:
    """The trade-log entries the matcher writes for `commands` (sources matcher.commands:p:i)."""
    engine = MatchingEngine()
    return [
        log_entry(command, engine.apply(command), f"matcher.commands:{partition}:{offset}")
        for offset, command in enumerate(commands)
    ]


def varied_flow(
    n: int, *, seed: int = 7, traders: int = 6, market: str = "BTC-PERP", settle: bool = False
) -> list[MatcherCommand]:
    """A listing, then `n` commands of every kind, seeded; `settle` closes the market at the end
    (its resting orders are cancelled as MARKET_CLOSED)."""
    rng = random.Random(seed)
    names = [trader_address(i + 1) for i in range(traders)]
    c = Commands(market)
    commands = [c.create()]
    placed: list[tuple[str, str, str]] = []  # (trader, order id, client order id)
    paused = False
    for _ in range(n):
        roll = rng.random()
        trader = rng.choice(names)
        if roll < 0.02 or (paused and roll < 0.3):  # short pauses: refusals, cancels still work
            paused = not paused
            commands.append(c.set_status(MarketStatus.PAUSED if paused else MarketStatus.ACTIVE))
        elif roll < 0.28 and placed:
            commands.append(_change(rng, c, trader, rng.choice(placed[-12:]), cancel=roll < 0.20))
        elif roll < 0.31:
            commands.append(c.cancel_all(trader, rng.choice([None, Side.BUY, Side.SELL])))
        else:
            command = _place(rng, c, trader)
            commands.append(command)
            body = command.body
            placed.append((trader, getattr(body, "order_id", ""), getattr(body, "client_order_id", "")))
    if settle:
        commands.append(c.set_status(MarketStatus.SETTLED, "expiry"))
    return commands


def _change(
    rng: random.Random, c: Commands, trader: str, target: tuple[str, str, str], *, cancel: bool
) -> MatcherCommand:
    """A cancel (by venue id, or by client id — sometimes someone else's) or an amend of `target`."""
    owner, order, client = target
    if not cancel:
        new_price = rng.choice([None, MID + rng.randint(-30, 30)])
        return c.amend(owner, order, new_price=new_price, new_size=rng.choice([None, rng.randint(1, 12)]))
    if rng.random() < 0.7:
        return c.cancel(owner, order)
    return c.cancel(owner if rng.random() < 0.8 else trader, client_order_id=client)


def _place(rng: random.Random, c: Commands, trader: str) -> MatcherCommand:
    """A new order of any shape: passive GTC or GTT, crossing, IOC/FOK, post-only, market, refused."""
    side = rng.choice((Side.BUY, Side.SELL))
    sign = 1 if side is Side.BUY else -1
    size = rng.randint(1, 10)
    kind = rng.random()
    options: dict[str, object] = {"stp": rng.choice(list(SelfTradePrevention))}
    if kind < 0.45:
        price = MID - sign * rng.randint(0, 25)
    elif kind < 0.57:
        price = MID - sign * rng.randint(0, 25)
        options |= {"time_in_force": TimeInForce.GTT, "expire_at": c.now + rng.randint(1, 40) * 1_000}
    elif kind < 0.72:  # crossing limits: they take, then rest what is left
        price = MID + sign * rng.randint(0, 15)
    elif kind < 0.80:
        price = MID + sign * rng.randint(0, 10)
        options |= {"time_in_force": rng.choice([TimeInForce.IOC, TimeInForce.FOK])}
    elif kind < 0.88:
        price = MID - sign * rng.randint(-5, 10)
        options |= {"post_only": True}
    elif kind < 0.95:
        price = MID + sign * 60
        options |= {"order_type": OrderType.MARKET, "time_in_force": TimeInForce.IOC}
    else:  # refused by the matcher: an empty order
        price, size = MID, 0
    return c.limit(trader, side, size, price, **options)
