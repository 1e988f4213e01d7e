"""Send a command to Kafka and wait, bounded, for what became of it (the gateway's Kafka adapter).

One producer (idempotent, not transactional: the gateway holds no state a retry could duplicate —
the signed nonce makes a command single-use) and one consumer that tails `trade.log` and
`accounts.events` from their ends, without a consumer group (every gateway replica reads
everything; nothing is committed). A record is decoded only if its correlation id is one a request
is waiting for, so the tail costs little more than the fetch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass, replace

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from services.common.bus import CORRELATION_HEADER, Bus, Outbound, encode_outbound, take_batch, watermarks
from services.common.logs import correlation, render_correlation_id
from services.common.records import AccountEvent, TradeLogEntry
from services.common.serde import UndecodableRecord
from services.common.topics import ACCOUNTS_EVENTS, TRADE_LOG
from services.gateway import timing
from services.gateway.outcomes import PENDING, Outcome, account_outcome, entry_outcome

log = logging.getLogger(__name__)


class NotDelivered(Exception):
    """Kafka did not take the command: the request failed and may be retried as is."""


@dataclass(slots=True)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    decided: asyncio.Future[Outcome]
    order_id: str | None


class CommandTracker:
    """Produces commands and resolves each one's outcome from the records it causes."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._producer = Producer(bus.producer_config() | {"linger.ms": 1})
        # assign() only: the group id is required by the client but never joined or committed.
        # The broker answers a waiting fetch as soon as a transaction's marker lands, so the default
        # fetch.wait.max.ms costs no latency; 5 ms cost the broker 200 empty fetches a second.
        self._consumer = Consumer(bus.consumer_config(f"gateway-outcomes-{uuid.uuid4().hex}"))
        self._topics = {
            bus.topic(TRADE_LOG).name: TRADE_LOG,
            bus.topic(ACCOUNTS_EVENTS).name: ACCOUNTS_EVENTS,
        }
        self._waiting: dict[bytes, _Waiter] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ready = threading.Event()

    def start(self) -> None:
        """Assign every partition of the outcome topics at its current end, then start tailing."""
        assignment = []
        for name in self._topics:
            partitions = self._consumer.list_topics(name, timeout=10).topics[name].partitions
            for p in partitions:
                _, high = watermarks(self._consumer, TopicPartition(name, p))
                assignment.append(TopicPartition(name, p, high))
        self._consumer.assign(assignment)
        self._threads = [
            threading.Thread(target=self._tail, name="outcomes-tail", daemon=True),
            threading.Thread(target=self._serve_deliveries, name="producer-poll", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.ready.set()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._producer.flush(5)
        self._consumer.close()

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def send(self, out: Outbound, *, order_id: str | None, wait_s: float) -> Outcome:
        """Produce `out` and return its outcome, or PENDING if none came within `wait_s` seconds.

        Raises NotDelivered if Kafka did not acknowledge the record: a PENDING answer always means
        the command is durably in the log.
        """
        correlation_id = uuid.uuid4().bytes
        with correlation(correlation_id):
            log.debug("command sent to %s", out.topic.name)
            outcome = await self._send(out, correlation_id, order_id, wait_s)
        return replace(outcome, correlation_id=render_correlation_id(correlation_id))

    async def _send(
        self, out: Outbound, correlation_id: bytes, order_id: str | None, wait_s: float
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future(), order_id)
        delivered: asyncio.Future[None] = loop.create_future()

        def on_delivery(error: KafkaError | None, _: Message) -> None:
            loop.call_soon_threadsafe(_settle, delivered, error)

        with self._lock:
            self._waiting[correlation_id] = waiter
        try:
            self._producer.produce(**encode_outbound(self.bus, out, correlation_id), on_delivery=on_delivery)
            await delivered
            timing.mark("appended")
            decided = await asyncio.wait_for(waiter.decided, wait_s)
            timing.mark("decided")
            return decided
        except TimeoutError:
            return PENDING
        finally:
            with self._lock:
                self._waiting.pop(correlation_id, None)

    def _serve_deliveries(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _tail(self) -> None:
        while not self._stop.is_set():
            for message in take_batch(self._consumer, 500, 0.05):
                if message.error() is None:
                    self._resolve(message)

    def _resolve(self, message: Message) -> None:
        headers: list[tuple[str, bytes]] = message.headers() or []  # type: ignore[assignment]
        correlation_id = next((v for k, v in headers if k == CORRELATION_HEADER), None)
        waiter = self._waiting.get(correlation_id) if isinstance(correlation_id, bytes) else None
        if waiter is None:
            return
        spec = self._topics[message.topic() or ""]
        try:
            record = self.bus.serde(spec).decode_record(message.value())
        except UndecodableRecord:
            return
        if isinstance(record, TradeLogEntry):
            outcome: Outcome | None = entry_outcome(record, waiter.order_id)
        else:
            assert isinstance(record, AccountEvent)
            outcome = account_outcome(record.body)
        if outcome is not None:
            waiter.loop.call_soon_threadsafe(_settle_outcome, waiter.decided, outcome)


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(NotDelivered(str(error)))


def _settle_outcome(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)
