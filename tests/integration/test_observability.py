"""Every service, started as `python -m services.<name>` on the real infrastructure, answers
`/health` and `/ready` with 200 and `/metrics` in the Prometheus text format with its metrics.

Each runs in its own process on the test's topic prefix and its own Cassandra keyspace, with every
port chosen free here, so a dev stack on the default ports is left alone — and so are the other
tests' rows. The watcher and settlement get a Vault deployed for the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cassandra.cluster import Session

from deploy.local.launcher import Endpoints
from services.chain import client
from services.chain.deploy import deploy_exchange
from services.common.bus import Bus
from services.common.settings import REPO_ROOT, Settings
from services.common.stores import cassandra
from services.common.topics import TOPICS, ensure_topics
from tests.integration.chain import funded_key
from tests.integration.readback import delete_prefixed_topics


@dataclass(frozen=True)
class Exposed:
    """What one service must answer: the port setting it listens on, metrics it must export."""

    module: str
    port_setting: str
    metrics: tuple[str, ...]
    extra_env: tuple[tuple[str, str], ...] = ()


SERVICES = {
    "matcher": Exposed("matcher", "MATCHER_METRICS_PORT", (
        "# TYPE cxpt_order_fill_latency_seconds histogram", "# TYPE cxpt_batch_records histogram",
        "# TYPE cxpt_consumer_lag gauge", 'cxpt_service_stats{service="matcher"',
    )),
    "risk": Exposed("risk", "RISK_METRICS_PORT", (
        "# TYPE cxpt_transaction_seconds histogram", "# TYPE cxpt_dead_letters_total counter",
        'cxpt_service_stats{service="risk"',
    )),
    "projector": Exposed("projector", "PROJECTOR_METRICS_PORT", (
        "# TYPE cxpt_records_consumed_total counter", "# TYPE cxpt_consumer_lag gauge",
    )),
    "funding": Exposed("funding", "FUNDING_METRICS_PORT", ('cxpt_service_stats{service="funding"',)),
    "watcher": Exposed("watcher", "WATCHER_METRICS_PORT", ('cxpt_service_stats{service="watcher"',)),
    "settlement": Exposed("settlement", "SETTLEMENT_METRICS_PORT", (
        "cxpt_settlement_batches_unconfirmed ", 'cxpt_service_stats{service="settlement"',
    )),
    "oracle": Exposed("oracle", "ORACLE_METRICS_PORT", (
        "# TYPE oracle_rounds_total counter", "oracle_last_round_timestamp_seconds",
    ), (("ORACLE_SIMULATED", "BTC-USD=65000"), ("ORACLE_INTERVAL_S", "1"))),
    "gateway": Exposed("gateway", "GATEWAY_PORT", ("# TYPE gateway_requests_total counter",)),
    "metrics": Exposed("metrics", "METRICS_PORT", (
        "# TYPE cxpt_http_request_seconds histogram", "# TYPE cxpt_consumer_lag gauge",
    )),
    "wspush": Exposed("wspush", "WSPUSH_PORT", ("wspush_connections ",)),
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path


@pytest.fixture(scope="module")
def stack(
    infra: Endpoints,
    cassandra_session: Session,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Running]]:
    """Every service in its own process on a fresh topic prefix; stopped (SIGTERM) at the end."""
    scratch = tmp_path_factory.mktemp("observability")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = Settings(
        kafka_bootstrap_servers=infra.kafka_bootstrap, eth_rpc_url=infra.eth_rpc_url, topic_prefix=prefix
    )
    bus = Bus(settings)
    ensure_topics(bus.client_config(), [bus.topic(t) for t in TOPICS])
    ports = {name: free_port() for name in SERVICES}
    keyspace = f"obs_{uuid.uuid4().hex[:10]}"
    cassandra.migrate(cassandra_session, keyspace, settings.cassandra_replication)
    w3 = client.connect(infra.eth_rpc_url)
    admin_key, settlement_key = funded_key(w3), funded_key(w3)
    vault = deploy_exchange(
        w3, admin_key=admin_key, settlement_address=client.address_of(settlement_key)
    ).vault
    base_env = (
        os.environ
        | {
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
            "CASSANDRA_CONTACT_POINTS": infra.cassandra_host,
            "CASSANDRA_PORT": str(infra.cassandra_port),
            "CASSANDRA_KEYSPACE": keyspace,
            "VAULT_ADDRESS": vault,
            "CHAIN_SETTLEMENT_KEY": settlement_key,
            "ETH_RPC_URL": infra.eth_rpc_url,
            "TOPIC_PREFIX": prefix,
            "CLICKHOUSE_DSN": f"chdb://{scratch / 'clickhouse'}",  # one chdb path per process
            "CLICKHOUSE_DATABASE": "cxpt_observability",
            "GATEWAY_SESSION_SECRET": uuid.uuid4().hex,
            "WATCHER_CONFIRMATIONS": "2",
            "LOG_JSON": "true",
        }
        | {spec.port_setting: str(ports[name]) for name, spec in SERVICES.items()}
    )
    running: dict[str, Running] = {}
    try:
        for name, spec in SERVICES.items():
            log = scratch / f"{name}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{spec.module}"],
                cwd=REPO_ROOT,
                env=base_env | dict(spec.extra_env),
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            running[name] = Running(process, f"http://127.0.0.1:{ports[name]}", log)
        yield running
    finally:
        for service in running.values():
            service.process.terminate()
        for service in running.values():
            try:
                service.process.wait(30)
            except subprocess.TimeoutExpired:
                service.process.kill()
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        delete_prefixed_topics({"bootstrap.servers": infra.kafka_bootstrap}, prefix)


def wait_for(service: Running, path: str, timeout_s: float = 90) -> httpx.Response:
    """The first 200 answer of `path`; fails with the service's log if it exits or never answers."""
    deadline = time.monotonic() + timeout_s
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            pytest.fail(f"exited {service.process.returncode}:\n{service.log.read_text()[-3000:]}")
        try:
            last = httpx.get(service.base_url + path, timeout=5)
            if last.status_code == 200:
                return last
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{path}: {last.status_code if last else 'no answer'}\n{service.log.read_text()[-3000:]}")


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_service_exposes_health_ready_and_its_metrics(stack: dict[str, Running], name: str) -> None:
    # State: the service's process, started with the others.
    service = stack[name]
    # Action / Expectation: alive, then ready.
    assert wait_for(service, "/health").status_code == 200
    assert wait_for(service, "/ready").status_code == 200
    # Action: a scrape. Expectation: the Prometheus text format with the service's metrics.
    if name == "metrics":
        httpx.get(service.base_url + "/metrics/volume_24h", timeout=30)  # one timed API request
    scrape = httpx.get(service.base_url + "/metrics", timeout=10)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    for expected in SERVICES[name].metrics:
        assert expected in scrape.text, f"{name}: {expected!r} missing"
