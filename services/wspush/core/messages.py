"""What each log record becomes on a channel: the push `type` and its `data` (JSON-ready dicts).

Field names are the records' own, in camelCase as the gateway's JSON answers are; amounts stay
integers in the records' units (ticks, lots, micro-USDC); enums are their names.

| record (topic) | channel | type | data |
|---|---|---|---|
| an entry's level changes (trade.log) | `market.<m>` | `depth` | `bids`/`asks`: `[price, lots]` |
| `TradeExecuted` (trade.log) | `market.<m>` | `trade` | tradeId, price, size, aggressorSide, … |
| `MarkPriceSet` (trade.log) | `market.<m>` | `markPrice` | markPrice, indexPrice |
| `FundingApplied` (trade.log) | `market.<m>` | `fundingRate` | rateE9, interval, TWAPs |
| order events with a trader (trade.log) | `trader.<t>` | `orderUpdate` | `event` + the event's fields |
| `OrderRejected` (accounts.events: risk) | `trader.<t>` | `orderUpdate` | `event: REJECTED` + fields |
| `PositionChanged`, `FundingPaid` (accounts) | `trader.<t>` | `positionUpdate` | `cause` + fields |
| `LiquidationAlert` (accounts.events) | `trader.<t>` | `liquidationAlert` | the alert's fields |
| `BalanceChanged` (accounts.events) | `trader.<t>` | `balanceUpdate` | the buckets after, the delta, why |
| `MarketCreated`, `MarketStatusChanged`, `MarketSettled` | `admin.<m>` | `stateChange` | `event` + fields |
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from typing import Any

from msgspec import Struct

from services.common.records import (
    BalanceChanged,
    FundingApplied,
    FundingPaid,
    LiquidationAlert,
    MarketCreated,
    MarketSettled,
    MarketStatusChanged,
    MarkPriceSet,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRested,
    PositionChanged,
    Side,
    TradeExecuted,
)
from services.marketdata.core.depth import LevelChange, MarketDepth


class PushType:
    """The `type` of every pushed message (string constants: they are the wire names)."""

    DEPTH = "depth"
    TRADE = "trade"
    MARK_PRICE = "markPrice"
    FUNDING_RATE = "fundingRate"
    ORDER_UPDATE = "orderUpdate"
    POSITION_UPDATE = "positionUpdate"
    LIQUIDATION_ALERT = "liquidationAlert"
    BALANCE_UPDATE = "balanceUpdate"
    STATE_CHANGE = "stateChange"


ORDER_EVENTS: dict[type, str] = {
    OrderAccepted: "ACCEPTED",
    OrderRested: "RESTED",
    OrderFilled: "FILLED",
    OrderCancelled: "CANCELLED",
    OrderAmended: "AMENDED",
    OrderRejected: "REJECTED",
}
"""Order events (with a trader) → the `event` of their `orderUpdate`."""

MARKET_PUSHES: dict[type, str] = {
    TradeExecuted: PushType.TRADE,
    MarkPriceSet: PushType.MARK_PRICE,
    FundingApplied: PushType.FUNDING_RATE,
}
"""Trade-log events → their push type on the market channel (depth is per entry, not per event)."""

STATE_EVENTS: dict[type, str] = {
    MarketCreated: "LISTED",
    MarketStatusChanged: "STATUS_CHANGED",
    MarketSettled: "SETTLED",
}
"""Trade-log events → the `event` of their `stateChange` on the admin channel."""

ACCOUNT_PUSHES: dict[type, tuple[str, dict[str, str]]] = {
    OrderRejected: (PushType.ORDER_UPDATE, {"event": "REJECTED"}),
    PositionChanged: (PushType.POSITION_UPDATE, {"cause": "FILL"}),
    FundingPaid: (PushType.POSITION_UPDATE, {"cause": "FUNDING"}),
    LiquidationAlert: (PushType.LIQUIDATION_ALERT, {}),
    BalanceChanged: (PushType.BALANCE_UPDATE, {}),
}
"""accounts.events bodies → their push type on the trader channel and fixed fields."""


def fields(record: object) -> dict[str, Any]:
    """A record's fields as a JSON-ready dict with camelCase keys (enums by name, nested records
    flattened the same way)."""
    cls: Any = type(record)
    return {camel: _json(getattr(record, name)) for name, camel in _names(cls)}


def depth_data(changes: list[LevelChange]) -> dict[str, Any]:
    """A depth delta: each changed level with its lots after (0: the level is gone)."""
    return {
        "bids": [[c.price, c.qty] for c in changes if c.side is Side.BUY],
        "asks": [[c.price, c.qty] for c in changes if c.side is Side.SELL],
    }


def depth_snapshot(depth: MarketDepth | None) -> dict[str, Any]:
    """The whole book as levels, best first."""
    if depth is None:
        return {"bids": [], "asks": []}
    return {
        "bids": [[p, q] for p, q in depth.levels(Side.BUY)],
        "asks": [[p, q] for p, q in depth.levels(Side.SELL)],
    }


@cache
def _names(cls: type[Struct]) -> tuple[tuple[str, str], ...]:
    return tuple((name, _camel(name)) for name in cls.__struct_fields__)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _json(value: object) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Struct):
        return fields(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value
