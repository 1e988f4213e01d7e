"""The real gateway app (`create_app`) over in-memory adapters, and an in-process HTTP transport.

So the client tests exercise what a trader's machine does against what the gateway does: the
client signs, the real routes parse, verify the EIP-712 signature under the real domain, check
the nonce and deadline, and replay answers by Idempotency-Key. Only Kafka (the `CommandSender`),
Cassandra's read model and the idempotency table are fakes, each the narrow port the gateway
declares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from services.common.binding import to_avro
from services.common.bus import Outbound
from services.common.presets import preset
from services.common.records import (
    CancelAllOrders,
    CancelOrder,
    MarketStatus,
    PlaceOrder,
    RequestWithdrawal,
    TraderCommand,
)
from services.common.settings import Settings
from services.gateway.app import Gateway, create_app
from services.gateway.outcomes import OrderStatus, Outcome
from tests.unit.gateway.kit import ANVIL_CHAIN_ID, VAULT_ON_ANVIL, MemoryIdempotencyStore

GATEWAY_URL = "http://gateway.test"


def default_outcome(command: TraderCommand) -> Outcome:
    """What risk and the matcher decide when a test does not say: orders rest, the rest succeeds."""
    body = command.body
    if isinstance(body, PlaceOrder):
        return Outcome(OrderStatus.RESTING, leaves_qty=body.size)
    if isinstance(body, CancelOrder | CancelAllOrders):
        return Outcome(OrderStatus.ACCEPTED, cancelled_qty=3)
    if isinstance(body, RequestWithdrawal):
        return Outcome(OrderStatus.ACCEPTED)
    raise AssertionError(f"unexpected command {body!r}")


@dataclass
class FakeSender:
    """`CommandSender`: records every command sent to orders.commands, answers `decide`'s outcome."""

    decide: Callable[[TraderCommand], Outcome] = default_outcome
    sent: list[TraderCommand] = field(default_factory=list)

    async def send(self, out: Outbound, *, order_id: str | None, wait_s: float) -> Outcome:
        command = out.value
        assert isinstance(command, TraderCommand), "the gateway sends generated records"
        self.sent.append(command)
        return self.decide(command)

    def placed(self) -> list[PlaceOrder]:
        """The orders sent, in order."""
        return [c.body for c in self.sent if isinstance(c.body, PlaceOrder)]


@dataclass
class FakeReads:
    """`ReadModel` over lists: BTC-PERP and ETH-PERP listed (snake_case rows, as Avro spells them)."""

    market_rows: list[dict[str, Any]] = field(
        default_factory=lambda: [_market_row("BTC-PERP"), _market_row("ETH-PERP")]
    )
    order_rows: list[dict[str, Any]] = field(default_factory=list)
    position_rows: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[str, dict[str, Any]] = field(default_factory=dict)
    order_queries: list[dict[str, Any]] = field(default_factory=list)

    def orders(
        self,
        trader: str,
        *,
        market: str | None,
        status: str | None,
        since_us: int | None,
        until_us: int | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        self.order_queries.append({"trader": trader, "market": market, "status": status, "limit": limit,
                                   "cursor": cursor})  # fmt: skip
        rows = [
            r
            for r in self.order_rows
            if r["trader"] == trader and market in (None, r["market"]) and status in (None, r["status"])
        ]
        start = int(cursor or 0)
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return page, (str(start + limit) if more else None)

    def positions(self, trader: str) -> list[dict[str, Any]]:
        return [r for r in self.position_rows if r["trader"] == trader]

    def order(self, trader: str, order_id: str) -> dict[str, Any] | None:
        return next((r for r in self.order_rows if r["trader"] == trader and r["order_id"] == order_id), None)

    def balance(self, trader: str) -> dict[str, Any]:
        empty = {"trader": trader, "free": 0, "reserved": 0, "withdrawing": 0, "locked": 0, "holdings": []}
        return self.balances.get(trader, empty)

    def markets(self) -> list[dict[str, Any]]:
        return self.market_rows

    def market_status(self, market: str, *, fresh: bool = False) -> MarketStatus | None:
        for row in self.market_rows:
            if row["market"] == market:
                return MarketStatus(row["status"])
        return None


def _market_row(symbol: str) -> dict[str, Any]:
    row = to_avro(preset(symbol))
    row["kind"] = str(row["kind"])
    row["status"] = str(row["status"])
    return row


def settings(**overrides: Any) -> Settings:
    """Gateway settings for tests: the local anvil domain, a fixed session secret."""
    values: dict[str, Any] = {
        "chain_id": ANVIL_CHAIN_ID,
        "vault_address": VAULT_ON_ANVIL,
        "gateway_session_secret": "test-session-secret",
        "ack_timeout_ms": 100,
    }
    return Settings(**(values | overrides))


@dataclass
class Exchange:
    """One gateway app with its fakes, reachable in-process at GATEWAY_URL."""

    sender: FakeSender = field(default_factory=FakeSender)
    reads: FakeReads = field(default_factory=FakeReads)
    idempotency: MemoryIdempotencyStore = field(default_factory=MemoryIdempotencyStore)
    settings: Settings = field(default_factory=settings)

    def __post_init__(self) -> None:
        self.gateway = Gateway(
            self.settings, sender=self.sender, reads=self.reads, idempotency=self.idempotency
        )
        self.app = create_app(self.gateway)
        self.transport = FlakyTransport(InProcessTransport(self.app))

    def http(self) -> httpx.Client:
        return httpx.Client(transport=self.transport)


class InProcessTransport(httpx.BaseTransport):
    """A synchronous httpx transport that calls an ASGI app in-process (httpx's `ASGITransport`
    is async-only in 0.28): each request runs the app on a fresh event loop."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def exchange() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return anyio.run(exchange)


class FlakyTransport(httpx.BaseTransport):
    """Delivers requests to `inner`, but can lose them on the way (before the gateway sees them)
    or lose the answer on the way back (after the gateway acted): what a timeout looks like.
    `drop_requests` / `drop_answers` count how many to lose, by path."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.drop_requests: dict[str, int] = {}
        self.drop_answers: dict[str, int] = {}
        self.delivered: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.drop_requests.get(path):
            self.drop_requests[path] -= 1
            raise httpx.ConnectTimeout("dropped before the gateway", request=request)
        response = self.inner.handle_request(request)
        self.delivered.append(request)
        if self.drop_answers.get(path):
            self.drop_answers[path] -= 1
            raise httpx.ReadTimeout("answer lost after the gateway acted", request=request)
        return response
