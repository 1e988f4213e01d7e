"""Channel names and who may read them.

| channel | carries (push `type`) | who may subscribe |
|---|---|---|
| `market.<symbol>` | `depth` (snapshot, then deltas), `trade`, `markPrice`, `fundingRate` | anyone |
| `trader.<address>` | `orderUpdate`, `positionUpdate`, `liquidationAlert`, `balanceUpdate` | that trader |
| `admin.<symbol>` | `stateChange` (listed, status changed, settled) | an admin (admin JWT) |

`<address>` is the trader id the gateway and every record use: the signer's address, lower-case
0x-prefixed hex (a mixed-case address names the same channel). `<symbol>` must be a market the
trade log listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from services.wspush.core.errors import ErrorCode

_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")


class ChannelKind(StrEnum):
    """The three channel families."""

    MARKET = "market"
    TRADER = "trader"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, once logged in: a trader (session token), an admin (admin JWT), or
    neither (anonymous: market channels only)."""

    trader: str | None = None
    admin: str | None = None


ANONYMOUS = Identity()


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed channel name; `name` is its canonical spelling (the trader address lower-cased)."""

    kind: ChannelKind
    key: str

    @property
    def name(self) -> str:
        return f"{self.kind.value}.{self.key}"


def market_channel(symbol: str) -> str:
    """The name of `symbol`'s market channel."""
    return f"{ChannelKind.MARKET.value}.{symbol}"


def trader_channel(trader: str) -> str:
    """The name of `trader`'s private channel."""
    return f"{ChannelKind.TRADER.value}.{trader.lower()}"


def admin_channel(symbol: str) -> str:
    """The name of `symbol`'s admin channel."""
    return f"{ChannelKind.ADMIN.value}.{symbol}"


def parse_channel(name: object) -> Channel | None:
    """The channel `name` spells, or None if it is not a well-formed channel name."""
    if not isinstance(name, str):
        return None
    prefix, dot, key = name.partition(".")
    if not dot or not key:
        return None
    try:
        kind = ChannelKind(prefix)
    except ValueError:
        return None
    if kind is ChannelKind.TRADER:
        key = key.lower()
        if not _ADDRESS.match(key):
            return None
    return Channel(kind, key)


# -- authorization: one rule per channel kind -----------------------------------------------------


def _anyone(identity: Identity, channel: Channel) -> ErrorCode | None:
    return None


def _that_trader(identity: Identity, channel: Channel) -> ErrorCode | None:
    if identity.trader is None:
        return ErrorCode.NOT_AUTHENTICATED
    return None if identity.trader == channel.key else ErrorCode.FORBIDDEN


def _an_admin(identity: Identity, channel: Channel) -> ErrorCode | None:
    if identity.admin is not None:
        return None
    return ErrorCode.FORBIDDEN if identity.trader is not None else ErrorCode.NOT_AUTHENTICATED


AUTHORIZATION: dict[ChannelKind, Callable[[Identity, Channel], ErrorCode | None]] = {
    ChannelKind.MARKET: _anyone,
    ChannelKind.TRADER: _that_trader,
    ChannelKind.ADMIN: _an_admin,
}
"""Who may read each kind of channel: None = allowed, else the refusal's code."""


def authorize(identity: Identity, channel: Channel) -> ErrorCode | None:
    """None if `identity` may read `channel`, else why not (NOT_AUTHENTICATED or FORBIDDEN)."""
    return AUTHORIZATION[channel.kind](identity, channel)
