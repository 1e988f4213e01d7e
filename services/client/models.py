"""What the client returns: typed, frozen dataclasses parsed from the gateway's JSON.

Integers stay integers (ticks, lots, micro-USDC, µs); `Market` converts to and from human decimals
exactly (`services.client.units`). The read routes (`GET /markets`, `/orders`, `/positions`) have
no response schema in the gateway's OpenAPI yet: their rows are the projector's
(services/projector/views.py), read leniently — camelCase or snake_case keys, missing optional
fields None, and the `raw` JSON kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any
from uuid import UUID

from services.client import units
from services.gateway.core.typed_data import ExchangeDomain


def snake_keys(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with camelCase keys spelled snake_case (`tickSizeE9` → `tick_size_e9`)."""
    return {_snake(key): value for key, value in row.items()}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _int(row: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = row.get(name)
        if value is not None:
            return int(value)
    return None


def _str(row: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = row.get(name)
        if value is not None:
            return str(value)
    return None


@dataclass(frozen=True, slots=True)
class Info:
    """`GET /info`: the EIP-712 domain every signature must use, and the gateway's clock."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str
    server_time_us: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Info:
        row = snake_keys(body)
        return cls(
            name=str(row["name"]),
            version=str(row["version"]),
            chain_id=int(row["chain_id"]),
            verifying_contract=str(row["verifying_contract"]),
            server_time_us=int(row["server_time_us"]),
        )

    @property
    def domain(self) -> ExchangeDomain:
        return ExchangeDomain(
            chain_id=self.chain_id,
            verifying_contract=self.verifying_contract,
            name=self.name,
            version=self.version,
        )


@dataclass(frozen=True, slots=True)
class Market:
    """One market and its grid; `ticks`/`lots` convert human decimals exactly (off-grid refused)."""

    market: str
    tick_size_e9: int
    lot_size_e9: int
    status: str | None = None
    kind: str | None = None
    base_asset: str | None = None
    quote_asset: str | None = None
    min_size: int | None = None
    """Lots."""
    quote_per_tick_lot: int | None = None
    """Micro-USDC of one lot moving one tick."""
    maker_fee_bps: int | None = None
    taker_fee_bps: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Market:
        row = snake_keys(body)
        tick = _int(row, "tick_size_e9")
        lot = _int(row, "lot_size_e9")
        symbol = _str(row, "market", "symbol")
        if symbol is None or tick is None or lot is None:
            raise ValueError(f"a market row without market/tick_size_e9/lot_size_e9: {dict(body)}")
        return cls(
            market=symbol,
            tick_size_e9=tick,
            lot_size_e9=lot,
            status=_str(row, "status"),
            kind=_str(row, "kind"),
            base_asset=_str(row, "base_asset"),
            quote_asset=_str(row, "quote_asset"),
            min_size=_int(row, "min_size"),
            quote_per_tick_lot=_int(row, "quote_per_tick_lot"),
            maker_fee_bps=_int(row, "maker_fee_bps"),
            taker_fee_bps=_int(row, "taker_fee_bps"),
            raw=dict(body),
        )

    @property
    def tick_size(self) -> Decimal:
        return units.from_units(1, self.tick_size_e9)

    @property
    def lot_size(self) -> Decimal:
        return units.from_units(1, self.lot_size_e9)

    def ticks(self, price: units.DecimalLike) -> int:
        """A price (quote units, e.g. "65000.5") in ticks; `OffGrid` if not a multiple of the tick."""
        return units.to_ticks(price, self.tick_size_e9)

    def lots(self, size: units.DecimalLike) -> int:
        """A size (base units, e.g. "0.003") in lots; `OffGrid` if not a multiple of the lot."""
        return units.to_lots(size, self.lot_size_e9)

    def price(self, ticks: int) -> Decimal:
        """Ticks as a price in quote units."""
        return units.from_ticks(ticks, self.tick_size_e9)

    def size(self, lots: int) -> Decimal:
        """Lots as a size in base units."""
        return units.from_lots(lots, self.lot_size_e9)


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The answer to `POST /orders`. `status` PENDING (HTTP 202) means queued, not yet decided:
    the order is durably on its way; look for it with `CxptClient.orders`."""

    order_id: UUID
    client_order_id: str
    status: str
    filled_qty: int = 0
    leaves_qty: int = 0
    cancelled_qty: int = 0
    code: int | None = None
    reason: str | None = None
    correlation_id: str | None = None
    """The command's id in the exchange's logs: quote it when asking about an order."""

    @property
    def pending(self) -> bool:
        return self.status == "PENDING"

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, order_id: UUID, client_order_id: str) -> OrderResult:
        row = snake_keys(body)
        return cls(
            order_id=UUID(str(row.get("order_id") or order_id)),
            client_order_id=str(row.get("client_order_id", client_order_id)),
            status=str(row["status"]),
            filled_qty=_int(row, "filled_qty") or 0,
            leaves_qty=_int(row, "leaves_qty") or 0,
            cancelled_qty=_int(row, "cancelled_qty") or 0,
            code=_int(row, "code"),
            reason=_str(row, "reason"),
            correlation_id=_str(row, "correlation_id"),
        )


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The answer to a cancel, cancel-all or withdrawal: ACCEPTED, or PENDING (HTTP 202)."""

    status: str
    cancelled_qty: int = 0
    """Lots taken off the book (cancels)."""
    code: int | None = None
    reason: str | None = None
    withdrawal_id: UUID | None = None
    """The id the client chose (withdrawals only)."""

    @property
    def pending(self) -> bool:
        return self.status == "PENDING"

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, withdrawal_id: UUID | None = None) -> CommandResult:
        row = snake_keys(body)
        return cls(
            status=str(row["status"]),
            cancelled_qty=_int(row, "cancelled_qty") or 0,
            code=_int(row, "code"),
            reason=_str(row, "reason"),
            withdrawal_id=withdrawal_id,
        )


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order as `GET /orders` lists it: a read-model row (services/projector/views.py), read
    leniently; every field the gateway sent is also in `raw`."""

    order_id: str
    market: str | None
    status: str | None
    """The read model's lifecycle status: ACCEPTED, RESTING, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED."""
    side: str | None = None
    price: int | None = None
    """Ticks."""
    size: int | None = None
    """Lots."""
    filled_qty: int | None = None
    """Lots filled so far (`cum_qty`)."""
    leaves_qty: int | None = None
    client_order_id: str | None = None
    order_type: str | None = None
    time_in_force: str | None = None
    expire_at: int | None = None
    fees_paid: int | None = None
    """Micro-USDC."""
    reason_code: int | None = None
    reason: str | None = None
    created_at: int | None = None
    """µs since the epoch."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> OrderRow:
        row = snake_keys(body)
        return cls(
            order_id=str(row.get("order_id", "")),
            market=_str(row, "market"),
            status=_str(row, "status"),
            side=_str(row, "side"),
            price=_int(row, "price"),
            size=_int(row, "size"),
            filled_qty=_int(row, "cum_qty", "filled_qty"),
            leaves_qty=_int(row, "leaves_qty"),
            client_order_id=_str(row, "client_order_id"),
            order_type=_str(row, "order_type"),
            time_in_force=_str(row, "time_in_force"),
            expire_at=_int(row, "expire_at"),
            fees_paid=_int(row, "fees_paid"),
            reason_code=_int(row, "reason_code"),
            reason=_str(row, "reason"),
            created_at=_int(row, "created_at"),
            raw=dict(body),
        )


@dataclass(frozen=True, slots=True)
class OrderPage:
    """One page of `GET /orders`, newest first; pass `next_cursor` back for the next."""

    orders: list[OrderRow]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Position:
    """One position as `GET /positions` lists it (risk's latest report after a fill).

    `size` in signed lots (negative: short); `basis` (the entry value of the open lots),
    `collateral` (locked for it) and `realized_pnl` in micro-USDC; `last_px` in ticks.
    """

    market: str
    size: int
    basis: int | None = None
    collateral: int | None = None
    realized_pnl: int | None = None
    last_px: int | None = None
    unrealized_pnl: int | None = None
    """Micro-USDC at the mark, if the gateway sends it (the read model leaves it to the reader)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Position:
        row = snake_keys(body)
        return cls(
            market=str(row.get("market", "")),
            size=_int(row, "size") or 0,
            basis=_int(row, "basis"),
            collateral=_int(row, "collateral"),
            realized_pnl=_int(row, "realized_pnl"),
            last_px=_int(row, "last_px"),
            unrealized_pnl=_int(row, "unrealized_pnl"),
            raw=dict(body),
        )

    def entry_price(self, market: Market) -> Decimal | None:
        """The average entry price in quote units (basis ÷ size ÷ the value of a tick-lot), rounded
        to 9 decimals for display; None when flat or when the basis or the market's value is unknown."""
        if not self.size or self.basis is None or not market.quote_per_tick_lot:
            return None
        ticks = Fraction(abs(self.basis), abs(self.size) * market.quote_per_tick_lot)
        exact = ticks * market.tick_size_e9 / units.E9
        return (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(Decimal("1e-9")).normalize()


@dataclass(frozen=True, slots=True)
class Holding:
    """A spot market's synth lots the trader holds (`free`) and has on sale (`reserved`)."""

    asset: str
    free: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Balance:
    """`GET /balance`: USDC collateral in micro-USDC, and synth holdings in lots."""

    trader: str
    free: int
    reserved: int
    withdrawing: int
    locked: int
    holdings: tuple[Holding, ...] = ()

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Balance:
        row = snake_keys(body)
        # Flat ({"free", …}) or the read model's {"usdc": {…} | null, "holdings": […]}.
        usdc = snake_keys(row["usdc"] or {}) if "usdc" in row else row
        holdings = tuple(
            Holding(str(h.get("asset", "")), _int(h, "free") or 0, _int(h, "reserved") or 0)
            for h in map(snake_keys, row.get("holdings") or [])
        )
        return cls(
            trader=str(row.get("trader") or usdc.get("trader") or ""),
            free=_int(usdc, "free") or 0,
            reserved=_int(usdc, "reserved") or 0,
            withdrawing=_int(usdc, "withdrawing") or 0,
            locked=_int(usdc, "locked") or 0,
            holdings=holdings,
        )
