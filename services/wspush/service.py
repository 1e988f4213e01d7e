"""ws-push, the adapter: the log tail, the ASGI app (WebSocket `/ws`, `/health`, `/ready`,
`/metrics`), per-connection senders, heartbeats and the registry. The rules live in `core/`.

Threads and ownership: one tail thread reads Kafka and decodes; everything else — the hub, the
outboxes, every socket — belongs to the event loop. The tail hands each decoded batch to the loop
and waits for it to be applied, so a slow loop slows the tail (bounded memory), never the reverse.

Start-up: trade.log is read from the beginning of every partition and folded straight into the hub
(depth, statuses, marks, channel seqs) in the tail thread, while `/ready` answers 503 and WebSocket
handshakes are refused with 1013 ("try again later"); accounts.events is read from its end (a
trader channel is live-only). Once every trade.log partition reached the end it had at start, the
service is ready and the tail switches to handing batches to the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from services.common.bus import Bus, take_batch, watermarks
from services.common.records import AccountEvent, TradeLogEntry
from services.common.serde import UndecodableRecord
from services.common.settings import Settings
from services.common.topics import ACCOUNTS_EVENTS, TRADE_LOG
from services.gateway.auth import AdminAuth, AuthError, Sessions
from services.wspush.core import protocol
from services.wspush.core.channels import Identity
from services.wspush.core.hub import Delivery, Hub
from services.wspush.core.outbox import SLOW_CONSUMER_CODE, SLOW_CONSUMER_REASON
from services.wspush.registry import ConnectionRegistry, ConnectionRow

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Record = TradeLogEntry | AccountEvent

WS_PATH = "/ws"
CLOSE_GRACE_S = 5.0
"""How long a dropped slow consumer has to take its close frame before its socket is aborted."""
TRY_AGAIN_LATER = 1013
TAIL_BATCH = 500
"""Log records per tick at most: what one tick may queue on an idle connection."""
SEND_BUFFER_BYTES = 128 * 1024
"""Kernel send buffer of each client socket (Linux doubles it). Fixed rather than autotuned (up to
4 MiB by default): it bounds the memory a stalled client holds, and how long a client may stall
before its outbox fills and it is dropped as a slow consumer."""
TRANSPORT_HIGH_WATER = 64 * 1024
"""Bytes the event loop buffers for a socket before the sender waits (then the outbox fills)."""


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with a fixed send buffer per socket (`SEND_BUFFER_BYTES`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        if isinstance(transport, asyncio.WriteTransport):
            transport.set_write_buffer_limits(high=TRANSPORT_HIGH_WATER)
        super().connection_made(transport)


class GatewayTokens:
    """Tokens checked exactly as the gateway checks them (its own `Sessions` and `AdminAuth`): a
    read-session token proves a trader, an admin JWT in the admin group proves an admin."""

    def __init__(self, settings: Settings) -> None:
        self._sessions = Sessions(settings)
        self._admins = AdminAuth(settings)

    def verify(self, token: str) -> Identity | None:
        """Who `token` proves, or None."""
        bearer = f"Bearer {token}"
        try:
            return Identity(trader=self._sessions.trader(bearer).lower())
        except AuthError:
            pass
        try:
            return Identity(admin=self._admins.require_admin(bearer) or "admin")
        except AuthError:
            return None


class WsPushMetrics:
    """Prometheus metrics of one ws-push instance (its own registry: tests run several)."""

    def __init__(self, hub: Hub) -> None:
        self.registry = CollectorRegistry()
        connections = Gauge("wspush_connections", "Open WebSocket connections", registry=self.registry)
        connections.set_function(lambda: len(hub.connections))
        self.messages = Counter(
            "wspush_messages_sent", "Messages written to clients (one per subscriber)", registry=self.registry
        )
        self.frames = Counter(
            "wspush_frames_sent",
            "WebSocket frames written (a frame batches messages)",
            registry=self.registry,
        )
        self.published = Counter(
            "wspush_messages_published", "Channel messages built (once each)", registry=self.registry
        )
        self.drops = Counter(
            "wspush_drops", "Connections closed by the server", ["reason"], registry=self.registry
        )
        self.records = Counter("wspush_log_records", "Log records read", ["topic"], registry=self.registry)
        self.undecodable = Counter(
            "wspush_undecodable_records", "Log records skipped as undecodable", registry=self.registry
        )


@dataclass(slots=True)
class _Link:
    """The adapter's side of one connection: its ASGI send, the sender task and its wake-up."""

    send: Send
    remote: str
    connected_at_ms: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    dropped: bool = False


class WsPushService:
    """The ASGI application of one ws-push replica; `serve()` runs it under uvicorn."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: Bus | None = None,
        registry: ConnectionRegistry | None = None,
        verifier: protocol.TokenVerifier | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.registry = registry
        self.verifier = verifier or GatewayTokens(settings)
        self.replica_id = (
            replica_id or f"{socket.gethostname()}:{settings.wspush_port}:{settings.instance_id}"
        )
        self.hub = Hub(settings.wspush_outbox_max)
        self.metrics = WsPushMetrics(self.hub)
        self.ready = threading.Event()
        self._links: dict[str, _Link] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._tail_thread: threading.Thread | None = None
        self._published = 0
        self._http = Starlette(
            routes=[
                Route("/health", self._health),
                Route("/ready", self._ready),
                Route("/metrics", self._metrics),
            ],
            lifespan=self._lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # WebSockets are served raw (not through Starlette): the handler keeps uvicorn's own `send`,
        # the only handle on a slow consumer's socket (see _close_slow).
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._http(scope, receive, send)

    # -- feeding the hub ---------------------------------------------------------------------------

    def ingest(self, records: Sequence[Record]) -> None:
        """Apply records in order and wake the connections that got messages (loop thread only)."""
        delivery = Delivery()
        for record in records:
            if isinstance(record, TradeLogEntry):
                delivery.merge(self.hub.apply_entry(record))
            else:
                delivery.merge(self.hub.apply_account(record))
        self._deliver(delivery)

    def submit(self, records: Sequence[Record]) -> concurrent.futures.Future[None]:
        """`ingest` from another thread (benchmarks, tests): applied on the loop, in order."""
        assert self._loop is not None, "the app is not running"
        return asyncio.run_coroutine_threadsafe(self._ingest_async(records), self._loop)

    def _deliver(self, delivery: Delivery) -> None:
        published, self._published = self.hub.published - self._published, self.hub.published
        self.metrics.published.inc(published)
        for connection_id in delivery.woken:
            link = self._links.get(connection_id)
            if link is not None:
                link.wake.set()
        for connection_id in delivery.dropped:
            self._drop(connection_id)

    # -- the log tail (its own thread) -------------------------------------------------------------

    def _tail(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.bus is not None
        # assign() only: the group id is required by the client but never joined or committed —
        # every replica reads every partition (docs/wspush.md, "Replicas").
        consumer = Consumer(
            self.bus.consumer_config(f"wspush-{uuid.uuid4().hex}")
            | {"enable.partition.eof": True, "fetch.wait.max.ms": 10}
        )
        try:
            catching_up = self._assign(consumer)
            while not self._stop.is_set():
                records = self._poll(consumer, catching_up)
                if not self.ready.is_set():
                    for record in records:  # no connection exists yet: fold here, off the loop
                        self._fold(record)
                    if not catching_up:
                        log.info("ws-push: caught up with trade.log; accepting connections")
                        self.ready.set()
                elif records:
                    asyncio.run_coroutine_threadsafe(self._ingest_async(records), loop).result()
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> dict[int, int]:
        """trade.log from the beginning, accounts.events from its end; returns the end each
        non-empty trade.log partition had (the catch-up targets)."""
        assert self.bus is not None
        trade_log, accounts = self.bus.topic(TRADE_LOG).name, self.bus.topic(ACCOUNTS_EVENTS).name
        assignment, catching_up = [], {}
        for p in range(TRADE_LOG.partitions):
            _, high = watermarks(consumer, TopicPartition(trade_log, p))
            assignment.append(TopicPartition(trade_log, p, OFFSET_BEGINNING))
            if high > 0:
                catching_up[p] = high
        for p in range(ACCOUNTS_EVENTS.partitions):
            _, end = watermarks(consumer, TopicPartition(accounts, p))
            assignment.append(TopicPartition(accounts, p, end))
        consumer.assign(assignment)
        log.info("ws-push: folding trade.log from the beginning (%s offsets)", sum(catching_up.values()))
        return catching_up

    def _poll(self, consumer: Consumer, catching_up: dict[int, int]) -> list[Record]:
        """The next decoded records; a trade.log partition leaves `catching_up` at its start end."""
        assert self.bus is not None
        trade_log = self.bus.topic(TRADE_LOG).name
        records: list[Record] = []
        for message in take_batch(consumer, TAIL_BATCH, 0.05):
            error = message.error()
            partition = message.partition() or 0
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("ws-push consumer error (retried): %s", error)
                elif message.topic() == trade_log:
                    catching_up.pop(partition, None)
                continue
            if message.topic() == trade_log and (message.offset() or 0) + 1 >= catching_up.get(partition, 0):
                catching_up.pop(partition, None)
            record = self._decode(message)
            if record is not None:
                records.append(record)
        return records

    def _fold(self, record: Record) -> None:
        if isinstance(record, TradeLogEntry):
            self.hub.apply_entry(record)
        else:
            self.hub.apply_account(record)

    async def _ingest_async(self, records: Sequence[Record]) -> None:
        self.ingest(records)

    def _decode(self, message: Message) -> Record | None:
        assert self.bus is not None
        spec = TRADE_LOG if message.topic() == self.bus.topic(TRADE_LOG).name else ACCOUNTS_EVENTS
        self.metrics.records.labels(spec.name).inc()
        try:
            record: Record = self.bus.serde(spec).decode_record(message.value())
        except UndecodableRecord as error:
            self.metrics.undecodable.inc()
            log.warning("ws-push skipped %s@%s: %s", message.topic(), message.offset(), error)
            return None
        return record

    # -- WebSocket connections ---------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if scope.get("path") != WS_PATH:
            await send({"type": "websocket.close", "code": 1008, "reason": f"connect to {WS_PATH}"})
            return
        if not self.ready.is_set():
            reason = "starting: catching up with the trade log"
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": reason})
            return
        await send({"type": "websocket.accept"})
        connection_id = uuid.uuid4().hex
        connection = self.hub.open(connection_id)
        client = scope.get("client") or ("", 0)
        link = self._links[connection_id] = _Link(send, f"{client[0]}:{client[1]}", _now_ms())
        link.sender = asyncio.create_task(self._sender(connection_id, link))
        token = _handshake_token(scope)
        if token is not None:
            self._deliver(self.hub.send(connection_id, [protocol.login(connection, token, self.verifier)]))
        self._save(connection_id)
        try:
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    break
                text = event.get("text")
                if text is None:
                    text = (event.get("bytes") or b"").decode("utf-8", errors="replace")
                before = frozenset(connection.subscriptions)
                self._deliver(protocol.receive(self.hub, connection_id, text, self.verifier))
                if frozenset(connection.subscriptions) != before and not link.dropped:
                    self._save(connection_id)
        finally:
            if link.sender is not None:
                link.sender.cancel()
            self._links.pop(connection_id, None)
            self.hub.close(connection_id)
            if self.registry is not None:
                self.registry.delete(self.replica_id, connection_id)

    async def _sender(self, connection_id: str, link: _Link) -> None:
        """Write the connection's outbox, one frame per wake-up (everything queued meanwhile)."""
        outbox = self.hub.connections[connection_id].outbox
        try:
            while True:
                await link.wake.wait()
                link.wake.clear()
                taken = outbox.take()
                if taken is None:
                    continue
                frame, count = taken
                await link.send({"type": "websocket.send", "text": frame})
                outbox.written()
                self.metrics.frames.inc()
                self.metrics.messages.inc(count)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 — the socket is gone: the receive loop ends it
            log.debug("ws-push sender of %s stopped: %s", connection_id, error)

    def _drop(self, connection_id: str) -> None:
        """Close a slow consumer: its queue is gone; nothing else waits for it."""
        link = self._links.get(connection_id)
        if link is None or link.dropped:
            return
        link.dropped = True
        self.metrics.drops.labels("slow_consumer").inc()
        log.info("ws-push: dropping %s (%s): slow consumer", connection_id, link.remote)
        if link.sender is not None:
            link.sender.cancel()  # it waits for the socket to drain; the frame it holds is not written
        task = asyncio.get_running_loop().create_task(_close_slow(link.send))
        task.add_done_callback(lambda _: None)

    def _save(self, connection_id: str) -> None:
        connection, link = self.hub.connections.get(connection_id), self._links.get(connection_id)
        if self.registry is None or connection is None or link is None:
            return
        row = ConnectionRow(
            replica_id=self.replica_id,
            connection_id=connection_id,
            trader=connection.identity.trader,
            admin=connection.identity.admin,
            subscriptions=frozenset(connection.subscriptions),
            remote=link.remote,
            connected_at_ms=link.connected_at_ms,
            last_seen_ms=_now_ms(),
        )
        self.registry.save(row)

    async def _heartbeat(self) -> None:
        """Refresh every live connection's registry row (and its TTL) once per heartbeat. The
        WebSocket pings themselves are uvicorn's (`ws_ping_interval`, see `serve`)."""
        while True:
            await asyncio.sleep(self.settings.wspush_heartbeat_s)
            for connection_id, link in list(self._links.items()):
                if not link.dropped:
                    self._save(connection_id)

    # -- HTTP and lifespan -------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "replica": self.replica_id})

    async def _ready(self, request: Request) -> Response:
        ready = self.ready.is_set()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> Any:
        loop = self._loop = asyncio.get_running_loop()
        self._stop.clear()
        if self.bus is not None:
            self._tail_thread = threading.Thread(
                target=self._tail, args=(loop,), name="wspush-tail", daemon=True
            )
            self._tail_thread.start()
        else:
            self.ready.set()  # fed by `ingest` (benchmarks, tests)
        heartbeat = loop.create_task(self._heartbeat())
        try:
            yield
        finally:
            heartbeat.cancel()
            self._stop.set()
            if self._tail_thread is not None:
                # the tail may be waiting on this loop: let it finish off the loop's thread
                await asyncio.to_thread(self._tail_thread.join, 10)


async def _close_slow(send: Send) -> None:
    """Send the slow-consumer close frame; if the client does not drain its socket within
    CLOSE_GRACE_S, abort the TCP connection (uvicorn's transport, behind its ASGI `send`)."""
    message = {"type": "websocket.close", "code": SLOW_CONSUMER_CODE, "reason": SLOW_CONSUMER_REASON}
    try:
        await asyncio.wait_for(send(message), CLOSE_GRACE_S)
        return
    except (TimeoutError, OSError, RuntimeError) as error:
        log.info("ws-push: slow consumer did not take its close frame (%s): aborting", type(error).__name__)
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()


def _handshake_token(scope: Scope) -> str | None:
    """A token given at the handshake: `?token=…` or `Authorization: Bearer …`."""
    tokens = parse_qs(bytes(scope.get("query_string", b"")).decode()).get("token")
    if tokens:
        return str(tokens[0])
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = bytes(value).decode().partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def uvicorn_config(
    service: WsPushService, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """How ws-push runs under uvicorn: protocol pings every heartbeat (a client that does not pong
    within another heartbeat is closed, 1011), no per-message deflate (the same payload goes to
    many clients: compressing it per connection would cost more CPU than the fan-out itself), and
    small client messages only."""
    settings = service.settings
    return uvicorn.Config(
        service,
        host=host or settings.wspush_host,
        port=settings.wspush_port if port is None else port,
        ws=BoundedWebSocketProtocol,
        ws_ping_interval=settings.wspush_heartbeat_s,
        ws_ping_timeout=settings.wspush_heartbeat_s,
        ws_per_message_deflate=False,
        ws_max_size=65_536,
        lifespan="on",
        log_config=None,
        access_log=False,
    )
