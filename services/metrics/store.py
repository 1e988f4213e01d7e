"""The one ClickHouse client of the metrics process, shared by its threads.

The embedded engine (chdb) admits one process per data path, so the consumer, the roll-up and the
HTTP handlers of `python -m services.metrics` share one client; the lock keeps its calls one at a
time (the chdb connection is not meant for concurrent use). Against a server it costs nothing
that matters: every call is short.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from services.common.stores import clickhouse


class Store:
    """A ClickHouse client bound to the metrics database, with calls serialised."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        self._lock = threading.Lock()

    @classmethod
    def open(cls, dsn: str, database: str, *, migrate: bool = True) -> Store:
        """Connect to `dsn`; apply pending migrations to `database` unless told not to."""
        client = clickhouse.connect(dsn)
        if migrate:
            clickhouse.migrate(client, database)
        return cls(client, database)

    def sql(self, template: str) -> str:
        """`template` with `{db}` filled in."""
        return template.format(db=self.database)

    def rows(self, template: str, settings: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The result rows of a `{db}` query template."""
        with self._lock:
            return [tuple(r) for r in self.client.query(self.sql(template), settings=settings).result_rows]

    def named(self, template: str) -> list[dict[str, Any]]:
        """The result rows of a `{db}` query template, as dicts by column name."""
        with self._lock:
            return list(self.client.query(self.sql(template)).named_results())

    def command(self, template: str) -> None:
        """Run a `{db}` statement."""
        with self._lock:
            self.client.command(self.sql(template))

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        """Insert `rows` into `table` of the database (one block: one part per partition)."""
        with self._lock:
            self.client.insert(f"{self.database}.{table}", rows, column_names=list(columns))

    def raw(self, sql: str, fmt: str) -> bytes:
        """`sql` (complete, database names included) in ClickHouse output format `fmt`."""
        with self._lock:
            return bytes(self.client.raw_query(sql, fmt=fmt))

    def arrow(self, template: str) -> Any:
        """The result of a `{db}` query template as a pyarrow Table."""
        with self._lock:
            return self.client.query_arrow(self.sql(template))
