"""The bus's pure helpers, with stand-in consumers: no broker needed to test a retry or batching rule."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.common.bus import take_batch, watermarks


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


@dataclass(frozen=True)
class Record:
    """What `take_batch` reads of a message: its topic."""

    name: str
    failure: KafkaError | None = None

    def topic(self) -> str:
        return self.name

    def error(self) -> KafkaError | None:
        return self.failure


class ConsumerFedInRounds:
    """A consumer that has fetched `rounds[0]` at once, and each later round by the next `poll`.

    `poll(timeout)` hands out the first record of the next round (or None when none are left,
    recording the wait it was given); `consume(n, 0)` what the current round still holds.
    """

    def __init__(self, *rounds: list[str]) -> None:
        self.rounds = deque(deque(Record(t) for t in r) for r in rounds)
        self.current: deque[Record] = deque()
        self.waits: list[float] = []

    def poll(self, timeout: float) -> Record | None:
        self.waits.append(timeout)
        if not self.rounds:
            return None
        self.current = self.rounds.popleft()
        return self.current.popleft()

    def consume(self, n: int, timeout: float) -> list[Record]:
        assert timeout == 0, "take_batch must never wait in consume (it waits for n records)"
        return [self.current.popleft() for _ in range(min(n, len(self.current)))]

    def assignment(self) -> list[TopicPartition]:
        return []


def _topics(batch: list[Any]) -> list[str]:
    return [m.topic() for m in batch]


def test_a_lone_urgent_record_goes_at_once() -> None:
    # State: one order fetched; postings would come later.
    consumer = ConsumerFedInRounds(["orders"], ["postings"])
    # Action: take a batch that may linger for non-urgent records.
    batch = take_batch(consumer, 50, 1.0, 0.5, urgent=frozenset({"orders"}))  # type: ignore[arg-type]
    # Expectation: the order alone, after one poll.
    assert _topics(batch) == ["orders"] and consumer.waits == [1.0]


def test_a_batch_takes_everything_already_fetched_up_to_its_maximum() -> None:
    consumer = ConsumerFedInRounds(["orders"] * 7)
    batch = take_batch(consumer, 5, 1.0, 0.5, urgent=frozenset({"orders"}))  # type: ignore[arg-type]
    assert _topics(batch) == ["orders"] * 5


def test_postings_wait_for_an_order_and_share_its_batch() -> None:
    # State: postings fetched, an order fetched by the next poll, more after it.
    consumer = ConsumerFedInRounds(["postings", "postings"], ["orders", "postings"], ["postings"])
    # Action.
    batch = take_batch(consumer, 50, 1.0, 0.5, urgent=frozenset({"orders"}))  # type: ignore[arg-type]
    # Expectation: the batch closes with the order's round; the last round is left for the next.
    assert _topics(batch) == ["postings", "postings", "orders", "postings"]
    assert len(consumer.rounds) == 1


def test_postings_alone_wait_no_longer_than_the_linger() -> None:
    consumer = ConsumerFedInRounds(["postings"])
    batch = take_batch(consumer, 50, 1.0, 0.05, urgent=frozenset({"orders"}))  # type: ignore[arg-type]
    assert _topics(batch) == ["postings"]
    assert consumer.waits[0] == 1.0 and 0 < consumer.waits[1] <= 0.05


def test_without_urgent_topics_a_batch_lingers_until_full() -> None:
    consumer = ConsumerFedInRounds(["a"], ["a", "a"], ["a", "a"])
    batch = take_batch(consumer, 4, 1.0, 0.5)  # type: ignore[arg-type]
    assert _topics(batch) == ["a"] * 4


def test_a_fatal_client_error_stops_the_loop_instead_of_being_retried_for_ever() -> None:
    # State: librdkafka reported a static member fenced by another with its group.instance.id: an
    # _FATAL error event whose fatal() flag is not set.
    fenced = KafkaError(KafkaError._FATAL, "Static consumer fenced by other consumer")
    consumer = ConsumerFedInRounds([])
    consumer.current = deque([Record("orders", fenced)])
    consumer.rounds = deque([deque([Record("orders", fenced)])])
    # Action / Expectation: take_batch raises (the service exits and is restarted).
    assert not fenced.fatal()
    with pytest.raises(KafkaException):
        take_batch(consumer, 50, 1.0)  # type: ignore[arg-type]
