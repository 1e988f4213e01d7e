"""The bus: typed Kafka producers and consumers, and the exactly-once processing loop.

`TransactionalProcessor` is the one loop every stateful service runs (consume → process →
produce, with the consumed offsets committed inside the producer's transaction):

    take a batch: what the client already holds, ≤ batch_max records (read_committed)
    each record: decode → handler(record) → its outputs
                 undecodable or invalid → a DeadLetter record instead; the loop goes on
    nothing to write → no transaction: the offsets ride with the next one
    else: begin transaction, produce the outputs, send the offsets, commit

A crash anywhere before the commit aborts the whole batch (outputs and offsets together), and the
restarted process — same transactional id, so the old one is fenced — sees the batch again.

**Group commit.** A transaction costs the broker milliseconds of CPU whatever it carries
(docs/performance.md), so the loop never waits for records that are not there, and never commits
more often than it must. A batch is what the client has fetched by the time the last commit ended:
a lone record goes at once, and under load the records that arrive during one commit share the
next. Records of *urgent* inputs (those a caller is waiting on: an order on its way to the matcher)
close a batch at once; a batch holding only other records (post-trade postings, account events)
waits up to `BATCH_LINGER_MS` for company, so it usually rides in an urgent record's transaction.

**Batches that write nothing** — every handler returned no record and `on_batch_end` added none —
open no transaction: their offsets are committed with the next transaction, or alone once
`DEFERRED_COMMIT_S` passed without one, or at close. Re-reading them after a crash is harmless
because of the rule every handler keeps: *state that must outlive the process is written to the
outputs* (the matcher's entries and snapshots, risk's changelog), so a batch without outputs
changed nothing a restart would have to know. (Risk reads its own accounts.events back: without
this, each of those batches cost a transaction of offsets alone.)

Services whose handler holds state pass `on_assign`: it is called with the committed offset of
every partition the process is given — at assignment, and again after an aborted transaction —
and must bring the state to exactly those offsets (load a snapshot, replay the rest).
`on_batch_end` adds records once per batch, inside its transaction (e.g. a state changelog).

Observability (services/common/observability.py): the loop counts records, batch sizes,
transaction times, aborts and dead letters, its consumer's lag is read at scrape time, and each
record is handled with its correlation id bound in the log context (and, with an OpenTelemetry
SDK installed, inside a span) — docs/observability.md.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cached_property
from types import FrameType
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from msgspec import Struct

from services.common import tracing
from services.common.binding import to_avro
from services.common.failpoints import failpoint
from services.common.logs import correlation
from services.common.observability import LoopMetrics, refresh_lag, unwatch_consumer, watch_consumer
from services.common.serde import AvroSerde, Record, SchemaRegistry, UndecodableRecord, registry_for
from services.common.settings import Settings
from services.common.topics import DEAD_LETTERS, TOPICS, TopicSpec, prefixed
from services.common.watchdog import StallWatchdog

log = logging.getLogger(__name__)
RDKAFKA_LOG = logging.getLogger("librdkafka")
"""Where librdkafka's log lines go (see `Bus.client_config`)."""
_NO_SPAN = nullcontext()  # reusable: what a record is handled in when tracing is off

CORRELATION_HEADER = "cxpt-correlation-id"
TXN_STALL_S = 60.0
"""A transactional call (their timeouts are 30 s) still waiting after this long never returns:
the process exits to be restarted (`services.common.watchdog`)."""
DEFERRED_COMMIT_S = 1.0
"""Longest a processor leaves the offsets of batches that wrote nothing uncommitted while idle."""


class InvalidRecord(Exception):
    """Raised by a handler for a record that decodes but can never be processed (a poison record).

    Business rejections are not this: they are events. This is for input no code path can accept.
    """


class Inbound(Struct, frozen=True, dict=True):
    """A decoded record and where it came from.

    A struct, not a dataclass: one is built per record consumed, in C (a frozen dataclass's
    `__init__` costs ~10x more); `dict=True` makes room for the cached `value`.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    record: Any
    """The generated record (a msgspec struct from `records.py`)."""
    headers: dict[str, bytes] = {}  # msgspec gives each instance its own empty dict
    timestamp_ms: int = 0

    @cached_property
    def value(self) -> Record:
        """The record as fastavro's dict, for code that works on dicts (made on first use)."""
        return to_avro(self.record)

    @property
    def position(self) -> str:
        """Where this record sits in the log: `<topic>:<partition>:<offset>`."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def event_id(self, index: int = 0) -> str:
        """Deterministic id of the index-th output caused by this record (replays reuse it)."""
        return f"{self.position}:{index}"

    @property
    def correlation_id(self) -> bytes | None:
        return self.headers.get(CORRELATION_HEADER)


class Outbound(Struct, frozen=True):
    """A record to produce: the declared topic, its key and its value.

    `partition` overrides the key's partition: for broadcasts to every partition of a topic.
    A `None` value is a tombstone: on a compacted topic it deletes the key. A struct, like
    `Inbound`: services build several per record they consume.
    """

    topic: TopicSpec
    key: str
    value: Record | Struct | None
    headers: dict[str, bytes] = {}
    partition: int | None = None


Handler = Callable[[Inbound], Iterable[Outbound]]


def kafka_client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's connection settings: the brokers, and TLS / SASL when the settings ask for them."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # the settings refuse SASL without one
        config |= {
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_sasl_username,
            "sasl.password": settings.kafka_sasl_password.get_secret_value(),
        }
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return config


class Bus:
    """Connection settings, topic names and serdes, shared by the producers and consumers of a process."""

    def __init__(self, settings: Settings, registry: SchemaRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or registry_for(settings.schema_registry_url)
        self._serdes: dict[str, AvroSerde] = {}
        self._topics: dict[str, TopicSpec] = {}

    def topic(self, spec: TopicSpec) -> TopicSpec:
        """The declared topic under this environment's prefix."""
        found = self._topics.get(spec.name)
        if found is None:  # called for every record produced: build each prefixed spec once
            found = self._topics[spec.name] = prefixed(spec, self.settings.topic_prefix)
        return found

    def all_topics(self) -> list[TopicSpec]:
        return [self.topic(t) for t in TOPICS]

    def serde(self, spec: TopicSpec) -> AvroSerde:
        if spec.value_schema not in self._serdes:
            self._serdes[spec.value_schema] = AvroSerde(self.registry, spec.value_schema)
        return self._serdes[spec.value_schema]

    def client_config(self) -> dict[str, Any]:
        """What every Kafka client of this process shares: the brokers and how to reach them (TLS,
        SASL: `kafka_client_config`), and librdkafka's own log lines routed into Python logging
        (`librdkafka` logger, served when the client polls) instead of straight to stderr, so they
        carry the service's format and level."""
        return kafka_client_config(self.settings) | {"logger": RDKAFKA_LOG}

    def producer_config(self, transactional_id: str | None = None) -> dict[str, Any]:
        config: dict[str, Any] = self.client_config() | {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            # A transaction begun right after the last commit is refused CONCURRENT_TRANSACTIONS
            # while the broker still writes that commit's markers (a millisecond or two), and
            # librdkafka retries after retry.backoff.ms: at the default 100 ms that was the p95 of
            # every transactional hop (docs/performance.md). Backoffs still grow to
            # retry.backoff.max.ms (1 s) when retries go on failing.
            "retry.backoff.ms": 5,
            # Same key → same partition as Java clients (murmur2), so every producer co-partitions.
            "partitioner": "murmur2_random",
        }
        if transactional_id:
            config["transactional.id"] = transactional_id
            config["transaction.timeout.ms"] = 60_000
        return config

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        """Config for a consumer in `group_id`, which is prefixed like topic names are."""
        return self.client_config() | {
            "group.id": f"{self.settings.topic_prefix}{group_id}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            # range keeps co-partitioned topics (same key, same count) on one member.
            "partition.assignment.strategy": "range",
        }

    def stateful_consumer_config(self, group_id: str, instance_id: str) -> dict[str, Any]:
        """Consumer config for a transactional service instance.

        Static membership (`group.instance.id`): a restarted instance takes its partitions back at
        once instead of waiting for the dead member's session to expire and a rebalance.
        """
        return self.consumer_config(group_id) | {
            "group.instance.id": instance_id,
            "session.timeout.ms": 10_000,
        }


def encode_outbound(
    bus: Bus, out: Outbound, correlation_id: bytes | None = None, *, traced: bool = False
) -> dict[str, Any]:
    """Arguments for `Producer.produce` of `out`, with the correlation id carried along (and the
    current span's `traceparent` when `traced`)."""
    if out.headers or traced:
        headers = dict(out.headers)
        if correlation_id is not None:
            headers.setdefault(CORRELATION_HEADER, correlation_id)
        if traced:
            tracing.inject(headers)
        header_list = list(headers.items())
    else:  # the common case, once per record produced: no dict to build
        header_list = [] if correlation_id is None else [(CORRELATION_HEADER, correlation_id)]
    produce: dict[str, Any] = {
        "topic": bus.topic(out.topic).name,
        "key": out.key.encode(),
        "value": None if out.value is None else bus.serde(out.topic).encode(out.value),
        "headers": header_list,
    }
    if out.partition is not None:
        produce["partition"] = out.partition
    return produce


def dead_letter(msg: Message, group_id: str, reason_code: str, reason: str) -> Outbound:
    """The DeadLetter record for a consumed message that cannot be processed."""
    return Outbound(
        DEAD_LETTERS,
        key=msg.topic() or "",
        value={
            "source_topic": msg.topic() or "",
            "source_partition": msg.partition() or 0,
            "source_offset": msg.offset() or 0,
            "key": msg.key(),
            "value": msg.value(),
            "consumer_group": group_id,
            "reason_code": reason_code,
            "reason": reason[:4000],
            "ts_dead_lettered": time.time_ns() // 1000,
        },
    )


def decode_message(
    bus: Bus, msg: Message, spec: TopicSpec, headers: dict[str, bytes] | None = None
) -> Inbound:
    """The Inbound for a consumed message (`headers`: its headers, if already read); raises
    UndecodableRecord."""
    key = msg.key()
    return Inbound(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=key.decode(errors="replace") if key is not None else None,
        record=bus.serde(spec).decode_record(msg.value()),
        headers=_headers(msg) if headers is None else headers,
        timestamp_ms=msg.timestamp()[1],
    )


class TypedProducer:
    """A producer of declared topics; transactional when given a transactional id."""

    def __init__(self, bus: Bus, transactional_id: str | None = None, timeout_s: float = 30) -> None:
        self.bus = bus
        self._timeout_s = timeout_s
        self._producer = Producer(bus.producer_config(transactional_id))
        self._transactional = transactional_id is not None
        if self._transactional:
            self._producer.init_transactions(timeout_s)

    def send(self, out: Outbound, correlation_id: bytes | None = None) -> None:
        """Queue `out`; delivery is confirmed by `flush` or by committing the transaction. When the
        local queue is full (a burst larger than librdkafka buffers), wait for deliveries to make room."""
        record = encode_outbound(self.bus, out, correlation_id)
        while True:
            try:
                self._producer.produce(**record)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    @contextmanager
    def transaction(self) -> Iterator[TypedProducer]:
        """All `send`s inside commit together, or not at all."""
        self._producer.begin_transaction()
        try:
            yield self
        except BaseException:
            self._producer.abort_transaction(self._timeout_s)
            raise
        self._producer.commit_transaction(self._timeout_s)

    def flush(self) -> None:
        remaining = self._producer.flush(self._timeout_s)
        if remaining:
            raise KafkaException(f"{remaining} records not delivered within {self._timeout_s}s")


class TransactionalProcessor:
    """Exactly-once consume → process → produce over declared topics (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        *,
        group_id: str,
        inputs: Sequence[TopicSpec],
        handler: Handler,
        transactional_id: str,
        on_assign: Callable[[dict[tuple[str, int], int | None]], None] | None = None,
        on_revoke: Callable[[list[tuple[str, int]]], None] | None = None,
        on_batch_end: Callable[[], Iterable[Outbound]] | None = None,
        urgent_inputs: Sequence[TopicSpec] | None = None,
    ) -> None:
        """`urgent_inputs`: the inputs whose records close a batch at once (default: all of them)."""
        self.bus = bus
        self.group_id = group_id
        self.handler = handler
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_batch_end = on_batch_end
        self.batch_max = bus.settings.batch_max_messages
        self.batch_timeout_s = bus.settings.batch_timeout_ms / 1000
        self.batch_linger_s = bus.settings.batch_linger_ms / 1000
        self._inputs = {bus.topic(s).name: s for s in inputs}
        self._urgent = frozenset(
            bus.topic(s).name for s in (inputs if urgent_inputs is None else urgent_inputs)
        )
        self._deferred: dict[tuple[str, int], int] = {}
        """Next offsets of batches that wrote nothing, not yet committed (module docstring)."""
        self._deferred_since = 0.0
        for spec in inputs:
            bus.serde(spec)  # fail at start, not on the first record, if a schema is unregistered
        self._producer = Producer(bus.producer_config(transactional_id))
        self._watchdog = StallWatchdog(TXN_STALL_S)
        self._watchdog.start()
        self._producer.init_transactions(30)
        self._consumer = Consumer(bus.stateful_consumer_config(group_id, transactional_id))
        self._consumer.subscribe(
            list(self._inputs), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )
        self.stats = {"batches": 0, "records": 0, "dead_lettered": 0, "aborts": 0, "deferred": 0}
        self.metrics = LoopMetrics(group_id)
        self.ready = threading.Event()
        """Set once partitions were assigned and their state recovered (the `/ready` answer)."""
        self._traced = False
        watch_consumer(self._consumer, group_id)

    def run(self, stop: threading.Event) -> None:
        """Process batches until `stop` is set; the batch in flight is finished, then it closes."""
        try:
            while not stop.is_set():
                self.run_once()
        except BaseException:
            self.metrics.error("failed")
            raise
        finally:
            self.close()

    def run_once(self) -> int:
        """Consume and process at most one batch, in one transaction if it writes anything;
        returns records consumed."""
        batch = take_batch(
            self._consumer, self.batch_max, self.batch_timeout_s, self.batch_linger_s, urgent=self._urgent
        )
        messages = [m for m in batch if _usable(m)]
        if not messages:
            if self._deferred and time.monotonic() - self._deferred_since > DEFERRED_COMMIT_S:
                self._commit_deferred()
            return 0
        started = time.perf_counter()
        self._traced = tracing.enabled()  # checked once a batch: no span at all without an SDK
        try:
            self._process(messages)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted, batch will be redone: %s", error)
            self.metrics.error("aborted")
            self._abort()
            self._rewind()
            return len(messages)
        self.metrics.batch((m.topic() or "" for m in messages), time.perf_counter() - started)
        return len(messages)

    def close(self) -> None:
        """Commit what batches without outputs left pending, then close the clients."""
        try:
            if self._deferred:
                self._commit_deferred()
        finally:
            unwatch_consumer(self._consumer)
            self._consumer.close()
            self._producer.flush(10)

    def _process(self, messages: list[Message]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        produced: list[dict[str, Any]] = []
        for msg in messages:
            produced += self._outputs_for(msg)
            next_offsets[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
        if self._on_batch_end is not None:  # e.g. a changelog of the state the batch changed
            produced += [encode_outbound(self.bus, extra) for extra in self._on_batch_end()]
        self.stats["records"] += len(messages)
        if not produced:  # it changed nothing that outlives the process: no transaction (module doc)
            if not self._deferred:
                self._deferred_since = time.monotonic()
            self._deferred |= next_offsets
            self.stats["deferred"] += 1
            return
        self._commit(produced, self._deferred | next_offsets)

    def _commit(self, produced: list[dict[str, Any]], offsets: dict[tuple[str, int], int]) -> None:
        with self._watchdog.watching(f"{self.group_id}'s transaction"):
            self._producer.begin_transaction()
            for out in produced:
                self._producer.produce(**out)
            failpoint("bus.before_commit")
            self._producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                self._consumer.consumer_group_metadata(),
                30,
            )
            self._producer.commit_transaction(30)
        failpoint("bus.after_commit")
        self._deferred.clear()
        self.stats["batches"] += 1

    def _abort(self) -> None:
        with self._watchdog.watching(f"{self.group_id}'s abort"):
            self._producer.abort_transaction(30)

    def _commit_deferred(self) -> None:
        """The offsets of batches that wrote nothing, in a transaction of their own."""
        try:
            self._commit([], dict(self._deferred))
        except KafkaException as exc:
            if not exc.args[0].txn_requires_abort():
                raise
            self._abort()  # left for the next transaction; nothing is lost
            log.warning("deferred offsets not committed, will be with the next batch: %s", exc)

    def _outputs_for(self, msg: Message) -> list[dict[str, Any]]:
        topic = msg.topic() or ""
        headers = _headers(msg)
        correlation_id = headers.get(CORRELATION_HEADER)
        span = (
            tracing.record_span(topic, headers, {"messaging.kafka.offset": msg.offset() or 0})
            if self._traced
            else _NO_SPAN
        )
        # Every log line while this record is handled (dead-lettering included) names its request.
        with correlation(correlation_id), span:
            try:
                inbound = decode_message(self.bus, msg, self._inputs[topic], headers)
                produced = [
                    encode_outbound(self.bus, o, correlation_id, traced=self._traced)
                    for o in self.handler(inbound)
                ]
            except UndecodableRecord as exc:
                return [self._dead_letter(msg, exc.reason_code, exc.reason)]
            except InvalidRecord as exc:
                return [self._dead_letter(msg, "INVALID_RECORD", str(exc))]
            if log.isEnabledFor(logging.DEBUG):  # the arguments alone cost per record
                log.debug("handled %s → %d records", inbound.position, len(produced))
            return produced

    def _dead_letter(self, msg: Message, code: str, reason: str) -> dict[str, Any]:
        log.warning(
            "dead-lettering %s[%s]@%s: %s %s", msg.topic(), msg.partition(), msg.offset(), code, reason
        )
        self.stats["dead_lettered"] += 1
        self.metrics.dead_letter(code)
        return encode_outbound(self.bus, dead_letter(msg, self.group_id, code, reason))

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._on_assign is not None and partitions:
            committed = consumer.committed(partitions, timeout=30)
            self._on_assign(
                {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in committed}
            )
        self.ready.set()

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:  # the next owner reads them again: they changed nothing
            self._deferred.pop((tp.topic, tp.partition), None)
        if self._on_revoke is not None:
            self._on_revoke([(tp.topic, tp.partition) for tp in partitions])

    def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset and rebuild the state there."""
        self.stats["aborts"] += 1
        self._deferred.clear()  # read again from the committed offsets
        committed = self._consumer.committed(self._consumer.assignment(), timeout=30)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            self._consumer.seek(tp)
        self._assigned(self._consumer, self._consumer.assignment())


def take_batch(
    consumer: Consumer,
    max_records: int,
    timeout_s: float,
    linger_s: float = 0,
    *,
    urgent: frozenset[str] | None = None,
) -> list[Message]:
    """Up to `max_records`: waiting at most `timeout_s` for the first, then taking what the client
    already holds; a batch with no record of an `urgent` topic then waits up to `linger_s` for more
    (for one of an urgent topic, or until full). `urgent` None: no topic is urgent.

    `Consumer.consume(n, timeout)` waits until n records *or* the timeout, so it is called here only
    with no timeout (what the client has fetched); waiting is `poll`'s, which returns at the first
    record: a lone urgent record never waits for company.
    """
    refresh_lag(consumer)  # here, in the consumer's own thread (observability.py says why)
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    batch = [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
    _raise_if_fatal(batch)
    if linger_s <= 0 or _has_urgent(batch, urgent):
        return batch
    deadline = time.monotonic() + linger_s
    while len(batch) < max_records:
        left = deadline - time.monotonic()
        more = consumer.poll(left) if left > 0 else None
        if more is None:
            break
        batch.append(more)
        if len(batch) < max_records:
            batch += consumer.consume(max_records - len(batch), 0)
        if _has_urgent(batch, urgent):
            break
    _raise_if_fatal(batch)
    return batch


def is_fatal(error: KafkaError) -> bool:
    """The client is dead for good: it must be closed and made anew, which for a service means
    exit and be restarted. librdkafka reports its own fatal errors (a static member fenced by
    another with its group.instance.id, a producer fenced) as an `_FATAL` error event whose
    `fatal()` flag is not set."""
    return bool(error.fatal()) or error.code() == KafkaError._FATAL


def _raise_if_fatal(batch: list[Message]) -> None:
    for message in batch:
        error = message.error()
        if error is not None and is_fatal(error):
            raise KafkaException(error)


def _has_urgent(batch: list[Message], urgent: frozenset[str] | None) -> bool:
    return urgent is not None and any(m.topic() in urgent for m in batch)


def watermarks(consumer: Consumer, partition: TopicPartition, timeout_s: float = 60) -> tuple[int, int]:
    """The partition's (low, high) watermarks, retried while metadata settles.

    Right after a topic is created, or while a leader moves, the broker answers
    NOT_LEADER_FOR_PARTITION or UNKNOWN_TOPIC_OR_PART for a moment, and librdkafka does not always
    flag these as retriable: a service starting then must wait, not die.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=10)
            return int(low), int(high)
        except KafkaException as error:
            if time.monotonic() > deadline:
                raise
            topic, number = partition.topic, partition.partition
            log.info("%s[%s]: watermarks not known yet (%s); retrying", topic, number, error)
            time.sleep(0.2)


def _headers(msg: Message) -> dict[str, bytes]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.encode() if isinstance(v, str) else (v or b"") for k, v in pairs}


def _usable(msg: Message) -> bool:
    error = msg.error()
    if error is None:
        return True
    if is_fatal(error):
        raise KafkaException(error)
    log.warning("consumer error (skipped, will retry): %s", error)
    return False


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the graceful-shutdown switch for `run` loops."""
    stop = threading.Event()

    def _handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


class ProjectionConsumer:
    """At-least-once reading for projectors: the sink writes idempotently, then offsets commit.

    Projections (Cassandra, ClickHouse) live outside Kafka, so they cannot join its transaction;
    instead every write is keyed by the event's log position, and a redelivered batch rewrites the
    same rows. Undecodable records go to dead letters before their offset is committed.
    """

    def __init__(self, bus: Bus, *, group_id: str, inputs: Sequence[TopicSpec], linger_s: float = 0) -> None:
        """`linger_s`: after a batch's first record, how long more may join it (a projector's
        gathering window: the more records a batch holds, the more writes coalesce)."""
        self.bus = bus
        self.group_id = group_id
        self.linger_s = linger_s
        self._inputs = {bus.topic(s).name: s for s in inputs}
        self._consumer = Consumer(bus.consumer_config(group_id))
        self._consumer.subscribe(list(self._inputs))
        self._dead_letters = TypedProducer(bus)
        self._pending: dict[tuple[str, int], int] = {}
        self.metrics = LoopMetrics(group_id)
        watch_consumer(self._consumer, group_id)

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Inbound]:
        """Up to `max_records` decoded records; poison ones are dead-lettered and left out."""
        batch: list[Inbound] = []
        started = time.perf_counter()
        messages = take_batch(self._consumer, max_records, timeout_s, self.linger_s)
        for msg in messages:
            if not _usable(msg):
                continue
            self._pending[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
            try:
                batch.append(decode_message(self.bus, msg, self._inputs[msg.topic() or ""]))
            except UndecodableRecord as exc:
                log.warning("dead-lettering %s@%s: %s", msg.topic(), msg.offset(), exc)
                self.metrics.dead_letter(exc.reason_code)
                self._dead_letters.send(dead_letter(msg, self.group_id, exc.reason_code, exc.reason))
        if messages:  # the time to take and decode it: the sink's write is the projector's own
            self.metrics.batch((m.topic() or "" for m in messages), time.perf_counter() - started)
        return batch

    def commit(self) -> None:
        """Commit everything polled so far; call after the sink has written it."""
        if not self._pending:
            return
        self._dead_letters.flush()
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()]
        self._consumer.commit(offsets=offsets, asynchronous=False)
        self._pending.clear()

    def close(self) -> None:
        unwatch_consumer(self._consumer)
        self._consumer.close()


def run_until_stopped(
    run_once: Callable[[], object], close: Callable[[], None], stop: threading.Event
) -> None:
    """A projector's loop: `run_once` until `stop` is set; `close` however the loop ends."""
    try:
        while not stop.is_set():
            run_once()
    finally:
        close()


def read_partition(bus: Bus, start: TopicPartition, until: int | None) -> Iterator[Message]:
    """Committed records of one partition from `start` to `until` (exclusive) or to its end."""
    # assign() only, never a commit: the group id is required by the client but never used.
    consumer = Consumer(bus.consumer_config("partition-reader") | {"enable.partition.eof": True})
    try:
        consumer.assign([start])
        while True:
            message = consumer.poll(10)
            if message is None:
                raise TimeoutError(f"no end of {start.topic}[{start.partition}] within 10 s")
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return
                raise RuntimeError(f"reading {start.topic}[{start.partition}]: {error}")
            if until is not None and (message.offset() or 0) >= until:
                return
            yield message
    finally:
        consumer.close()


def read_topic(bus: Bus, spec: TopicSpec, timeout_s: float = 10) -> Iterator[Message]:
    """Every committed record of every partition of `spec`, up to each partition's end, with one
    consumer (one connection, not one per partition)."""
    name = bus.topic(spec).name
    consumer = Consumer(bus.consumer_config("topic-reader") | {"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(spec.partitions)])
        pending = set(range(spec.partitions))
        while pending:
            message = consumer.poll(timeout_s)
            if message is None:
                raise TimeoutError(f"no end of {name} within {timeout_s} s")
            error = message.error()
            if error is None:
                yield message
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition() or 0)
            else:
                raise RuntimeError(f"reading {name}: {error}")
    finally:
        consumer.close()


__all__ = [
    "Bus",
    "Handler",
    "Inbound",
    "InvalidRecord",
    "Outbound",
    "ProjectionConsumer",
    "TransactionalProcessor",
    "TypedProducer",
    "read_partition",
    "read_topic",
    "stop_on_signals",
]
