"""The client against the real gateway app (fakes only behind its ports): what the client signs,
the gateway verifies; retries replay by Idempotency-Key and never run a command twice."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.client import CxptClient, CxptError, OrderResult, RateLimited, Unreachable
from services.client.client import _Session
from services.client.ids import uuid7_unix_ms
from services.common.codes import GatewayReject, RiskReject
from services.common.records import (
    CancelAllOrders,
    CancelOrder,
    OrderType,
    PlaceOrder,
    RequestWithdrawal,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TraderCommand,
)
from services.gateway.core.typed_data import ExchangeDomain
from services.gateway.outcomes import PENDING, OrderStatus, Outcome
from tests.unit.client.conftest import GatewayClock
from tests.unit.client.fakes import GATEWAY_URL, Exchange, settings
from tests.unit.gateway.kit import ALICE, ALICE_KEY, ANVIL_CHAIN_ID, BOB, BOB_KEY, VAULT_ON_ANVIL

MINUTE_S = 60


def _posts(exchange: Exchange, path: str) -> list[httpx.Request]:
    return [r for r in exchange.transport.delivered if r.url.path == path]


# -- what is signed is what the gateway verifies and sends on ----------------------------------------


def test_limit_order_reaches_risk_as_signed(exchange: Exchange, client: CxptClient) -> None:
    # Action.
    placed = client.place_limit("BTC-PERP", "buy", 3, 650_005, post_only=True, client_order_id="c1")

    # Expectation: the gateway verified Alice's signature and sent exactly her order on.
    assert placed == OrderResult(placed.order_id, "c1", "RESTING", leaves_qty=3)
    (command,) = exchange.sender.sent
    assert command.trader == ALICE
    assert command.body == PlaceOrder(
        market="BTC-PERP", order_id=str(placed.order_id), client_order_id="c1", side=Side.BUY,
        order_type=OrderType.LIMIT, price=650_005, size=3, time_in_force=TimeInForce.GTC, post_only=True,
        reduce_only=False, expire_at=None, stp=SelfTradePrevention.CANCEL_TAKER,
        nonce=command.body.nonce, signature=command.body.signature,
    )  # fmt: skip
    assert placed.order_id.version == 7
    assert abs(uuid7_unix_ms(placed.order_id) - time.time() * 1000) < 60_000


def test_gtt_limit_order_carries_its_expiry(exchange: Exchange, client: CxptClient) -> None:
    expire_at = time.time_ns() // 1_000 + 3_600_000_000

    client.place_limit("ETH-PERP", "sell", 2, 300_000, tif="GTT", expire_at=expire_at, stp="CANCEL_BOTH")

    body = exchange.sender.placed()[0]
    assert (body.time_in_force, body.expire_at, body.stp) == (
        TimeInForce.GTT,
        expire_at,
        SelfTradePrevention.CANCEL_BOTH,
    )


def test_client_order_id_defaults_to_the_order_id_so_two_orders_can_rest(
    exchange: Exchange, client: CxptClient
) -> None:
    # The matcher keeps client order ids unique among open orders, "" included.
    first = client.place_limit("BTC-PERP", "buy", 1, 650_000)
    second = client.place_limit("BTC-PERP", "buy", 1, 649_999)

    assert first.client_order_id == str(first.order_id)
    assert [o.client_order_id for o in exchange.sender.placed()] == [
        str(first.order_id),
        str(second.order_id),
    ]


def test_a_batch_of_quotes_is_signed_order_by_order_and_answered_in_order(
    exchange: Exchange, client: CxptClient
) -> None:
    # State: risk refuses the bid above 650,000 ticks (not enough collateral), takes the rest.
    def decide(command: TraderCommand) -> Outcome:
        order = command.body
        assert isinstance(order, PlaceOrder)
        if order.price > 650_000 and order.side is Side.BUY:
            return Outcome(OrderStatus.REJECTED, code=int(RiskReject.INSUFFICIENT_COLLATERAL), reason="short")
        return Outcome(OrderStatus.RESTING, leaves_qty=order.size)

    exchange.sender.decide = decide
    quotes = [("buy", 2, 649_990), ("sell", 2, 650_010), ("buy", 1, 650_001)]

    # Action: one request for the three quotes.
    placed = client.place_limits("BTC-PERP", quotes, post_only=True)  # type: ignore[arg-type]

    # Expectation: one call; each order signed on its own, sent as signed; answers in order.
    assert len(_posts(exchange, "/orders/batch")) == 1
    assert [(p.status, p.leaves_qty, p.code) for p in placed] == [
        ("RESTING", 2, None),
        ("RESTING", 2, None),
        ("REJECTED", 0, RiskReject.INSUFFICIENT_COLLATERAL),
    ]
    sent = {c.body.order_id: c.body for c in exchange.sender.sent if isinstance(c.body, PlaceOrder)}
    for quote, result in zip(quotes, placed, strict=True):
        body = sent[str(result.order_id)]
        assert (body.side.value.lower(), body.size, body.price, body.post_only) == (*quote, True)
    assert len({body.nonce for body in sent.values()}) == 3
    with pytest.raises(ValueError, match="1 to 20 orders"):
        client.place_limits("BTC-PERP", [])


def test_market_order_reaches_risk_as_signed(exchange: Exchange, client: CxptClient) -> None:
    placed = client.place_market("BTC-PERP", "SELL", 5, 640_000, tif="FOK", reduce_only=True)

    body = exchange.sender.placed()[0]
    assert placed.status == "RESTING"
    assert (body.order_type, body.side, body.price, body.size, body.time_in_force, body.reduce_only) == (
        OrderType.MARKET, Side.SELL, 640_000, 5, TimeInForce.FOK, True,
    )  # fmt: skip
    assert body.post_only is False


def test_cancel_signs_the_order_id_of_the_path(exchange: Exchange, client: CxptClient) -> None:
    order_id = UUID("01a205b3-d000-7000-8000-000000000001")

    result = client.cancel("BTC-PERP", str(order_id))

    assert (result.status, result.cancelled_qty) == ("ACCEPTED", 3)
    body = exchange.sender.sent[0].body
    assert isinstance(body, CancelOrder)
    assert (body.market, body.order_id, body.client_order_id) == ("BTC-PERP", str(order_id), None)


def test_cancel_by_client_order_id_signs_that_id(exchange: Exchange, client: CxptClient) -> None:
    # Action: cancel by an id with characters a path must escape.
    result = client.cancel_by_client_id("BTC-PERP", "quote 7/bid")

    # Expectation: the gateway verified the signed Cancel and sent the client id, no venue id.
    assert result.status == "ACCEPTED"
    body = exchange.sender.sent[0].body
    assert isinstance(body, CancelOrder)
    assert (body.market, body.order_id, body.client_order_id) == ("BTC-PERP", None, "quote 7/bid")


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ((None, None), (None, None)),
        (("BTC-PERP", None), ("BTC-PERP", None)),
        (("ETH-PERP", "sell"), ("ETH-PERP", Side.SELL)),
    ],
)
def test_cancel_all_signs_its_optional_scope(
    exchange: Exchange, client: CxptClient, scope: tuple[Any, Any], expected: tuple[str | None, Side | None]
) -> None:
    client.cancel_all(*scope)

    body = exchange.sender.sent[0].body
    assert isinstance(body, CancelAllOrders)
    assert (body.market, body.side) == expected


def test_withdrawal_is_signed_with_a_uuid7_and_its_deadline(exchange: Exchange, client: CxptClient) -> None:
    result = client.withdraw(250_000_000, as_cxpt=True)

    body = exchange.sender.sent[0].body
    assert isinstance(body, RequestWithdrawal)
    assert result.withdrawal_id is not None and result.withdrawal_id.version == 7
    assert (body.withdrawal_id, body.amount, body.as_cxpt) == (str(result.withdrawal_id), 250_000_000, True)
    assert body.expire_at - body.nonce == MINUTE_S * 1_000_000  # the signed deadline: nonce + 60 s


def test_a_key_signing_under_another_domain_is_refused(exchange: Exchange) -> None:
    mainnet = ExchangeDomain(chain_id=1, verifying_contract=VAULT_ON_ANVIL)
    lost = CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http(), domain=mainnet)
    with pytest.raises(CxptError) as refused:
        lost.place_limit("BTC-PERP", "buy", 1, 650_000)

    assert (refused.value.status, refused.value.error) == (401, "SIGNER_MISMATCH")
    assert refused.value.code == GatewayReject.SIGNER_MISMATCH
    assert exchange.sender.sent == []


def test_the_domain_is_fetched_once(exchange: Exchange, client: CxptClient) -> None:
    for price in (650_000, 650_001, 650_002):
        client.place_limit("BTC-PERP", "buy", 1, price)

    assert len(_posts(exchange, "/info")) == 1
    assert client.domain == ExchangeDomain(chain_id=ANVIL_CHAIN_ID, verifying_contract=VAULT_ON_ANVIL)


# -- nonces and clocks ---------------------------------------------------------------------------------


def test_nonces_strictly_increase_when_the_clock_stands_still(
    exchange: Exchange, client: CxptClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # State: every clock, the gateway's included, frozen at one microsecond.
    frozen = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: frozen)

    for _ in range(5):
        client.place_limit("BTC-PERP", "buy", 1, 650_000)

    nonces = [c.body.nonce for c in exchange.sender.sent]
    assert nonces == list(range(nonces[0], nonces[0] + 5))


def test_nonces_are_unique_across_threads(exchange: Exchange, client: CxptClient) -> None:
    def trade() -> None:
        for _ in range(5):
            client.place_limit("BTC-PERP", "buy", 1, 650_000)

    threads = [threading.Thread(target=trade) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    nonces = [c.body.nonce for c in exchange.sender.sent]
    assert len(nonces) == len(set(nonces)) == 30


def test_a_client_whose_clock_is_behind_signs_fresh_deadlines(
    exchange: Exchange, gateway_clock: GatewayClock
) -> None:
    # State: the gateway's clock runs 10 minutes ahead of this machine's.
    gateway_clock.advance(10 * MINUTE_S)

    synced = CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http())
    unsynced = CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http(), sync_clock=False)

    assert synced.place_limit("BTC-PERP", "buy", 1, 650_000).status == "RESTING"
    with pytest.raises(CxptError) as refused:
        unsynced.place_limit("BTC-PERP", "buy", 1, 650_000)

    assert (refused.value.status, refused.value.error) == (400, "SIGNATURE_EXPIRED")
    assert "clock" in refused.value.hint


# -- retries: same key, same body, one command ---------------------------------------------------------


def test_a_retry_after_a_lost_answer_replays_it(exchange: Exchange) -> None:
    # State: the gateway acts on the first attempt, but its answer is lost on the way back.
    exchange.transport.drop_answers["/orders"] = 1
    slept: list[float] = []

    with CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http(), max_retries=2, sleep=slept.append) as c:
        placed = c.place_limit("BTC-PERP", "buy", 3, 650_005)

    # Expectation: one command ran; the retry got the first answer, from the idempotency store.
    assert placed.status == "RESTING"
    assert len(exchange.sender.sent) == 1
    first, retry = _posts(exchange, "/orders")
    assert first.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"]
    assert first.content == retry.content
    assert slept == [0.25]


def test_a_lost_answer_without_retries_can_be_resent_by_hand(exchange: Exchange, client: CxptClient) -> None:
    exchange.transport.drop_answers["/orders"] = 1

    with pytest.raises(Unreachable) as lost:
        client.place_limit("BTC-PERP", "buy", 3, 650_005)
    assert lost.value.request is not None and "resend" in lost.value.hint
    resent = client.resend(lost.value.request)

    assert isinstance(resent, OrderResult) and resent.status == "RESTING"
    assert resent.order_id == lost.value.request.order_id
    assert len(exchange.sender.sent) == 1


def test_a_resend_after_the_deadline_still_gets_the_first_answer(
    exchange: Exchange, client: CxptClient, gateway_clock: GatewayClock
) -> None:
    exchange.transport.drop_answers["/vault/withdraw"] = 1
    with pytest.raises(Unreachable) as lost:
        client.withdraw(1_000_000)
    assert lost.value.request is not None

    gateway_clock.advance(2 * MINUTE_S)  # the signature's deadline has passed
    resent = client.resend(lost.value.request)

    assert resent.status == "ACCEPTED"
    assert len(exchange.sender.sent) == 1


def test_a_request_lost_on_the_way_is_sent_by_the_retry(exchange: Exchange) -> None:
    exchange.transport.drop_requests["/orders"] = 1

    with CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http(), max_retries=1, sleep=lambda _: None) as c:
        assert c.cancel_all().status == "ACCEPTED"

    assert len(exchange.sender.sent) == 1


def test_retries_are_off_by_default(exchange: Exchange, client: CxptClient) -> None:
    exchange.transport.drop_requests["/orders"] = 1

    with pytest.raises(Unreachable):
        client.cancel_all()

    assert exchange.sender.sent == []


# -- rate limits ------------------------------------------------------------------------------------


def _rate_limited_exchange() -> Exchange:
    return Exchange(settings=settings(rate_limit_burst=2, rate_limit_per_s=1))


def test_429_raises_rate_limited_with_retry_after(gateway_clock: GatewayClock) -> None:
    exchange = _rate_limited_exchange()
    with CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http()) as c:
        c.place_limit("BTC-PERP", "buy", 1, 650_000)  # /info and this take the 2 tokens per IP
        with pytest.raises(RateLimited) as limited:
            c.place_limit("BTC-PERP", "buy", 1, 650_000)

    error = limited.value
    assert (error.status, error.code, error.error, error.retry_after_s) == (429, 1020, "RATE_LIMITED", 1.0)


def test_429_is_retried_after_retry_after_when_asked(gateway_clock: GatewayClock) -> None:
    exchange = _rate_limited_exchange()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        gateway_clock.advance(seconds)

    with CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http(), max_retries=3, sleep=sleep) as c:
        for _ in range(3):
            c.place_limit("BTC-PERP", "buy", 1, 650_000)

    assert len(exchange.sender.sent) == 3
    assert waits and set(waits) == {1.0}


# -- decisions: refusals raise, PENDING does not --------------------------------------------------------


def test_a_risk_refusal_raises_with_its_code(exchange: Exchange, client: CxptClient) -> None:
    exchange.sender.decide = lambda _: Outcome(
        OrderStatus.REJECTED, code=int(RiskReject.INSUFFICIENT_COLLATERAL), reason="needs 195 USDC, has 10"
    )

    with pytest.raises(CxptError) as refused:
        client.place_limit("BTC-PERP", "buy", 3, 650_005)

    error = refused.value
    assert (error.status, error.code, error.error) == (422, 2001, "INSUFFICIENT_COLLATERAL")
    assert error.message == "needs 195 USDC, has 10"
    assert error.body["status"] == "REJECTED" and error.request is not None
    assert error.body["orderId"] == str(error.request.order_id)
    assert "collateral" in error.hint


def test_pending_is_a_result_not_an_error(exchange: Exchange, client: CxptClient) -> None:
    exchange.sender.decide = lambda _: PENDING

    placed = client.place_limit("BTC-PERP", "buy", 1, 650_000)
    cancelled = client.cancel("BTC-PERP", placed.order_id)

    assert placed.pending and placed.status == "PENDING"
    assert cancelled.pending


def test_unknown_market_is_refused_by_the_gateway(exchange: Exchange, client: CxptClient) -> None:
    with pytest.raises(CxptError) as refused:
        client.place_limit("DOGE-PERP", "buy", 1, 1)

    assert (refused.value.status, refused.value.error, refused.value.code) == (422, "UNKNOWN_MARKET", 1050)


def test_local_mistakes_raise_before_anything_is_sent(exchange: Exchange, client: CxptClient) -> None:
    with pytest.raises(ValueError, match="SideCode"):
        client.place_limit("BTC-PERP", "hold", 1, 650_000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="price"):  # ticks, not a price
        client.place_limit("BTC-PERP", "buy", 1, "65000.5")  # type: ignore[arg-type]

    assert _posts(exchange, "/orders") == []


def test_a_client_without_a_key_reads_public_routes_only(exchange: Exchange) -> None:
    with CxptClient(GATEWAY_URL, http=exchange.http()) as anonymous:
        assert [m.market for m in anonymous.markets()] == ["BTC-PERP", "ETH-PERP"]
        with pytest.raises(ValueError, match="no private key"):
            anonymous.cancel_all()


def test_a_proxy_error_page_still_raises_cxpt_error() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    behind_a_proxy = CxptClient(GATEWAY_URL, http=httpx.Client(transport=httpx.MockTransport(proxy)))
    with pytest.raises(CxptError) as failed:
        behind_a_proxy.info()

    assert (failed.value.status, failed.value.code, failed.value.error) == (502, 0, "HTTP_502")
    assert "Bad Gateway" in failed.value.message


def test_a_gateway_that_is_down_raises_unreachable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    lonely = CxptClient(GATEWAY_URL, http=httpx.Client(transport=httpx.MockTransport(down)))
    with pytest.raises(Unreachable) as failed:
        lonely.markets()

    assert failed.value.status is None and failed.value.request is None


# -- markets and reads ------------------------------------------------------------------------------


def test_markets_give_the_grid(client: CxptClient) -> None:
    btc = client.market("BTC-PERP")

    assert (btc.tick_size_e9, btc.lot_size_e9, btc.status, btc.kind) == (
        100_000_000,
        1_000_000,
        "ACTIVE",
        "PERPETUAL",
    )
    assert (btc.ticks("65000.5"), btc.lots("0.003")) == (650_005, 3)
    assert (str(btc.price(650_005)), str(btc.size(3))) == ("65000.5", "0.003")


def test_an_unknown_market_symbol_raises(client: CxptClient) -> None:
    with pytest.raises(CxptError) as unknown:
        client.market("DOGE-PERP")

    assert (unknown.value.error, unknown.value.status) == ("UNKNOWN_MARKET", None)
    assert "BTC-PERP" in unknown.value.message


def test_reads_open_one_session_and_show_only_the_traders_own(exchange: Exchange, client: CxptClient) -> None:
    exchange.reads.balances[ALICE] = {
        "trader": ALICE,
        "free": 10,
        "reserved": 2,
        "withdrawing": 0,
        "locked": 1,
    }
    exchange.reads.position_rows += [
        {"trader": ALICE, "market": "BTC-PERP", "size": -3, "basis": 195_001_500, "realized_pnl": 5,
         "collateral": 1_000_000, "last_px": 650_000},
        {"trader": BOB, "market": "BTC-PERP", "size": 3, "basis": 195_000_000},
    ]  # fmt: skip

    balance = client.balance()
    positions = client.positions()

    assert (balance.free, balance.reserved, balance.locked) == (10, 2, 1)
    assert [(p.market, p.size, p.basis, p.realized_pnl) for p in positions] == [
        ("BTC-PERP", -3, 195_001_500, 5)
    ]
    assert str(positions[0].entry_price(client.market("BTC-PERP"))) == "65000.5"
    assert len(_posts(exchange, "/sessions")) == 1


def test_the_read_models_nested_balance_is_read_too(exchange: Exchange, client: CxptClient) -> None:
    exchange.reads.balances[ALICE] = {
        "usdc": {"trader": ALICE, "asset": "USDC", "free": 7, "reserved": 1, "withdrawing": 2, "locked": 3},
        "holdings": [{"trader": ALICE, "asset": "BTC-SPOT", "free": 4, "reserved": 1}],
    }

    balance = client.balance()

    assert (balance.trader, balance.free, balance.reserved, balance.withdrawing, balance.locked) == (
        ALICE,
        7,
        1,
        2,
        3,
    )
    assert [(h.asset, h.free, h.reserved) for h in balance.holdings] == [("BTC-SPOT", 4, 1)]


def test_a_trader_without_a_balance_reads_zeros(exchange: Exchange) -> None:
    with CxptClient(GATEWAY_URL, BOB_KEY, http=exchange.http()) as bob:
        balance = bob.balance()

    assert (balance.trader, balance.free, balance.reserved) == (BOB, 0, 0)


def test_a_session_about_to_expire_is_renewed(exchange: Exchange, client: CxptClient) -> None:
    client.balance()
    token = client._session.token if client._session else ""
    client._session = _Session(token, expires_at_us=client._now_us() + 1_000_000)  # 1 s left

    client.balance()

    assert len(_posts(exchange, "/sessions")) == 2


def test_a_session_the_gateway_forgot_is_reopened_once(exchange: Exchange, client: CxptClient) -> None:
    client._session = _Session("forgotten", expires_at_us=client._now_us() + 3_600_000_000)

    assert client.balance().trader == ALICE

    assert len(_posts(exchange, "/sessions")) == 1


def _order_rows(trader: str, count: int, market: str = "BTC-PERP") -> list[dict[str, Any]]:
    return [
        {"trader": trader, "market": market, "order_id": f"00000000-0000-7000-8000-{n:012x}", "side": "BUY",
         "price": 650_000 + n, "size": 1, "cum_qty": 0, "leaves_qty": 1, "status": "RESTING"}
        for n in range(count)
    ]  # fmt: skip


def test_iter_orders_follows_the_cursor_to_the_end(exchange: Exchange, client: CxptClient) -> None:
    exchange.reads.order_rows += (
        _order_rows(ALICE, 250) + _order_rows(BOB, 7) + _order_rows(ALICE, 4, "ETH-PERP")
    )

    every = list(client.iter_orders(market="BTC-PERP", page_size=100))

    assert [o.price for o in every] == [650_000 + n for n in range(250)]
    assert [q["cursor"] for q in exchange.reads.order_queries] == [None, "100", "200"]
    assert {q["market"] for q in exchange.reads.order_queries} == {"BTC-PERP"}


def test_orders_gives_one_page_and_its_cursor(exchange: Exchange, client: CxptClient) -> None:
    exchange.reads.order_rows += _order_rows(ALICE, 3)

    page = client.orders(limit=2)
    rest = client.orders(limit=2, cursor=page.next_cursor)

    assert [len(page.orders), page.next_cursor, len(rest.orders), rest.next_cursor] == [2, "2", 1, None]
    assert page.orders[0].raw["order_id"] == page.orders[0].order_id
    assert (page.orders[0].filled_qty, page.orders[0].leaves_qty, page.orders[0].status) == (0, 1, "RESTING")


def test_bodies_are_the_gateways_camel_case(exchange: Exchange, client: CxptClient) -> None:
    client.place_limit("BTC-PERP", "buy", 1, 650_000)

    (request,) = _posts(exchange, "/orders")
    assert set(json.loads(request.content)) == {
        "orderType", "trader", "market", "orderId", "clientOrderId", "side", "price", "size", "timeInForce",
        "reduceOnly", "stp", "nonce", "deadline", "postOnly", "signature",
    }  # fmt: skip
