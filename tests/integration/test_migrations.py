"""Cassandra migrations run by several services at once on a fresh keyspace (as they start)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from cassandra.cluster import Session

from services.common.settings import Settings
from services.common.stores import cassandra


def test_services_migrating_a_fresh_keyspace_together_all_start(
    settings: Settings, cassandra_session: Session
) -> None:
    # State: a keyspace nobody created yet.
    keyspace = f"mig_{uuid.uuid4().hex[:10]}"
    sessions = [cassandra.connect(settings) for _ in range(4)]
    try:
        # Action: four processes' worth of sessions migrate it at the same moment.
        with ThreadPoolExecutor(len(sessions)) as pool:
            runs = list(
                pool.map(lambda s: cassandra.migrate(s, keyspace, settings.cassandra_replication), sessions)
            )
        # Expectation: none fails; afterwards every migration is recorded and nothing is left to do.
        assert all(isinstance(run, list) for run in runs)
        assert cassandra.migrate(cassandra_session, keyspace, settings.cassandra_replication) == []
        columns = cassandra_session.execute(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, "markets"),
        )
        assert "mark_price" in {row.column_name for row in columns}
    finally:
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        for session in sessions:
            session.cluster.shutdown()
