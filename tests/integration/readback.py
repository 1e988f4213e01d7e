"""Reading topics back in tests, as a read_committed consumer from the beginning."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from services.common.bus import Bus, Inbound, decode_message
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
