"""The matcher through Kafka: the trade log equals the in-process engine's, through SIGKILLs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.partitioning import partition_for
from services.common.records import MatcherCommand
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import MATCHER_COMMANDS, MATCHER_SNAPSHOTS, RISK_POSTINGS, TRADE_LOG
from services.matcher.core.engine import MatchingEngine
from services.replay.cli import read_topic_commands, replay_engine
from services.replay.flows import realistic_flow
from tests.integration.readback import read_all, wait_for_growth

COMMANDS = 3_000


def _start(settings: Settings, idle_exit: float = 4.0) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "BATCH_MAX_MESSAGES": "20",
        "SNAPSHOT_EVERY": "200",
        "SNAPSHOT_COMMANDS_PER_ORDER": "0",  # by count alone: many snapshots to recover from
        "LOG_JSON": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.run_until_idle", "matcher", "--idle-exit", str(idle_exit)],
        cwd=REPO_ROOT,
        env=env,
    )


@pytest.fixture
def recorded_flow(bus: Bus) -> list[MatcherCommand]:
    """matcher.commands holding a listing and a realistic flow for BTC-PERP."""
    flow = realistic_flow(COMMANDS, seed=11)
    producer = TypedProducer(bus)
    for command in flow:
        producer.send(Outbound(MATCHER_COMMANDS, key=command.market, value=to_avro(command)))
    producer.flush()
    return flow


def _expected_trade_log(flow: list[MatcherCommand]) -> list[tuple[int, list[tuple[str, dict[str, Any]]]]]:
    """(first_seq, events) of every command's trade-log entry, as the engine alone gives them."""
    engine = MatchingEngine()
    expected = []
    for command in flow:
        result = engine.apply(command)
        events = [(f"exchange.cxpt.{type(e).__name__}", to_avro(e)) for e in result.events]
        expected.append((result.first_seq, events))
    return expected


def _risk_partitions(events: list[tuple[str, dict[str, Any]]]) -> set[int]:
    if any(name.endswith("MarketCreated") for name, _ in events):
        return set(range(RISK_POSTINGS.partitions))
    return {partition_for(body["trader"], RISK_POSTINGS.partitions) for _, body in events if "trader" in body}


def test_trade_log_survives_sigkills_exactly(
    settings: Settings, bus: Bus, recorded_flow: list[MatcherCommand]
) -> None:
    # State: COMMANDS commands waiting. Action: three times, as soon as the matcher has written
    # some of the trade log, it is SIGKILLed at a random moment; then it runs to the end
    # (snapshots every 200 commands, 20 commands per transaction).
    rng = random.Random(20261123)
    end = 0
    for _ in range(3):
        victim = _start(settings, idle_exit=60)
        end = wait_for_growth(bus, TRADE_LOG, beyond=end)
        time.sleep(rng.uniform(0.0, 0.4))
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    assert end < len(_expected_trade_log(recorded_flow)), "the kills landed before the work was done"
    assert _start(settings).wait(180) == 0

    # Expectation: the trade log is exactly what the engine alone produces — one entry per command,
    # same events, same sequence numbers, each once — and each entry is on risk.postings, once on
    # every partition owning one of its traders (the listing on all of them).
    expected = _expected_trade_log(recorded_flow)
    log = read_all(bus, TRADE_LOG, expect=len(expected), timeout_s=60)
    assert [(m.value["first_seq"], m.value["events"]) for m in log] == expected
    assert len({m.value["source"] for m in log}) == len(log)
    postings = read_all(bus, RISK_POSTINGS, expect=sum(len(_risk_partitions(e)) for _, e in expected))
    by_source: dict[str, set[int]] = {}
    for posting in postings:
        assert posting.partition not in by_source.setdefault(posting.value["source"], set()), "duplicate"
        by_source[posting.value["source"]].add(posting.partition)
    assert by_source == {m.value["source"]: _risk_partitions(m.value["events"]) for m in log}
    assert read_all(bus, MATCHER_SNAPSHOTS, expect=1), "snapshots were taken"
    # And replaying the command topic offline reproduces the live log record for record, ids included.
    _, replayed = replay_engine(read_topic_commands(bus, MATCHER_COMMANDS, None, 0, None))
    assert list(replayed) == [m.value for m in log]
