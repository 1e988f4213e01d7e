"""The oracle on real Kafka and Cassandra, with a real HTTP server speaking Pyth Hermes's format.

Sources: the deterministic simulated feed (three BTC feeds, one biased on purpose, one ETH feed)
and a local Hermes server (a BTC price that agrees, an ETH price published 10 minutes ago, and an
id it does not know). Time is a test clock stepping 30 s per round from the wall clock's now.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from cassandra.cluster import Session

from services.common.bus import Bus
from services.common.records import IndexPrice, QuoteStatus
from services.common.topics import ORACLE_PRICES
from services.oracle.adapters.pyth import PythSource
from services.oracle.adapters.simulated import SimulatedFeed, SimulatedSource, simulated_price
from services.oracle.core import OraclePolicy, OracleState, run_round
from services.oracle.ports import PriceSource
from services.oracle.service import OracleService
from services.projector import prices as price_queries
from services.projector.prices import PricesProjector, day_of
from tests.integration.readback import read_all

pytestmark = pytest.mark.integration

SEED = 7
BTC_START, ETH_START = 65_000 * 10**9, 3_500 * 10**9
BTC_ID, ETH_ID, UNKNOWN_ID = "aa" * 32, "bb" * 32, "cc" * 32
STEP_US = 30_000_000
POLICY = OraclePolicy(max_age_s=120, max_deviation_bps=200, max_confidence_bps=100, twap_windows_s=(60, 300))


class RoundClock:
    """The round time: starts at the wall clock's second, moved by the test."""

    def __init__(self) -> None:
        self.now_us = time.time_ns() // 1000 // 1_000_000 * 1_000_000

    def __call__(self) -> int:
        return self.now_us


class Hermes(BaseHTTPRequestHandler):
    """GET /v2/updates/price/latest?ids[]=…: the simulated path in Pyth's format (expo −8)."""

    clock: RoundClock

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/v2/updates/price/latest":
            self.send_error(404)
            return
        ids = [i.removeprefix("0x") for i in parse_qs(url.query).get("ids[]", [])]
        t_s = self.clock() // 1_000_000
        parsed = []
        for price_id in ids:
            if price_id == BTC_ID:
                parsed.append(_entry(price_id, simulated_price(SEED, "BTC-USD", BTC_START, t_s), t_s))
            elif price_id == ETH_ID:  # published 10 minutes ago: STALE
                parsed.append(_entry(price_id, simulated_price(SEED, "ETH-USD", ETH_START, t_s), t_s - 600))
        body = json.dumps({"binary": {"encoding": "hex", "data": []}, "parsed": parsed}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def _entry(price_id: str, price_e9: int, publish_time: int) -> dict[str, object]:
    price = {"price": str(price_e9 // 10), "conf": str(price_e9 // 10 // 5_000), "expo": -8,
             "publish_time": publish_time}  # fmt: skip
    return {"id": price_id, "price": price, "ema_price": price}


@pytest.fixture
def clock() -> RoundClock:
    return RoundClock()


@pytest.fixture
def hermes(clock: RoundClock) -> Iterator[str]:
    handler = type("BoundHermes", (Hermes,), {"clock": clock})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sources(clock: RoundClock, hermes: str) -> list[PriceSource]:
    simulated = SimulatedSource(
        [
            SimulatedFeed("BTC-USD", BTC_START, feed="sim-a"),
            SimulatedFeed("BTC-USD", BTC_START, feed="sim-b"),
            SimulatedFeed("BTC-USD", BTC_START, feed="sim-biased", bias_bps=500),  # 5 %: DEVIATING
            SimulatedFeed("ETH-USD", ETH_START, feed="sim-eth"),
        ],
        seed=SEED,
        clock=clock,
    )
    pyth = PythSource(hermes, {BTC_ID: "BTC-USD", ETH_ID: "ETH-USD", UNKNOWN_ID: "SOL-USD"}, timeout_s=5)
    return [simulated, pyth]


def run_rounds(service: OracleService, clock: RoundClock, n: int) -> list[IndexPrice]:
    published = []
    for _ in range(n):
        clock.now_us += STEP_US
        published += service.run_once()
    return published


def test_rounds_carry_every_verdict_and_reach_the_topic(bus: Bus, clock: RoundClock, hermes: str) -> None:
    # State: the sources above. Action: three rounds.
    service = OracleService(bus, sources(clock, hermes), POLICY, clock=clock, interval_s=30)
    try:
        published = run_rounds(service, clock, 3)
    finally:
        service.close()
    # Expectation: one record per index per round, with each source's verdict.
    records = [m.record for m in read_all(bus, ORACLE_PRICES, expect=9)]
    assert records == published
    assert [r.index_symbol for r in records[:3]] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    btc, eth, sol = records[-3:]
    assert {q.feed: q.status for q in btc.quotes} == {
        "sim-a": QuoteStatus.ACCEPTED, "sim-b": QuoteStatus.ACCEPTED,
        "sim-biased": QuoteStatus.DEVIATING, f"0x{BTC_ID}": QuoteStatus.ACCEPTED,
    }  # fmt: skip
    assert {q.feed: q.status for q in eth.quotes} == {
        "sim-eth": QuoteStatus.ACCEPTED,
        f"0x{ETH_ID}": QuoteStatus.STALE,
    }
    assert [(q.status, q.reason) for q in sol.quotes] == [
        (QuoteStatus.UNAVAILABLE, "no price for this id in the answer")
    ]
    # The index is the simulated path at the round's second (every accepted quote agrees on it,
    # Pyth's to its 1e-8 resolution), and the biased feed did not move it.
    t_s = btc.ts_event // 1_000_000
    path = simulated_price(SEED, "BTC-USD", BTC_START, t_s)
    assert btc.price_e9 == path
    assert eth.price_e9 == simulated_price(SEED, "ETH-USD", ETH_START, t_s)
    assert sol.price_e9 is None
    # The 60 s window ends with the round's microsecond: it holds the last two rounds (the first is
    # 1 µs before it and only prices its start); the 300 s window holds all three.
    assert [t.samples for t in btc.twaps] == [2, 3]
    assert "max age 120 s" in next(q.reason for q in eth.quotes if q.status is QuoteStatus.STALE)


def test_twaps_survive_a_restart(bus: Bus, clock: RoundClock, hermes: str) -> None:
    # State: a service that published 6 rounds (3 minutes), then stopped.
    first = OracleService(bus, sources(clock, hermes), POLICY, clock=clock, interval_s=30)
    try:
        before = run_rounds(first, clock, 6)
    finally:
        first.close()
    # Action: a new process starts (it reads oracle.prices back) and runs the 7th round.
    second = OracleService(bus, sources(clock, hermes), POLICY, clock=clock, interval_s=30)
    try:
        after = run_rounds(second, clock, 1)
    finally:
        second.close()
    # Expectation: the same round an uninterrupted core would have produced from the same items.
    # (The sources are functions of time: the same clock times give the same items.)
    state = OracleState()
    reference: list[IndexPrice] = []
    clock.now_us -= 7 * STEP_US
    replayed = sources(clock, hermes)
    for _ in range(7):
        clock.now_us += STEP_US
        items = [item for source in replayed for item in source.fetch()]
        result = run_round(POLICY, state, clock.now_us, items)
        state, reference = result.state, result.prices
    assert after == reference
    btc = after[0]
    assert [(t.window_s, t.samples) for t in btc.twaps] == [(60, 2), (300, 7)]
    assert len(before) == 18


def test_the_projector_writes_rows_that_expire_in_7_days(
    bus: Bus, clock: RoundClock, hermes: str, cassandra_session: Session
) -> None:
    keyspace = bus.settings.cassandra_keyspace
    # State: four rounds on oracle.prices.
    service = OracleService(bus, sources(clock, hermes), POLICY, clock=clock, interval_s=30)
    try:
        published = run_rounds(service, clock, 4)
    finally:
        service.close()
    # Action: project them.
    projector = PricesProjector(bus, cassandra_session, group_id=f"prices-{bus.settings.topic_prefix}")
    try:
        _project_all(projector, 12)
    finally:
        projector.close()
    # Expectation: one row per round with a 7-day TTL (these rounds are "now": all of it), the
    # latest row per index, and range reads that give the rounds back.
    btc = [p for p in published if p.index_symbol == "BTC-USD"]
    rows = _select(cassandra_session, keyspace, "TTL(price_e9) AS ttl, WRITETIME(price_e9) AS wt", btc)
    assert len(rows) == 4
    assert all(604_800 - 60 <= r.ttl <= 604_800 for r in rows)
    assert sorted(r.wt for r in rows) == [p.ts_event for p in btc]
    latest = price_queries.latest_price(cassandra_session, keyspace, "BTC-USD")
    assert latest is not None
    assert (latest.ts_event, latest.price_e9) == (btc[-1].ts_event // 1000 * 1000, btc[-1].price_e9)
    assert latest.twaps == {t.window_s: t.price_e9 for t in btc[-1].twaps}
    ranged = price_queries.prices_between(
        cassandra_session, keyspace, "BTC-USD", since_us=btc[0].ts_event, until_us=btc[-1].ts_event + 1
    )
    assert [r.price_e9 for r in ranged] == [p.price_e9 for p in reversed(btc)]
    assert json.loads(ranged[0].quotes)[2]["status"] == "DEVIATING"
    assert price_queries.latest_price(cassandra_session, keyspace, "SOL-USD") is None  # never priced
    # Action: a rebuild from offset 0 (another group). Expectation: the same cells, same write times.
    snapshot = _cells(cassandra_session, keyspace, btc)
    rebuild = PricesProjector(bus, cassandra_session, group_id=f"prices-rebuild-{bus.settings.topic_prefix}")
    try:
        _project_all(rebuild, 12)
    finally:
        rebuild.close()
    assert _cells(cassandra_session, keyspace, btc) == snapshot


def _project_all(projector: PricesProjector, expect: int) -> None:
    deadline, seen = time.monotonic() + 30, 0
    while seen < expect and time.monotonic() < deadline:
        seen += projector.run_once(timeout_s=0.5)
    assert seen == expect


def _select(session: Session, keyspace: str, columns: str, rounds: list[IndexPrice]) -> list[Any]:
    """`columns` of the BTC rows of `rounds`' days (a midnight may fall between rounds)."""
    found = []
    for day in sorted({day_of(p.ts_event) for p in rounds}):
        found += session.execute(
            f"SELECT {columns} FROM {keyspace}.prices WHERE index_symbol = %s AND day = %s", ("BTC-USD", day)
        ).all()
    return found


def _cells(session: Session, keyspace: str, rounds: list[IndexPrice]) -> list[tuple[object, ...]]:
    columns = "ts_event, price_e9, twaps, accepted, sources, quotes, WRITETIME(price_e9) AS wt"
    return sorted(tuple(r) for r in _select(session, keyspace, columns, rounds))
