"""Request and response bodies of the gateway's REST API (pydantic; the OpenAPI spec comes from here).

Signed bodies carry exactly the members of the EIP-712 struct they are signed as (same camelCase
names, see docs/signing.md), plus the `signature`: a client signs the body it sends. Integers only:
prices in ticks, sizes in lots, money in micro-USDC, times in microseconds since the epoch.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from services.common.records import MarketStatus, SelfTradePrevention, Side, TimeInForce
from services.gateway.core import typed_data as td

Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$", description="Ethereum address, hex")]
Signature = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte r‖s‖v, hex")]
Uint64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
PositiveInt64 = Annotated[int, Field(gt=0, le=2**63 - 1)]
Symbol = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")]


class _Body(BaseModel):
    """JSON in camelCase (the EIP-712 member names), Python in snake_case."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class _Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Signed(_Body):
    trader: Address
    nonce: Uint64 = Field(description="the signer's timestamp in µs; never reused (docs/signing.md)")
    deadline: Uint64 = Field(description="µs since the epoch after which the signature is refused")
    signature: Signature

    def signature_bytes(self) -> bytes:
        return bytes.fromhex(self.signature[2:])


class _OrderBody(_Signed):
    market: Symbol
    order_id: UUID = Field(description="client-generated UUID (v7 recommended): the venue order id")
    client_order_id: str = Field("", max_length=64)
    side: Side
    price: PositiveInt64
    size: PositiveInt64 = Field(description="lots")
    reduce_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER

    order_type: Literal["limit", "market"]
    time_in_force: TimeInForce

    def struct(self) -> td.Order:
        return td.Order(
            trader=self.trader.lower(),
            market=self.market,
            order_id=self.order_id,
            client_order_id=self.client_order_id,
            side=td.SideCode[self.side.value],
            order_type=td.OrderTypeCode[self.order_type.upper()],
            price=self.price,
            size=self.size,
            time_in_force=td.TimeInForceCode[self.time_in_force.value],
            post_only=getattr(self, "post_only", False),
            reduce_only=self.reduce_only,
            expire_at=getattr(self, "expire_at", None),
            stp=td.StpCode[self.stp.value],
            nonce=self.nonce,
            deadline=self.deadline,
        )


class LimitOrderRequest(_OrderBody):
    """A limit order: rests at `price` (ticks) unless it fills or its time in force says otherwise."""

    order_type: Literal["limit"]
    price: PositiveInt64 = Field(description="limit price in ticks")
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    expire_at: PositiveInt64 | None = Field(None, description="GTT expiry in µs (timeInForce GTT only)")


class MarketOrderRequest(_OrderBody):
    """A market order: takes liquidity up to the protective `price` (ticks), never rests."""

    order_type: Literal["market"]
    price: PositiveInt64 = Field(description="protective price limit in ticks (worst acceptable)")
    time_in_force: Literal[TimeInForce.IOC, TimeInForce.FOK] = TimeInForce.IOC


OrderRequest = Annotated[LimitOrderRequest | MarketOrderRequest, Field(discriminator="order_type")]

MAX_BATCH_ORDERS = 20
"""Orders in one `POST /orders/batch`: 20 signed orders stay well under the 16 KiB body limit."""


class OrderBatchRequest(_Body):
    """Up to 20 signed orders of one trader (a market maker's quote refresh), each signed on its own."""

    orders: list[OrderRequest] = Field(min_length=1, max_length=MAX_BATCH_ORDERS)

    @model_validator(mode="after")
    def _one_trader_distinct_orders(self) -> Self:
        if len({o.trader.lower() for o in self.orders}) > 1:
            raise ValueError("every order of a batch must be signed by the same trader")
        if len({o.nonce for o in self.orders}) != len(self.orders):
            raise ValueError("each order of a batch needs its own nonce")
        if len({o.order_id for o in self.orders}) != len(self.orders):
            raise ValueError("each order of a batch needs its own orderId")
        return self

    @property
    def trader(self) -> str:
        return self.orders[0].trader.lower()


class CancelRequest(_Signed):
    """Cancel one order; its id (venue or client order id) is in the path and is part of what was signed."""

    market: Symbol

    def struct(self, *, order_id: UUID | None = None, client_order_id: str | None = None) -> td.Cancel:
        return td.Cancel(
            trader=self.trader.lower(),
            market=self.market,
            order_id=order_id,
            client_order_id=client_order_id,
            nonce=self.nonce,
            deadline=self.deadline,
        )


class CancelAllRequest(_Signed):
    """Cancel every open order of the trader, optionally only in one market and/or on one side."""

    market: Symbol | None = None
    side: Side | None = None

    def struct(self) -> td.CancelAll:
        return td.CancelAll(
            trader=self.trader.lower(),
            market=self.market,
            side=td.SideCode[self.side.value] if self.side else None,
            nonce=self.nonce,
            deadline=self.deadline,
        )


class WithdrawalRequest(_Signed):
    """Withdraw free collateral; settlement pays it on chain (USDC, or CXPT when `asCxpt`)."""

    withdrawal_id: UUID
    amount: PositiveInt64 = Field(description="micro-USDC")
    as_cxpt: bool = False

    def struct(self) -> td.Withdrawal:
        return td.Withdrawal(
            trader=self.trader.lower(),
            withdrawal_id=self.withdrawal_id,
            amount=self.amount,
            as_cxpt=self.as_cxpt,
            nonce=self.nonce,
            deadline=self.deadline,
        )


class SessionRequest(_Signed):
    """Open a read session: a signed `Session` struct proves the caller holds the trader's key."""

    def struct(self) -> td.Session:
        return td.Session(trader=self.trader.lower(), nonce=self.nonce, deadline=self.deadline)


class MarketDefinitionBody(_Body):
    """A market's parameters (the Avro `MarketDefinition`)."""

    kind: Literal["SPOT", "PERPETUAL", "FUTURE", "OPTION"]
    base_asset: Symbol
    quote_asset: Symbol = "USDC"
    quote_per_tick_lot: PositiveInt64 = Field(description="micro-USDC of one lot moving one tick")
    tick_size_e9: PositiveInt64
    lot_size_e9: PositiveInt64
    min_size: PositiveInt64 = 1
    maker_fee_bps: Annotated[int, Field(ge=0, le=10_000)] = 50
    taker_fee_bps: Annotated[int, Field(ge=0, le=10_000)] = 50
    expiry: PositiveInt64 | None = None
    strike: PositiveInt64 | None = None
    option_type: Literal["CALL", "PUT"] | None = None
    index_symbol: Symbol | None = None


class AdminMarketRequest(_Body):
    """Create, pause, resume or delete a market."""

    action: Literal["create", "pause", "resume", "delete"]
    market: Symbol
    definition: MarketDefinitionBody | None = Field(None, description="required for create")


ACTION_STATUS: dict[str, MarketStatus] = {
    "pause": MarketStatus.PAUSED,
    "resume": MarketStatus.ACTIVE,
    "delete": MarketStatus.DELETED,
}


# -- answers ----------------------------------------------------------------------------------


class ErrorBody(_Answer):
    """Every refusal: a stable numeric code (docs/error-codes.md), its name, and what to do."""

    code: int
    error: str
    message: str


class OrderAnswer(_Answer):
    order_id: UUID
    client_order_id: str
    status: str = Field(description="PENDING, NEW, PARTIALLY_FILLED, FILLED, CANCELLED or REJECTED")
    filled_qty: int = 0
    leaves_qty: int = 0
    cancelled_qty: int = 0
    code: int | None = None
    reason: str | None = None
    correlation_id: UUID | None = Field(
        None, description="the command's id in every service's logs and Kafka headers (docs/observability.md)"
    )


class OrderBatchItem(OrderAnswer):
    """One order of a batch: what `POST /orders` would have answered, with its HTTP status."""

    http_status: int
    error: str | None = None
    message: str | None = None


class OrderBatchAnswer(_Answer):
    results: list[OrderBatchItem] = Field(description="one per order, in the request's order")


class CommandAnswer(_Answer):
    status: str = Field(description="PENDING, ACCEPTED or REJECTED")
    cancelled_qty: int = 0
    code: int | None = None
    reason: str | None = None
    correlation_id: UUID | None = Field(
        None, description="the command's id in every service's logs and Kafka headers (docs/observability.md)"
    )


class SessionAnswer(_Answer):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: int = Field(description="µs since the epoch")


class DomainAnswer(_Answer):
    """The EIP-712 domain every signature must use."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str
    server_time_us: int
