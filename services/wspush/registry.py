"""The connection registry in Cassandra (`ws_connections`, migration 0007): an operators' view.

Writes are fire-and-forget (`execute_async`, errors logged): the registry must never slow a push,
and a lost write is repaired by the next heartbeat's rewrite. Each write re-arms the 24 h TTL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from cassandra.cluster import Session

log = logging.getLogger(__name__)

TTL_S = 86_400


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """What the registry records about one connection."""

    replica_id: str
    connection_id: str
    trader: str | None
    admin: str | None
    subscriptions: frozenset[str]
    remote: str
    connected_at_ms: int
    last_seen_ms: int


class ConnectionRegistry(Protocol):
    """What ws-push needs from a registry: record a connection (again), forget one."""

    def save(self, row: ConnectionRow) -> None: ...

    def delete(self, replica_id: str, connection_id: str) -> None: ...


class CassandraRegistry:
    """`ws_connections` rows, written asynchronously with a 24 h TTL."""

    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session
        self._insert = session.prepare(
            f"INSERT INTO {keyspace}.ws_connections (replica_id, connection_id, trader, admin, "
            "subscriptions, remote, connected_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            f"USING TTL {TTL_S}"
        )
        self._delete = session.prepare(
            f"DELETE FROM {keyspace}.ws_connections WHERE replica_id = ? AND connection_id = ?"
        )

    def save(self, row: ConnectionRow) -> None:
        """Write (or rewrite, re-arming the TTL) one connection's row."""
        values = (
            row.replica_id,
            row.connection_id,
            row.trader,
            row.admin,
            set(row.subscriptions),
            row.remote,
            row.connected_at_ms,
            row.last_seen_ms,
        )
        self._session.execute_async(self._insert, values).add_errback(_failed, "save")

    def delete(self, replica_id: str, connection_id: str) -> None:
        """Remove a closed connection's row."""
        self._session.execute_async(self._delete, (replica_id, connection_id)).add_errback(_failed, "delete")


def _failed(error: Any, what: str) -> None:
    log.warning("ws_connections %s failed (the next heartbeat rewrites it): %s", what, error)
