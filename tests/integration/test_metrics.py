"""Metrics on real Kafka and the real embedded ClickHouse engine, in this process (chdb admits one
process per data path: the consumer and the HTTP API run here, never in a subprocess).

The Done-means test: a known sequence of trades gives exactly the expected 1-minute and daily
rows; reading the log again and rolling the day up twice changes nothing; a rebuild into a fresh
database compares equal; the read-only SQL path answers the documented examples and refuses writes.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.records import AccountEvent, PositionChanged, Side
from services.common.topics import ACCOUNTS_EVENTS, TRADE_LOG
from services.matcher.core.engine import MatchingEngine, log_entry
from services.metrics.app import create_app
from services.metrics.lake import export
from services.metrics.queries import EXAMPLES
from services.metrics.rollup import rollup
from services.metrics.service import compare, rebuild_into
from services.metrics.store import Store
from services.replay.rebuild import rebuild_clickhouse
from tests.kit import Commands, order_id, trader_address

ALICE, BOB, CAROL = trader_address(0xA11CE), trader_address(0xB0B), trader_address(0xCA401)
DAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # inside the hot tier's 48 h
NOON = dt.datetime.combine(DAY, dt.time(12), tzinfo=dt.UTC)
NOON_US = int(NOON.timestamp()) * 1_000_000
S = 1_000_000  # one second in µs


def at(seconds: int) -> int:
    return NOON_US + seconds * S


def known_flow() -> tuple[list[Any], list[AccountEvent]]:
    """Four trades on BTC-PERP (qptl 100, fee 50 bp each side): three in 12:00, one in 12:01, then a
    mark; and the position changes risk would write for them."""
    engine, b = MatchingEngine(), Commands("BTC-PERP", start_us=NOON_US)
    commands = [
        b.create(),
        b.limit(ALICE, Side.SELL, 3, 650_000, at=at(10)),  # order 2 rests
        b.limit(BOB, Side.BUY, 2, 650_000, at=at(20)),  # trade 1: 2 @ 650 000
        b.limit(ALICE, Side.SELL, 1, 650_010, at=at(30)),  # order 4 rests
        b.limit(BOB, Side.BUY, 2, 650_010, at=at(40)),  # trades 2, 3: 1 @ 650 000, 1 @ 650 010
        b.limit(CAROL, Side.SELL, 1, 649_990, at=at(65)),  # order 6 rests
        b.limit(ALICE, Side.BUY, 1, 649_990, at=at(70)),  # trade 4: 1 @ 649 990
        b.set_mark(650_000, at=at(90)),
    ]
    entries = [log_entry(c, engine.apply(c), f"matcher.commands:0:{n}") for n, c in enumerate(commands)]

    def position(n: int, trader: str, size: int, delta: int, basis: int, s: int) -> AccountEvent:  # noqa: PLR0917
        body = PositionChanged(
            trader=trader, market="BTC-PERP", order_id=order_id(n), trade_id=n, size=size,
            delta_size=delta, basis=basis, collateral=basis, realized_pnl=0, last_px=650_000,
        )  # fmt: skip
        return AccountEvent(event_id=f"risk.postings:0:{n}:0", trader=trader, ts_event=at(s), body=body)

    events = [
        position(1, BOB, 2, 2, 130_000_000, 20),
        position(2, ALICE, -2, -2, 130_000_000, 20),
        position(3, BOB, 4, 2, 260_001_000, 40),
        position(4, ALICE, -4, -2, 260_001_000, 40),
        position(5, ALICE, -3, 1, 195_000_750, 70),
        position(6, CAROL, -1, -1, 64_999_000, 70),
    ]
    return entries, events


def produce(bus: Bus, entries: list[Any], events: list[AccountEvent]) -> None:
    producer = TypedProducer(
        bus, transactional_id=f"{bus.settings.topic_prefix}metrics-{uuid.uuid4().hex[:6]}"
    )
    with producer.transaction():
        for entry in entries:
            producer.send(Outbound(TRADE_LOG, key=entry.market, value=to_avro(entry)))
        for event in events:
            producer.send(Outbound(ACCOUNTS_EVENTS, key=event.trader, value=to_avro(event)))


@pytest.fixture
def loaded(bus: Bus, clickhouse_client: Client) -> Iterator[Store]:
    """The known flow on the log, projected once by the metrics consumer (in this process)."""
    produce(bus, *known_flow())
    rebuild_into(bus.settings, bus.settings.clickhouse_database, client=clickhouse_client, timeout_s=60)
    yield Store(clickhouse_client, bus.settings.clickhouse_database)


def minute_rows(store: Store) -> list[tuple[Any, ...]]:
    return store.rows(
        "SELECT bucket, market, sum(trades), sum(volume), sum(notional), sum(fees), max(high), min(low), "
        "argMinMerge(open), argMaxMerge(close) FROM {db}.trades_1m GROUP BY bucket, market ORDER BY bucket"
    )


def daily_rows(store: Store) -> list[tuple[Any, ...]]:
    return store.rows(
        "SELECT day, market, trades, volume, notional, fees, open, high, low, close, oi_close, oi_change, "
        "funding_rate_e9, funding_intervals, iv_avg FROM {db}.daily_markets FINAL ORDER BY day, market"
    )


def trader_rows(store: Store) -> list[tuple[Any, ...]]:
    return store.rows("SELECT * FROM {db}.daily_traders FINAL ORDER BY trader, market")


def test_known_trades_give_exactly_the_expected_minute_and_daily_rows(
    loaded: Store, bus: Bus, clickhouse_client: Client
) -> None:
    store = loaded
    minute = NOON.replace(tzinfo=None)
    # Expectation (hot): 12:00 holds trades 1–3, 12:01 trade 4 — counts, lots, notional
    # (price × size × 100), fees (0.5 % each side) and OHLC, exactly.
    assert minute_rows(store) == [
        (minute, "BTC-PERP", 3, 4, 260_001_000, 2_600_010, 650_010, 650_000, 650_000, 650_010),
        (minute + dt.timedelta(minutes=1), "BTC-PERP", 1, 1, 64_999_000, 649_990, 649_990, 649_990, 649_990,
         649_990),
    ]  # fmt: skip

    # Action: the 00:00 roll-up of the day, twice.
    first = rollup(store, DAY)
    markets_once, traders_once = daily_rows(store), trader_rows(store)
    assert rollup(store, DAY) == first == {"daily_markets": 1, "daily_traders": 3}

    # Expectation (warm): one row for the day, the same after the second run.
    assert markets_once == [
        (
            DAY,
            "BTC-PERP",
            4,
            5,
            325_000_000,
            3_250_000,
            650_000,
            650_010,
            649_990,
            649_990,
            4,
            4,
            None,
            0,
            None,
        )
    ]
    assert daily_rows(store) == markets_once and trader_rows(store) == traders_once
    bob = next(r for r in traders_once if r[1] == BOB)
    # Bob: 3 fills as taker, long 4 at a basis of 260 001 000, marked at 650 000: −1 000 unrealised.
    assert bob[3:6] == (3, 260_001_000, 1_300_005) and bob[9:] == (4, 260_001_000, 650_000, -1_000)

    # Action: the consumer reads the whole log again into the same database (a restart).
    before = store.rows("SELECT count() FROM {db}.trades")
    rebuild_into(bus.settings, store.database, client=clickhouse_client, timeout_s=60)
    # Expectation: no row written twice — not even before a merge — and the same minutes.
    assert store.rows("SELECT count() FROM {db}.trades") == before == [(4,)]
    assert minute_rows(store)[0][2:6] == (3, 4, 260_001_000, 2_600_010)

    # Action: a rebuild into a fresh database (the replay engineer's path), rolled up the same way.
    fresh = f"{store.database}_rebuild"
    try:
        rebuild_into(bus.settings, fresh, client=clickhouse_client, timeout_s=60)
        rollup(Store(clickhouse_client, fresh), DAY)
        # Expectation: the two databases compare equal, table by table; a change is reported.
        assert compare(clickhouse_client, store.database, fresh) == []
        clickhouse_client.command(
            f"ALTER TABLE {fresh}.daily_markets DELETE WHERE 1 SETTINGS mutations_sync = 1"
        )
        assert [d.split(":")[0] for d in compare(clickhouse_client, store.database, fresh)] == [
            "daily_markets"
        ]
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {fresh}")


def test_dashboards_and_the_read_only_sql_path(loaded: Store) -> None:
    http = TestClient(create_app(loaded))
    # Dashboards read the hot tier (the trades are ~12–36 h old: inside 24 h or not, both are fine
    # for volume; open interest is the running sum).
    oi = http.get("/metrics/open_interest").json()["markets"]
    assert oi == [{"market": "BTC-PERP", "open_interest": 4, "change_24h": oi[0]["change_24h"]}]
    for path in ("volume_24h", "depth", "funding", "iv", "fees", "latency_slo", "candles?market=BTC-PERP"):
        assert http.get(f"/metrics/{path}").status_code == 200, path
    depth = http.get("/metrics/depth").json()["markets"]
    assert depth[0]["market"] == "BTC-PERP" and depth[0]["ask_1bp"] == 0  # one-sided after trade 4

    # The analysts' path: JSON and TSV answers; every documented example runs.
    db = loaded.database
    answer = http.post("/sql", content=f"SELECT count() AS n FROM {db}.trades FINAL")
    assert answer.status_code == 200 and answer.json()["data"] == [{"n": "4"}]
    tsv = http.post("/sql?format=TSV", content=f"SELECT market, count() FROM {db}.trades GROUP BY market")
    assert tsv.text.splitlines()[1] == "BTC-PERP\t4"
    for example in EXAMPLES:
        assert http.post("/sql", content=example.sql.format(db=db)).status_code == 200, example.question

    # Writes are refused — by the guard, and by the engine's readonly = 2 when the guard is passed.
    for sql in (f"INSERT INTO {db}.trades SELECT * FROM {db}.trades", f"DROP TABLE {db}.trades",
                f"SELECT 1; DROP TABLE {db}.trades"):  # fmt: skip
        assert http.post("/sql", content=sql).status_code == 400, sql
    refused = http.post("/sql", content=f"SELECT * FROM {db}.trades SETTINGS readonly = 0")
    assert refused.status_code == 400 and "readonly" in refused.json()["detail"].lower()
    assert loaded.rows("SELECT count() FROM {db}.trades") == [(4,)]
    # An analyst's own SETTINGS are fine; and the process can still write after all that.
    assert http.post("/sql", content="SELECT 1 SETTINGS join_use_nulls = 1").status_code == 200
    loaded.command("CREATE TABLE {db}.scratch (x UInt8) ENGINE = Memory")


def test_closed_partitions_export_to_the_same_parquet_twice(loaded: Store, tmp_path: Path) -> None:
    # Action: export every month before next month (so this month's partition), twice.
    first_of_next = (DAY.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    files = export(loaded, first_of_next, tmp_path)
    content = {p: p.read_bytes() for p in files}
    assert export(loaded, first_of_next, tmp_path) == files
    # Expectation: same files, same bytes; any Parquet reader sees the four trades.
    assert {p: p.read_bytes() for p in files} == content
    (trades,) = [p for p in files if p.parent.name == "trades"]
    table = pq.read_table(io.BytesIO(content[trades]))
    assert table.column("trade_id").to_pylist() == [1, 2, 3, 4]
    # Nothing of an open month is exported.
    assert export(loaded, DAY.replace(day=1), tmp_path / "none") == []


def test_the_replay_rebuild_of_the_metrics_database_is_identical(
    loaded: Store, bus: Bus, clickhouse_client: Client
) -> None:
    # State: the known flow projected live and its day rolled up.
    rollup(loaded, DAY)
    fresh = f"{loaded.database}_replay"
    try:
        # Action: `python -m services.replay rebuild`'s ClickHouse half, into a fresh database.
        differences = rebuild_clickhouse(bus.settings, fresh, loaded.database, client=clickhouse_client)
        # Expectation: every table identical, the warm tier's rolled-up day included.
        assert differences == []
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {fresh}")
