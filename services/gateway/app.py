"""The order gateway's HTTP API (FastAPI): signed commands in, outcomes and the read model out.

A signed write goes through the same steps whatever it is (`_submit`):

    parse (400) → rate limit per trader (429) → EIP-712 signature (401) → Idempotency-Key (replay
    the first answer, or 409/422) → deadline and nonce (400/409) → market known and active (422/409)
    → orders.commands → wait, bounded, for risk's or the matcher's decision → 201/200, 4xx, or 202
    PENDING

Every refusal is `{"code", "error", "message"}` with a stable code (docs/error-codes.md). Reads
need a session (`POST /sessions`) and only ever show the session's trader.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import Body, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.bus import Outbound
from services.common.codes import GatewayReject, MatcherReject, RiskReject
from services.common.nonces import Accepted, ReplayGuard
from services.common.records import (
    CancelAllOrders,
    CancelOrder,
    CreateMarket,
    MarketDefinition,
    MarketKind,
    MarketStatus,
    MatcherCommand,
    OptionType,
    OrderType,
    PlaceOrder,
    RequestWithdrawal,
    SetMarketStatus,
    TimeInForce,
    TraderCommand,
)
from services.common.settings import Settings
from services.common.topics import MATCHER_COMMANDS, ORDERS_COMMANDS
from services.gateway import models as m
from services.gateway import timing
from services.gateway.auth import AdminAuth, AuthError, Sessions
from services.gateway.core import idempotency as idem
from services.gateway.core import typed_data as td
from services.gateway.core.ratelimit import Limited, RateLimiter
from services.gateway.outcomes import OrderStatus, Outcome
from services.gateway.tracker import CommandTracker, NotDelivered

log = logging.getLogger(__name__)

# -- ports ----------------------------------------------------------------------------------------


class ReadModel(Protocol):
    """What the gateway reads (the Cassandra projections, services/projector)."""

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
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    def order(self, trader: str, order_id: str) -> dict[str, Any] | None: ...

    def positions(self, trader: str) -> list[dict[str, Any]]: ...

    def balance(self, trader: str) -> dict[str, Any]: ...

    def markets(self) -> list[dict[str, Any]]: ...

    def market_status(self, market: str, *, fresh: bool = False) -> MarketStatus | None:
        """Asked on every order, in the event loop: must answer from memory, without I/O — unless
        `fresh`, asked (in a worker thread) for a market memory does not know, just listed maybe."""
        ...


class CommandSender(Protocol):
    async def send(self, out: Outbound, *, order_id: str | None, wait_s: float) -> Outcome: ...


@dataclass
class Gateway:
    """Everything the routes use; built by `services.gateway.__main__` (or a test)."""

    settings: Settings
    sender: CommandSender
    reads: ReadModel
    idempotency: idem.IdempotencyStore
    """Claims and answers are made in the event loop: only its `answered` may block."""
    tracker: CommandTracker | None = None
    """Started and closed with the app when given."""
    on_close: tuple[Callable[[], None], ...] = ()
    """Run when the app shuts down, after the tracker: the store connections the gateway owns."""

    def __post_init__(self) -> None:
        s = self.settings
        self.domain = td.ExchangeDomain(chain_id=s.chain_id, verifying_contract=s.vault_address)
        self.sessions = Sessions(s)
        self.admin = AdminAuth(s)
        self.by_ip = RateLimiter(capacity=s.rate_limit_burst, refill_per_s=s.rate_limit_per_s)
        self.by_key = RateLimiter(capacity=s.rate_limit_burst, refill_per_s=s.rate_limit_per_s)
        # A first, local line against replays; the authority is risk, which sees every command of a
        # trader exactly once (docs/signing.md).
        self.nonces = ReplayGuard()
        self._pruned_at = 0
        self.wait_s = s.ack_timeout_ms / 1000

    def prune_nonces(self, now: int) -> None:
        """Forget, once a minute, the nonces the time window refuses anyway (bounded memory)."""
        if now - self._pruned_at > 60_000_000:
            self.nonces.prune(now)
            self._pruned_at = now


# -- errors ---------------------------------------------------------------------------------------


class ApiError(Exception):
    """A refusal: HTTP status, stable code, and a message that says what to do."""

    def __init__(
        self, status: int, code: int, error: str, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.code, self.error, self.message = status, code, error, message
        self.headers = headers or {}

    @classmethod
    def of(cls, status: int, code: GatewayReject, message: str) -> ApiError:
        return cls(status, int(code), code.name, message)

    def body(self) -> dict[str, Any]:
        """The refusal as the JSON body every route answers with."""
        return {"code": self.code, "error": self.error, "message": self.message}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


_SIGNATURE_STATUS = {
    GatewayReject.INVALID_SIGNATURE: 401,
    GatewayReject.SIGNER_MISMATCH: 401,
    GatewayReject.MALLEABLE_SIGNATURE: 401,
}
_NONCE_STATUS = {
    GatewayReject.NONCE_REUSED: 409,
    GatewayReject.NONCE_TOO_OLD: 400,
    GatewayReject.NONCE_TOO_FAR_AHEAD: 400,
    GatewayReject.SIGNATURE_EXPIRED: 400,
}
_REJECTION_STATUS: dict[int, int] = {
    RiskReject.UNKNOWN_ORDER: 404,
    MatcherReject.UNKNOWN_ORDER: 404,
    RiskReject.MARKET_NOT_ACTIVE: 409,
    MatcherReject.MARKET_NOT_ACTIVE: 409,
    # risk is the replay authority: a nonce another gateway replica (or this one, before a
    # restart) already passed on comes back from risk, with the codes the gateway itself uses
    RiskReject.NONCE_REUSED: 409,
    RiskReject.NONCE_TOO_OLD: 400,
    RiskReject.NONCE_TOO_FAR_AHEAD: 400,
}


def rejection_status(code: int) -> int:
    """The HTTP status of a command risk or the matcher refused (422 unless listed above)."""
    return _REJECTION_STATUS.get(code, 422)


def _reject_name(code: int) -> str:
    for enum in (RiskReject, MatcherReject, GatewayReject):
        try:
            return enum(code).name
        except ValueError:
            continue
    return "REJECTED"


# -- the app ----------------------------------------------------------------------------------------


def create_app(gateway: Gateway) -> FastAPI:
    """The FastAPI application over `gateway`'s adapters."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        if gateway.tracker is not None:
            await run_in_threadpool(gateway.tracker.start)
        yield
        if gateway.tracker is not None:
            await run_in_threadpool(gateway.tracker.close)
        for close in gateway.on_close:
            await run_in_threadpool(close)

    app = FastAPI(
        title="CXPT Exchange order gateway",
        version="1",
        description=__doc__,
        lifespan=lifespan,
        responses={
            400: {"model": m.ErrorBody},
            401: {"model": m.ErrorBody},
            413: {"model": m.ErrorBody},
            429: {"model": m.ErrorBody},
        },
    )
    metrics = _Metrics()
    _install_error_handlers(app)
    app.add_middleware(_Limits, gateway=gateway, metrics=metrics)

    _public_routes(app, gateway, metrics)
    _trader_routes(app, gateway, metrics)
    _admin_routes(app, gateway)
    return app


def _public_routes(app: FastAPI, gateway: Gateway, metrics: _Metrics) -> None:
    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: {"model": m.ErrorBody}})
    def ready() -> Response:
        """Readiness: Kafka outcome tail assigned (and the read model answering)."""
        if gateway.tracker is not None and not gateway.tracker.ready.is_set():
            return ApiError(503, 0, "NOT_READY", "the outcome tail is not assigned yet").response()
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics."""
        if gateway.tracker is not None:
            metrics.in_flight.set(gateway.tracker.in_flight)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/info", tags=["public"])
    def info() -> m.DomainAnswer:
        """The EIP-712 domain to sign with, and the server's clock (for nonces and deadlines)."""
        d = gateway.domain
        return m.DomainAnswer(
            name=d.name, version=d.version, chain_id=d.chain_id, verifying_contract=d.verifying_contract,
            server_time_us=_now_us(),
        )  # fmt: skip

    @app.get("/markets", tags=["public"])
    async def markets() -> list[dict[str, Any]]:
        """Every market with its parameters and status."""
        return await run_in_threadpool(gateway.reads.markets)


def _trader_routes(app: FastAPI, gateway: Gateway, metrics: _Metrics) -> None:
    @app.post("/sessions", tags=["traders"], status_code=201)
    def open_session(body: m.SessionRequest) -> m.SessionAnswer:
        """Open a read session with a signed `Session` struct; the token's lifetime ends at its deadline."""
        now = _now_us()
        struct = _struct(body.struct)
        trader = _verified(gateway, struct, body.signature_bytes())
        _check_deadline(struct.deadline, now)
        if struct.deadline > now + gateway.sessions.max_s * 1_000_000:
            raise ApiError.of(
                400, GatewayReject.INVALID_REQUEST, f"sessions last {gateway.sessions.max_s} s at most"
            )
        return m.SessionAnswer(
            token=gateway.sessions.issue(trader, now, struct.deadline), expiresAt=struct.deadline
        )

    @app.post(
        "/orders",
        tags=["traders"],
        status_code=201,
        responses={202: {"model": m.OrderAnswer}, 404: {"model": m.ErrorBody}, 409: {"model": m.ErrorBody},
                   422: {"model": m.ErrorBody}},
    )  # fmt: skip
    async def place_order(
        request: Request,
        body: Annotated[m.LimitOrderRequest | m.MarketOrderRequest, Body(discriminator="order_type")],
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
    ) -> Response:
        """Place a limit or market order (any market kind: spot synth, perpetual, future, option).

        Answers once risk and the matcher decided (201 with the status, or a 4xx refusal), or after
        the configured wait with 202 PENDING — the order is then durably queued; poll `GET /orders`.
        """
        return await _submit(
            gateway, request, idempotency_key=idempotency_key, struct=_struct(body.struct),
            signature=body.signature_bytes(), body=_place_command(body),
            market=body.market, order_id=str(body.order_id), answer=_order_answerer(body), metrics=metrics,
        )  # fmt: skip

    @app.post(
        "/orders/batch",
        tags=["traders"],
        responses={200: {"model": m.OrderBatchAnswer}, 409: {"model": m.ErrorBody},
                   422: {"model": m.ErrorBody}},
    )  # fmt: skip
    async def place_orders(
        request: Request,
        body: m.OrderBatchRequest,
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
    ) -> Response:
        """Place up to 20 orders of one trader in one request (a market maker's quote refresh).

        Each order is signed, checked, sent and answered on its own, as `POST /orders` would (its
        `httpStatus` says what that route would have answered; the rate limit counts every order);
        the orders travel side by side, so a batch costs about one order's latency. The request itself
        is refused only when it is malformed (one trader, distinct nonces and order ids), when no order
        carries a valid signature, or for its Idempotency-Key (which covers the whole batch).
        """
        return await _submit_batch(gateway, request, body, idempotency_key, metrics)

    @app.delete(
        "/orders/{order_id}",
        tags=["traders"],
        responses={202: {"model": m.CommandAnswer}, 404: {"model": m.ErrorBody}, 409: {"model": m.ErrorBody},
                   422: {"model": m.ErrorBody}},
    )  # fmt: skip
    async def cancel_order(
        request: Request,
        order_id: UUID,
        body: m.CancelRequest,
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
    ) -> Response:
        """Cancel one order. Signed `Cancel` struct: works without a session."""
        return await _cancel(gateway, request, body, idempotency_key, metrics, order_id=order_id)

    @app.delete(
        "/orders/by-client-id/{client_order_id:path}",
        tags=["traders"],
        responses={202: {"model": m.CommandAnswer}, 404: {"model": m.ErrorBody}, 409: {"model": m.ErrorBody},
                   422: {"model": m.ErrorBody}},
    )  # fmt: skip
    async def cancel_by_client_id(
        request: Request,
        client_order_id: Annotated[str, Path(min_length=1, max_length=64)],
        body: m.CancelRequest,
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
    ) -> Response:
        """Cancel one order by the trader's own client order id (signed `Cancel` with `clientOrderId`)."""
        return await _cancel(
            gateway, request, body, idempotency_key, metrics, client_order_id=client_order_id
        )

    @app.delete(
        "/orders",
        tags=["traders"],
        responses={202: {"model": m.CommandAnswer}, 409: {"model": m.ErrorBody}, 422: {"model": m.ErrorBody}},
    )
    async def cancel_all(
        request: Request,
        body: m.CancelAllRequest,
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
    ) -> Response:
        """Cancel all of a trader's open orders, optionally in one market and/or on one side."""
        struct = _struct(body.struct)
        command = CancelAllOrders(
            market=body.market, side=body.side, nonce=body.nonce, signature=body.signature_bytes()
        )
        return await _submit(
            gateway, request, idempotency_key=idempotency_key, struct=struct,
            signature=body.signature_bytes(), body=command, metrics=metrics,
        )  # fmt: skip

    @app.get("/orders", tags=["traders"], responses={401: {"model": m.ErrorBody}})
    async def list_orders(
        *,
        authorization: Annotated[str | None, Header()] = None,
        market: Annotated[str | None, Query(max_length=32)] = None,
        status: Annotated[
            str | None,
            Query(
                pattern="^(OPEN|NEW|ACCEPTED|RESTING|PARTIALLY_FILLED|FILLED|CANCELLED|REJECTED|EXPIRED)$",
                description="OPEN: not closed; NEW: not yet filled; EXPIRED: GTT cancelled at expiry",
            ),
        ] = None,
        since: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="µs since the epoch")] = None,
        until: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="µs since the epoch")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> dict[str, Any]:
        """The session trader's orders, newest first; pass `nextCursor` back as `cursor` for more."""
        trader = _session_trader(gateway, authorization)
        try:
            rows, next_cursor = await run_in_threadpool(
                lambda: gateway.reads.orders(
                    trader,
                    market=market,
                    status=status,
                    since_us=since,
                    until_us=until,
                    limit=limit,
                    cursor=cursor,
                )
            )
        except ValueError as error:  # a cursor that is not ours, or from other filters
            raise ApiError.of(400, GatewayReject.INVALID_REQUEST, str(error)) from error
        return {"orders": rows, "nextCursor": next_cursor}

    @app.get(
        "/orders/{order_id}",
        tags=["traders"],
        responses={401: {"model": m.ErrorBody}, 404: {"model": m.ErrorBody}},
    )
    async def get_order(
        order_id: UUID, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        """One of the session trader's orders (after a 202 PENDING, poll here)."""
        trader = _session_trader(gateway, authorization)
        found = await run_in_threadpool(gateway.reads.order, trader, str(order_id))
        if found is None:
            raise ApiError.of(404, GatewayReject.UNKNOWN_ORDER, f"no order {order_id} of {trader} (yet)")
        return found

    @app.get("/positions", tags=["traders"], responses={401: {"model": m.ErrorBody}})
    async def positions(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """The session trader's positions: size, entry, realised PnL, and unrealised PnL at the mark."""
        trader = _session_trader(gateway, authorization)
        return {"positions": await run_in_threadpool(gateway.reads.positions, trader)}

    @app.get("/balance", tags=["traders"], responses={401: {"model": m.ErrorBody}})
    async def balance(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """The session trader's collateral: free, reserved, withdrawing, locked (micro-USDC)."""
        trader = _session_trader(gateway, authorization)
        return await run_in_threadpool(gateway.reads.balance, trader)

    @app.post(
        "/vault/withdraw",
        tags=["traders"],
        responses={202: {"model": m.CommandAnswer}, 422: {"model": m.ErrorBody}},
    )
    async def withdraw(
        request: Request,
        body: m.WithdrawalRequest,
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key")],
    ) -> Response:
        """Withdraw free collateral: risk sets it aside, settlement pays it on chain."""
        struct = _struct(body.struct)
        command = RequestWithdrawal(
            withdrawal_id=str(body.withdrawal_id), amount=body.amount, as_cxpt=body.as_cxpt, nonce=body.nonce,
            expire_at=body.deadline, signature=body.signature_bytes(),
        )  # fmt: skip
        return await _submit(
            gateway, request, idempotency_key=idempotency_key, struct=struct,
            signature=body.signature_bytes(), body=command, metrics=metrics,
        )  # fmt: skip


def _admin_routes(app: FastAPI, gateway: Gateway) -> None:
    @app.post(
        "/admin/markets",
        tags=["admin"],
        responses={202: {"model": m.CommandAnswer}, 403: {"model": m.ErrorBody}, 422: {"model": m.ErrorBody}},
    )
    async def admin_markets(
        body: m.AdminMarketRequest, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """Create, pause, resume or delete a market (admin JWT with the admin group)."""
        try:
            admin = gateway.admin.require_admin(authorization)
        except AuthError as error:
            raise ApiError.of(error.status, error.code, error.message) from error
        command = MatcherCommand(
            command_id=str(uuid.uuid4()), market=body.market, trader=None, ts_init=_now_us(),
            body=_admin_body(body, admin),
        )  # fmt: skip
        outcome = await _send(gateway, Outbound(MATCHER_COMMANDS, key=body.market, value=command), None)
        status, answer = _command_answer(outcome)
        return JSONResponse(answer, status_code=status)


# -- the signed-command pipeline --------------------------------------------------------------------


async def _cancel(
    gateway: Gateway,
    request: Request,
    body: m.CancelRequest,
    idempotency_key: str,
    metrics: _Metrics,
    *,
    order_id: UUID | None = None,
    client_order_id: str | None = None,
) -> Response:
    """Cancel one order named by exactly one of its venue or client order id."""
    struct = _struct(lambda: body.struct(order_id=order_id, client_order_id=client_order_id))
    command = CancelOrder(
        market=body.market, order_id=None if order_id is None else str(order_id),
        client_order_id=client_order_id, nonce=body.nonce, signature=body.signature_bytes(),
    )  # fmt: skip
    return await _submit(
        gateway, request, idempotency_key=idempotency_key, struct=struct,
        signature=body.signature_bytes(), body=command, metrics=metrics,
    )  # fmt: skip


async def _submit(
    gateway: Gateway,
    request: Request,
    *,
    idempotency_key: str,
    struct: td.Struct,
    signature: bytes,
    body: Any,
    metrics: _Metrics,
    market: str | None = None,
    order_id: str | None = None,
    answer: Callable[[Outcome], tuple[int, dict[str, Any]]] | None = None,
) -> Response:
    """A signed command through the pipeline of the module docstring. `market` is checked for new
    orders; `order_id` names the order whose outcome answers; `answer` shapes it (default: a
    command's status)."""
    answer = answer or _command_answer
    now = _now_us()
    trader = _verified(gateway, struct, signature)
    # Charged after the signature check: nobody can spend another trader's quota.
    limited = gateway.by_key.take(trader, now)
    if isinstance(limited, Limited):
        raise _rate_limited(limited)
    decision = await _claim(gateway, request, trader, idempotency_key, metrics)
    if isinstance(decision, Response):
        return decision
    try:
        status, payload = await _decide(
            gateway,
            struct=struct,
            now=now,
            trader=trader,
            body=body,
            market=market,
            order_id=order_id,
            answer=answer,
        )
    except ApiError as error:
        status, payload = error.status, error.body()
    except BaseException as failure:
        # The command never reached the log: give the key back so the same request can be retried.
        idem.abandon(gateway.idempotency, decision)
        if isinstance(failure, NotDelivered):
            raise ApiError(503, 0, "UNAVAILABLE", "Kafka did not take the command; retry as is") from None
        raise
    if payload.get("code") in _ALREADY_USED:
        earlier = await _earlier_answer(gateway, decision, metrics)
        if earlier is not None:
            return earlier
    encoded = json.dumps(payload, separators=(",", ":")).encode()
    idem.finish(gateway.idempotency, decision, status, encoded)
    metrics.commands.labels(type(body).__name__, str(status)).inc()
    return Response(encoded, status_code=status, media_type="application/json")


_ALREADY_USED = frozenset({
    GatewayReject.NONCE_REUSED, GatewayReject.NONCE_TOO_OLD, GatewayReject.SIGNATURE_EXPIRED,
    RiskReject.NONCE_REUSED, RiskReject.NONCE_TOO_OLD,
})  # fmt: skip
"""Refusals of a command whose signature was already used (or is too old to tell): what a retry of
an answered request looks like where its key is not known (core/idempotency.py, `recover`)."""


async def _earlier_answer(gateway: Gateway, claimed: idem.Proceed, metrics: _Metrics) -> Response | None:
    """The answer stored for the claimed key by another replica or an earlier process, if any;
    503 while the store cannot be read (a retry of an answered request, or a replay? "refused"
    could be false about a live order, so neither is said, and the key is given back)."""
    try:
        earlier = await run_in_threadpool(idem.recover, gateway.idempotency, claimed)
    except idem.AnswersUnavailable:
        idem.abandon(gateway.idempotency, claimed)
        raise ApiError(
            503, 0, "UNAVAILABLE", "cannot tell yet whether this request was answered before; retry as is"
        ) from None
    if isinstance(earlier, idem.Replay):
        metrics.replays.inc()
        return Response(earlier.body, status_code=earlier.status, media_type="application/json")
    if isinstance(earlier, idem.Refuse):
        raise ApiError.of(earlier.http_status, earlier.code, _IDEMPOTENCY_MESSAGES[earlier.code])
    return None


async def _submit_batch(
    gateway: Gateway, request: Request, batch: m.OrderBatchRequest, idempotency_key: str, metrics: _Metrics
) -> Response:
    """`_submit` for each order of a batch, the idempotency claim made once for the whole request."""
    now = _now_us()
    checked: list[tuple[m.OrderRequest, td.Struct] | ApiError] = []
    for order in batch.orders:
        try:
            struct = _struct(order.struct)
            _verified(gateway, struct, order.signature_bytes())
            checked.append((order, struct))
        except ApiError as error:
            checked.append(error)
    refusals = [item for item in checked if isinstance(item, ApiError)]
    if len(refusals) == len(checked):
        raise refusals[0]  # nobody proved to be the trader: claim no key of theirs
    trader = batch.trader
    decision = await _claim(gateway, request, trader, idempotency_key, metrics)
    if isinstance(decision, Response):
        return decision

    # Each market once for the whole batch (a quote refresh names one or two).
    market_refusals: dict[str, ApiError | None] = {}
    for market in dict.fromkeys(order.market for order in batch.orders):
        try:
            await _check_market(gateway, market)
            market_refusals[market] = None
        except ApiError as error:
            market_refusals[market] = error

    async def one(order: m.OrderRequest, item: tuple[m.OrderRequest, td.Struct] | ApiError) -> dict[str, Any]:
        ids = {"orderId": str(order.order_id), "clientOrderId": order.client_order_id}
        try:
            if isinstance(item, ApiError):
                raise item
            limited = gateway.by_key.take(trader, now)
            if isinstance(limited, Limited):
                raise _rate_limited(limited)
            status, payload = await _decide(
                gateway, struct=item[1], now=now, trader=trader, body=_place_command(order),
                market_refusal=market_refusals[order.market], order_id=str(order.order_id),
                answer=_order_answerer(order),
            )  # fmt: skip
        except NotDelivered:
            error = ApiError(
                503, 0, "UNAVAILABLE", "Kafka did not take the order; send it again with a new nonce"
            )
            status, payload = error.status, ids | {"status": "REJECTED"} | error.body()
        except ApiError as error:
            status, payload = error.status, ids | {"status": "REJECTED"} | error.body()
        metrics.commands.labels(PlaceOrder.__name__, str(status)).inc()
        return {"httpStatus": status} | payload

    try:
        results = await asyncio.gather(*(one(o, c) for o, c in zip(batch.orders, checked, strict=True)))
    except BaseException:
        idem.abandon(gateway.idempotency, decision)
        raise
    if all(r.get("code") in _ALREADY_USED for r in results):  # the whole batch again?
        earlier = await _earlier_answer(gateway, decision, metrics)
        if earlier is not None:
            return earlier
    encoded = json.dumps({"results": results}, separators=(",", ":")).encode()
    if any(r["httpStatus"] == 503 for r in results):
        # Part of the batch never reached the log: give the key back so the batch can be retried
        # (its delivered orders are then refused as NONCE_REUSED, never placed twice).
        idem.abandon(gateway.idempotency, decision)
    else:
        idem.finish(gateway.idempotency, decision, 200, encoded)
    return Response(encoded, status_code=200, media_type="application/json")


async def _claim(
    gateway: Gateway, request: Request, trader: str, idempotency_key: str, metrics: _Metrics
) -> idem.Proceed | Response:
    """Claim the request's Idempotency-Key for `trader`: go ahead, or the first answer replayed."""
    claim = idem.IdempotentRequest(
        trader=trader, key=idempotency_key, method=request.method, path=request.url.path,
        body=json.loads(await request.body()),
    )  # fmt: skip
    decision = idem.begin(gateway.idempotency, claim)  # in process: no thread hop (stores.py)
    if isinstance(decision, idem.Replay):
        metrics.replays.inc()
        return Response(decision.body, status_code=decision.status, media_type="application/json")
    if isinstance(decision, idem.Refuse):
        raise ApiError.of(decision.http_status, decision.code, _IDEMPOTENCY_MESSAGES[decision.code])
    return decision


_IDEMPOTENCY_MESSAGES = {
    GatewayReject.IDEMPOTENCY_KEY_REUSED: "Idempotency-Key used for another request; use a new key",
    GatewayReject.IDEMPOTENCY_IN_PROGRESS: "the first request with this Idempotency-Key is still running",
    GatewayReject.INVALID_REQUEST: "Idempotency-Key must be 1-255 visible ASCII characters",
}


async def _decide(
    gateway: Gateway,
    *,
    struct: td.Struct,
    now: int,
    trader: str,
    body: Any,
    order_id: str | None,
    answer: Callable[[Outcome], tuple[int, dict[str, Any]]],
    market: str | None = None,
    market_refusal: ApiError | None = None,
) -> tuple[int, dict[str, Any]]:
    """Deadline, nonce, market (checked here, or already by the caller: `market_refusal`), send."""
    _check_deadline(struct.deadline, now)
    gateway.prune_nonces(now)
    verdict = gateway.nonces.check(trader, struct.nonce, now, deadline=struct.deadline)
    if not isinstance(verdict, Accepted):
        raise ApiError.of(_NONCE_STATUS[verdict.code], verdict.code, _NONCE_MESSAGES[verdict.code])
    if market_refusal is not None:
        raise market_refusal
    if market is not None:
        await _check_market(gateway, market)
    command = TraderCommand(command_id=str(uuid.uuid4()), trader=trader, ts_init=now, body=body)
    outcome = await _send(gateway, Outbound(ORDERS_COMMANDS, key=trader, value=command), order_id)
    gateway.nonces.record(trader, struct.nonce)
    return answer(outcome)


_NONCE_MESSAGES = {
    GatewayReject.NONCE_REUSED: "this nonce was already used by this signer; sign again with a new nonce",
    GatewayReject.NONCE_TOO_OLD: "nonce too old: use the current time in µs (GET /info gives the server's)",
    GatewayReject.NONCE_TOO_FAR_AHEAD: "nonce more than a day ahead of the server's clock (GET /info)",
    GatewayReject.SIGNATURE_EXPIRED: "the signature's deadline has passed; sign again",
}


async def _send(gateway: Gateway, out: Outbound, order_id: str | None) -> Outcome:
    return await gateway.sender.send(out, order_id=order_id, wait_s=gateway.wait_s)


async def _check_market(gateway: Gateway, market: str) -> None:
    status = gateway.reads.market_status(market)  # from memory (ReadModel)
    if status is None:
        status = await run_in_threadpool(lambda: gateway.reads.market_status(market, fresh=True))
    if status is None:
        raise ApiError.of(422, GatewayReject.UNKNOWN_MARKET, f"no market {market!r}; GET /markets lists them")
    if status is not MarketStatus.ACTIVE:
        raise ApiError.of(409, GatewayReject.MARKET_NOT_ACTIVE, f"{market} is {status.value}: no new orders")


def _check_deadline(deadline: int, now: int) -> None:
    if deadline < now:
        raise ApiError.of(
            400, GatewayReject.SIGNATURE_EXPIRED, _NONCE_MESSAGES[GatewayReject.SIGNATURE_EXPIRED]
        )


def _verified(gateway: Gateway, struct: td.Struct, signature: bytes) -> str:
    verdict = td.verify(gateway.domain, struct, signature)
    if isinstance(verdict, td.SignatureRejected):
        raise ApiError.of(
            _SIGNATURE_STATUS[verdict.code], verdict.code,
            "signature refused: sign the body's EIP-712 struct under the domain GET /info returns",
        )  # fmt: skip
    return verdict


def _struct(build: Callable[[], td.Struct]) -> Any:
    try:
        return build()
    except td.InvalidTypedData as error:
        raise ApiError.of(400, GatewayReject.INVALID_REQUEST, str(error)) from error


def _place_command(body: m.OrderRequest) -> PlaceOrder:
    return PlaceOrder(
        market=body.market,
        order_id=str(body.order_id),
        client_order_id=body.client_order_id,
        side=body.side,
        order_type=OrderType(body.order_type.upper()),
        price=body.price,
        size=body.size,
        time_in_force=TimeInForce(body.time_in_force.value),
        post_only=getattr(body, "post_only", False),
        reduce_only=body.reduce_only,
        expire_at=getattr(body, "expire_at", None),
        stp=body.stp,
        nonce=body.nonce,
        signature=body.signature_bytes(),
    )


def _order_answerer(body: m.OrderRequest) -> Callable[[Outcome], tuple[int, dict[str, Any]]]:
    def answer(outcome: Outcome) -> tuple[int, dict[str, Any]]:
        return _order_answer(outcome, body.order_id, body.client_order_id)

    return answer


def _order_answer(outcome: Outcome, order_id: UUID, client_order_id: str) -> tuple[int, dict[str, Any]]:
    body = {"orderId": str(order_id), "clientOrderId": client_order_id} | outcome.as_json()
    if outcome.status is OrderStatus.PENDING:
        return 202, body
    if outcome.status is OrderStatus.REJECTED and outcome.code is not None:
        return rejection_status(outcome.code), body | {
            "error": _reject_name(outcome.code),
            "message": outcome.reason,
        }
    return 201, body


def _command_answer(outcome: Outcome) -> tuple[int, dict[str, Any]]:
    body = outcome.as_json()
    body.pop("filledQty", None)
    body.pop("leavesQty", None)
    if outcome.status is OrderStatus.PENDING:
        return 202, body
    if outcome.status is OrderStatus.REJECTED and outcome.code is not None:
        return rejection_status(outcome.code), body | {
            "error": _reject_name(outcome.code),
            "message": outcome.reason,
        }
    return 200, body


def _admin_body(body: m.AdminMarketRequest, admin: str) -> CreateMarket | SetMarketStatus:
    if body.action != "create":
        return SetMarketStatus(
            status=m.ACTION_STATUS[body.action], reason=f"{body.action} by {admin or 'admin'}"
        )
    d = body.definition
    if d is None:
        raise ApiError.of(400, GatewayReject.INVALID_REQUEST, "action create needs a definition")
    return CreateMarket(
        definition=MarketDefinition(
            market=body.market,
            kind=MarketKind(d.kind),
            base_asset=d.base_asset,
            quote_asset=d.quote_asset,
            quote_per_tick_lot=d.quote_per_tick_lot,
            tick_size_e9=d.tick_size_e9,
            lot_size_e9=d.lot_size_e9,
            min_size=d.min_size,
            maker_fee_bps=d.maker_fee_bps,
            taker_fee_bps=d.taker_fee_bps,
            status=MarketStatus.ACTIVE,
            expiry=d.expiry,
            strike=d.strike,
            option_type=OptionType(d.option_type) if d.option_type else None,
            index_symbol=d.index_symbol,
        )
    )


def _session_trader(gateway: Gateway, authorization: str | None) -> str:
    try:
        return gateway.sessions.trader(authorization)
    except AuthError as error:
        raise ApiError.of(error.status, error.code, error.message) from error


def _now_us() -> int:
    return time.time_ns() // 1_000


def _rate_limited(limited: Limited) -> ApiError:
    return ApiError(
        429, int(GatewayReject.RATE_LIMITED), GatewayReject.RATE_LIMITED.name,
        f"too many requests; retry in {limited.retry_after_s} s",
        headers={"Retry-After": str(limited.retry_after_s)},
    )  # fmt: skip


# -- cross-cutting: errors, limits, metrics ---------------------------------------------------------


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "gateway_request_seconds", "HTTP request latency", ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )  # fmt: skip
        self.commands = Counter(
            "gateway_commands",
            "Signed commands by type and answer",
            ["command", "status"],
            registry=self.registry,
        )
        self.replays = Counter(
            "gateway_idempotent_replays", "Answers replayed for a known key", registry=self.registry
        )
        self.in_flight = Gauge(
            "gateway_commands_in_flight", "Commands awaiting their outcome", registry=self.registry
        )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in error.errors()[:5]
        )
        return ApiError.of(400, GatewayReject.INVALID_REQUEST, problems or "invalid request").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return ApiError(
            error.status_code, int(GatewayReject.INVALID_REQUEST), "HTTP_ERROR", str(error.detail)
        ).response()


class _Limits:
    """ASGI middleware of every request: the per-IP rate limit (429), the body size limit (413), the
    request metrics and the `Server-Timing` marks (services/gateway/timing.py).

    Plain ASGI rather than Starlette's `BaseHTTPMiddleware`, which runs the app in a task of its
    own and streams the response through a memory channel: ~10 % of a lone order's gateway CPU.
    """

    def __init__(self, app: ASGIApp, gateway: Gateway, metrics: _Metrics) -> None:
        self.app, self.gateway, self.metrics = app, gateway, metrics
        self.limit = gateway.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        marks = timing.begin()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                header = (b"server-timing", timing.header(marks).encode())
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        client = scope.get("client")
        limited = self.gateway.by_ip.take(client[0] if client else "unknown", _now_us())
        try:
            if isinstance(limited, Limited):
                await _rate_limited(limited).response()(scope, receive, sending)
            elif _too_large(scope["headers"], self.limit):
                refusal = ApiError.of(
                    413, GatewayReject.BODY_TOO_LARGE, f"request bodies are limited to {self.limit} bytes"
                )
                await refusal.response()(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


def _too_large(headers: list[tuple[bytes, bytes]], limit: int) -> bool:
    length = transfer = None
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            transfer = value
    if length is None:
        # Chunked bodies have no declared length; refuse them rather than read without bound.
        return transfer is not None and transfer.lower() == b"chunked"
    return not length.isdigit() or int(length) > limit
