"""Who may call what: read-session tokens, and admin JWTs by shared secret, PEM key or JWKS."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.codes import GatewayReject
from services.common.settings import Settings
from services.gateway.auth import AdminAuth, AuthError, Sessions
from tests.unit.gateway.kit import ALICE

NOW_US = 1_795_392_000_000_000
SECRET = "admin-secret-for-tests-" + "s" * 16
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def admin_token(
    groups: list[str], *, key: object = SECRET, algorithm: str = "HS256", **claims: object
) -> str:
    body = {"sub": "ops@cxpt", "cognito:groups": groups, "exp": int(time.time()) + 60} | claims
    headers = {"kid": "k1"} if algorithm != "HS256" else None
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


def refusal(call: object) -> tuple[int, GatewayReject]:
    with pytest.raises(AuthError) as raised:
        call()  # type: ignore[operator]
    return raised.value.status, raised.value.code


# -- read sessions ------------------------------------------------------------------------------


def test_a_session_token_names_its_trader_until_it_expires() -> None:
    sessions = Sessions(Settings(gateway_session_secret="s" * 32))
    token = sessions.issue(ALICE, NOW_US, expires_us=int(time.time() + 60) * 1_000_000)
    assert sessions.trader(f"Bearer {token}") == ALICE
    expired = sessions.issue(ALICE, NOW_US, expires_us=int(time.time() - 60) * 1_000_000)
    assert refusal(lambda: sessions.trader(f"Bearer {expired}")) == (401, GatewayReject.UNAUTHENTICATED)


def test_a_session_token_of_another_gateway_secret_is_refused() -> None:
    token = Sessions(Settings(gateway_session_secret="a" * 32)).issue(
        ALICE, NOW_US, (int(time.time()) + 60) * 10**6
    )
    other = Sessions(Settings(gateway_session_secret="b" * 32))
    assert refusal(lambda: other.trader(f"Bearer {token}")) == (401, GatewayReject.UNAUTHENTICATED)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer not-a-jwt"])
def test_missing_or_malformed_credentials_are_401(header: str | None) -> None:
    sessions = Sessions(Settings(gateway_session_secret="s" * 32))
    assert refusal(lambda: sessions.trader(header)) == (401, GatewayReject.UNAUTHENTICATED)


# -- admin --------------------------------------------------------------------------------------


def test_admin_with_a_shared_secret_needs_the_admin_group() -> None:
    admin = AdminAuth(Settings(admin_jwt_key=SECRET))
    assert admin.require_admin(f"Bearer {admin_token(['admin'])}") == "ops@cxpt"
    assert refusal(lambda: admin.require_admin(f"Bearer {admin_token(['traders'])}")) == (
        403,
        GatewayReject.FORBIDDEN,
    )
    forged = admin_token(["admin"], key="not-the-secret-" + "x" * 20)
    assert refusal(lambda: admin.require_admin(f"Bearer {forged}")) == (401, GatewayReject.UNAUTHENTICATED)


def test_admin_token_without_expiry_or_for_another_audience_is_refused() -> None:
    admin = AdminAuth(Settings(admin_jwt_key=SECRET, admin_jwt_audience="cxpt-admin"))
    no_exp = jwt.encode(
        {"sub": "x", "cognito:groups": ["admin"], "aud": "cxpt-admin"}, SECRET, algorithm="HS256"
    )
    other_audience = admin_token(["admin"], aud="someone-else")
    for token in (no_exp, other_audience):
        assert refusal(lambda t=token: admin.require_admin(f"Bearer {t}")) == (
            401,
            GatewayReject.UNAUTHENTICATED,
        )
    assert admin.require_admin(f"Bearer {admin_token(['admin'], aud='cxpt-admin')}") == "ops@cxpt"


def test_admin_with_a_pem_public_key_takes_only_asymmetric_tokens() -> None:
    admin = AdminAuth(Settings(admin_jwt_key=RSA_PUBLIC_PEM))
    assert (
        admin.require_admin(f"Bearer {admin_token(['admin'], key=RSA_KEY, algorithm='RS256')}") == "ops@cxpt"
    )
    # With a public key configured, no symmetric algorithm is accepted (the key-confusion attack).
    symmetric = admin_token(["admin"])
    assert refusal(lambda: admin.require_admin(f"Bearer {symmetric}")) == (401, GatewayReject.UNAUTHENTICATED)


def test_admin_without_any_configured_key_refuses_everyone() -> None:
    admin = AdminAuth(Settings())
    assert refusal(lambda: admin.require_admin(f"Bearer {admin_token(['admin'])}")) == (
        401,
        GatewayReject.UNAUTHENTICATED,
    )


@pytest.fixture
def jwks_url() -> Iterator[str]:
    """An OIDC provider's JWKS endpoint, served locally."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    body = json.dumps({"keys": [public | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()


def test_admin_keys_from_the_providers_jwks(jwks_url: str) -> None:
    admin = AdminAuth(Settings(admin_jwks_url=jwks_url, admin_jwt_issuer="https://idp.example"))
    token = admin_token(["admin"], key=RSA_KEY, algorithm="RS256", iss="https://idp.example")
    assert admin.require_admin(f"Bearer {token}") == "ops@cxpt"
    wrong_issuer = admin_token(["admin"], key=RSA_KEY, algorithm="RS256", iss="https://elsewhere")
    assert refusal(lambda: admin.require_admin(f"Bearer {wrong_issuer}")) == (
        401,
        GatewayReject.UNAUTHENTICATED,
    )
