"""`CxptClient`: sign and send trader commands to the order gateway, and read one's own state.

    client = CxptClient("http://127.0.0.1:8080", private_key)
    btc = client.market("BTC-PERP")
    placed = client.place_limit("BTC-PERP", "buy", btc.lots("0.003"), btc.ticks("65000.5"))
    client.cancel("BTC-PERP", placed.order_id)

What it does for every write (docs/signing.md):

* signs the EIP-712 struct with the domain `GET /info` gave (fetched once), so the body it sends
  is exactly what the gateway verifies;
* stamps the nonce from the clock in µs, strictly increasing per client (`max(now, last + 1)`),
  and a deadline `deadline_s` later; the clock is the local one corrected by the offset to the
  gateway's clock measured at `GET /info`, so a skewed machine still signs fresh deadlines;
* picks a UUIDv7 order or withdrawal id and a UUIDv4 `Idempotency-Key`, and freezes the request
  (`SignedRequest`): every retry sends the same bytes under the same key, so the gateway answers a
  retry with the first attempt's answer and never runs the command twice.

Reads open a session (`POST /sessions`, a signed `Session`) on first use and renew it before it
expires (or when the gateway forgets it). Refusals raise `CxptError`; HTTP 202 is not one: the
result's `status` is PENDING (queued, decision not yet known).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from services.client.errors import CxptError, RateLimited, Unreachable
from services.client.ids import idempotency_key, uuid7
from services.client.models import (
    Balance,
    CommandResult,
    Info,
    Market,
    OrderPage,
    OrderResult,
    OrderRow,
    Position,
    snake_keys,
)
from services.common.codes import GatewayReject
from services.gateway.core import typed_data as td
from services.gateway.models import MAX_BATCH_ORDERS

SECOND_US: Final = 1_000_000
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_DEADLINE_S: Final = 60.0
DEFAULT_SESSION_S: Final = 3_600
MAX_BACKOFF_S: Final = 5.0

Side = Literal["BUY", "SELL", "buy", "sell"]
TimeInForce = Literal["GTC", "IOC", "FOK", "GTT"]
Stp = Literal["CANCEL_MAKER", "CANCEL_TAKER", "CANCEL_BOTH"]

_RETRY_STATUSES: Final = {502, 503, 504}
_E = TypeVar("_E", bound=IntEnum)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A signed write, frozen: sending it again (`CxptClient.resend`) sends the very same bytes
    under the same Idempotency-Key, which the gateway answers with the first attempt's answer."""

    method: str
    path: str
    body: bytes
    idempotency_key: str
    order_id: UUID | None = None
    """Set for orders: the answer is an `OrderResult`."""
    client_order_id: str = ""
    withdrawal_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class _Session:
    token: str
    expires_at_us: int


class CxptClient:
    """A trader's client of the order gateway (thread-safe: one per key is enough).

    `private_key` may be None for the public routes only (`info`, `markets`). `http` replaces the
    HTTP client (tests pass a `fastapi.testclient.TestClient`); the client then does not close it.
    `max_retries` (default 0: off) retries a 429 after its Retry-After, and a timeout, a lost
    connection, a 502/503/504 or an IDEMPOTENCY_IN_PROGRESS after a short backoff — always with the
    same body and Idempotency-Key, so a retry never doubles a command.
    """

    def __init__(
        self,
        base_url: str,
        private_key: str | bytes | LocalAccount | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        http: httpx.Client | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
        session_s: int = DEFAULT_SESSION_S,
        max_retries: int = 0,
        domain: td.ExchangeDomain | None = None,
        sync_clock: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._account: LocalAccount | None = (
            private_key
            if isinstance(private_key, LocalAccount) or private_key is None
            else Account.from_key(private_key)
        )
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self.deadline_s = deadline_s
        self.session_s = session_s
        self.max_retries = max_retries
        self._domain = domain
        self._sync_clock = sync_clock and domain is None
        self._sleep = sleep
        self._offset_us = 0
        self._last_nonce = 0
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._markets: dict[str, Market] = {}

    # -- lifecycle ----------------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> CxptClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        """The trader: the key's address, lower-case (the exchange's spelling)."""
        return self._key().address.lower()

    # -- public routes --------------------------------------------------------------------------------

    def info(self) -> Info:
        """`GET /info`: the domain to sign with and the gateway's clock."""
        return Info.from_json(self._call("GET", "/info").json())

    @property
    def domain(self) -> td.ExchangeDomain:
        """The EIP-712 domain: from `GET /info` on first use (and the clock offset with it)."""
        if self._domain is None:
            sent = time.time_ns() // 1_000
            info = self.info()
            received = time.time_ns() // 1_000
            if self._sync_clock:
                self._offset_us = info.server_time_us - (sent + received) // 2
            self._domain = info.domain
        return self._domain

    def markets(self) -> list[Market]:
        """`GET /markets`: every market, its grid and status (also refreshes `market`'s cache)."""
        found = [Market.from_json(row) for row in self._call("GET", "/markets").json()]
        self._markets = {m.market: m for m in found}
        return found

    def market(self, symbol: str) -> Market:
        """One market, from a cache filled by `markets()` (fetched when the symbol is not in it)."""
        if symbol not in self._markets:
            self.markets()
        try:
            return self._markets[symbol]
        except KeyError:
            known = ", ".join(sorted(self._markets)) or "none"
            raise CxptError(
                int(GatewayReject.UNKNOWN_MARKET),
                "UNKNOWN_MARKET",
                f"no market {symbol!r} (known: {known})",
                None,
            ) from None

    # -- signed writes ------------------------------------------------------------------------------

    def place_limit(
        self,
        market: str,
        side: Side,
        size_lots: int,
        price_ticks: int,
        *,
        tif: TimeInForce = "GTC",
        post_only: bool = False,
        reduce_only: bool = False,
        client_order_id: str | None = None,
        expire_at: int | None = None,
        stp: Stp = "CANCEL_TAKER",
        order_id: UUID | None = None,
    ) -> OrderResult:
        """Place a limit order: `size_lots` lots at `price_ticks` ticks. `expire_at` (µs) with GTT only;
        `client_order_id` defaults to the order id (it must be unique among your open orders)."""
        return self._place(*self._order_body(
            "limit", market, side, size_lots, price_ticks, tif=tif, post_only=post_only,
            reduce_only=reduce_only, client_order_id=client_order_id, expire_at=expire_at, stp=stp,
            order_id=order_id,
        ))  # fmt: skip

    def place_market(
        self,
        market: str,
        side: Side,
        size_lots: int,
        protective_price_ticks: int,
        *,
        tif: Literal["IOC", "FOK"] = "IOC",
        reduce_only: bool = False,
        client_order_id: str | None = None,
        stp: Stp = "CANCEL_TAKER",
        order_id: UUID | None = None,
    ) -> OrderResult:
        """Place a market order: takes liquidity up to the protective price (the worst acceptable)."""
        return self._place(*self._order_body(
            "market", market, side, size_lots, protective_price_ticks, tif=tif, post_only=False,
            reduce_only=reduce_only, client_order_id=client_order_id, expire_at=None, stp=stp,
            order_id=order_id,
        ))  # fmt: skip

    def place_limits(
        self,
        market: str,
        quotes: Sequence[tuple[Side, int, int]],
        *,
        tif: TimeInForce = "GTC",
        post_only: bool = False,
        stp: Stp = "CANCEL_TAKER",
    ) -> list[OrderResult]:
        """Place up to 20 limit orders `(side, size_lots, price_ticks)` in one request (`POST
        /orders/batch`): a market maker's quote refresh at about one order's latency. Each order is
        signed and answered on its own, in order; a refused one comes back with status REJECTED and
        its `code` and `reason` instead of raising (the request itself raises only when refused whole).
        """
        if not 1 <= len(quotes) <= MAX_BATCH_ORDERS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_ORDERS} orders, not {len(quotes)}")
        signed = []
        for side, size, price in quotes:
            struct, body = self._order_body(
                "limit", market, side, size, price, tif=tif, post_only=post_only, reduce_only=False,
                client_order_id=None, expire_at=None, stp=stp, order_id=None,
            )  # fmt: skip
            signed.append((struct, body | {"signature": self._signature(struct)}))
        payload = json.dumps({"orders": [body for _, body in signed]}, separators=(",", ":")).encode()
        request = SignedRequest(
            method="POST", path="/orders/batch", body=payload, idempotency_key=idempotency_key()
        )
        results = self._call_signed(request)["results"]
        return [
            OrderResult.from_json(
                answer | {"reason": answer.get("reason") or answer.get("error")},
                order_id=struct.order_id, client_order_id=struct.client_order_id,
            )
            for (struct, _), answer in zip(signed, results, strict=True)
        ]  # fmt: skip

    def cancel(self, market: str, order_id: UUID | str) -> CommandResult:
        """Cancel one order by its id (`cancelled_qty` lots left the book)."""
        oid = UUID(str(order_id))
        nonce, deadline = self._stamp()
        struct = td.Cancel(
            trader=self.address, market=market, order_id=oid, client_order_id=None, nonce=nonce,
            deadline=deadline,
        )  # fmt: skip
        body = {"trader": struct.trader, "market": market, "nonce": nonce, "deadline": deadline}
        return self._command(self._signed("DELETE", f"/orders/{oid}", struct, body))

    def cancel_by_client_id(self, market: str, client_order_id: str) -> CommandResult:
        """Cancel one open order by the client order id it was placed with."""
        nonce, deadline = self._stamp()
        struct = td.Cancel(
            trader=self.address, market=market, order_id=None, client_order_id=client_order_id, nonce=nonce,
            deadline=deadline,
        )  # fmt: skip
        body = {"trader": struct.trader, "market": market, "nonce": nonce, "deadline": deadline}
        path = f"/orders/by-client-id/{quote(client_order_id, safe='')}"
        return self._command(self._signed("DELETE", path, struct, body))

    def cancel_all(self, market: str | None = None, side: Side | None = None) -> CommandResult:
        """Cancel every open order; only in `market` and/or on `side` when given."""
        nonce, deadline = self._stamp()
        code = _code(td.SideCode, side.upper()) if side is not None else None
        struct = td.CancelAll(trader=self.address, market=market, side=code, nonce=nonce, deadline=deadline)
        body: dict[str, Any] = {"trader": struct.trader, "nonce": nonce, "deadline": deadline}
        if market is not None:
            body["market"] = market
        if side is not None:
            body["side"] = side.upper()
        return self._command(self._signed("DELETE", "/orders", struct, body))

    def withdraw(
        self, amount_micro_usdc: int, as_cxpt: bool = False, *, withdrawal_id: UUID | None = None
    ) -> CommandResult:
        """Withdraw free collateral (micro-USDC), paid on chain in USDC, or CXPT if `as_cxpt`."""
        wid = withdrawal_id or uuid7()
        nonce, deadline = self._stamp()
        struct = td.Withdrawal(
            trader=self.address, withdrawal_id=wid, amount=amount_micro_usdc, as_cxpt=as_cxpt, nonce=nonce,
            deadline=deadline,
        )  # fmt: skip
        body = {
            "trader": struct.trader, "withdrawalId": str(wid), "amount": amount_micro_usdc,
            "asCxpt": as_cxpt, "nonce": nonce, "deadline": deadline,
        }  # fmt: skip
        return self._command(self._signed("POST", "/vault/withdraw", struct, body, withdrawal_id=wid))

    def resend(self, request: SignedRequest) -> OrderResult | CommandResult:
        """Send a signed write again, unchanged: after a timeout, `CxptError.request` of the failure.

        The gateway answers with the first attempt's answer if it got it (even past the deadline),
        and runs the command now if it did not (unless the deadline has passed: SIGNATURE_EXPIRED).
        """
        if request.order_id is not None:
            return self._order(request)
        return self._command(request)

    # -- reads (session) ------------------------------------------------------------------------------

    def orders(
        self,
        *,
        market: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> OrderPage:
        """One page of the trader's orders, newest first (`next_cursor` None on the last page)."""
        params = {"market": market, "status": status, "since": since_us, "until": until_us,
                  "limit": limit, "cursor": cursor}  # fmt: skip
        answer = self._read("/orders", {k: v for k, v in params.items() if v is not None})
        rows = [OrderRow.from_json(row) for row in answer.get("orders", [])]
        return OrderPage(orders=rows, next_cursor=answer.get("nextCursor"))

    def iter_orders(
        self,
        *,
        market: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        page_size: int = 100,
    ) -> Iterator[OrderRow]:
        """Every matching order, newest first, following the cursor page after page (lazily)."""
        cursor: str | None = None
        while True:
            page = self.orders(
                market=market, status=status, since_us=since_us, until_us=until_us, limit=page_size,
                cursor=cursor,
            )  # fmt: skip
            yield from page.orders
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def positions(self) -> list[Position]:
        """The trader's positions."""
        return [Position.from_json(row) for row in self._read("/positions").get("positions", [])]

    def balance(self) -> Balance:
        """The trader's collateral (micro-USDC): free, reserved, withdrawing, locked."""
        balance = Balance.from_json(self._read("/balance"))
        return balance if balance.trader else dataclasses.replace(balance, trader=self.address)

    # -- internals: signing ----------------------------------------------------------------------

    def _key(self) -> LocalAccount:
        if self._account is None:
            raise ValueError("this client has no private key: it can only call info() and markets()")
        return self._account

    def _now_us(self) -> int:
        return time.time_ns() // 1_000 + self._offset_us

    def _stamp(self) -> tuple[int, int]:
        """(nonce, deadline) for a new signature: the nonce is strictly above the previous one."""
        self.domain  # noqa: B018 (fetches the domain, and the clock offset, before the first stamp)
        with self._lock:
            now = self._now_us()
            self._last_nonce = max(now, self._last_nonce + 1)
            return self._last_nonce, now + int(self.deadline_s * SECOND_US)

    def _signed(
        self,
        method: str,
        path: str,
        struct: td.Struct,
        body: dict[str, Any],
        *,
        order_id: UUID | None = None,
        client_order_id: str = "",
        withdrawal_id: UUID | None = None,
    ) -> SignedRequest:
        payload = json.dumps(body | {"signature": self._signature(struct)}, separators=(",", ":"))
        return SignedRequest(
            method=method, path=path, body=payload.encode(), idempotency_key=idempotency_key(),
            order_id=order_id, client_order_id=client_order_id, withdrawal_id=withdrawal_id,
        )  # fmt: skip

    def _signature(self, struct: td.Struct) -> str:
        """`struct` signed under the exchange's domain, as the gateway reads it (0x hex)."""
        return "0x" + td.sign(self.domain, struct, self._key().key).hex()

    def _place(self, struct: td.Order, body: dict[str, Any]) -> OrderResult:
        request = self._signed(
            "POST", "/orders", struct, body, order_id=struct.order_id, client_order_id=struct.client_order_id
        )
        return self._order(request)

    def _order_body(
        self,
        order_type: Literal["limit", "market"],
        market: str,
        side: str,
        size: int,
        price: int,
        *,
        tif: str,
        post_only: bool,
        reduce_only: bool,
        client_order_id: str | None,
        expire_at: int | None,
        stp: str,
        order_id: UUID | None,
    ) -> tuple[td.Order, dict[str, Any]]:
        """A new order's struct to sign and the body that carries it (signature not yet added)."""
        oid = order_id or uuid7()
        # The exchange keeps client order ids unique among a trader's open orders, "" included: with
        # the gateway's default "" a second resting order would be refused DUPLICATE_CLIENT_ORDER_ID.
        coid = client_order_id or str(oid)
        side_name, tif_name, stp_name = side.upper(), tif.upper(), stp.upper()
        nonce, deadline = self._stamp()
        struct = td.Order(
            trader=self.address, market=market, order_id=oid, client_order_id=coid,
            side=_code(td.SideCode, side_name), order_type=_code(td.OrderTypeCode, order_type.upper()),
            price=price, size=size, time_in_force=_code(td.TimeInForceCode, tif_name), post_only=post_only,
            reduce_only=reduce_only, expire_at=expire_at, stp=_code(td.StpCode, stp_name), nonce=nonce,
            deadline=deadline,
        )  # fmt: skip
        body: dict[str, Any] = {
            "orderType": order_type, "trader": struct.trader, "market": market, "orderId": str(oid),
            "clientOrderId": coid, "side": side_name, "price": price, "size": size,
            "timeInForce": tif_name, "reduceOnly": reduce_only, "stp": stp_name, "nonce": nonce,
            "deadline": deadline,
        }  # fmt: skip
        if order_type == "limit":
            body["postOnly"] = post_only
            if expire_at is not None:
                body["expireAt"] = expire_at
        return struct, body

    def _order(self, request: SignedRequest) -> OrderResult:
        assert request.order_id is not None
        answer = self._call_signed(request)
        return OrderResult.from_json(
            answer, order_id=request.order_id, client_order_id=request.client_order_id
        )

    def _command(self, request: SignedRequest) -> CommandResult:
        return CommandResult.from_json(self._call_signed(request), withdrawal_id=request.withdrawal_id)

    def _call_signed(self, request: SignedRequest) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": request.idempotency_key}
        response = self._call(
            request.method, request.path, content=request.body, headers=headers, request=request
        )
        answer: dict[str, Any] = response.json()
        return answer

    # -- internals: sessions and HTTP ---------------------------------------------------------------

    def _session_token(self) -> str:
        session = self._session
        margin_us = min(60 * SECOND_US, self.session_s * SECOND_US // 4)
        if session is None or session.expires_at_us - self._now_us() < margin_us:
            session = self._open_session()
            self._session = session
        return session.token

    def _open_session(self) -> _Session:
        nonce = self._stamp()[0]
        deadline = self._now_us() + self.session_s * SECOND_US
        struct = td.Session(trader=self.address, nonce=nonce, deadline=deadline)
        body = {"trader": struct.trader, "nonce": nonce, "deadline": deadline}
        body["signature"] = self._signature(struct)
        answer = snake_keys(self._call("POST", "/sessions", json_body=body).json())
        return _Session(token=str(answer["token"]), expires_at_us=int(answer["expires_at"]))

    def _read(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self._session_token()}"}
            try:
                answer: dict[str, Any] = self._call("GET", path, params=params, headers=headers).json()
            except CxptError as error:
                if error.status == 401 and attempt == 0:
                    self._session = None  # the gateway forgot it (e.g. restarted): open another
                    continue
                raise
            return answer
        raise AssertionError("unreachable")

    def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        request: SignedRequest | None = None,
    ) -> httpx.Response:
        """One HTTP exchange, retried (up to `max_retries`) when retrying is safe and may help."""
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        attempt = 0
        while True:
            failure: CxptError
            delay: float | None
            try:
                response = self._http.request(
                    method, self.base_url + path, content=content, params=params, headers=headers
                )
            except httpx.TransportError as error:
                failure = Unreachable(f"{method} {self.base_url}{path}: {error!r}", request=request)
                delay = _backoff(attempt)
            else:
                if response.status_code < 400:
                    return response
                failure = _error(response, request)
                delay = _retry_delay(failure, attempt)
            if delay is None or attempt >= self.max_retries:
                raise failure
            self._sleep(delay)
            attempt += 1


def _code(enum: type[_E], name: str) -> _E:
    try:
        return enum[name]
    except KeyError:
        choices = ", ".join(member.name for member in enum)
        raise ValueError(f"{name!r} is not a {enum.__name__} ({choices})") from None


def _backoff(attempt: int) -> float:
    return float(min(MAX_BACKOFF_S, 0.25 * 2**attempt))


def _retry_delay(error: CxptError, attempt: int) -> float | None:
    """How long to wait before retrying `error`, or None if retrying cannot help."""
    if isinstance(error, RateLimited):
        return error.retry_after_s
    if error.status in _RETRY_STATUSES or error.error == GatewayReject.IDEMPOTENCY_IN_PROGRESS.name:
        return _backoff(attempt)
    return None


def _error(response: httpx.Response, request: SignedRequest | None) -> CxptError:
    """The gateway's refusal as a `CxptError` (whatever the body, even a proxy's HTML)."""
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    status = response.status_code
    code = body.get("code")
    error = str(body.get("error") or f"HTTP_{status}")
    message = str(body.get("message") or body.get("reason") or response.text[:200] or response.reason_phrase)
    fields: dict[str, Any] = {
        "code": int(code) if isinstance(code, int) else 0, "error": error, "message": message, "body": body,
        "request": request,
    }  # fmt: skip
    if status == 429:
        return RateLimited(_retry_after_s(response), **fields)
    return CxptError(status=status, **fields)


def _retry_after_s(response: httpx.Response) -> float:
    """Retry-After in seconds (the gateway sends whole seconds); 1 s when absent or a date."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0
