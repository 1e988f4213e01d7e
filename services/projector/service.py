"""Projector service: account events → Cassandra and ClickHouse, idempotently, at least once."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from cassandra.cluster import Session
from clickhouse_connect.driver.client import Client

from services.common.bus import Bus, ProjectionConsumer
from services.common.settings import Settings
from services.common.stores import cassandra, clickhouse
from services.common.topics import ACCOUNTS_EVENTS
from services.projector.core import AccountEventRow, account_event_row

log = logging.getLogger(__name__)

GROUP_ID = "projector.accounts"
_CH_COLUMNS = ["event_id", "trader", "ts_event", "kind", "amount", "detail"]


class AccountsProjector:
    """Writes every `AccountEvent` to both stores, then commits its offsets."""

    def __init__(self, bus: Bus, session: Session, ch: Client, *, group_id: str = GROUP_ID) -> None:
        settings = bus.settings
        self._session = session
        self._ch = ch
        self._ch_table = f"{settings.clickhouse_database}.account_events"
        self._insert = session.prepare(
            f"INSERT INTO {settings.cassandra_keyspace}.account_events_by_trader "
            "(trader, ts_event, event_id, kind, amount, detail) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._consumer = ProjectionConsumer(bus, group_id=group_id, inputs=[ACCOUNTS_EVENTS])

    def run_once(self, max_records: int = 500, timeout_s: float = 0.2) -> int:
        """Project one batch; returns how many records it wrote."""
        rows = [account_event_row(m.value) for m in self._consumer.poll_batch(max_records, timeout_s)]
        if rows:
            self._write_cassandra(rows)
            self._ch.insert(self._ch_table, [_ch_row(r) for r in rows], column_names=_CH_COLUMNS)
        self._consumer.commit()
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self._consumer.close()

    def _write_cassandra(self, rows: list[AccountEventRow]) -> None:
        futures = [
            self._session.execute_async(
                self._insert, (r.trader, _utc(r.ts_event_us), r.event_id, r.kind, r.amount, r.detail)
            )
            for r in rows
        ]
        for future in futures:
            future.result()


def _utc(ts_us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_us / 1_000_000, tz=dt.UTC)


def _ch_row(r: AccountEventRow) -> list[object]:
    return [r.event_id, r.trader, _utc(r.ts_event_us), r.kind, r.amount, r.detail]


def build(settings: Settings) -> AccountsProjector:
    """Connect to the stores, apply their migrations, and return a ready projector."""
    session = cassandra.connect(settings)
    cassandra.migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    ch = clickhouse.connect(settings.clickhouse_dsn)
    clickhouse.migrate(ch, settings.clickhouse_database)
    return AccountsProjector(Bus(settings), session, ch)
