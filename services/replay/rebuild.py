"""Rebuilding the projections from offset 0 into fresh stores, and comparing them with the live ones.

Cassandra: trade.log and accounts.events, read from offset 0 to the end each partition has now,
go through the projector's own classes — `ReadModelProjector` (the gateway's read model) and
`AccountsProjector` (the account history) — into a fresh, migrated keyspace. Only the source of
records differs from the service: instead of a consumer group that never knows it is "done", a
feed reads each partition up to its end (read_committed) and then says so. The projector writes
every row with its log version as the write time (docs/read-model.md), so a rebuild is identical
to the live keyspace cell for cell, write times included — which `compare` checks, table by table,
as order-independent row sets.

ClickHouse: the metrics projection rebuilds through `services.metrics` itself (`rebuild_into`,
the daily roll-up, `compare`): one projection code path, live and rebuilt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, cast

from cassandra.cluster import Session
from clickhouse_connect.driver.client import Client
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common.bus import Bus, Inbound, decode_message, read_partition
from services.common.serde import UndecodableRecord
from services.common.settings import Settings
from services.common.stores import cassandra, clickhouse
from services.common.topics import ACCOUNTS_EVENTS, TRADE_LOG, TopicSpec
from services.metrics.rollup import rollup
from services.metrics.service import compare, rebuild_into
from services.metrics.store import Store
from services.projector.service import AccountsProjector, ReadModelProjector

READ_MODEL_TABLES = (
    "orders_by_id", "orders_by_trader", "open_orders_by_market", "positions_by_trader",
    "balances_by_trader", "markets",
)  # fmt: skip
ACCOUNT_TABLES = ("account_events_by_trader",)
PARTS = {"read-model": READ_MODEL_TABLES, "accounts": ACCOUNT_TABLES}
WRITE_TIMES = {"orders_by_id": ("order_id", "status"), "markets": ("market", "status")}
"""Tables whose write times are compared too: (key column, a column written by every event)."""
EXAMPLES = 5
"""Rows shown per side of a difference."""


class _Feed:
    """Stands in for a projector's `ProjectionConsumer`: records from a finite stream, then none."""

    def __init__(self, records: Iterator[Inbound], progress: Callable[[int], None] | None) -> None:
        self._records = records
        self._progress = progress

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Inbound]:
        batch = list(islice(self._records, max_records))
        if self._progress is not None and batch:
            self._progress(len(batch))
        return batch

    def commit(self) -> None:
        """Nothing to commit: a rebuild reads from offset 0 every time."""

    def close(self) -> None:
        """Nothing to close."""


def partitions_of(bus: Bus, topic: str) -> list[int]:
    """The partition numbers of `topic`, ascending."""
    admin = AdminClient(bus.client_config())
    return sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def records(bus: Bus, spec: TopicSpec) -> Iterator[Inbound]:
    """Every committed, decodable record of `spec`, partition by partition, from offset 0 to the end
    each partition has when it is reached (poison records were dead-lettered when first consumed)."""
    name = bus.topic(spec).name
    for partition in partitions_of(bus, name):
        for message in read_partition(bus, TopicPartition(name, partition, OFFSET_BEGINNING), None):
            try:
                yield decode_message(bus, message, spec)
            except UndecodableRecord:
                continue


def rebuild_cassandra(
    settings: Settings,
    keyspace: str,
    *,
    parts: tuple[str, ...] = tuple(PARTS),
    session: Session | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Project the log from offset 0 into `keyspace` (created and migrated); returns records read
    per part. `settings` names the topics (their prefix) and the cluster."""
    own_session = session is None
    session = session or cassandra.connect(settings)
    try:
        cassandra.migrate(session, keyspace, settings.cassandra_replication)
        bus = Bus(settings.model_copy(update={"cassandra_keyspace": keyspace}))
        read: dict[str, int] = {}
        if "read-model" in parts:
            group = f"replay.rebuild.{keyspace}"
            read_model = ReadModelProjector(bus, session, group_id=group)
            read["read-model"] = _drain(read_model, _merged(bus, (TRADE_LOG, ACCOUNTS_EVENTS)), progress)
        if "accounts" in parts:
            history = _account_history(bus, session, f"replay.rebuild.{keyspace}")
            read["accounts"] = _drain(history, records(bus, ACCOUNTS_EVENTS), progress)
        return read
    finally:
        if own_session:
            session.cluster.shutdown()


def _account_history(bus: Bus, session: Session, group: str) -> AccountsProjector:
    return AccountsProjector(bus, session, group_id=group)


def _merged(bus: Bus, specs: tuple[TopicSpec, ...]) -> Iterator[Inbound]:
    for spec in specs:
        yield from records(bus, spec)


def _drain(
    projector: ReadModelProjector | AccountsProjector,
    feed: Iterator[Inbound],
    progress: Callable[[int], None] | None,
) -> int:
    """Run `projector.run_once` over `feed` until it is exhausted; returns records read."""
    projector.close()  # the group consumer it opened is never used: the feed replaces it
    cast(Any, projector)._consumer = _Feed(feed, progress)
    total = 0
    while done := projector.run_once(max_records=500):
        total += done
    return total


# -- comparing --------------------------------------------------------------------------------------


@dataclass
class TableDiff:
    """One table of two keyspaces: row counts, and rows found on one side only (a few shown)."""

    table: str
    live_rows: int
    rebuilt_rows: int
    only_live: list[str] = field(default_factory=list)
    only_rebuilt: list[str] = field(default_factory=list)
    missing: int = 0
    extra: int = 0

    @property
    def identical(self) -> bool:
        return not (self.missing or self.extra)

    def describe(self) -> str:
        if self.identical:
            return f"{self.table}: identical ({self.live_rows} rows)"
        lines = [
            f"{self.table}: DIFFERENT — live {self.live_rows} rows, rebuilt {self.rebuilt_rows};"
            f" {self.missing} only in live, {self.extra} only in rebuilt"
        ]
        lines += [f"  only in live:    {row}" for row in self.only_live]
        lines += [f"  only in rebuilt: {row}" for row in self.only_rebuilt]
        return "\n".join(lines)


def _rows(session: Session, query: str) -> Counter[str]:
    # repr: rows may hold unhashable collection types; the same value has the same repr.
    return Counter(repr(tuple(row)) for row in session.execute(query))


def compare_table(
    session: Session, live: str, rebuilt: str, table: str, query: str | None = None
) -> TableDiff:
    """Row sets of `table` in both keyspaces (order-independent)."""
    statement = query or "SELECT * FROM {keyspace}." + table
    a = _rows(session, statement.format(keyspace=live))
    b = _rows(session, statement.format(keyspace=rebuilt))
    only_a, only_b = a - b, b - a
    return TableDiff(
        table=table,
        live_rows=sum(a.values()),
        rebuilt_rows=sum(b.values()),
        only_live=sorted(only_a)[:EXAMPLES],
        only_rebuilt=sorted(only_b)[:EXAMPLES],
        missing=sum(only_a.values()),
        extra=sum(only_b.values()),
    )


def compare_cassandra(
    session: Session, live: str, rebuilt: str, *, parts: tuple[str, ...] = tuple(PARTS)
) -> list[TableDiff]:
    """Every projected table of `parts`, and the write times of `WRITE_TIMES`, live vs rebuilt."""
    diffs = []
    for part in parts:
        for table in PARTS[part]:
            diffs.append(compare_table(session, live, rebuilt, table))
            if table in WRITE_TIMES:
                key, column = WRITE_TIMES[table]
                query = f"SELECT {key}, writetime({column}) FROM {{keyspace}}.{table}"
                diffs.append(compare_table(session, live, rebuilt, f"{table} writetime({column})", query))
    return diffs


# -- ClickHouse, through services.metrics --------------------------------------------------------------


def rebuild_clickhouse(
    settings: Settings, database: str, live: str, *, client: Client | None = None
) -> list[str]:
    """Rebuild the metrics database into `database` — the log from offset 0 (`services.metrics`'s own
    projector), then the daily roll-up of every day `live` has rolled up — and compare it with
    `live`: the tables that differ (empty: identical). With the embedded engine (chdb) this process
    must be the only one holding the data path: stop the metrics service first."""
    client = client or clickhouse.connect(settings.clickhouse_dsn)
    rebuild_into(settings, database, client=client)
    rolled = client.query(f"SELECT DISTINCT day FROM {live}.daily_markets").result_rows
    for (day,) in rolled:
        rollup(Store(client, database), day)
    return compare(client, live, database)
