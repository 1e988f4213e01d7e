"""The order gateway over HTTP on the whole real stack: Kafka, risk, matcher, projector, Cassandra.

Two traders, deposits, a signed limit order and a crossing order; the fill shows in `GET /orders`
and `GET /positions` within a second; a replayed request does not create a second order; bad
requests get clear 4xx codes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from httpx2 import Response  # what starlette's TestClient returns

from services.common.bus import Bus, Outbound, TypedProducer
from services.common.codes import GatewayReject, MatcherReject, RiskReject
from services.common.presets import preset
from services.common.settings import Settings
from services.common.stores import cassandra
from services.common.topics import ACCOUNTS_EVENTS
from services.gateway.core import typed_data as td
from services.gateway.core.idempotency import AnswersUnavailable
from services.gateway.stores import CassandraAnswers
from services.gateway.wiring import build_app
from services.projector.service import build as build_projector
from tests.integration.stack import exchange
from tests.kit import deposit_event

ADMIN_KEY = "test-admin-secret-" + "x" * 32
USDC = 1_000_000
PRICE = 650_000  # 65,000.0 USDC in BTC-PERP ticks of 0.1


class Trader:
    """A key, and the signed bodies it sends (what services/client does, spelled out)."""

    def __init__(self, http: TestClient, domain: td.ExchangeDomain, seed: int) -> None:
        self.account = Account.from_key(seed.to_bytes(32, "big"))
        self.address = self.account.address.lower()
        self.http, self.domain = http, domain
        self._nonce = 0
        self._token: str | None = None

    def nonce(self) -> int:
        self._nonce = max(time.time_ns() // 1000, self._nonce + 1)
        return self._nonce

    def signed(self, struct: td.Struct, body: dict[str, Any]) -> dict[str, Any]:
        signature = td.sign(self.domain, struct, self.account.key)
        return body | {"trader": self.address, "nonce": struct.nonce, "deadline": struct.deadline,
                       "signature": "0x" + signature.hex()}  # fmt: skip

    def limit(
        self, side: str, size: int, price: int, *, market: str = "BTC-PERP", valid_s: float = 60
    ) -> dict[str, Any]:
        nonce, order_id = self.nonce(), uuid.uuid4()
        struct = td.Order(
            trader=self.address, market=market, order_id=order_id, client_order_id="",
            side=td.SideCode[side], order_type=td.OrderTypeCode.LIMIT, price=price, size=size,
            time_in_force=td.TimeInForceCode.GTC, post_only=False, reduce_only=False, expire_at=None,
            stp=td.StpCode.CANCEL_TAKER, nonce=nonce, deadline=nonce + int(valid_s * 1_000_000),
        )  # fmt: skip
        body = {"orderType": "limit", "market": market, "orderId": str(order_id), "side": side,
                "price": price, "size": size, "timeInForce": "GTC", "stp": "CANCEL_TAKER"}  # fmt: skip
        return self.signed(struct, body)

    def cancel(self, order_id: str, market: str = "BTC-PERP") -> Response:
        nonce = self.nonce()
        struct = td.Cancel(
            trader=self.address, market=market, order_id=uuid.UUID(order_id), client_order_id=None,
            nonce=nonce, deadline=nonce + 60_000_000,
        )  # fmt: skip
        body = self.signed(struct, {"market": market})
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        answer: Response = self.http.request("DELETE", f"/orders/{order_id}", json=body, headers=headers)
        return answer

    def post_order(self, body: dict[str, Any], key: str | None = None) -> Response:
        answer: Response = self.http.post(
            "/orders", json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex}
        )
        return answer

    def session(self) -> dict[str, str]:
        if self._token is None:
            nonce = self.nonce()
            struct = td.Session(trader=self.address, nonce=nonce, deadline=nonce + 600_000_000)
            answer = self.http.post("/sessions", json=self.signed(struct, {}))
            assert answer.status_code == 201, answer.text
            self._token = answer.json()["token"]
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str) -> Any:
        answer = self.http.get(path, headers=self.session())
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """The test's settings with its own keyspace (the read model must start empty) and an admin key."""
    keyspace = f"gw_{uuid.uuid4().hex[:10]}"
    return settings.model_copy(
        update={"cassandra_keyspace": keyspace, "admin_jwt_key": ADMIN_KEY, "ack_timeout_ms": 5_000}
    )


@pytest.fixture
def http(gateway_settings: Settings, bus: Bus) -> Iterator[TestClient]:
    session = cassandra.connect(gateway_settings)
    cassandra.migrate(session, gateway_settings.cassandra_keyspace, gateway_settings.cassandra_replication)
    projector = build_projector(gateway_settings, ("read-model",))
    with exchange(gateway_settings, projector), TestClient(build_app(gateway_settings)) as client:
        yield client
    session.execute(f"DROP KEYSPACE IF EXISTS {gateway_settings.cassandra_keyspace}")
    session.cluster.shutdown()


def _admin_token(groups: list[str]) -> str:
    claims = {"sub": "ops@cxpt", "cognito:groups": groups, "exp": int(time.time()) + 300}
    return jwt.encode(claims, ADMIN_KEY, algorithm="HS256")


def _list_btc_perp(http: TestClient) -> None:
    d = preset("BTC-PERP")
    body = {"action": "create", "market": "BTC-PERP", "definition": {
        "kind": d.kind.value, "baseAsset": d.base_asset, "quotePerTickLot": d.quote_per_tick_lot,
        "tickSizeE9": d.tick_size_e9, "lotSizeE9": d.lot_size_e9, "indexSymbol": d.index_symbol}}  # fmt: skip
    answer = http.post(
        "/admin/markets", json=body, headers={"Authorization": f"Bearer {_admin_token(['admin'])}"}
    )
    assert answer.status_code == 200, answer.text


def _deposit(settings: Settings, *traders: str) -> None:
    producer = TypedProducer(Bus(settings))
    for n, trader in enumerate(traders, start=1):
        producer.send(
            Outbound(
                ACCOUNTS_EVENTS, key=trader, value=deposit_event(trader=trader, amount=10_000 * USDC, n=n)
            )
        )
    producer.flush()


def _eventually(check: Callable[[], Any], within_s: float) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_first_trade_through_http(http: TestClient, gateway_settings: Settings) -> None:
    # State: BTC-PERP listed by an admin; Alice and Bob hold 10,000 USDC each.
    domain = td.ExchangeDomain(
        chain_id=gateway_settings.chain_id, verifying_contract=gateway_settings.vault_address
    )
    alice, bob = Trader(http, domain, 0xA11CE), Trader(http, domain, 0xB0B)
    _list_btc_perp(http)
    _deposit(gateway_settings, alice.address, bob.address)
    assert _eventually(lambda: alice.get("/balance")["free"] and bob.get("/balance")["free"], 10)

    # Action: Alice rests a signed sell of 3 lots; Bob buys 3 through it.
    rested = alice.post_order(alice.limit("SELL", 3, PRICE))
    assert rested.status_code == 201, rested.text
    assert rested.json()["status"] == "RESTING"
    buy, key = bob.limit("BUY", 3, PRICE), uuid.uuid4().hex
    crossed = bob.post_order(buy, key)
    filled_at = time.monotonic()

    # Expectation: Bob's order filled at once; within a second both see it in the read model.
    assert crossed.status_code == 201, crossed.text
    fill = crossed.json()
    assert (fill["status"], fill["filledQty"], fill["leavesQty"]) == ("FILLED", 3, 0)
    assert uuid.UUID(fill["correlationId"])  # the command's id in every hop's logs and headers
    alice_filled = _eventually(
        lambda: [o for o in alice.get("/orders")["orders"] if o["status"] == "FILLED"], within_s=1.0
    )
    bob_position = _eventually(lambda: bob.get("/positions")["positions"], within_s=1.0)
    assert time.monotonic() - filled_at < 1.0 + 0.2  # the polls themselves take a little
    assert alice_filled and alice_filled[0]["cumQty"] == 3
    assert bob_position[0]["size"] == 3
    # No mark yet (no oracle here): no unrealized PnL; equity counts the position at entry.
    assert (bob_position[0]["markPrice"], bob_position[0]["unrealizedPnl"]) == (None, None)
    balance = bob.get("/balance")
    assert balance["equity"] == sum(balance[k] for k in ("free", "reserved", "withdrawing", "locked"))
    assert balance["marginRatioBps"] == bob_position[0]["basis"] * 10_000 // balance["equity"]

    # The same request again with the same key: the first answer, and no second order.
    replayed = bob.post_order(buy, key)
    assert (replayed.status_code, replayed.json()) == (crossed.status_code, crossed.json())
    time.sleep(0.5)
    assert len(bob.get("/orders")["orders"]) == 1


def test_bad_requests_get_clear_codes(http: TestClient, gateway_settings: Settings) -> None:
    # State: BTC-PERP listed, ETH-PERP listed and paused; Alice funded with a resting sell.
    domain = td.ExchangeDomain(
        chain_id=gateway_settings.chain_id, verifying_contract=gateway_settings.vault_address
    )
    alice, mallory = Trader(http, domain, 0xA11CE), Trader(http, domain, 0xBAD)
    _list_btc_perp(http)
    _deposit(gateway_settings, alice.address)
    assert _eventually(lambda: alice.get("/balance")["free"], 10)
    resting = alice.limit("SELL", 1, PRICE + 1_000)
    answer = alice.post_order(resting)
    assert answer.status_code == 201, answer.text
    admin = {"Authorization": f"Bearer {_admin_token(['admin'])}"}
    paused = http.post("/admin/markets", json={"action": "pause", "market": "BTC-PERP"}, headers=admin)
    assert paused.status_code == 200, paused.text
    resumed_later = {"action": "resume", "market": "BTC-PERP"}

    def code(answer: Response) -> tuple[int, int]:
        return answer.status_code, answer.json()["code"]

    # Action / Expectation: each bad request is refused with its status and stable code.
    # A paused market takes no orders (the gateway's market cache refreshes every second).
    assert _eventually(lambda: code(alice.post_order(alice.limit("BUY", 1, PRICE)))[1] == 1051, 3)
    assert http.post("/admin/markets", json=resumed_later, headers=admin).status_code == 200
    assert _eventually(lambda: alice.post_order(alice.limit("BUY", 1, PRICE - 1)).status_code == 201, 3)
    # Wrong signature: Mallory signs an order that names Alice.
    assert code(alice.post_order(mallory.limit("BUY", 1, PRICE) | {"trader": alice.address})) == (401, 1002)
    # Wrong chain id: signed for mainnet.
    mainnet = Trader(
        http, td.ExchangeDomain(chain_id=1, verifying_contract=domain.verifying_contract), 0xA11CE
    )
    assert code(alice.post_order(mainnet.limit("BUY", 1, PRICE))) == (401, GatewayReject.SIGNER_MISMATCH)
    # Expired: the signature's deadline has passed.
    assert code(alice.post_order(alice.limit("BUY", 1, PRICE, valid_s=-1))) == (
        400,
        GatewayReject.SIGNATURE_EXPIRED,
    )
    # Replayed nonce under a fresh idempotency key: the same signed body a second time.
    assert code(alice.post_order(resting)) == (409, GatewayReject.NONCE_REUSED)
    # Unknown market (signed for it, so the signature holds).
    assert code(alice.post_order(alice.limit("BUY", 1, PRICE, market="NOPE-PERP"))) == (422, 1050)
    # Not enough collateral: risk refuses, the gateway says why.
    assert code(alice.post_order(alice.limit("BUY", 1_000_000, PRICE))) == (
        422,
        RiskReject.INSUFFICIENT_COLLATERAL,
    )
    # Another trader's order id: Mallory cannot cancel Alice's order.
    assert code(mallory.cancel(resting["orderId"])) in {
        (404, RiskReject.UNKNOWN_ORDER),
        (404, MatcherReject.UNKNOWN_ORDER),
    }
    # Oversized and malformed bodies; no idempotency key.
    huge = b'{"pad": "' + b"x" * 20_000 + b'"}'
    headers = {"Idempotency-Key": "k", "Content-Type": "application/json"}
    assert code(http.post("/orders", content=huge, headers=headers)) == (413, GatewayReject.BODY_TOO_LARGE)
    assert code(http.post("/orders", json={"orderType": "limit"}, headers=headers)) == (400, 1030)
    assert code(http.post("/orders", json=alice.limit("BUY", 1, PRICE))) == (400, 1030)
    # Reads need a session; admin routes need the admin group.
    assert code(http.get("/orders")) == (401, GatewayReject.UNAUTHENTICATED)
    not_admin = {"Authorization": f"Bearer {_admin_token(['traders'])}"}
    pause = {"action": "pause", "market": "BTC-PERP"}
    assert code(http.post("/admin/markets", json=pause, headers=not_admin)) == (403, GatewayReject.FORBIDDEN)


def test_a_batch_of_orders_is_placed_and_answered_order_by_order(
    http: TestClient, gateway_settings: Settings
) -> None:
    # State: BTC-PERP listed; Alice and Bob hold 10,000 USDC each.
    domain = td.ExchangeDomain(
        chain_id=gateway_settings.chain_id, verifying_contract=gateway_settings.vault_address
    )
    alice, bob, mallory = (
        Trader(http, domain, 0xA11CE),
        Trader(http, domain, 0xB0B),
        Trader(http, domain, 0xBAD),
    )
    _list_btc_perp(http)
    _deposit(gateway_settings, alice.address, bob.address)
    assert _eventually(lambda: alice.get("/balance")["free"] and bob.get("/balance")["free"], 10)

    def batch(orders: list[dict[str, Any]], key: str | None = None) -> Response:
        answer: Response = http.post(
            "/orders/batch", json={"orders": orders}, headers={"Idempotency-Key": key or uuid.uuid4().hex}
        )
        return answer

    # Action: Alice quotes three sells in one request, plus one whose price changed after signing
    # and one for a market that does not exist.
    quotes = [alice.limit("SELL", 1, PRICE + i) for i in range(3)]
    tampered = alice.limit("SELL", 1, PRICE + 9) | {"price": PRICE + 10}
    unlisted = alice.limit("SELL", 1, PRICE, market="NOPE-PERP")
    answer = batch([*quotes, tampered, unlisted])
    # Expectation: one result per order, in order: three resting, the other two refused alone.
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["orderId"], r["httpStatus"], r["status"]) for r in results] == [
        *((q["orderId"], 201, "RESTING") for q in quotes),
        (tampered["orderId"], 401, "REJECTED"),
        (unlisted["orderId"], 422, "REJECTED"),
    ]
    assert [r["code"] for r in results[3:]] == [GatewayReject.SIGNER_MISMATCH, GatewayReject.UNKNOWN_MARKET]

    # Action: Bob lifts two of the quotes in a batch; then sends the same batch again, same key.
    lift, key = [bob.limit("BUY", 1, PRICE), bob.limit("BUY", 1, PRICE + 1)], uuid.uuid4().hex
    lifted = batch(lift, key)
    # Expectation: both filled; the replay is the first answer, and nothing traded twice.
    assert [(r["httpStatus"], r["status"], r["filledQty"]) for r in lifted.json()["results"]] == [
        (201, "FILLED", 1),
        (201, "FILLED", 1),
    ]
    replayed = batch(lift, key)
    assert (replayed.status_code, replayed.json()) == (lifted.status_code, lifted.json())
    position = _eventually(lambda: bob.get("/positions")["positions"], within_s=2.0)
    assert position[0]["size"] == 2

    def code(answer: Response) -> tuple[int, int]:
        return answer.status_code, answer.json()["code"]

    # Bad batches are refused whole: two traders, a repeated nonce, too many orders, none signed right.
    assert code(batch([alice.limit("SELL", 1, PRICE + 5), bob.limit("BUY", 1, PRICE)])) == (400, 1030)
    twice = alice.limit("SELL", 1, PRICE + 5)
    assert code(batch([twice, twice | {"orderId": str(uuid.uuid4())}])) == (400, 1030)
    assert code(batch([alice.limit("SELL", 1, PRICE + 5 + i) for i in range(21)])) == (400, 1030)
    forged = [mallory.limit("BUY", 1, PRICE) | {"trader": alice.address}]
    assert code(batch(forged)) == (401, GatewayReject.SIGNER_MISMATCH)


def test_a_retry_on_another_replica_gets_the_first_answer(
    http: TestClient, gateway_settings: Settings
) -> None:
    # State: BTC-PERP listed; Alice rests a sell; Bob's crossing buy and an order too big for his
    # money were answered by this replica (A), and the answers reached Cassandra.
    domain = td.ExchangeDomain(
        chain_id=gateway_settings.chain_id, verifying_contract=gateway_settings.vault_address
    )
    alice, bob = Trader(http, domain, 0xA11CE), Trader(http, domain, 0xB0B)
    _list_btc_perp(http)
    _deposit(gateway_settings, alice.address, bob.address)
    assert _eventually(lambda: alice.get("/balance")["free"] and bob.get("/balance")["free"], 10)
    assert alice.post_order(alice.limit("SELL", 2, PRICE), "sell-1").status_code == 201
    buy, too_big = bob.limit("BUY", 2, PRICE), bob.limit("BUY", 1_000_000, PRICE)
    first = {key: bob.post_order(body, key) for key, body in (("buy-1", buy), ("big-1", too_big))}
    assert [a.status_code for a in first.values()] == [201, 422]
    session = cassandra.connect(gateway_settings)
    table = f"{gateway_settings.cassandra_keyspace}.gateway_idempotency"
    stored = f"SELECT body FROM {table} WHERE trader = %s AND idempotency_key = %s"
    assert _eventually(lambda: all(session.execute(stored, (bob.address, k)).one() for k in first), 5)
    session.cluster.shutdown()

    # Action: the same requests, same keys, reach replica B, which has never seen the keys.
    with TestClient(build_app(gateway_settings)) as replica_b:
        bob_on_b = Trader(replica_b, domain, 0xB0B)
        retried = {key: bob_on_b.post_order(body, key) for key, body in (("buy-1", buy), ("big-1", too_big))}
        # ...and a new signed order reusing a key only A has seen runs there as what it is.
        fresh = Trader(replica_b, domain, 0xA11CE).post_order(alice.limit("SELL", 1, PRICE + 100), "sell-1")

    # Expectation: B answers each retry as A did, byte for byte (risk refused the spent nonces and
    # B replayed the stored answers); nothing traded twice.
    assert [(r.status_code, r.content) for r in retried.values()] == [
        (a.status_code, a.content) for a in first.values()
    ]
    assert (fresh.status_code, fresh.json().get("status")) == (201, "RESTING"), fresh.text
    filled = _eventually(lambda: [o for o in bob.get("/orders")["orders"] if o["status"] == "FILLED"], 2)
    assert len(filled) == 1 and filled[0]["cumQty"] == 2


def test_answers_that_cannot_be_read_say_so_instead_of_guessing(gateway_settings: Settings) -> None:
    # State: the answers store on a real node, then its connection gone (Cassandra down).
    session = cassandra.connect(gateway_settings)
    cassandra.migrate(session, gateway_settings.cassandra_keyspace, gateway_settings.cassandra_replication)
    answers = CassandraAnswers(session, gateway_settings.cassandra_keyspace)
    session.cluster.shutdown()

    # Action / Expectation: a read is AnswersUnavailable (the gateway answers 503 "retry as is"),
    # not a driver error that would become a 500.
    with pytest.raises(AnswersUnavailable):
        answers.get("0x" + "a" * 40, "some-key")
    answers.close()
