"""The funding/expiry service SIGKILLed again and again: no interval paid twice, none skipped.

The matcher and the oracle run in this process; funding/expiry runs as a subprocess, killed with
SIGKILL at random moments (mid-tick, mid-send, mid-catch-up) and restarted, while a perpetual is
funded every 2 s and a future reaches its expiry. Exactly once rests on two things
(docs/derivatives.md): the service rebuilds from the log, so it resends what the log lacks; the
matcher refuses an interval it already applied, so a resend is never booked twice.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time

from msgspec.structs import replace

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.records import CreateMarket, MarketKind, MatcherCommand
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import MATCHER_COMMANDS, TRADE_LOG
from services.matcher.service import MatcherService
from services.oracle.adapters.clock import system_clock
from services.oracle.service import OracleService
from services.oracle.wiring import policy_from, sources_from
from tests.integration.stack import running
from tests.integration.test_derivatives_lifecycle import _lifecycle_settings, _log_events
from tests.integration.test_risk_service import Tail
from tests.kit import btc_perp, order_id

PERP, FUTURE = "BTC-PERP", "BTC-FUT"


def _start_funding(settings: Settings) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "ORACLE_INTERVAL_S": str(settings.oracle_interval_s),
        "FUNDING_INTERVAL_S": str(settings.funding_interval_s),
        "SETTLEMENT_WINDOW_S": str(settings.settlement_window_s),
        "MARK_BASIS_ROUNDS": str(settings.mark_basis_rounds),
        "LOG_JSON": "false",
    }
    return subprocess.Popen([sys.executable, "-m", "services.funding"], cwd=REPO_ROOT, env=env)


def _list(bus: Bus, now_us: int, expiry_us: int) -> None:
    producer = TypedProducer(bus)
    perp = btc_perp()
    for n, definition in enumerate(
        (perp, replace(perp, market=FUTURE, kind=MarketKind.FUTURE, expiry=expiry_us))
    ):
        create = MatcherCommand(
            command_id=order_id(9_100_000 + n), market=definition.market, ts_init=now_us,
            body=CreateMarket(definition=definition),
        )  # fmt: skip
        producer.send(Outbound(MATCHER_COMMANDS, key=definition.market, value=to_avro(create)))
    producer.flush()


def test_sigkilled_funding_neither_pays_twice_nor_skips(settings: Settings, bus: Bus) -> None:
    # State: a perpetual funded every 2 s and a future expiring 9 s after listing; the oracle and
    # the matcher running.
    settings = _lifecycle_settings(settings)
    bus = Bus(settings)
    now_us = time.time_ns() // 1_000
    _list(bus, now_us, expiry_us=(now_us // 1_000_000 + 9) * 1_000_000)
    oracle = OracleService(bus, sources_from(settings, system_clock), policy_from(settings))
    log = Tail(bus, TRADE_LOG)
    rng = random.Random(20261124)
    try:
        with running(MatcherService(Bus(settings))), running(oracle):
            # Action: funding/expiry killed (SIGKILL) five times at random moments, then left running.
            for _ in range(5):
                victim = _start_funding(settings)
                time.sleep(rng.uniform(0.5, 3.5))
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)
            survivor = _start_funding(settings)
            try:

                def done(entries: list) -> bool:  # type: ignore[type-arg]
                    funded = [b for m, b in _log_events(entries, "FundingApplied") if m == PERP]
                    settled = [m for m, _ in _log_events(entries, "MarketSettled")]
                    return len(funded) >= 8 and settled == [FUTURE]

                entries = log.until(done, timeout_s=60)
            finally:
                survivor.send_signal(signal.SIGTERM)
                survivor.wait(15)
    finally:
        log.close()
    # Expectation: the funded intervals follow one another without a gap or a repeat, and the
    # future settled once (resends after a kill were refused by the matcher, never booked).
    intervals = [
        (b["interval_start"], b["interval_end"])
        for m, b in _log_events(entries, "FundingApplied")
        if m == PERP
    ]
    assert len(intervals) == len(set(intervals)), intervals
    ordered = sorted(intervals)
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(ordered)), ordered
    assert ordered[0][0] <= now_us + 2 * settings.funding_interval_s * 1_000_000  # none lost at the start
    assert [m for m, _ in _log_events(entries, "MarketSettled")] == [FUTURE]
