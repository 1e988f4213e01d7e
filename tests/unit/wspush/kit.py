"""Self-describing fixtures for ws-push tests: a real matching engine makes the trade-log entries."""

from __future__ import annotations

import json
from typing import Any

from services.common.records import AccountEvent, MatcherCommand, PositionChanged, TradeLogEntry
from services.matcher.core.engine import MatchingEngine, log_entry
from services.wspush.core.channels import Identity
from services.wspush.core.hub import Hub

ADMIN_TOKEN = "admin-token"


class Tokens:
    """A verifier that knows `token-<address>` (that trader) and ADMIN_TOKEN (an admin)."""

    def verify(self, token: str) -> Identity | None:
        if token == ADMIN_TOKEN:
            return Identity(admin="ops")
        if token.startswith("token-0x"):
            return Identity(trader=token.removeprefix("token-"))
        return None


class Log:
    """A matching engine whose every command becomes a trade-log entry."""

    def __init__(self) -> None:
        self.engine = MatchingEngine()
        self.offset = 0

    def entry(self, command: MatcherCommand) -> TradeLogEntry:
        self.offset += 1
        return log_entry(command, self.engine.apply(command), f"matcher.commands:0:{self.offset}")


def frames(hub: Hub, connection_id: str) -> list[dict[str, Any]]:
    """Every message queued for the connection, taken and written (the socket took them)."""
    outbox = hub.connections[connection_id].outbox
    taken = outbox.take()
    if taken is None:
        return []
    outbox.written()
    decoded = json.loads(taken[0])
    return decoded if isinstance(decoded, list) else [decoded]


def position_event(trader: str, n: int, size: int) -> AccountEvent:
    """The n-th accounts.events record: `trader`'s BTC-PERP position is now `size` lots."""
    body = PositionChanged(
        trader=trader,
        market="BTC-PERP",
        order_id=f"o{n}",
        trade_id=n,
        size=size,
        delta_size=size,
        basis=0,
        collateral=0,
        realized_pnl=0,
        last_px=650_000,
    )
    return AccountEvent(event_id=f"risk.postings:0:{n}:0", trader=trader, ts_event=n, body=body)
