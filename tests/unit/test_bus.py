"""The bus's pure helpers, with a stand-in consumer: no broker needed to test a retry rule."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.common.bus import watermarks


class ConsumerWhoseLeaderIsMoving:
    """Answers NOT_LEADER_FOR_PARTITION `failures` times, then the watermarks (3, 42)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return 3, 42


def test_watermarks_wait_while_a_new_topic_elects_its_leader() -> None:
    # State: a partition whose leader is not known for the first two asks.
    consumer = ConsumerWhoseLeaderIsMoving(failures=2)
    # Action / Expectation: the third ask answers, and that is what the caller gets.
    assert watermarks(consumer, TopicPartition("t", 0)) == (3, 42)  # type: ignore[arg-type]
    assert consumer.calls == 3


def test_watermarks_give_up_after_their_deadline() -> None:
    # State: a partition that never gets a leader.
    consumer = ConsumerWhoseLeaderIsMoving(failures=10**9)
    # Action / Expectation: the broker's error, once the deadline has passed.
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("t", 0), timeout_s=0.3)  # type: ignore[arg-type]
