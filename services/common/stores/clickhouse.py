"""ClickHouse through clickhouse-connect: `chdb:///path` (embedded engine) or `http(s)://` (server).

The same client code serves both; only the DSN differs. The embedded engine allows one process
per data path, so exactly one process (the metrics projector) opens a given path for writing.
"""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from services.common.stores.migrations import apply_pending, load_migrations


def connect(dsn: str) -> Client:
    """A client for `dsn`."""
    return clickhouse_connect.get_client(dsn=dsn)


def migrate(client: Client, database: str) -> list[str]:
    """Create `database` if needed and apply pending migrations; returns the ids applied."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(id String, applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY id"
    )
    applied = {row[0] for row in client.query(f"SELECT id FROM {database}.schema_migrations").result_rows}
    return apply_pending(
        load_migrations("clickhouse", db=database),
        applied,
        client.command,
        lambda mid: client.insert(f"{database}.schema_migrations", [[mid]], column_names=["id"]),
    )
