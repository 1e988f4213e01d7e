"""The services' Kafka settings against a broker listener that requires TLS and SASL (SASL_SSL, as
in production): a transaction and a read-back through it with the right CA and credentials; a
wrong password, and a CA that did not sign the broker's certificate, refused and said so in the log."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from deploy.local.launcher import Endpoints
from deploy.local.tls import certificate_authority
from services.common.binding import from_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.records import AccountEvent
from services.common.settings import Settings
from services.common.topics import ACCOUNTS_EVENTS, ensure_topics
from tests.integration.readback import delete_prefixed_topics, read_all
from tests.kit import deposit_event, trader_address

ALICE = trader_address(0xA11CE)


@pytest.fixture
def sasl_settings(infra: Endpoints) -> Settings:
    """Settings that reach the broker only through its SASL_SSL listener, trusting the CA that
    signed its certificate, as the user it knows."""
    if infra.kafka_sasl is None:
        pytest.skip("this infrastructure's broker has no SASL listener (the launcher's has)")
    return Settings(
        kafka_bootstrap_servers=infra.kafka_sasl.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_location=infra.kafka_sasl.ca_location,
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=infra.kafka_sasl.username,
        kafka_sasl_password=infra.kafka_sasl.password,
        topic_prefix=f"sasl{uuid.uuid4().hex[:8]}.",
        log_json=False,
    )


def test_an_authenticated_bus_over_tls_writes_in_a_transaction_and_reads_back(
    sasl_settings: Settings,
) -> None:
    # State: topics created through the SASL listener.
    bus = Bus(sasl_settings)
    ensure_topics(bus.client_config(), [bus.topic(ACCOUNTS_EVENTS)])
    try:
        # Action: a deposit in a transaction, then every committed record read back.
        deposit = deposit_event(trader=ALICE, amount=5_000_000, n=1)
        producer = TypedProducer(bus, transactional_id=f"{sasl_settings.topic_prefix}sasl")
        with producer.transaction():
            producer.send(Outbound(ACCOUNTS_EVENTS, key=ALICE, value=deposit))
        read = [inbound.record for inbound in read_all(bus, ACCOUNTS_EVENTS, expect=1)]
        # Expectation: the one deposit, as written.
        assert read == [from_avro(AccountEvent, deposit)]
    finally:
        delete_prefixed_topics(bus.client_config(), sasl_settings.topic_prefix)


def test_a_wrong_password_is_refused_and_the_log_says_why(
    sasl_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # State: the right user with a wrong password.
    wrong = sasl_settings.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
    admin = AdminClient(Bus(wrong).client_config())
    # Action / Expectation: no metadata, and librdkafka's reason in the service's log.
    with caplog.at_level(logging.ERROR, logger="librdkafka"), pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(0)  # librdkafka's log lines are served on poll
    assert "Authentication failed" in caplog.text


def test_a_broker_certificate_from_another_ca_is_refused_and_the_log_says_why(
    sasl_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # State: the right user and password, trusting a CA that did not sign the broker's certificate.
    _, stranger = certificate_authority("not the broker's CA")
    ca = tmp_path / "other-ca.pem"
    ca.write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    admin = AdminClient(
        Bus(sasl_settings.model_copy(update={"kafka_ssl_ca_location": str(ca)})).client_config()
    )
    # Action / Expectation: no metadata; librdkafka's reason in the service's log.
    with caplog.at_level(logging.ERROR, logger="librdkafka"), pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(0)
    assert "certificate verify failed" in caplog.text
