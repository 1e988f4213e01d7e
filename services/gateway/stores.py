"""The gateway's store adapters: `IdempotencyStore` on Cassandra.

The table is `gateway_idempotency` (migration `0002_gateway_idempotency.cql`). Both writes are
lightweight transactions, because `put_if_absent` must be atomic across gateway replicas, and a
plain write mixed with Paxos writes on the same row can be ordered before them by its timestamp.
Reads are SERIAL too (LOCAL_SERIAL), so `get` sees a Paxos write that a quorum has accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Session

from services.gateway.core.idempotency import IdempotencyEntry, IdempotencyState

TABLE = "gateway_idempotency"


class CassandraIdempotencyStore:
    """`IdempotencyStore` over a Cassandra session (keyspace migrated with 0002)."""

    def __init__(self, session: Session, keyspace: str) -> None:
        table = f"{keyspace}.{TABLE}"
        self._session = session
        self._get = session.prepare(
            f"SELECT fingerprint, state, status, body FROM {table} WHERE trader = ? AND idempotency_key = ?"
        )
        self._get.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        self._insert = session.prepare(
            f"INSERT INTO {table} (trader, idempotency_key, fingerprint, state, status, body) "
            "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
        )
        # Every non-key column is rewritten, not only the changed ones: a TTL applies per cell, and
        # a fingerprint left with the in-flight TTL would vanish under its completed answer.
        self._complete = session.prepare(
            f"UPDATE {table} USING TTL ? SET fingerprint = ?, state = ?, status = ?, body = ? "
            "WHERE trader = ? AND idempotency_key = ? IF fingerprint = ?"
        )
        self._release = session.prepare(
            f"DELETE FROM {table} WHERE trader = ? AND idempotency_key = ? IF fingerprint = ?"
        )
        for lwt in (self._insert, self._complete, self._release):
            lwt.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            lwt.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL

    def get(self, trader: str, key: str) -> IdempotencyEntry | None:
        """The live entry for (trader, key), if any."""
        row = self._session.execute(self._get, (trader, key)).one()
        return None if row is None else _entry(trader, key, row)

    def put_if_absent(self, entry: IdempotencyEntry, *, ttl_s: int) -> IdempotencyEntry | None:
        """Insert `entry` unless a live one exists (LWT); None if inserted, else the existing entry."""
        result = self._session.execute(
            self._insert,
            (entry.trader, entry.key, entry.fingerprint, entry.state.value, entry.status, entry.body, ttl_s),
        )
        if result.was_applied:
            return None
        # A refused IF NOT EXISTS returns the row that is there.
        return _entry(entry.trader, entry.key, result.one())

    def complete(
        self, trader: str, key: str, fingerprint: str, status: int, body: bytes, *, ttl_s: int
    ) -> bool:
        """Store the answer if the entry still holds `fingerprint` (LWT); whether it did."""
        result = self._session.execute(
            self._complete,
            (
                ttl_s,
                fingerprint,
                IdempotencyState.COMPLETED.value,
                status,
                body,
                trader,
                key,
                fingerprint,
            ),
        )
        return bool(result.was_applied)

    def release(self, trader: str, key: str, fingerprint: str) -> bool:
        """Drop the claim if it still holds `fingerprint` (LWT); whether it did."""
        result = self._session.execute(self._release, (trader, key, fingerprint))
        return bool(result.was_applied)


def _field(row: Any, name: str) -> Any:
    # Works whatever row factory the session uses (named tuples by default, dicts if configured).
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def _entry(trader: str, key: str, row: Any) -> IdempotencyEntry:
    return IdempotencyEntry(
        trader=trader,
        key=key,
        fingerprint=_field(row, "fingerprint"),
        state=IdempotencyState(_field(row, "state")),
        status=_field(row, "status") or 0,
        body=bytes(_field(row, "body") or b""),
    )
