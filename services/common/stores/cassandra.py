"""Cassandra: the session factory and the keyspace migrations."""

from __future__ import annotations

import ssl
from typing import Any

from cassandra import InvalidRequest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy

from services.common.settings import Settings
from services.common.stores.migrations import apply_pending, load_migrations


def connect(settings: Settings, keyspace: str | None = None) -> Session:
    """A session on the configured cluster, bound to `keyspace` when given."""
    cluster = Cluster(
        settings.cassandra_hosts,
        port=settings.cassandra_port,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy())
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
