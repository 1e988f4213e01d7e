"""The lake: closed monthly partitions of the cold tables, exported as Parquet files.

`export(store, before, directory)` writes `<directory>/<table>/<table>-<YYYYMM>.parquet` for
every partition of every cold table whose month ends on or before `before` (a month is closed
once nothing can land in it any more). Rows are read with FINAL (duplicates merged) and sorted by
the table's key, and the file is written with fixed options, so exporting a partition twice gives
the same file, byte for byte; a file already holding those bytes is left untouched.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pyarrow.parquet as pq

from services.metrics.core.sql import month_key
from services.metrics.store import Store

# Cold tables and the sort key their export uses (their ORDER BY).
COLD_TABLES: dict[str, str] = {
    "trades": "market, trade_id",
    "account_events": "trader, ts_event, event_id",
    "position_changes": "market, trader, ts, event_id",
    "funding_payments": "market, trader, ts, event_id",
    "order_latency": "market, order_id",
    "marks": "market, seq",
    "funding_rates": "market, interval_end",
    "index_prices": "index_symbol, ts",
    "implied_vols": "market, trade_id",
}


def closed_partitions(store: Store, table: str, before: dt.date) -> list[str]:
    """The monthly partitions of `table` entirely before `before` (YYYYMM strings, ascending)."""
    limit = month_key(before)
    rows = store.rows(
        "SELECT DISTINCT partition FROM system.parts "
        f"WHERE database = '{{db}}' AND table = '{table}' AND active ORDER BY partition"
    )
    # A month is closed when it lies wholly before `before`'s month (2026-11-15 closes October).
    return [p for (p,) in rows if p.isdigit() and int(p) < limit]


def export(store: Store, before: dt.date, directory: Path) -> list[Path]:
    """Write every closed partition of every cold table; returns the files written or confirmed."""
    written = []
    for table, key in COLD_TABLES.items():
        for partition in closed_partitions(store, table, before):
            data = store.arrow(
                f"SELECT * FROM {{db}}.{table} FINAL WHERE _partition_id = '{partition}' ORDER BY {key}"
            )
            buffer = io.BytesIO()
            pq.write_table(data, buffer, compression="zstd", use_dictionary=True, write_statistics=True)
            path = directory / table / f"{table}-{partition}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            content = buffer.getvalue()
            if not path.exists() or path.read_bytes() != content:
                tmp = path.with_suffix(".parquet.tmp")
                tmp.write_bytes(content)
                tmp.replace(path)  # atomic: a reader never sees half a file
            written.append(path)
    return written
