"""Reading topics back in tests, as a read_committed consumer from the beginning."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common.bus import Bus, Inbound, decode_message, watermarks
from services.common.topics import TopicSpec


def read_all(bus: Bus, spec: TopicSpec, *, expect: int, timeout_s: float = 30) -> list[Inbound]:
    """Every committed record of `spec` once at least `expect` arrived and the topic went quiet."""
    consumer = Consumer(bus.consumer_config(f"readback-{uuid.uuid4().hex}"))
    consumer.subscribe([bus.topic(spec).name])
    found: list[Inbound] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(500, 0.5) if m.error() is None]
            if batch:
                found.extend(decode_message(bus, m, spec) for m in batch)
                quiet_since = time.monotonic()
            elif len(found) >= expect and time.monotonic() - quiet_since > 1.5:
                break
    finally:
        consumer.close()
    return found


def log_end(bus: Bus, spec: TopicSpec) -> int:
    """Sum of the high watermarks of `spec`'s partitions (grows as anything is written)."""
    consumer = Consumer(bus.consumer_config(f"watermarks-{uuid.uuid4().hex}"))
    try:
        name = bus.topic(spec).name
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        return sum(watermarks(consumer, TopicPartition(name, p))[1] for p in partitions)
    finally:
        consumer.close()


# Metadata not settled yet (a topic just created, a leader moving): librdkafka does not always
# flag these as retriable when they come back from a watermark query.
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._TIMED_OUT,
}


def _settling(exc: KafkaException) -> bool:
    error: KafkaError = exc.args[0]
    return error.retriable() or error.code() in _SETTLING


def wait_for_growth(bus: Bus, spec: TopicSpec, beyond: int, timeout_s: float = 60) -> int:
    """Block until `spec` has grown past `beyond`; returns the new end."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (end := log_end(bus, spec)) > beyond:
                return end
        except KafkaException as exc:
            if not _settling(exc):
                raise
        time.sleep(0.05)
    raise TimeoutError(f"{spec.name} did not grow past {beyond} in {timeout_s} s")


def delete_prefixed_topics(client_config: dict[str, Any], prefix: str) -> None:
    """Delete every topic named `<prefix>…` (a test's own); waits for the deletions to be accepted."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = AdminClient(client_config)  # `Bus.client_config()`
    names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
        future.result()
