"""Measure the read model: write strategies, the pure core, the projector through Kafka, queries.

    python -m services.projector.measure [--commands 20000] [--orders 20000]

Needs Kafka and Cassandra (the launcher's, or those the environment names); works in a scratch
keyspace and topic prefix, dropped / left unused afterwards. Prints one JSON line per part; the
figures and their machine are in docs/read-model.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

from services.common.bus import Bus, Outbound, TypedProducer
from services.common.lifecycle import OrderStatus
from services.common.records import OrderType, Side, TimeInForce, TradeLogEntry
from services.common.settings import Settings
from services.common.stores import cassandra
from services.common.topics import TOPICS, TRADE_LOG, ensure_topics
from services.matcher.core.engine import MatchingEngine, log_entry
from services.projector import queries
from services.projector.service import ReadModelProjector
from services.projector.tables import ORDER_COLUMNS, Writer, order_values
from services.projector.views import (
    OpenOrderDelete,
    OpenOrderUpsert,
    OrderRow,
    OrderStates,
    OrderUpsert,
    coalesce,
)
from services.replay.flows import realistic_flow

TRADER = "0x" + "ab" * 20
START_US = 1_795_392_000_000_000
S = OrderStatus


def strategies(session: Session, keyspace: str, rows: int) -> dict[str, Any]:
    """Statements per second, 64 in flight, for the ways an order row could be kept order-safe."""
    values = [order_values(_order(f"o{i}", i, OrderStatus.RESTING)) for i in range(rows)]
    columns = ", ".join(ORDER_COLUMNS)
    marks = ", ".join("?" for _ in ORDER_COLUMNS)
    plain = session.prepare(
        f"INSERT INTO {keyspace}.orders_by_id ({columns}) VALUES ({marks}) USING TIMESTAMP ?"
    )
    guarded = session.prepare(
        f"UPDATE {keyspace}.orders_by_id SET status = ?, cum_qty = ?, last_seq = ? "
        "WHERE order_id = ? IF last_seq < ?"
    )
    read = session.prepare(f"SELECT last_seq, cum_qty FROM {keyspace}.orders_by_id WHERE order_id = ?")
    found = {
        "plain INSERT USING TIMESTAMP": _rate(session, plain, [(*v, 1) for v in values]),
        "LWT UPDATE IF last_seq < ?": _rate(
            session, guarded, [("FILLED", 1, 2, f"o{i}", 2) for i in range(rows)]
        ),
        "SELECT by order_id": _rate(session, read, [(f"o{i}",) for i in range(rows)]),
    }
    return {"part": "write strategies", "rows": rows, "statements_per_s": found}


def core(entries: Sequence[TradeLogEntry], batch: int) -> dict[str, Any]:
    """The pure fold alone: entries per second, and writes per entry before and after coalescing."""
    states = OrderStates()
    started = time.perf_counter()
    writes = [states.apply(entry) for entry in entries]
    elapsed = time.perf_counter() - started
    flat = sum(len(w) for w in writes)
    kept = sum(
        len(coalesce([x for w in writes[i : i + batch] for x in w])) for i in range(0, len(writes), batch)
    )
    return {
        "part": "pure core",
        "entries": len(entries),
        "entries_per_s": round(len(entries) / elapsed),
        "writes_per_entry": round(flat / len(entries), 2),
        f"writes_per_entry_coalesced_by_{batch}": round(kept / len(entries), 2),
        "open_orders_held": len(states),
    }


def projector(settings: Settings, session: Session, entries: Sequence[TradeLogEntry]) -> dict[str, Any]:
    """The real projector loop from Kafka to Cassandra, entries per second once the log is there."""
    bus = Bus(settings)
    ensure_topics(bus.client_config(), [bus.topic(t) for t in TOPICS])
    producer = TypedProducer(bus)
    for entry in entries:
        producer.send(Outbound(TRADE_LOG, key=entry.market, value=entry))
    producer.flush()
    running = ReadModelProjector(bus, session)
    done, started = 0, time.perf_counter()
    while done < len(entries):
        done += running.run_once(max_records=500)
    elapsed = time.perf_counter() - started
    running.close()
    return {
        "part": "projector (trade.log → Cassandra)",
        "entries": done,
        "entries_per_s": round(done / elapsed),
        "statements_per_s": round(running.writes_sent / elapsed),
        "statements_per_entry": round(running.writes_sent / done, 2),
    }


def query_costs(session: Session, keyspace: str, orders: int) -> dict[str, Any]:
    """Median latency of the gateway's reads for one trader with `orders` orders in 4 markets
    (1 % open, all in M0; 4 % filled; 2 % expired; the rest cancelled), and of M0's open orders
    when the other 96 % of its orders rested and closed (their tombstones not yet purged)."""
    writer = Writer(session, keyspace)
    rows = []
    for i in range(orders):
        status = (
            OrderStatus.RESTING
            if i % 100 == 0
            else OrderStatus.FILLED
            if i % 25 == 1
            else OrderStatus.CANCELLED
        )
        row = _order(f"q{i:07d}", i + 1, status, market=f"M{i % 4}")
        rows.append(replace(row, reason="EXPIRED") if i % 50 == 7 else row)
    writes = [w for row in rows for w in (OrderUpsert(row), _open(row))]
    for i in range(0, len(writes), 2_000):
        writer.execute(writes[i : i + 2_000])
    middle = rows[orders // 2].created_at
    deep = queries.orders_for(session, keyspace, TRADER, limit=500)[1]
    for _ in range(8):  # 4,500 rows in
        deep = queries.orders_for(session, keyspace, TRADER, limit=500, cursor=deep)[1]
    cases: dict[str, Callable[[], object]] = {
        "orders_for: first page of 100": lambda: queries.orders_for(session, keyspace, TRADER, limit=100),
        "orders_for: market M1": lambda: queries.orders_for(
            session, keyspace, TRADER, market="M1", limit=100
        ),
        "orders_for: status FILLED": lambda: queries.orders_for(session, keyspace, TRADER, status="FILLED"),
        "orders_for: status OPEN (3 queries)": lambda: queries.orders_for(
            session, keyspace, TRADER, status="OPEN"
        ),
        "orders_for: status EXPIRED": lambda: queries.orders_for(session, keyspace, TRADER, status="EXPIRED"),
        "orders_for: market M1 + FILLED": lambda: queries.orders_for(
            session, keyspace, TRADER, market="M1", status="FILLED"
        ),
        "orders_for: 1 s window mid-history": lambda: queries.orders_for(
            session, keyspace, TRADER, since_us=middle - 1_000_000, until_us=middle
        ),
        "orders_for: page after 4,500 rows": lambda: queries.orders_for(
            session, keyspace, TRADER, limit=100, cursor=deep
        ),
        "open_orders: 200 open, 4,800 closed (tombstones)": lambda: queries.open_orders(
            session, keyspace, "M0"
        ),
        "positions_for": lambda: queries.positions_for(session, keyspace, TRADER),
        "markets": lambda: queries.markets(session, keyspace),
    }
    return {
        "part": "queries",
        "orders_of_the_trader": orders,
        "median_ms": {name: _median_ms(call) for name, call in cases.items()},
    }


def _order(oid: str, n: int, status: OrderStatus, market: str = "BTC-PERP") -> OrderRow:
    return OrderRow(
        order_id=oid, trader=TRADER, market=market, client_order_id=f"c{n}", side=Side.BUY,
        order_type=OrderType.LIMIT, price=650_000, size=10, time_in_force=TimeInForce.GTC, post_only=False,
        reduce_only=False, expire_at=None, status=status, rested=True,
        cum_qty=10 if status is S.FILLED else 0, leaves_qty=10 if status is S.RESTING else 0,
        avg_px_num=0, last_px=None, fees_paid=0, reason_code=None, reason=None,
        created_at=START_US + n * 10_000, updated_at=START_US + n * 10_000, last_seq=n,
    )  # fmt: skip


def _open(row: OrderRow) -> OpenOrderUpsert | OpenOrderDelete:
    return (
        OpenOrderUpsert(row) if row.is_open else OpenOrderDelete(row.market or "", row.order_id, row.last_seq)
    )


def _rate(session: Session, statement: Any, params: list[tuple[Any, ...]]) -> int:
    started = time.perf_counter()
    execute_concurrent_with_args(session, statement, params, concurrency=64, raise_on_first_error=True)
    return round(len(params) / (time.perf_counter() - started))


def _median_ms(call: Callable[[], object], runs: int = 30) -> float:
    call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=20_000, help="realistic flow length")
    parser.add_argument("--orders", type=int, default=20_000, help="orders of the queried trader")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    settings = Settings(cassandra_keyspace=f"rm_measure_{tag}", topic_prefix=f"measure{tag}.", log_json=False)
    session = cassandra.connect(settings)
    keyspace = settings.cassandra_keyspace
    cassandra.migrate(session, keyspace, settings.cassandra_replication)
    try:
        engine = MatchingEngine()
        commands = realistic_flow(args.commands)
        entries = [log_entry(c, engine.apply(c), f"matcher.commands:0:{i}") for i, c in enumerate(commands)]
        print(json.dumps(strategies(session, keyspace, 5_000)), flush=True)
        session.execute(f"TRUNCATE {keyspace}.orders_by_id")
        print(json.dumps(core(entries, 500)), flush=True)
        print(json.dumps(projector(settings, session, entries)), flush=True)
        print(json.dumps(query_costs(session, keyspace, args.orders)), flush=True)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        session.cluster.shutdown()


if __name__ == "__main__":
    main()
