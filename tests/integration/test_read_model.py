"""The read model on real Kafka and Cassandra: trade log and account events in, the gateway's
queries out; a rebuild from offset 0 gives the same tables; a redelivery changes nothing.

The trade log comes from the real matching engine (two markets, orders that rest, trade, amend,
expire, are cancelled and refused); account events are written the way risk writes them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra.cluster import Session

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.lifecycle import OrderStatus
from services.common.presets import preset
from services.common.records import (
    AccountEvent,
    BalanceChanged,
    DepositConfirmed,
    InventoryChanged,
    MarketStatus,
    MatcherCommand,
    OrderRejected,
    PositionChanged,
    Side,
    TimeInForce,
    TradeLogEntry,
)
from services.common.settings import REPO_ROOT, Settings
from services.common.stores import cassandra
from services.common.topics import ACCOUNTS_EVENTS, TRADE_LOG
from services.matcher.core.engine import MatchingEngine, log_entry
from services.projector import queries
from services.projector.service import ReadModelProjector, build
from services.projector.views import OrderRow, OrderStates, account_writes, coalesce
from tests.integration.stack import running
from tests.kit import ALICE, BOB, CAROL, Commands, order_id
from tests.unit.projector.store import FakeTables

MID = 650_000
ETH = 300_000
TABLES = ("orders_by_id", "orders_by_trader", "open_orders_by_market", "positions_by_trader",
          "balances_by_trader", "markets")  # fmt: skip
RISK_REFUSED = "00000000-0000-7000-8000-0000000000ff"


class Flow:
    """Two markets' commands through one matching engine, and account events for the traders."""

    def __init__(self) -> None:
        self.engine = MatchingEngine()
        self.btc = Commands("BTC-PERP")
        self.eth = Commands("ETH-PERP")
        self.eth.n = 500  # order and command ids apart from BTC-PERP's
        self.offset = 0

    def entries(self, *commands: MatcherCommand) -> list[TradeLogEntry]:
        found = []
        for command in commands:
            found.append(log_entry(command, self.engine.apply(command), f"matcher.commands:0:{self.offset}"))
            self.offset += 1
        return found


def first_part(flow: Flow) -> list[TradeLogEntry]:
    """Listings; Alice and Bob rest; Carol trades 2 lots against Alice; Bob buys ETH from Alice."""
    b, e = flow.btc, flow.eth
    return flow.entries(
        b.create(),
        b.limit(ALICE, Side.BUY, 5, MID),  # order 2
        b.limit(BOB, Side.SELL, 3, MID + 10),  # order 3
        b.limit(CAROL, Side.SELL, 2, MID),  # order 4: fills against Alice's bid
        e.create(preset("ETH-PERP")),
        e.limit(BOB, Side.BUY, 2, ETH),  # order 502
        e.limit(ALICE, Side.SELL, 1, ETH),  # order 503: fills against Bob's bid
    )


def second_part(flow: Flow) -> list[TradeLogEntry]:
    """Amend, cancel, an IOC that finds nothing, a refused post-only, a GTT that expires, a pause."""
    b = flow.btc
    return flow.entries(
        b.amend(ALICE, order_id(2), new_price=MID - 1),
        b.cancel(BOB, order_id(3)),
        b.limit(CAROL, Side.BUY, 4, MID + 20, time_in_force=TimeInForce.IOC),  # order 7
        b.limit(BOB, Side.SELL, 1, MID - 1, post_only=True),  # order 8: would cross, refused
        b.limit(CAROL, Side.BUY, 1, MID - 50, time_in_force=TimeInForce.GTT, expire_at=b.now + 1_500),
        b.limit(ALICE, Side.SELL, 1, MID + 30),  # order 10; Carol's GTT (9) expires first
        b.set_status(MarketStatus.PAUSED, "circuit breaker"),
        b.set_status(MarketStatus.ACTIVE, "resumed"),
    )


def account_events() -> list[AccountEvent]:
    """What risk and the deposit path write for the flow's traders (a subset, in their order)."""

    def event(n: int, trader: str, body: Any) -> AccountEvent:
        return AccountEvent(
            event_id=f"orders.commands:0:{n}:0", trader=trader, ts_event=1_795_392_000_000_000 + n, body=body
        )

    def balance(trader: str, free: int, reserved: int, locked: int) -> BalanceChanged:
        return BalanceChanged(
            trader=trader, free=free, reserved=reserved, withdrawing=0, locked=locked, delta_free=0,
            reason="ORDER_FILLED", ref="x",
        )  # fmt: skip

    return [
        event(1, ALICE, DepositConfirmed(
            amount=10**9, chain_id=0, tx_hash="dev-1", log_index=0, block_number=0,
        )),
        event(2, ALICE, balance(ALICE, 10**9, 0, 0)),
        event(3, ALICE, balance(ALICE, 600_000_000, 330_000_000, 0)),
        event(4, ALICE, PositionChanged(
            trader=ALICE, market="BTC-PERP", order_id=order_id(2), trade_id=1, size=2, delta_size=2,
            basis=130_000_000, collateral=130_000_000, realized_pnl=0, last_px=MID,
        )),
        event(5, ALICE, balance(ALICE, 599_000_000, 201_000_000, 130_000_000)),
        event(6, CAROL, PositionChanged(
            trader=CAROL, market="BTC-PERP", order_id=order_id(4), trade_id=1, size=-2, delta_size=-2,
            basis=130_000_000, collateral=130_000_000, realized_pnl=-5, last_px=MID,
        )),
        event(7, BOB, InventoryChanged(
            trader=BOB, market="BTC-USDC", held=5, reserved=1, delta_held=5, reason="SYNTH_DEPOSIT", ref="s",
        )),
        event(8, BOB, OrderRejected(
            order_id=RISK_REFUSED, client_order_id="big", trader=BOB, reason_code=2001,
            reason="INSUFFICIENT_COLLATERAL", detail="",
        )),
        event(9, ALICE, OrderRejected(
            order_id=order_id(2), trader=ALICE, reason_code=2009, reason="AMEND_PENDING",
        )),
    ]  # fmt: skip


def produce(bus: Bus, entries: list[TradeLogEntry], events: list[AccountEvent]) -> int:
    producer = TypedProducer(bus, transactional_id=f"{bus.settings.topic_prefix}rm-{uuid.uuid4().hex[:6]}")
    with producer.transaction():
        for entry in entries:
            producer.send(Outbound(TRADE_LOG, key=entry.market, value=to_avro(entry)))
        for event in events:
            producer.send(Outbound(ACCOUNTS_EVENTS, key=event.trader, value=to_avro(event)))
    return len(entries) + len(events)


def project_until(
    projector: ReadModelProjector, count: int, *, batch: int = 500, timeout_s: float = 60
) -> int:
    done, deadline = 0, time.monotonic() + timeout_s
    while done < count and time.monotonic() < deadline:
        done += projector.run_once(max_records=batch)
    return done


def dump(session: Session, keyspace: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row, and the write time of each order row's status."""
    tables = {
        table: sorted((tuple(row) for row in session.execute(f"SELECT * FROM {keyspace}.{table}")), key=repr)
        for table in TABLES
    }
    tables["writetimes"] = sorted(
        (r.order_id, r.wt, r.last_seq)
        for r in session.execute(
            f"SELECT order_id, writetime(status) AS wt, last_seq FROM {keyspace}.orders_by_id"
        )
    )
    return tables


@pytest.fixture
def keyspaces(cassandra_session: Session, settings: Settings) -> Iterator[list[str]]:
    """Fresh keyspaces for the test (the caller migrates them); dropped at the end."""
    created: list[str] = []
    yield created
    for keyspace in created:
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def fresh(session: Session, settings: Settings, created: list[str]) -> Settings:
    keyspace = f"rm_{uuid.uuid4().hex[:10]}"
    cassandra.migrate(session, keyspace, settings.cassandra_replication)
    created.append(keyspace)
    return settings.model_copy(update={"cassandra_keyspace": keyspace})


def ms(row: OrderRow) -> OrderRow:
    """`row` as Cassandra keeps it: times to the millisecond."""
    return dataclasses.replace(
        row,
        created_at=row.created_at // 1000 * 1000,
        updated_at=row.updated_at // 1000 * 1000,
        expire_at=None if row.expire_at is None else row.expire_at // 1000 * 1000,
    )


def test_the_read_model_answers_the_gateway_and_rebuilds_identically(
    bus: Bus, cassandra_session: Session, settings: Settings, keyspaces: list[str]
) -> None:
    session = cassandra_session
    first = fresh(session, settings, keyspaces)
    ks = first.cassandra_keyspace

    # State: the first part of the flow and every account event; a projector takes it all in small
    # batches, then stops. The second part goes to a new projector of the same group (a restart).
    flow = Flow()
    entries_1, events = first_part(flow), account_events()
    count_1 = produce(bus, entries_1, events)
    before_restart = ReadModelProjector(Bus(first), session)
    assert project_until(before_restart, count_1, batch=3) == count_1
    before_restart.close()
    entries_2 = second_part(flow)
    count_2 = produce(bus, entries_2, [])
    after_restart = ReadModelProjector(Bus(first), session)
    assert project_until(after_restart, count_2) == count_2
    after_restart.close()
    assert after_restart.orders_loaded >= 2  # Alice's and Bob's resting orders, read back once

    # Expectation: every order is what the pure core folds (to the millisecond), and the
    # gateway's queries answer what the flow did.
    check_orders_are_the_cores(session, ks, entries_1 + entries_2, events)
    check_order_queries(session, ks)
    check_open_orders_positions_balances_markets(session, ks, flow)

    # Action: rebuild from offset 0 into a fresh keyspace (its group starts from the beginning).
    projected = dump(session, ks)
    second = fresh(session, settings, keyspaces)
    rebuild = ReadModelProjector(Bus(second), session)
    assert project_until(rebuild, count_1 + count_2, batch=7) == count_1 + count_2
    rebuild.close()

    # Expectation: the same rows, written at the same timestamps (each order's last seq).
    assert dump(session, second.cassandra_keyspace) == projected
    assert all(wt == seq for _, wt, seq in projected["writetimes"])

    # Action: everything delivered again onto the first keyspace (a new group from offset 0).
    again = ReadModelProjector(Bus(first), session, group_id=f"rm-again-{uuid.uuid4().hex[:6]}")
    assert project_until(again, count_1 + count_2, batch=5) == count_1 + count_2
    again.close()

    # Expectation: nothing changed.
    assert dump(session, ks) == projected


def check_orders_are_the_cores(
    session: Session, ks: str, entries: list[TradeLogEntry], events: list[AccountEvent]
) -> None:
    expected = FakeTables()
    states = OrderStates()
    for entry in entries:
        states.load(expected.load_orders(states.needs(entry)))
        expected.execute(coalesce(states.apply(entry)))
    for offset, event in enumerate(events):
        expected.execute(account_writes(event, offset))
    for (oid,) in expected.rows("orders_by_id"):
        row = expected.order(oid)
        assert row is not None
        assert queries.order(session, ks, oid) == ms(row)


def check_order_queries(session: Session, ks: str) -> None:
    def ids(trader: str, **filters: Any) -> list[str]:
        return [o.order_id for o in queries.orders_for(session, ks, trader, **filters)[0]]

    alice, _ = queries.orders_for(session, ks, ALICE, limit=100)
    assert [(o.order_id, o.status) for o in alice] == [
        (order_id(10), OrderStatus.RESTING),
        (order_id(503), OrderStatus.FILLED),
        (order_id(2), OrderStatus.PARTIALLY_FILLED),
    ]
    amended = alice[2]
    assert (amended.price, amended.size, amended.cum_qty, amended.leaves_qty) == (MID - 1, 5, 2, 3)
    assert (amended.avg_px_num, amended.last_px, amended.fees_paid) == (2 * MID, MID, 650_000)
    assert ids(ALICE, market="ETH-PERP") == [order_id(503)]
    assert ids(ALICE, status="OPEN") == [order_id(10), order_id(2)]
    assert ids(ALICE, status="NEW") == [order_id(10)]

    carol, _ = queries.orders_for(session, ks, CAROL)
    assert [(o.order_id, o.status, o.reason) for o in carol] == [
        (order_id(9), OrderStatus.CANCELLED, "EXPIRED"),
        (order_id(7), OrderStatus.CANCELLED, "IOC_REMAINDER"),
        (order_id(4), OrderStatus.FILLED, None),
    ]
    assert ids(CAROL, status="EXPIRED") == [order_id(9)]
    assert ids(CAROL, status=["FILLED", "EXPIRED"]) == [order_id(9), order_id(4)]
    assert ids(CAROL, since_us=carol[1].created_at, until_us=carol[0].created_at) == [order_id(7)]
    walked, cursor = [], None  # a cursor with a time bound and several indexed statuses
    for _ in range(4):
        page, cursor = queries.orders_for(
            session,
            ks,
            CAROL,
            status=["FILLED", "CANCELLED"],
            since_us=carol[1].created_at,
            limit=1,
            cursor=cursor,
        )
        walked += [o.order_id for o in page]
        if cursor is None:
            break
    assert walked == [order_id(9), order_id(7)]

    bob, _ = queries.orders_for(session, ks, BOB, status="REJECTED")
    assert {(o.order_id, o.market, o.reason) for o in bob} == {
        (order_id(8), "BTC-PERP", "POST_ONLY_WOULD_CROSS"),
        (RISK_REFUSED, None, "INSUFFICIENT_COLLATERAL"),
    }
    pages, cursor = [], None
    while True:
        page, cursor = queries.orders_for(session, ks, BOB, limit=2, cursor=cursor)
        pages.append(page)
        if cursor is None:
            break
    assert [o for page in pages for o in page] == queries.orders_for(session, ks, BOB)[0]
    assert [len(p) for p in pages] == [2, 2]
    with pytest.raises(queries.InvalidCursor):
        queries.orders_for(session, ks, BOB, cursor="nope")


def check_open_orders_positions_balances_markets(session: Session, ks: str, flow: Flow) -> None:
    book = flow.engine.markets["BTC-PERP"].book
    assert {(o.order_id, o.price, o.leaves_qty) for o in queries.open_orders(session, ks, "BTC-PERP")} == {
        (o.order_id, o.price, o.leaves_qty) for o in book.orders.values()
    }
    assert [o.order_id for o in queries.open_orders(session, ks, "ETH-PERP")] == [order_id(502)]

    (carol,) = queries.positions_for(session, ks, CAROL)
    assert (carol.market, carol.size, carol.basis, carol.realized_pnl) == ("BTC-PERP", -2, 130_000_000, -5)
    alice = queries.balance_for(session, ks, ALICE).usdc
    assert alice is not None
    assert (alice.free, alice.reserved, alice.locked) == (599_000_000, 201_000_000, 130_000_000)
    holdings = queries.balance_for(session, ks, BOB).holdings
    assert [(h.asset, h.free, h.reserved) for h in holdings] == [("BTC-USDC", 5, 1)]

    listed = {m.market: m for m in queries.markets(session, ks)}
    assert set(listed) == {"BTC-PERP", "ETH-PERP"}
    btc = listed["BTC-PERP"]
    assert (btc.status, btc.status_reason, btc.quote_per_tick_lot) == (MarketStatus.ACTIVE, "resumed", 100)
    assert btc.last_seq == flow.engine.markets["BTC-PERP"].last_seq
    assert listed["ETH-PERP"].last_seq == flow.engine.markets["ETH-PERP"].last_seq


def test_the_projector_process_runs_the_account_history_and_the_read_model(
    bus: Bus, cassandra_session: Session, settings: Settings, keyspaces: list[str], clickhouse_client: Any
) -> None:
    # State: the listing of a market and a balance change on the log.
    own = fresh(cassandra_session, settings, keyspaces)
    flow = Flow()
    produce(bus, flow.entries(flow.btc.create()), account_events()[1:2])

    # Action: the process's projector (both projections in one loop) runs a while.
    projector = build(own)
    with running(projector):
        deadline = time.monotonic() + 30
        # Wait for all three: the two projections commit independently (the history's row can
        # land before the read model's balance).
        while time.monotonic() < deadline and not (
            queries.markets(cassandra_session, own.cassandra_keyspace)
            and queries.balance_for(cassandra_session, own.cassandra_keyspace, ALICE).usdc is not None
            and cassandra_session.execute(
                f"SELECT * FROM {own.cassandra_keyspace}.account_events_by_trader WHERE trader = %s", (ALICE,)
            ).one()
        ):
            time.sleep(0.2)

    # Expectation: both the account history and the read model have it.
    assert [m.market for m in queries.markets(cassandra_session, own.cassandra_keyspace)] == ["BTC-PERP"]
    assert queries.balance_for(cassandra_session, own.cassandra_keyspace, ALICE).usdc is not None


def test_a_projector_killed_between_its_writes_and_their_commit_loses_nothing(
    bus: Bus, cassandra_session: Session, settings: Settings, keyspaces: list[str]
) -> None:
    # State: the whole flow and its account events on the log.
    own = fresh(cassandra_session, settings, keyspaces)
    ks = own.cassandra_keyspace
    flow = Flow()
    count = produce(bus, first_part(flow) + second_part(flow), account_events())

    # Action: the projector process gathers a round, writes it (coalesced, batched by partition)
    # and SIGKILLs itself before committing its offsets — twice; then a process that is not killed.
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": own.kafka_bootstrap_servers, "TOPIC_PREFIX": own.topic_prefix,
        "CASSANDRA_CONTACT_POINTS": own.cassandra_contact_points, "CASSANDRA_PORT": str(own.cassandra_port),
        "CASSANDRA_KEYSPACE": ks, "PROJECTOR_METRICS_PORT": "0", "LOG_JSON": "false",
        "CXPT_FAILPOINTS": "projector.before_commit=kill@1",
    }  # fmt: skip
    for _ in range(2):
        killed = subprocess.Popen(
            [sys.executable, "-m", "services.projector", "--only", "read-model"], cwd=REPO_ROOT, env=env
        )
        assert killed.wait(120) == -signal.SIGKILL
        # Written but not committed: the rows are there, the group's offsets are not.
        assert any(cassandra_session.execute(f"SELECT * FROM {ks}.{t} LIMIT 1").one() for t in TABLES)
    survivor = ReadModelProjector(Bus(own), cassandra_session)
    assert project_until(survivor, count) == count  # every record again: none had been committed
    survivor.close()

    # Expectation: the tables equal a rebuild from offset 0, rows and write times alike.
    rebuilt = fresh(cassandra_session, settings, keyspaces)
    fresh_projector = ReadModelProjector(Bus(rebuilt), cassandra_session)
    assert project_until(fresh_projector, count) == count
    fresh_projector.close()
    assert dump(cassandra_session, ks) == dump(cassandra_session, rebuilt.cassandra_keyspace)
