"""The soak's traffic, faults and bad input, and the tally of what the exchange answered.

Traffic goes through the real doors: signed orders of many kinds from `traders` traders over three
markets (a perpetual, a dated future and a call option on it, the future expiring mid-run), sent
by `CxptClient` with retries — a retry resends the same bytes under the same Idempotency-Key, so a
gateway killed mid-request must still take each order once. Collateral arrives as the
`DepositConfirmed` events the chain watcher writes.

Faults come on a schedule drawn from `seed`: every `kill_every_s` one service is SIGKILLed and
restarted; the broker and the Cassandra node are each killed once, at 40 % and 70 % of the run.
Bad input is mixed in: malformed, oversized and wrongly signed bodies, replayed signatures, and
poison records written straight onto each input topic.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from confluent_kafka import Producer
from eth_account import Account

from services.client.client import CxptClient
from services.client.errors import CxptError
from services.client.ids import uuid7
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.topics import (
    ACCOUNTS_EVENTS,
    MATCHER_COMMANDS,
    ORACLE_PRICES,
    ORDERS_COMMANDS,
    TRADE_LOG,
)
from services.devtools.soak.invariants import Poison
from services.devtools.soak.stack import SERVICES, Kill, Stack

PERP, FUTURE, CALL = "BTC-PERP", "BTC-SOAK", "BTC-SOAK-60000-C"
INDEX_TICKS = 650_000
"""65,000 USDC in the markets' 0.1-USDC ticks: where the simulated BTC-USD index starts."""
CALL_TICKS = 50_000
DEPOSIT_MICRO_USDC = 10_000_000 * 1_000_000
WORKERS = 32
"""Concurrent actions at most: 100/s at ~0.3 s per answer with room for slow seconds."""
POISON_TOPICS = (ORDERS_COMMANDS, MATCHER_COMMANDS, ACCOUNTS_EVENTS, TRADE_LOG, ORACLE_PRICES)
ACTIONS = (
    ("rest", 30), ("cross", 25), ("market_ioc", 8), ("fok", 4), ("post_only", 6), ("reduce_only", 4),
    ("cancel", 12), ("cancel_all", 1), ("malformed", 2), ("oversized", 1), ("bad_signature", 2),
    ("replayed", 2),
)  # fmt: skip


@dataclass
class Tally:
    """What the driver sent and what came back; shared by the worker threads (under `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: set[str] = field(default_factory=set)
    acknowledged: dict[str, int | None] = field(default_factory=dict)
    """Order id → the rejection code answered (None: not rejected)."""
    refused: dict[str, int] = field(default_factory=dict)
    """Order id → the code of the gateway's 4xx (the order must not be in the log)."""
    statuses: Counter[str] = field(default_factory=Counter)
    unanswered: int = 0
    dropped: int = 0
    """Actions not offered because every worker was busy (the exchange was slow to answer)."""
    bad_sent: Counter[str] = field(default_factory=Counter)
    bad_rejected: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    """Answers that must not happen: a 5xx to bad input, a 2xx to a forged or replayed signature."""
    poison: list[Poison] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    resting: dict[str, list[tuple[str, uuid.UUID]]] = field(default_factory=dict)
    """Trader → (market, order id) of orders answered RESTING, candidates for a cancel."""

    def answered(self, order_id: str, status: str, code: int | None) -> None:
        with self.lock:
            self.acknowledged[order_id] = code if status == "REJECTED" else None
            self.statuses[status] += 1


class Traders:
    """`count` funded traders, each with its own client, picked at random by the workers."""

    def __init__(self, stack: Stack, count: int, seed: int) -> None:
        rng = random.Random(seed)
        self.keys = [Account.from_key(rng.randbytes(32)) for _ in range(count)]
        self.clients = [
            CxptClient(stack.gateway_url, key, max_retries=8, timeout=15, deadline_s=120) for key in self.keys
        ]

    def fund(self, bus: Bus) -> None:
        producer = TypedProducer(bus)
        for n, key in enumerate(self.keys):
            trader = key.address.lower()
            event = {
                "event_id": f"dev:soak:{trader}", "trader": trader, "ts_event": time.time_ns() // 1000 + n,
                "body": ("exchange.cxpt.DepositConfirmed", {
                    "amount": DEPOSIT_MICRO_USDC, "chain_id": 0, "tx_hash": f"soak-{trader}", "log_index": 0,
                    "block_number": 0}),
            }  # fmt: skip
            producer.send(Outbound(ACCOUNTS_EVENTS, key=trader, value=event))
        producer.flush()

    def close(self) -> None:
        for client in self.clients:
            client.close()


def list_markets(stack: Stack, expiry_us: int) -> None:
    """The perpetual, the future expiring at `expiry_us` and a call on it, through the admin route."""
    token = jwt.encode(
        {"sub": "soak", "cognito:groups": ["admin"], "exp": int(time.time()) + 3600}, stack.admin_key
    )
    base = {"baseAsset": "BTC", "quotePerTickLot": 100, "tickSizeE9": 100_000_000, "lotSizeE9": 1_000_000,
            "indexSymbol": "BTC-USD"}  # fmt: skip
    definitions = {
        PERP: base | {"kind": "PERPETUAL"},
        FUTURE: base | {"kind": "FUTURE", "expiry": expiry_us},
        CALL: base | {"kind": "OPTION", "expiry": expiry_us, "strike": 600_000, "optionType": "CALL"},
    }
    for market, definition in definitions.items():
        answer = httpx.post(
            f"{stack.gateway_url}/admin/markets",
            json={"action": "create", "market": market, "definition": definition},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if answer.status_code >= 300 and answer.status_code != 409:
            raise RuntimeError(f"listing {market} failed: {answer.status_code} {answer.text}")


class Driver:
    """Offers `rate` actions a second from a pool of workers until `stop` is set."""

    def __init__(self, stack: Stack, traders: Traders, tally: Tally, seed: int) -> None:
        self.stack = stack
        self.traders = traders
        self.tally = tally
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self._names = [name for name, _ in ACTIONS]
        self._weights = [weight for _, weight in ACTIONS]
        self._http = httpx.Client(timeout=15)
        self._bus = Bus(stack.settings)
        # The broker's restarts are the soak's doing: no reconnect noise on the terminal.
        quiet = logging.getLogger("soak.kafka")
        quiet.setLevel(logging.CRITICAL)
        self._raw = Producer(self._bus.client_config(), logger=quiet)
        self.markets_open = [PERP, FUTURE, CALL]

    # -- the open loop ------------------------------------------------------------------------------

    def offer(self, rate: float, stop: threading.Event, on_tick: Callable[[], None]) -> None:
        """Submit actions at `rate`/s to `WORKERS` threads (they wait on the gateway more than on the
        CPU). An action due while `WORKERS` are still busy is dropped and counted, not queued: an
        outage must not pile up a backlog that outlives the run."""
        busy = threading.BoundedSemaphore(WORKERS)

        def run() -> None:
            try:
                self._one()
            finally:
                busy.release()

        with ThreadPoolExecutor(WORKERS, thread_name_prefix="soak") as pool:
            start = time.monotonic()
            n = 0
            while not stop.is_set():
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                    continue
                if busy.acquire(blocking=False):
                    pool.submit(run)
                else:
                    with self.tally.lock:
                        self.tally.dropped += 1
                n += 1
                if n % 20 == 0:
                    on_tick()

    def _draw(self) -> tuple[str, int, int]:
        with self.rng_lock:
            action = self.rng.choices(self._names, self._weights)[0]
            return action, self.rng.randrange(len(self.traders.clients)), self.rng.randrange(1 << 30)

    def _one(self) -> None:
        action, who, salt = self._draw()
        try:
            getattr(self, f"_{action}")(who, salt)
        except Exception as error:  # noqa: BLE001 - a worker must never die; the error is the finding
            with self.tally.lock:
                self.tally.server_errors.append(f"{action}: {error!r}"[:300])

    def _market(self, salt: int) -> str:
        return self.markets_open[salt % len(self.markets_open)]

    def _price(self, market: str, side: str, salt: int, crossing: bool) -> int:
        mid = CALL_TICKS if market == CALL else INDEX_TICKS
        offset = 1 + salt % 40
        if crossing:
            return mid + offset if side == "BUY" else mid - offset
        return mid - 50 - offset if side == "BUY" else mid + 50 + offset

    def _place(self, who: int, market: str, place: Callable[[uuid.UUID], Any]) -> None:
        order_id = uuid7()
        with self.tally.lock:
            self.tally.sent.add(str(order_id))
        try:
            result = place(order_id)
        except CxptError as error:
            if error.error == "MARKET_NOT_ACTIVE" and market in self.markets_open and market != PERP:
                self.markets_open = [m for m in self.markets_open if m != market]  # it expired
            if error.status is not None and 400 <= error.status < 500:
                with self.tally.lock:
                    self.tally.refused[str(order_id)] = error.code
                    self.tally.statuses[f"HTTP {error.status} {error.error}"] += 1
                return
            with self.tally.lock:
                self.tally.unanswered += 1
            return
        self.tally.answered(str(order_id), result.status, result.code)
        if result.status == "RESTING":
            trader = self.traders.keys[who].address.lower()
            with self.tally.lock:
                self.tally.resting.setdefault(trader, []).append((market, order_id))

    def _order(self, who: int, salt: int, *, crossing: bool, **kwargs: Any) -> None:
        client = self.traders.clients[who]
        market = self._market(salt)
        side = "BUY" if salt & 1 else "SELL"
        price = self._price(market, side, salt >> 1, crossing)
        self._place(who, market, lambda oid: client.place_limit(
            market, side, 1 + salt % 3, price, order_id=oid, **kwargs))  # type: ignore[arg-type]  # fmt: skip

    def _rest(self, who: int, salt: int) -> None:
        self._order(who, salt, crossing=False)

    def _cross(self, who: int, salt: int) -> None:
        self._order(who, salt, crossing=True, tif="IOC" if salt % 4 == 0 else "GTC")

    def _post_only(self, who: int, salt: int) -> None:
        self._order(who, salt, crossing=salt % 2 == 0, post_only=True)

    def _reduce_only(self, who: int, salt: int) -> None:
        self._order(who, salt, crossing=True, reduce_only=True, tif="IOC")

    def _fok(self, who: int, salt: int) -> None:
        self._order(who, salt, crossing=True, tif="FOK")

    def _market_ioc(self, who: int, salt: int) -> None:
        client = self.traders.clients[who]
        market = self._market(salt)
        side = "BUY" if salt & 1 else "SELL"
        price = self._price(market, side, 400, crossing=True)
        self._place(who, market, lambda oid: client.place_market(
            market, side, 1, price, tif="IOC", order_id=oid))  # type: ignore[arg-type]  # fmt: skip

    def _cancel(self, who: int, salt: int) -> None:
        trader = self.traders.keys[who].address.lower()
        with self.tally.lock:
            mine = self.tally.resting.get(trader, [])
            target = mine.pop(salt % len(mine)) if mine else None
        if target is None:
            return self._rest(who, salt)
        try:
            self.traders.clients[who].cancel(*target)
        except CxptError as error:
            if error.status is None or error.status >= 500:
                with self.tally.lock:
                    self.tally.unanswered += 1

    def _cancel_all(self, who: int, salt: int) -> None:
        try:
            self.traders.clients[who].cancel_all(self._market(salt))
        except CxptError as error:
            if error.status is None or error.status >= 500:
                with self.tally.lock:
                    self.tally.unanswered += 1

    # -- bad input ----------------------------------------------------------------------------------

    def _bad(self, kind: str, content: bytes, headers: dict[str, str], *, path: str = "/orders") -> None:
        with self.tally.lock:
            self.tally.bad_sent[kind] += 1
        try:
            answer = self._http.post(self.stack.gateway_url + path, content=content, headers=headers)
        except httpx.HTTPError:
            return  # the gateway may be down this second: not an answer at all
        if 400 <= answer.status_code < 500:
            with self.tally.lock:
                self.tally.bad_rejected[kind] += 1
        elif answer.status_code not in (502, 503):
            with self.tally.lock:
                self.tally.server_errors.append(f"{kind}: HTTP {answer.status_code} {answer.text[:120]}")

    def _malformed(self, who: int, salt: int) -> None:
        body = b'{"market": "BTC-PERP", "side": ' + str(salt).encode()
        self._bad(
            "malformed", body, {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        )

    def _oversized(self, who: int, salt: int) -> None:
        body = json.dumps({"market": PERP, "padding": "x" * 40_000}).encode()
        self._bad(
            "oversized", body, {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        )

    def _bad_signature(self, who: int, salt: int) -> None:
        """A well-formed order whose signature is another trader's."""
        body = self._signed_body(who, salt)
        other = self._signed_body((who + 1) % len(self.traders.clients), salt)
        body["signature"] = other["signature"]
        self._bad("bad_signature", json.dumps(body).encode(), _json_headers())

    def _replayed(self, who: int, salt: int) -> None:
        """A signed order sent once, then again under a new Idempotency-Key: the replay is refused."""
        body = json.dumps(self._signed_body(who, salt)).encode()
        order_id = json.loads(body)["orderId"]
        with self.tally.lock:
            self.tally.sent.add(order_id)  # before sending: a lost answer may still mean it went in
        try:
            first = self._http.post(self.stack.gateway_url + "/orders", content=body, headers=_json_headers())
        except httpx.HTTPError:
            return  # the gateway was down or slow: no replay to test
        if first.status_code >= 300:
            return
        status = first.json().get("status", "ACCEPTED")
        self.tally.answered(order_id, status, first.json().get("code"))
        self._bad("replayed", body, _json_headers())

    def _signed_body(self, who: int, salt: int) -> dict[str, Any]:
        """The JSON body of a signed resting order of trader `who` (not sent)."""
        client = self.traders.clients[who]
        struct, body = client._order_body(
            "limit", PERP, "SELL", 1, INDEX_TICKS + 100 + salt % 50, tif="GTC", post_only=False,
            reduce_only=False, client_order_id=None, expire_at=None, stp="CANCEL_TAKER", order_id=uuid7(),
        )  # fmt: skip
        return dict(body) | {"signature": client._signature(struct)}

    def inject_poison(self, n: int) -> Poison:
        """A record no schema reads, straight onto one input topic (round robin): bytes without the
        wire format's header, or with the header of another record's schema."""
        spec = POISON_TOPICS[n % len(POISON_TOPICS)]
        topic = self._bus.topic(spec).name
        header = b"\x00\x00\x00\x00\x07" if n // len(POISON_TOPICS) % 2 else b""
        value = header + b"soak-poison-" + str(n).encode()
        self._raw.produce(topic, key=b"soak-poison", value=value)
        self._raw.flush(30)
        poison = Poison(topic, value)
        with self.tally.lock:
            self.tally.poison.append(poison)
        return poison

    def close(self) -> None:
        self._http.close()


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}


def kill_plan(seconds: float, kill_every_s: float, seed: int) -> list[tuple[float, str]]:
    """(second of the run, what to kill): a service every `kill_every_s` drawn from `seed`, the broker
    at 40 % and the Cassandra node at 70 % of the run."""
    rng = random.Random(seed)
    plan = [(t, rng.choice(SERVICES)) for t in _every(kill_every_s, seconds)]
    plan += [(seconds * 0.4, "kafka"), (seconds * 0.7, "cassandra")]
    return sorted(plan)


def _every(step: float, until: float) -> list[float]:
    return [step * k for k in range(1, int(until / step) + 1) if step * k < until - 5]
