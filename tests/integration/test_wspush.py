"""ws-push on the running stack: real Kafka and Cassandra, the matcher and risk in threads, ws-push
under uvicorn in a thread, and real WebSocket clients (the `websockets` package).

Orders go in as TraderCommands on orders.commands (as the gateway sends them); traders log in
with session tokens made by the gateway's own `Sessions`, with the secret both services share.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from cassandra.cluster import Session
from msgspec.structs import replace
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.records import MatcherCommand, PlaceOrder, Side, TraderCommand
from services.common.settings import Settings
from services.common.topics import ACCOUNTS_EVENTS, MATCHER_COMMANDS, ORDERS_COMMANDS
from services.gateway.auth import Sessions
from services.matcher.service import MatcherService
from services.wspush.registry import CassandraRegistry
from services.wspush.service import WsPushService, uvicorn_config
from tests.integration.stack import exchange, running
from tests.kit import ALICE, BOB, TS_2026_11_23, Commands, deposit_event, limit_order, order_id

pytestmark = pytest.mark.integration

USDC = 1_000_000
PRICE = 650_000
"""65,000.0 USDC in BTC-PERP ticks."""
SECRET = "ws-push-test-session-secret"
REPLICA = "test-replica"
Message = dict[str, Any]


# -- plumbing -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def wspush(settings: Settings, cassandra_session: Session | None = None) -> Iterator[WsPushService]:
    """ws-push on `settings`' topics, served by uvicorn in a thread, ready to accept."""
    registry = (
        None
        if cassandra_session is None
        else CassandraRegistry(cassandra_session, settings.cassandra_keyspace)
    )
    service = WsPushService(settings, bus=Bus(settings), registry=registry, replica_id=REPLICA)
    server = uvicorn.Server(uvicorn_config(service))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (server.started and service.ready.is_set()):
            assert time.monotonic() < deadline, "ws-push did not start"
            time.sleep(0.05)
        yield service
    finally:
        server.should_exit = True
        thread.join(15)


class Client:
    """A WebSocket client that keeps every pushed message by channel and every reply in order."""

    def __init__(self, settings: Settings, token: str | None = None, **options: Any) -> None:
        query = f"?token={token}" if token else ""
        url = f"ws://127.0.0.1:{settings.wspush_port}/ws{query}"
        self.ws: ClientConnection = connect(url, **options).__enter__()  # closed by the test
        self.pushed: dict[str, list[Message]] = {}
        self.replies: list[Message] = []
        if token:  # the handshake's login is answered first
            self._read_until(lambda: bool(self.replies))

    def request(self, **request: Any) -> Message:
        """Send one request; its reply (pushes read meanwhile are kept)."""
        seen = len(self.replies)
        self.ws.send(json.dumps(request))
        self._read_until(lambda: len(self.replies) > seen)
        return self.replies[seen]

    def subscribe(self, channel: str, timeout_s: float = 30) -> Message:
        """Subscribe, retrying while the market is not listed yet (UNKNOWN_CHANNEL)."""
        deadline = time.monotonic() + timeout_s
        while (reply := self.request(op="subscribe", channel=channel))["op"] == "error":
            assert reply["code"] == "UNKNOWN_CHANNEL" and time.monotonic() < deadline, reply
            time.sleep(0.2)
        return reply

    def until(
        self, channel: str, done: Callable[[list[Message]], bool], timeout_s: float = 30
    ) -> list[Message]:
        """Read until the pushes of `channel` satisfy `done`; those pushes."""
        self._read_until(lambda: done(self.pushed.get(channel, [])), timeout_s)
        return self.pushed[channel]

    def _read_until(self, done: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "condition not met in time"
            try:
                frame = json.loads(self.ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            for message in frame if isinstance(frame, list) else [frame]:
                if "op" in message:
                    self.replies.append(message)
                else:
                    self.pushed.setdefault(message["channel"], []).append(message)


def _send(bus: Bus, *outs: Outbound) -> None:
    producer = TypedProducer(bus)
    for out in outs:
        producer.send(out)
    producer.flush()


def _matcher(command: MatcherCommand) -> Outbound:
    return Outbound(MATCHER_COMMANDS, key=command.market, value=to_avro(command))


def _order(trader: str, n: int, side: Side, size: int, price: int) -> Outbound:
    """The n-th trader command: a GTC limit on BTC-PERP, signed (nonce) at its ts_init."""
    ts_init = TS_2026_11_23 + n * 1_000
    body: PlaceOrder = replace(limit_order(n, side, size, price), nonce=ts_init)
    command = TraderCommand(command_id=order_id(6_000_000 + n), trader=trader, ts_init=ts_init, body=body)
    return Outbound(ORDERS_COMMANDS, key=trader, value=to_avro(command))


def _deposit(trader: str, usdc: int, n: int) -> Outbound:
    return Outbound(ACCOUNTS_EVENTS, key=trader, value=deposit_event(trader=trader, amount=usdc * USDC, n=n))


def _token(settings: Settings, trader: str) -> str:
    now = time.time_ns() // 1_000
    return Sessions(settings).issue(trader, now, now + 3_600_000_000)


def _types(pushes: list[Message]) -> list[str]:
    return [p["type"] for p in pushes]


def _consecutive(pushes: list[Message], after: int) -> bool:
    return [p["seq"] for p in pushes] == list(range(after + 1, after + 1 + len(pushes)))


@pytest.fixture
def ws_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"wspush_port": _free_port(), "gateway_session_secret": SECRET, "batch_max_messages": 200}
    )


# -- the scenarios --------------------------------------------------------------------------------


def test_a_trader_sees_depth_trades_and_its_own_orders_in_order_and_nobody_elses(
    bus: Bus, ws_settings: Settings, cassandra_session: Session
) -> None:
    settings = ws_settings
    with exchange(settings), wspush(settings, cassandra_session):
        # State: BTC-PERP listed; Alice logged in by token on the handshake, Bob by a login message;
        # each on its own channel, Alice on the market too; both credited 1,000 USDC.
        _send(bus, _matcher(Commands().create()))
        alice, bob = Client(settings, _token(settings, ALICE)), Client(settings)
        assert alice.replies[0] == {"op": "loggedIn", "trader": ALICE}
        assert bob.request(op="login", token=_token(settings, BOB)) == {"op": "loggedIn", "trader": BOB}
        snapshot = alice.subscribe("market.BTC-PERP")
        assert alice.subscribe(f"trader.{ALICE}")["seq"] == 0
        assert bob.subscribe(f"trader.{BOB}")["op"] == "subscribed"
        _send(bus, _deposit(ALICE, 1_000, 1), _deposit(BOB, 1_000, 2))
        for client, trader in ((alice, ALICE), (bob, BOB)):
            client.until(f"trader.{trader}", lambda p: "balanceUpdate" in _types(p))

        # Action: Bob rests a sell of 3 lots; Alice buys 5 through it (3 fill, 2 rest).
        _send(bus, _order(BOB, 1, Side.SELL, 3, PRICE))
        alice.until("market.BTC-PERP", lambda p: "depth" in _types(p))
        _send(bus, _order(ALICE, 2, Side.BUY, 5, PRICE + 10))

        # Expectation: the market channel continues the snapshot with no gap: Bob's level, the
        # trade, then the level gone and Alice's bid.
        assert snapshot["snapshot"]["asks"] == [] and snapshot["snapshot"]["bids"] == []
        market = alice.until("market.BTC-PERP", lambda p: _types(p).count("depth") >= 2)
        assert _consecutive(market, after=snapshot["seq"])
        assert _types(market) == ["depth", "trade", "depth"]
        assert market[0]["data"] == {"bids": [], "asks": [[PRICE, 3]]}
        assert (market[1]["data"]["price"], market[1]["data"]["size"]) == (PRICE, 3)
        assert market[1]["data"]["aggressorSide"] == "BUY"
        assert market[2]["data"] == {"bids": [[PRICE + 10, 2]], "asks": [[PRICE, 0]]}
        # ... and Alice's channel numbers her updates with no gap: her order accepted, filled,
        # rested, in book order, and her position from risk.
        mine = alice.until(
            f"trader.{ALICE}", lambda p: "positionUpdate" in _types(p) and "RESTED" in _events(p)
        )
        assert _consecutive(mine, after=0)
        assert _events(mine) == ["ACCEPTED", "FILLED", "RESTED"]
        assert {p["data"]["orderId"] for p in mine if p["type"] == "orderUpdate"} == {order_id(2)}
        position = next(p for p in mine if p["type"] == "positionUpdate")
        assert (position["data"]["size"], position["data"]["cause"]) == (3, "FILL")
        assert all(p["data"]["trader"] == ALICE for p in mine)
        # Bob's channel is Bob's: Alice is refused it, an anonymous client too.
        refused = alice.request(op="subscribe", channel=f"trader.{BOB}")
        assert (refused["op"], refused["code"]) == ("error", "FORBIDDEN")
        anonymous = Client(settings)
        assert anonymous.request(op="subscribe", channel=f"trader.{ALICE}")["code"] == "NOT_AUTHENTICATED"
        forged = Client(settings, _token(settings.model_copy(update={"gateway_session_secret": "x"}), BOB))
        assert forged.replies[0]["code"] == "LOGIN_REFUSED"
        bob_mine = bob.until(f"trader.{BOB}", lambda p: "FILLED" in _events(p))
        assert all(p["data"]["trader"] == BOB for p in bob_mine)
        # The registry knows Alice's connection: this replica, her address, her subscriptions.
        rows = _registry_rows(cassandra_session, settings.cassandra_keyspace, ALICE)
        assert rows and set(rows[0].subscriptions) == {"market.BTC-PERP", f"trader.{ALICE}"}
        for client in (alice, bob, anonymous, forged):
            client.ws.close()


def test_a_slow_consumer_is_dropped_while_a_normal_one_keeps_receiving(
    bus: Bus, ws_settings: Settings
) -> None:
    settings = ws_settings.model_copy(update={"wspush_outbox_max": 1_000})
    commands, marks = Commands(), 6_000
    with running(MatcherService(Bus(settings))), wspush(settings) as service:
        # State: BTC-PERP listed; a normal client (its library reads the socket continuously, into
        # an unbounded queue) and a slow one that stops reading (a 4 KiB receive window, one frame
        # of client buffer), both on the market.
        _send(bus, _matcher(commands.create()))
        normal = Client(settings, max_queue=None)
        normal_from = normal.subscribe("market.BTC-PERP")["seq"]
        slow_socket = socket.socket()
        slow_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window
        slow_socket.connect(("127.0.0.1", settings.wspush_port))
        slow = Client(settings, sock=slow_socket, max_queue=1)
        slow.subscribe("market.BTC-PERP")

        # Action: 6,000 mark prices through the matcher (~1 MB of messages to each client, beyond
        # the slow one's socket buffers, 128 KiB x 2 + 64 KiB, and its outbox of 1,000).
        _send(bus, *(_matcher(commands.set_mark(PRICE + n)) for n in range(marks)))

        # Expectation: the normal client gets every mark, in order, with no gap ...
        pushed = normal.until("market.BTC-PERP", lambda p: len(p) >= marks, timeout_s=60)
        assert _consecutive(pushed, after=normal_from)
        assert pushed[-1]["data"]["markPrice"] == PRICE + marks - 1
        # ... the slow one was dropped, and finds the reason once it reads what it was sent.
        assert service.metrics.drops.labels("slow_consumer")._value.get() == 1
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                slow.ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4008, "slow consumer")
        assert len(service.hub.connections) == 1
        normal.ws.close()


def _events(pushes: list[Message]) -> list[str]:
    return [p["data"]["event"] for p in pushes if p["type"] == "orderUpdate"]


def _registry_rows(session: Session, keyspace: str, trader: str, timeout_s: float = 10) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [
            r
            for r in session.execute(
                f"SELECT * FROM {keyspace}.ws_connections WHERE replica_id = %s", (REPLICA,)
            )
            if r.trader == trader and r.subscriptions and len(r.subscriptions) == 2
        ]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)
