"""How the settings become Kafka and Cassandra connection options: TLS and credentials only when
asked for, passwords never shown, and half-given credentials refused at start-up."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import pytest
from cassandra.auth import PlainTextAuthProvider
from pydantic import ValidationError

from services.common.bus import kafka_client_config
from services.common.settings import Settings
from services.common.stores.cassandra import security_options


def test_by_default_clients_connect_in_plain_text_without_credentials() -> None:
    settings = Settings(kafka_bootstrap_servers="b1:9092,b2:9092")

    assert kafka_client_config(settings) == {
        "bootstrap.servers": "b1:9092,b2:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert security_options(settings) == {}


def test_sasl_over_tls_carries_the_mechanism_credentials_and_ca() -> None:
    # State: production-like settings, the password as a secret.
    settings = Settings(
        kafka_bootstrap_servers="kafka-0.kafka:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="risk",
        kafka_sasl_password="s3cret",
        kafka_ssl_ca_location="/etc/kafka/ca.pem",
    )
    # Action / Expectation: librdkafka gets all of it; the settings never print the password.
    assert kafka_client_config(settings) == {
        "bootstrap.servers": "kafka-0.kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "risk",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/kafka/ca.pem",
    }
    assert "s3cret" not in repr(settings)


def test_sasl_without_credentials_is_refused_with_what_to_set() -> None:
    with pytest.raises(ValidationError, match="needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="risk")


def test_cassandra_credentials_and_tls() -> None:
    # State: a user and a CA file (any PEM bundle will do for building the context).
    settings = Settings(
        cassandra_username="gateway",
        cassandra_password="pw",
        cassandra_ssl_ca=certifi.where(),
    )
    # Action
    options = security_options(settings)
    # Expectation: PasswordAuthenticator credentials, and TLS that checks certificates and names.
    provider = options["auth_provider"]
    assert isinstance(provider, PlainTextAuthProvider)
    assert (provider.username, provider.password) == ("gateway", "pw")
    context = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_half_given_cassandra_credentials_are_refused() -> None:
    with pytest.raises(ValidationError, match="CASSANDRA_USERNAME and CASSANDRA_PASSWORD together"):
        Settings(cassandra_username="gateway")


def test_an_unknown_security_protocol_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka_security_protocol="TLS")


def test_a_missing_ca_file_fails_at_connect_not_later(tmp_path: Path) -> None:
    settings = Settings(cassandra_ssl_ca=str(tmp_path / "absent.pem"))
    with pytest.raises(FileNotFoundError):
        security_options(settings)
