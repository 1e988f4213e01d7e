"""The client protocol: one JSON object per client message, dispatched through a table.

| op | fields | reply | errors |
|---|---|---|---|
| `ping` | — | `pong` | — |
| `login` | `token` | `loggedIn` + `trader` or `admin` | LOGIN_REFUSED, ALREADY_LOGGED_IN |
| `subscribe` | `channel` | `subscribed` + `seq` (+ `snapshot`) | UNKNOWN_CHANNEL, NOT_AUTHENTICATED, |
| | | | FORBIDDEN, TOO_MANY_SUBSCRIPTIONS |
| `unsubscribe` | `channel` | `unsubscribed` | UNKNOWN_CHANNEL, NOT_SUBSCRIBED |
| anything else | | | BAD_MESSAGE |

`token` is a gateway session token (the trader) or an admin JWT (an admin); who may subscribe to
what is `channels.AUTHORIZATION`.

Every request may carry an `id` (string or integer); its replies echo it. Errors are
`{"op": "error", "code": <ErrorCode>, "message": …}` and leave the connection open. Subscribing
to a channel already held answers `subscribed` again, with a fresh snapshot: that is how a client
that saw a gap in `seq` resynchronises.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from services.wspush.core.channels import ANONYMOUS, Identity, parse_channel
from services.wspush.core.errors import ErrorCode
from services.wspush.core.hub import Connection, Delivery, Hub


class TokenVerifier(Protocol):
    """What the protocol needs from authentication: a token → who it proves, or None."""

    def verify(self, token: str) -> Identity | None: ...


Reply = dict[str, Any]
Handler = Callable[[Hub, Connection, dict[str, Any], TokenVerifier], Reply]


@dataclass(frozen=True, slots=True)
class Op:
    """One row of the protocol table: the fields the op needs (name → type) and its handler."""

    required: dict[str, type]
    handler: Handler


def error(code: ErrorCode, message: str, **extra: Any) -> Reply:
    """An error reply."""
    return {"op": "error", "code": code.value, "message": message} | extra


def _ping(hub: Hub, connection: Connection, request: dict[str, Any], verifier: TokenVerifier) -> Reply:
    return {"op": "pong"}


def _login(hub: Hub, connection: Connection, request: dict[str, Any], verifier: TokenVerifier) -> Reply:
    return login(connection, request["token"], verifier)


def _subscribe(hub: Hub, connection: Connection, request: dict[str, Any], verifier: TokenVerifier) -> Reply:
    name = request["channel"]
    channel = parse_channel(name)
    if channel is None:
        return error(ErrorCode.UNKNOWN_CHANNEL, f"no channel {name!r}", channel=name)
    outcome = hub.subscribe(connection, channel)
    if isinstance(outcome, ErrorCode):
        return error(outcome, _WHY[outcome].format(channel=channel.name), channel=channel.name)
    return outcome


def _unsubscribe(hub: Hub, connection: Connection, request: dict[str, Any], verifier: TokenVerifier) -> Reply:
    name = request["channel"]
    channel = parse_channel(name)
    if channel is None:
        return error(ErrorCode.UNKNOWN_CHANNEL, f"no channel {name!r}", channel=name)
    if not hub.unsubscribe(connection, channel.name):
        return error(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel.name}", channel=channel.name)
    return {"op": "unsubscribed", "channel": channel.name}


OPS: dict[str, Op] = {
    "ping": Op({}, _ping),
    "login": Op({"token": str}, _login),
    "subscribe": Op({"channel": str}, _subscribe),
    "unsubscribe": Op({"channel": str}, _unsubscribe),
}
"""The protocol table: op → required fields and handler."""

_WHY = {
    ErrorCode.UNKNOWN_CHANNEL: "{channel}: the trade log never listed this market",
    ErrorCode.NOT_AUTHENTICATED: "{channel} needs a login first",
    ErrorCode.FORBIDDEN: "{channel} is not yours to read",
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: "{channel}: too many subscriptions on this connection",
}


def login(connection: Connection, token: str, verifier: TokenVerifier) -> Reply:
    """Log the connection in with a session token (a trader) or an admin JWT (an admin)."""
    if connection.identity != ANONYMOUS:
        return error(ErrorCode.ALREADY_LOGGED_IN, "this connection is already logged in")
    identity = verifier.verify(token)
    if identity is None:
        return error(ErrorCode.LOGIN_REFUSED, "the token is not a valid session token or admin JWT")
    connection.identity = identity
    if identity.trader is not None:
        return {"op": "loggedIn", "trader": identity.trader}
    return {"op": "loggedIn", "admin": identity.admin}


def handle(hub: Hub, connection: Connection, text: str, verifier: TokenVerifier) -> Reply:
    """The reply to one client message (an error reply if it is malformed)."""
    try:
        request = json.loads(text)
    except ValueError:
        return error(ErrorCode.BAD_MESSAGE, "not JSON")
    if not isinstance(request, dict):
        return error(ErrorCode.BAD_MESSAGE, "send a JSON object")
    request_id = request.get("id")
    echoed = isinstance(request_id, str | int) and not isinstance(request_id, bool)
    echo = {"id": request_id} if echoed else {}
    op = OPS.get(request.get("op"))  # type: ignore[arg-type]
    if op is None:
        return error(ErrorCode.BAD_MESSAGE, f"unknown op {request.get('op')!r}; ops: {sorted(OPS)}") | echo
    for name, kind in op.required.items():
        if not isinstance(request.get(name), kind):
            return error(ErrorCode.BAD_MESSAGE, f"{request['op']} needs {name!r} ({kind.__name__})") | echo
    return op.handler(hub, connection, request, verifier) | echo


def receive(hub: Hub, connection_id: str, text: str, verifier: TokenVerifier) -> Delivery:
    """Handle one client message and queue its reply on the connection's outbox."""
    connection = hub.connections.get(connection_id)
    if connection is None:
        return Delivery()
    return hub.send(connection_id, [handle(hub, connection, text, verifier)])
