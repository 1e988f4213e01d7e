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

from services.common.bus import Bus, Outbound, TypedProducer
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import ACCOUNTS_EVENTS, ensure_topics
from tests.integration.echo_processor import ECHO_OUT
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


def _start(settings: Settings, failpoints: str = "", idle_exit: float = 4.0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.run_until_idle", "echo", "--idle-exit", str(idle_exit)],
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


def _assert_each_input_exactly_once(bus: Bus, input_ids: list[str]) -> None:
    out = read_all(bus, ECHO_OUT, expect=len(input_ids))
    amounts = Counter(m.value["body"][1]["amount"] for m in out)
    assert len(out) == len(input_ids), f"{len(out)} outputs for {len(input_ids)} inputs"
    assert set(amounts) == {1_000 + n for n in range(RECORDS)} and max(amounts.values()) == 1
    assert len({m.value["event_id"] for m in out}) == len(out)


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
