"""Cassandra: the session factory and the keyspace migrations."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

from cassandra import ConsistencyLevel, InvalidRequest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
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


BATCH_MAX_STATEMENTS = 50
"""Most statements in one unlogged batch."""

BATCH_MAX_VALUE_BYTES = 8 * 1024
"""Most bytes of bound values in one unlogged batch. Cassandra's `batch_size_fail_threshold` (50 KiB
by default) counts the mutations' size, measured at about three times the values' for the read
model's rows (100 statements of ~150 B of values made a 45 KiB batch): so at most ~25 KiB."""


def execute_grouped(
    session: Session,
    statements: Iterable[tuple[PreparedStatement, tuple[Any, ...]]],
    consistency: int = ConsistencyLevel.LOCAL_QUORUM,
) -> int:
    """Send `statements` (prepared, with their values) grouped by the replicas that own their
    partitions: writes whose partitions live on the same replicas travel as UNLOGGED batches of at
    most `BATCH_MAX_STATEMENTS` statements and `BATCH_MAX_VALUE_BYTES` bytes, a group's lone write
    as itself; all at once, then wait for every one. Raises the first failure, after all have
    finished. Returns how many requests went.

    Token-aware routing sends each batch to one of its replicas, which applies every partition's
    mutation locally: the batch saves requests and adds no hop. (Cassandra warns about unlogged
    batches over more than `unlogged_batch_across_partitions_warn_threshold` partitions, meaning
    batches whose partitions live on different nodes; these never do — docs/read-model.md.)
    A batch is not atomic and its statements share one write timestamp unless they carry their
    own, so statements writing the same cell must be coalesced first (the projector's are, and
    carry `USING TIMESTAMP`)."""
    metadata = session.cluster.metadata
    groups: dict[object, list[BoundStatement]] = {}
    for statement, values in statements:
        bound = statement.bind(values)
        groups.setdefault(_owners(metadata, statement, bound), []).append(bound)
    futures = [
        session.execute_async(chunk[0] if len(chunk) == 1 else _unlogged(chunk, consistency))
        for bounds in groups.values()
        for chunk in _chunks(bounds)
    ]
    errors = []
    for future in futures:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - collected, the first is raised below
            errors.append(exc)
    if errors:
        raise errors[0]
    return len(futures)


def _owners(metadata: Any, statement: PreparedStatement, bound: BoundStatement) -> object:
    """What decides which writes may share a batch: the replicas of the partition (or the
    partition itself while the driver has no token map; a statement without a routing key goes
    alone)."""
    routing = bound.routing_key
    if routing is None:
        return id(bound)
    replicas = metadata.get_replicas(bound.keyspace, routing)
    if replicas:
        return tuple(sorted(str(host.host_id) for host in replicas))
    return (_table(statement), routing)


def _chunks(bounds: list[BoundStatement]) -> Iterable[list[BoundStatement]]:
    chunk: list[BoundStatement] = []
    size = 0
    for bound in bounds:
        value_bytes = sum(len(v) for v in bound.values if isinstance(v, bytes))
        if chunk and (len(chunk) == BATCH_MAX_STATEMENTS or size + value_bytes > BATCH_MAX_VALUE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(bound)
        size += value_bytes
    if chunk:
        yield chunk


def _unlogged(bounds: list[BoundStatement], consistency: int) -> BatchStatement:
    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=consistency)
    for bound in bounds:
        batch.add(bound)
    return batch


def _table(statement: PreparedStatement) -> str:
    column = statement.column_metadata[0] if statement.column_metadata else None
    return f"{column.keyspace_name}.{column.table_name}" if column else statement.query_string
