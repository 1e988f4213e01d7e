"""Fixtures on real infrastructure: one start per session, isolation per test by name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cassandra.cluster import Session
from clickhouse_connect.driver.client import Client

from deploy.local.launcher import Endpoints
from services.common.bus import Bus
from services.common.settings import Settings
from services.common.stores import cassandra, clickhouse
from services.common.topics import TOPICS, ensure_topics
from tests.integration.infra import session_infrastructure
from tests.integration.readback import delete_prefixed_topics


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    with session_infrastructure(tmp_path_factory.mktemp("infra")) as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def session_keyspace() -> str:
    return f"cxpt_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(infra: Endpoints, session_keyspace: str) -> Settings:
    """Settings for one test: its own topic prefix and ClickHouse database, the session's keyspace."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        cassandra_contact_points=infra.cassandra_host,
        cassandra_port=infra.cassandra_port,
        cassandra_keyspace=session_keyspace,
        clickhouse_dsn=infra.clickhouse_dsn,
        clickhouse_database=f"cxpt_test_{tag}",
        eth_rpc_url=infra.eth_rpc_url,
        topic_prefix=f"t{tag}.",
        batch_max_messages=10,
        log_json=False,
    )


@pytest.fixture
def bus(settings: Settings) -> Iterator[Bus]:
    """A bus whose declared topics exist (created under the test's prefix, deleted after it: a
    broker kept between runs would otherwise gather thousands of partitions and run out of files)."""
    bus = Bus(settings)
    ensure_topics(bus.client_config(), [bus.topic(t) for t in TOPICS])
    yield bus
    delete_prefixed_topics(bus.client_config(), settings.topic_prefix)


@pytest.fixture(scope="session")
def cassandra_session(infra: Endpoints, session_keyspace: str) -> Iterator[Session]:
    settings = Settings(
        cassandra_contact_points=infra.cassandra_host,
        cassandra_port=infra.cassandra_port,
        cassandra_keyspace=session_keyspace,
    )
    session = cassandra.connect(settings)
    cassandra.migrate(session, session_keyspace, settings.cassandra_replication)
    yield session
    session.execute(f"DROP KEYSPACE IF EXISTS {session_keyspace}")
    session.cluster.shutdown()


@pytest.fixture
def clickhouse_client(settings: Settings) -> Iterator[Client]:
    client = clickhouse.connect(settings.clickhouse_dsn)
    clickhouse.migrate(client, settings.clickhouse_database)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
