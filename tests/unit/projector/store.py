"""An in-memory model of how Cassandra applies the read model's writes, for pure tests.

Each cell keeps the value with the highest write timestamp (the write's `version`); a row delete
is a tombstone that hides every cell written at or below its timestamp; equal timestamps keep the
later value written (values are equal there anyway, which is what the tests check). That is all
the idempotency argument of `services.projector.views` relies on, so tests can check it without
a database: apply writes in any redelivered order and compare what a reader would see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from msgspec import Struct, structs

from services.projector.views import (
    BalanceUpsert,
    MarketProgress,
    MarketStatusUpdate,
    MarketUpsert,
    OpenOrderDelete,
    OpenOrderUpsert,
    OrderRow,
    OrderUpsert,
    PositionUpsert,
    Write,
)

Key = tuple[Any, ...]


class FakeTables:
    """The read model's tables as {table: {key: {column: (timestamp, value)}}}, with tombstones."""

    def __init__(self) -> None:
        self.cells: dict[str, dict[Key, dict[str, tuple[int, Any]]]] = {}
        self.tombstones: dict[tuple[str, Key], int] = {}
        self.statements = 0

    def execute(self, writes: Iterable[Write]) -> None:
        for write in writes:
            self.apply(write)

    def apply(self, write: Write) -> None:
        if isinstance(write, OrderUpsert):
            row = _fields(write.row)
            self._put("orders_by_id", (write.row.order_id,), row, write.version)
            by_trader = (write.row.trader, write.row.created_at // 1000, write.row.order_id)
            self._put("orders_by_trader", by_trader, row, write.version)
        elif isinstance(write, OpenOrderUpsert):
            self._put("open_orders_by_market", write.key[1:], _fields(write.row), write.version)
        elif isinstance(write, OpenOrderDelete):
            self.statements += 1
            dead = ("open_orders_by_market", write.key[1:])
            self.tombstones[dead] = max(self.tombstones.get(dead, write.version), write.version)
        elif isinstance(write, MarketUpsert):
            fields = _fields(write.definition) | {"created_at": write.created_at}
            self._put("markets", (write.definition.market,), fields, write.version)
        elif isinstance(write, MarketStatusUpdate):
            fields = {"status": write.status, "status_reason": write.reason, "changed_at": write.changed_at}
            self._put("markets", (write.market,), fields, write.version)
        elif isinstance(write, MarketProgress):
            fields = {"last_seq": write.last_seq, "updated_at": write.updated_at}
            self._put("markets", (write.market,), fields, write.version)
        elif isinstance(write, BalanceUpsert):
            self._put(
                "balances_by_trader", (write.row.trader, write.row.asset), _fields(write.row), write.version
            )
        elif isinstance(write, PositionUpsert):
            self._put(
                "positions_by_trader", (write.row.trader, write.row.market), _fields(write.row), write.version
            )

    def _put(self, table: str, key: Key, values: dict[str, Any], ts: int) -> None:
        self.statements += 1
        row = self.cells.setdefault(table, {}).setdefault(key, {})
        for column, value in values.items():
            held = row.get(column)
            if held is None or ts >= held[0]:
                row[column] = (ts, value)

    def rows(self, table: str) -> dict[Key, dict[str, Any]]:
        """What a reader sees: every live row's live cells."""
        seen = {}
        for key, row in self.cells.get(table, {}).items():
            dead_at = self.tombstones.get((table, key))
            live = {c: v for c, (ts, v) in row.items() if dead_at is None or ts > dead_at}
            if live:
                seen[key] = live
        return seen

    def snapshot(self) -> dict[str, dict[Key, dict[str, Any]]]:
        """Every table as a reader sees it, empty ones left out (for equality checks)."""
        return {table: rows for table in sorted(self.cells) if (rows := self.rows(table))}

    def order(self, order_id: str) -> OrderRow | None:
        row = self.rows("orders_by_id").get((order_id,))
        return None if row is None else OrderRow(**row)

    def load_orders(self, order_ids: Iterable[str]) -> list[OrderRow]:
        """What the projector reads back after a restart."""
        return [row for order_id in order_ids if (row := self.order(order_id)) is not None]


def _fields(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Struct):
        return structs.asdict(obj)
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
