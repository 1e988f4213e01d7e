"""Schemathesis over the gateway's own OpenAPI spec, on the real stack: no input gives a 5xx.

Every operation gets schema-valid and schema-violating requests (random bodies, headers, paths,
query strings, tokens, signatures); the gateway must answer each with a 2xx or a 4xx carrying a
code, never a server error. The gateway runs under uvicorn, as in production, on its own port.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from services.common.bus import Bus
from services.common.settings import Settings
from services.common.stores import cassandra
from services.gateway.wiring import build_app
from tests.integration.stack import exchange
from tests.kit import wait_until_ready

EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def gateway_url(settings: Settings, bus: Bus) -> Iterator[str]:
    keyspace = f"fuzz_{settings.topic_prefix.strip('.')}"
    fuzz_settings = settings.model_copy(
        update={"cassandra_keyspace": keyspace, "ack_timeout_ms": 500, "rate_limit_burst": 10**6}
    )
    session = cassandra.connect(fuzz_settings)
    cassandra.migrate(session, keyspace, fuzz_settings.cassandra_replication)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(build_app(fuzz_settings), port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    with exchange(fuzz_settings):
        thread.start()
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url)
        yield url
        server.should_exit = True
        thread.join(30)
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    session.cluster.shutdown()


def test_no_input_makes_the_gateway_fail(gateway_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the spec parses"
    checked_negative_free: list[str] = []
    assert len(operations) >= 12, "every route is in the spec"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def no_server_error(case: Any) -> None:
                case.call_and_validate(base_url=gateway_url, checks=[not_a_server_error])

            try:
                no_server_error()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to break in it
                checked_negative_free.append(operation.label)
    assert "GET /health" in checked_negative_free
