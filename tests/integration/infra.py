"""Where integration tests find their infrastructure — three ways, one contract (Endpoints).

1. `CXPT_INFRA=external`, or KAFKA_BOOTSTRAP_SERVERS and CASSANDRA_CONTACT_POINTS set: use what
   the environment names (a running launcher, a cluster, CI services).
2. `CXPT_INFRA=testcontainers`, or a reachable Docker engine: containers for the session.
3. otherwise the project's launcher (`python -m deploy.local`), started once for the session and
   stopped at its end if this session started it.

ClickHouse is the embedded engine (chdb) in a session directory unless CLICKHOUSE_DSN names a
server; chdb opens one data path per process, so tests isolate by database, not by path.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from deploy.local.launcher import ALL, Endpoints, Launcher

CHAIN_ID = 31337


def mode() -> str:
    chosen = os.environ.get("CXPT_INFRA", "auto")
    if chosen != "auto":
        return chosen
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("CASSANDRA_CONTACT_POINTS"):
        return "external"
    return "testcontainers" if _docker_engine_reachable() else "launcher"


@contextmanager
def session_infrastructure(scratch: Path) -> Iterator[Endpoints]:
    """The infrastructure for one pytest session, by the rules in the module docstring."""
    clickhouse_dsn = os.environ.get("CLICKHOUSE_DSN") or f"chdb://{scratch / 'clickhouse'}"
    chosen = mode()
    if chosen == "external":
        yield Endpoints(
            kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            cassandra_host=os.environ.get("CASSANDRA_CONTACT_POINTS", "127.0.0.1").split(",")[0],
            cassandra_port=int(os.environ.get("CASSANDRA_PORT", "9042")),
            clickhouse_dsn=clickhouse_dsn,
            eth_rpc_url=os.environ.get("ETH_RPC_URL", "http://127.0.0.1:8545"),
        )
    elif chosen == "testcontainers":
        with _containers(clickhouse_dsn) as endpoints:
            yield endpoints
    else:
        launcher = Launcher()
        already = {name for name, st in launcher.status().items() if st.healthy}
        started = launcher.start(ALL)
        try:
            yield dataclasses.replace(started, clickhouse_dsn=clickhouse_dsn)
        finally:
            ours = [name for name in ALL if name not in already]
            if ours and not os.environ.get("CXPT_KEEP_INFRA"):
                launcher.stop(ours)


def _docker_engine_reachable() -> bool:
    if not (os.path.exists("/var/run/docker.sock") or os.environ.get("DOCKER_HOST")):
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means: no usable engine
        return False
    return True


@contextmanager
def _containers(clickhouse_dsn: str) -> Iterator[Endpoints]:
    """Kafka, Cassandra and anvil in containers (hosts with Docker; not available on CI here)."""
    from testcontainers.cassandra import CassandraContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft())
        cassandra = stack.enter_context(CassandraContainer("cassandra:5.0"))
        anvil = stack.enter_context(
            DockerContainer("ghcr.io/foundry-rs/foundry:stable")
            .with_command("anvil --host 0.0.0.0")
            .with_exposed_ports(8545)
        )
        wait_for_logs(anvil, "Listening on")
        host, port = cassandra.get_contact_points()[0]
        yield Endpoints(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            cassandra_host=host,
            cassandra_port=port,
            clickhouse_dsn=clickhouse_dsn,
            eth_rpc_url=f"http://{anvil.get_container_host_ip()}:{anvil.get_exposed_port(8545)}",
        )
