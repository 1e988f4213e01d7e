"""Exactly once through crashes: SIGKILL the processor anywhere; nothing lost, nothing doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from services.common.bus import Bus, Outbound, TypedProducer
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import ACCOUNTS_EVENTS, ensure_topics
from tests.integration.echo_processor import ECHO_OUT, GROUP_ID, SILENT_AMOUNTS
from tests.integration.readback import read_all
from tests.kit import deposit_event, trader_address

RECORDS = 300


def _env(settings: Settings, failpoints: str = "") -> dict[str, str]:
    return os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "BATCH_MAX_MESSAGES": "10",
        "CXPT_FAILPOINTS": failpoints,
        "LOG_JSON": "false",
    }


def _start(
    settings: Settings, failpoints: str = "", idle_exit: float = 4.0, service: str = "echo"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.run_until_idle", service, "--idle-exit", str(idle_exit)],
        cwd=REPO_ROOT,
        env=_env(settings, failpoints),
    )


@pytest.fixture
def loaded_input(bus: Bus) -> list[str]:
    """accounts.events holding RECORDS deposits, committed in one transaction; returns their ids."""
    ensure_topics(bus.client_config(), [bus.topic(ECHO_OUT)])
    producer = TypedProducer(bus, transactional_id=f"{bus.settings.topic_prefix}loader")
    events = [deposit_event(trader=trader_address(n % 17), amount=1_000 + n, n=n) for n in range(RECORDS)]
    with producer.transaction():
        for e in events:
            producer.send(Outbound(ACCOUNTS_EVENTS, key=e["trader"], value=e))
    return [e["event_id"] for e in events]


def _assert_each_input_exactly_once(bus: Bus, input_ids: list[str], *, silent: range = range(0)) -> None:
    wanted = {1_000 + n for n in range(RECORDS)} - set(silent)
    out = read_all(bus, ECHO_OUT, expect=len(wanted))
    amounts = Counter(m.value["body"][1]["amount"] for m in out)
    assert len(out) == len(wanted), f"{len(out)} outputs for {len(wanted)} inputs"
    assert set(amounts) == wanted and max(amounts.values()) == 1
    assert len({m.value["event_id"] for m in out}) == len(out)


def _committed(bus: Bus) -> int:
    """Sum of the echo group's committed offsets over accounts.events."""
    name = bus.topic(ACCOUNTS_EVENTS).name
    consumer = Consumer(bus.consumer_config(GROUP_ID))
    try:
        partitions = [TopicPartition(name, p) for p in range(ACCOUNTS_EVENTS.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=30))
    finally:
        consumer.close()


@pytest.mark.parametrize("failpoint", ["bus.before_commit=kill@3", "bus.after_commit=kill@2"])
def test_kill_at_the_commit_boundary_neither_loses_nor_duplicates(
    settings: Settings, bus: Bus, loaded_input: list[str], failpoint: str
) -> None:
    # State: RECORDS committed inputs. Action: the processor SIGKILLs itself at the boundary...
    crashed = _start(settings, failpoint)
    assert crashed.wait(60) == -signal.SIGKILL
    # ...and a new instance with the same transactional id finishes the work.
    assert _start(settings).wait(120) == 0
    # Expectation: every input appears exactly once downstream.
    _assert_each_input_exactly_once(bus, loaded_input)


def test_random_sigkills_neither_lose_nor_duplicate(
    settings: Settings, bus: Bus, loaded_input: list[str]
) -> None:
    rng = random.Random(20261123)
    for _ in range(3):
        victim = _start(settings, idle_exit=30)
        time.sleep(rng.uniform(2.0, 4.0))
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    assert _start(settings).wait(120) == 0
    _assert_each_input_exactly_once(bus, loaded_input)


@pytest.mark.parametrize(
    "failpoint", ["bus.before_commit=kill@2", "bus.after_commit=kill@2", "bus.after_commit=kill@6"]
)
def test_batches_that_write_nothing_are_committed_later_and_lose_nothing(
    settings: Settings, bus: Bus, loaded_input: list[str], failpoint: str
) -> None:
    # State: RECORDS inputs, 150 of which in a row the processor writes nothing for; batches of
    # them open no transaction, their offsets wait for the next one.
    # Action: SIGKILL at a commit boundary, with deferred offsets pending; a new instance finishes.
    crashed = _start(settings, failpoint, service="echo-sparse")
    assert crashed.wait(60) == -signal.SIGKILL
    assert _start(settings, service="echo-sparse").wait(120) == 0
    # Expectation: each written input exactly once, and every input's offset committed at the end
    # (the last deferred ones when the processor closed): offsets 0…n-1 of each partition.
    _assert_each_input_exactly_once(bus, loaded_input, silent=SILENT_AMOUNTS)
    assert _committed(bus) == RECORDS
