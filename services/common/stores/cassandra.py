"""Cassandra: the session factory and the keyspace migrations."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

from cassandra import ConsistencyLevel, InvalidRequest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement

from services.common.settings import Settings
from services.common.stores.migrations import apply_pending, load_migrations


def connect(settings: Settings, keyspace: str | None = None) -> Session:
    """A session on the configured cluster, bound to `keyspace` when given."""
    cluster = Cluster(
        settings.cassandra_hosts,
        port=settings.cassandra_port,
        execution_profiles={
            # Token-aware: a statement (or a one-partition batch) goes to a replica of its partition.
            EXEC_PROFILE_DEFAULT: ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy())
            )
        },
        protocol_version=5,
        **security_options(settings),
    )
    return cluster.connect(keyspace)


def security_options(settings: Settings) -> dict[str, Any]:
    """The cluster's authentication (`CASSANDRA_USERNAME` / `_PASSWORD`, PasswordAuthenticator) and
    TLS (`CASSANDRA_SSL_CA`: the nodes' certificates checked against it, hostnames verified)."""
    options: dict[str, Any] = {}
    if settings.cassandra_username is not None and settings.cassandra_password is not None:
        options["auth_provider"] = PlainTextAuthProvider(
            settings.cassandra_username, settings.cassandra_password.get_secret_value()
        )
    if settings.cassandra_ssl_ca:
        context = ssl.create_default_context(cafile=settings.cassandra_ssl_ca)  # verifies hostnames
        options["ssl_context"] = context
    return options


def migrate(session: Session, keyspace: str, replication: str) -> list[str]:
    """Create `keyspace` if needed and apply pending migrations; returns the ids applied."""
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (id text PRIMARY KEY, applied_at timestamp)"
    )
    applied = {row.id for row in session.execute(f"SELECT id FROM {keyspace}.schema_migrations")}
    return apply_pending(
        load_migrations("cassandra", keyspace=keyspace),
        applied,
        lambda statement: _execute_once(session, statement),
        lambda mid: session.execute(
            f"INSERT INTO {keyspace}.schema_migrations (id, applied_at) VALUES (%s, toTimestamp(now()))",
            (mid,),
        ),
    )


def _execute_once(session: Session, statement: str) -> None:
    """Run a migration statement that another process may be running at the same moment.

    Services started together on a fresh keyspace migrate side by side. Creations say IF NOT
    EXISTS, but `ALTER TABLE … ADD` has no such clause: when it reports the column as existing,
    the other process has just made the change this one wanted.
    """
    try:
        session.execute(statement)
    except InvalidRequest as error:
        if "already exists" not in str(error):
            raise


BATCH_MAX_STATEMENTS = 100
"""Most statements in one unlogged batch (a partition's writes beyond it go in the next)."""


def execute_grouped(
    session: Session,
    statements: Iterable[tuple[PreparedStatement, tuple[Any, ...]]],
    consistency: int = ConsistencyLevel.LOCAL_QUORUM,
) -> int:
    """Send `statements` (prepared, with their values) grouped by partition: the writes to one
    partition travel as one UNLOGGED batch (one request, one mutation on the replica — the use of
    batches Cassandra recommends), a partition's lone write as itself; all at once, then wait for
    every one. Raises the first failure, after all have finished. Returns how many requests went."""
    groups: dict[tuple[str, bytes] | int, list[BoundStatement]] = {}
    for statement, values in statements:
        bound = statement.bind(values)
        routing = bound.routing_key
        key = (_table(statement), routing) if routing is not None else id(bound)  # unknown: alone
        groups.setdefault(key, []).append(bound)
    futures: list[ResponseFuture] = []
    for bounds in groups.values():
        for start in range(0, len(bounds), BATCH_MAX_STATEMENTS):
            chunk = bounds[start : start + BATCH_MAX_STATEMENTS]
            if len(chunk) == 1:
                futures.append(session.execute_async(chunk[0]))
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=consistency)
            for bound in chunk:
                batch.add(bound)
            futures.append(session.execute_async(batch))
    errors = []
    for future in futures:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - collected, the first is raised below
            errors.append(exc)
    if errors:
        raise errors[0]
    return len(futures)


def _table(statement: PreparedStatement) -> str:
    column = statement.column_metadata[0] if statement.column_metadata else None
    return f"{column.keyspace_name}.{column.table_name}" if column else statement.query_string
