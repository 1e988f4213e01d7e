"""The services' Cassandra TLS setting against a real node whose CQL port takes TLS: a session
trusting the CA that signed the node's certificate (hostname checked) reads and writes; one
trusting another CA is refused, and the error says why."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cassandra.cluster import NoHostAvailable
from cryptography.hazmat.primitives import serialization

from deploy.local.launcher import Endpoints
from deploy.local.tls import certificate_authority
from services.common.settings import Settings
from services.common.stores import cassandra


@pytest.fixture
def tls_settings(infra: Endpoints) -> Settings:
    """Settings that reach the node over TLS, trusting the CA that signed its certificate."""
    if infra.cassandra_ssl_ca is None:
        pytest.skip("this infrastructure's Cassandra takes no TLS (the launcher's does)")
    return Settings(
        cassandra_contact_points=infra.cassandra_host,
        cassandra_port=infra.cassandra_port,
        cassandra_ssl_ca=infra.cassandra_ssl_ca,
        cassandra_keyspace=f"tls_{uuid.uuid4().hex[:8]}",
    )


def test_a_session_over_tls_migrates_writes_and_reads(tls_settings: Settings) -> None:
    # State: a session over TLS.
    session = cassandra.connect(tls_settings)
    keyspace = tls_settings.cassandra_keyspace
    try:
        # Action: the project's migrations, then a write and a read.
        cassandra.migrate(session, keyspace, tls_settings.cassandra_replication)
        session.execute(f"CREATE TABLE {keyspace}.probe (k text PRIMARY KEY, v int)")
        session.execute(f"INSERT INTO {keyspace}.probe (k, v) VALUES ('a', 1)")
        # Expectation: what was written comes back.
        assert session.execute(f"SELECT v FROM {keyspace}.probe WHERE k = 'a'").one().v == 1
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        session.cluster.shutdown()


def test_a_node_certificate_from_another_ca_is_refused(tls_settings: Settings, tmp_path: Path) -> None:
    # State: trusting a CA that did not sign the node's certificate.
    _, stranger = certificate_authority("not the node's CA")
    ca = tmp_path / "other-ca.pem"
    ca.write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    # Action / Expectation: no session; the reason is the certificate check.
    with pytest.raises(NoHostAvailable, match="CERTIFICATE_VERIFY_FAILED"):
        cassandra.connect(tls_settings.model_copy(update={"cassandra_ssl_ca": str(ca)}))
