"""Who is calling: read sessions for traders, OIDC-style JWTs for admins.

* A trader opens a read session by signing a `Session` struct (`POST /sessions`); the gateway
  answers with a short-lived HS256 token whose subject is the trader. Reads (`GET /orders`,
  `GET /positions`, …) take it as `Authorization: Bearer …` and only ever show that trader's data.
  Writes need no session: every write is itself signed.
* Admin routes take a JWT from the operator's identity provider (Cognito, Keycloak, …), verified
  with a configured key (`ADMIN_JWT_KEY`: an HS256 secret or a PEM public key) or the provider's
  JWKS (`ADMIN_JWKS_URL`), and require `ADMIN_GROUP` in the groups claim.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from services.common.codes import GatewayReject
from services.common.settings import Settings

log = logging.getLogger(__name__)

SESSION_ISSUER = "cxpt-gateway"
_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


@dataclass(frozen=True, slots=True)
class AuthError(Exception):
    """Missing or bad credentials (401), or good ones without the right (403)."""

    status: int
    code: GatewayReject
    message: str


class Sessions:
    """Issues and checks read-session tokens."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.gateway_session_secret
        if secret is None:
            log.warning("GATEWAY_SESSION_SECRET unset: sessions signed with a random key, lost on restart")
            secret = secrets.token_urlsafe(32)
        self._secret = secret
        self.max_s = settings.session_max_s

    def issue(self, trader: str, now_us: int, expires_us: int) -> str:
        claims = {
            "sub": trader,
            "iss": SESSION_ISSUER,
            "iat": now_us // 1_000_000,
            "exp": expires_us // 1_000_000,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def trader(self, authorization: str | None) -> str:
        """The trader a `Bearer` session token belongs to; raises AuthError."""
        token = _bearer(authorization)
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=SESSION_ISSUER)
        except jwt.PyJWTError as error:
            raise AuthError(401, GatewayReject.UNAUTHENTICATED, f"session token refused: {error}") from error
        subject: str = claims["sub"]
        return subject


class AdminAuth:
    """Checks admin JWTs: signature, expiry, optional audience and issuer, and the admin group."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.admin_jwt_key
        self._jwks = jwt.PyJWKClient(settings.admin_jwks_url) if settings.admin_jwks_url else None
        self._audience = settings.admin_jwt_audience
        self._issuer = settings.admin_jwt_issuer
        self._claim = settings.admin_groups_claim
        self._group = settings.admin_group

    def require_admin(self, authorization: str | None) -> str:
        """The admin's subject; raises AuthError (401 bad token, 403 not in the admin group)."""
        token = _bearer(authorization)
        try:
            claims = self._decode(token)
        except jwt.PyJWTError as error:
            raise AuthError(401, GatewayReject.UNAUTHENTICATED, f"admin token refused: {error}") from error
        groups = claims.get(self._claim) or []
        if isinstance(groups, str):
            groups = groups.split()
        if self._group not in groups:
            raise AuthError(403, GatewayReject.FORBIDDEN, f"the token's {self._claim} lacks {self._group!r}")
        return str(claims.get("sub", ""))

    def _decode(self, token: str) -> dict[str, Any]:
        options = {"require": ["exp"], "verify_aud": self._audience is not None}
        kwargs: dict[str, Any] = {"audience": self._audience, "issuer": self._issuer, "options": options}
        if self._jwks is not None:
            key = self._jwks.get_signing_key_from_jwt(token).key
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=_ASYMMETRIC, **kwargs)
            return claims
        if self._key is None:
            raise jwt.InvalidKeyError("no admin key configured (ADMIN_JWT_KEY or ADMIN_JWKS_URL)")
        algorithms = _ASYMMETRIC if self._key.lstrip().startswith("-----BEGIN") else ["HS256"]
        claims = jwt.decode(token, self._key, algorithms=algorithms, **kwargs)
        return claims


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, GatewayReject.UNAUTHENTICATED, "send Authorization: Bearer <token>")
    return token.strip()
