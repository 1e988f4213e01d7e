"""Prepare an environment: topics, schema ids, Cassandra and ClickHouse migrations. Safe to re-run.

    python -m services.common.bootstrap [--skip-clickhouse]

The local `deploy/dev.sh up` runs it before the services; in Kubernetes it is the chart's
pre-install/upgrade Job.
"""

from __future__ import annotations

import argparse
import sys

from services.common.bus import Bus
from services.common.settings import get_settings
from services.common.stores import cassandra, clickhouse
from services.common.topics import ensure_topics


def main(argv: list[str] | None = None) -> int:
    """Run every idempotent preparation step and say what changed."""
    parser = argparse.ArgumentParser(prog="python -m services.common.bootstrap")
    parser.add_argument("--skip-clickhouse", action="store_true", help="leave ClickHouse alone")
    args = parser.parse_args(argv)
    settings = get_settings()
    bus = Bus(settings)
    created = ensure_topics(bus.client_config(), bus.all_topics())
    print(f"topics: {len(created)} created, {len(bus.all_topics()) - len(created)} already there")
    for spec in bus.all_topics():
        print(f"  {spec.name}: schema {spec.value_schema} id {bus.serde(spec).schema_id}")
    session = cassandra.connect(settings)
    applied = cassandra.migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    print(f"cassandra keyspace {settings.cassandra_keyspace}: applied {applied or 'nothing new'}")
    session.cluster.shutdown()
    if not args.skip_clickhouse:
        applied = clickhouse.migrate(
            clickhouse.connect(settings.clickhouse_dsn), settings.clickhouse_database
        )
        print(f"clickhouse database {settings.clickhouse_database}: applied {applied or 'nothing new'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
