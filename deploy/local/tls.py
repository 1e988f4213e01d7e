"""A private certificate authority and a server's TLS certificate, made on first use.

Kafka's SASL listener speaks TLS (SASL_SSL) and Cassandra's CQL port accepts TLS, as production
servers do, so the services' TLS settings (`KAFKA_SSL_CA_LOCATION`, `CASSANDRA_SSL_CA`, hostname
verification) are exercised against real servers. Everything lives in the server's run directory,
never in git: `ca.pem` (what clients trust), and `server.pem` (mode 0600) — the server's private
key, unencrypted PKCS#8 (both servers read a PEM key store's key without a password; Kafka on JDK
17 refused one encrypted the modern way: "PBES2 SecretKeyFactory not available"), then its
certificate and the CA's.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650


@dataclass(frozen=True)
class ServerTls:
    """Where a server's key store and its clients' trusted CA are."""

    ca_path: Path
    keystore_path: Path


def server_tls(directory: Path, host: str) -> ServerTls:
    """The CA and the certificate for `host` in `directory`, made if either file is missing."""
    tls = ServerTls(directory / "ca.pem", directory / "server.pem")
    if tls.ca_path.exists() and tls.keystore_path.exists():
        return tls
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = certificate_authority("cxpt local CA")
    key, cert = _server_certificate(ca_key, ca_cert, host)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tls.keystore_path.touch(mode=0o600)
    tls.keystore_path.write_bytes(private + _pem(cert) + _pem(ca_cert))
    tls.ca_path.write_bytes(_pem(ca_cert))
    return tls


def certificate_authority(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed CA: its key and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signs_certificates = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(signs_certificates, critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, host: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    cert = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
