"""Entry point: `python -m services.wspush` — ws-push on WSPUSH_HOST:WSPUSH_PORT (WebSocket at /ws)."""

import uvicorn

from services.common.bus import Bus
from services.common.logs import configure_logging
from services.common.settings import get_settings
from services.common.stores import cassandra
from services.wspush.registry import CassandraRegistry
from services.wspush.service import WsPushService, uvicorn_config


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="wspush")
    session = cassandra.connect(settings)
    cassandra.migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    registry = CassandraRegistry(session, settings.cassandra_keyspace)
    service = WsPushService(settings, bus=Bus(settings), registry=registry)
    uvicorn.Server(uvicorn_config(service)).run()
    session.cluster.shutdown()


if __name__ == "__main__":
    main()
