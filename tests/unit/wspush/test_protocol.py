"""The protocol table: replies and stable error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.wspush.core import protocol
from services.wspush.core.hub import Hub
from tests.kit import ALICE, BOB, Commands
from tests.unit.wspush.kit import ADMIN_TOKEN, Log, Tokens, frames


def _hub_with_btc_perp(max_subscriptions: int = 50) -> Hub:
    hub, log = Hub(outbox_max=100, max_subscriptions=max_subscriptions), Log()
    hub.apply_entry(log.entry(Commands().create()))
    return hub


def _ask(hub: Hub, connection_id: str, *requests: dict[str, Any] | str) -> list[dict[str, Any]]:
    """Send each request on the connection; the replies, in order."""
    for request in requests:
        text = request if isinstance(request, str) else json.dumps(request)
        protocol.receive(hub, connection_id, text, Tokens())
    return frames(hub, connection_id)


@pytest.mark.parametrize(
    ("request_text", "code"),
    [
        ("not json", "BAD_MESSAGE"),
        ("[1, 2]", "BAD_MESSAGE"),
        ('{"op": "dance"}', "BAD_MESSAGE"),
        ('{"op": "subscribe"}', "BAD_MESSAGE"),
        ('{"op": "subscribe", "channel": 7}', "BAD_MESSAGE"),
        ('{"op": "login"}', "BAD_MESSAGE"),
        ('{"op": "subscribe", "channel": "weather.today"}', "UNKNOWN_CHANNEL"),
        ('{"op": "subscribe", "channel": "market.DOGE-PERP"}', "UNKNOWN_CHANNEL"),
        ('{"op": "subscribe", "channel": "admin.DOGE-PERP"}', "UNKNOWN_CHANNEL"),
        (f'{{"op": "subscribe", "channel": "trader.{ALICE}"}}', "NOT_AUTHENTICATED"),
        ('{"op": "subscribe", "channel": "admin.BTC-PERP"}', "NOT_AUTHENTICATED"),
        ('{"op": "unsubscribe", "channel": "market.BTC-PERP"}', "NOT_SUBSCRIBED"),
        ('{"op": "login", "token": "forged"}', "LOGIN_REFUSED"),
    ],
)
def test_bad_requests_get_stable_error_codes_and_the_connection_stays(request_text: str, code: str) -> None:
    # State: an anonymous connection. Action: one bad request, then a ping.
    hub = _hub_with_btc_perp()
    hub.open("c")
    error, pong = _ask(hub, "c", request_text, {"op": "ping"})
    # Expectation: an error with the code; the connection still answers.
    assert error["op"] == "error" and error["code"] == code and error["message"]
    assert pong == {"op": "pong"}


def test_another_traders_channel_is_forbidden() -> None:
    # State: Alice logged in. Action: she subscribes to Bob's channel, then her own.
    hub = _hub_with_btc_perp()
    hub.open("c")
    logged_in, refused, accepted = _ask(
        hub,
        "c",
        {"op": "login", "token": f"token-{ALICE}"},
        {"op": "subscribe", "channel": f"trader.{BOB}", "id": 1},
        {"op": "subscribe", "channel": f"trader.{ALICE.upper().replace('0X', '0x')}", "id": 2},
    )
    # Expectation: Bob's is FORBIDDEN (the id echoed); hers is granted under its canonical name.
    assert logged_in == {"op": "loggedIn", "trader": ALICE}
    assert (
        refused.items() >= {"op": "error", "code": "FORBIDDEN", "id": 1, "channel": f"trader.{BOB}"}.items()
    )
    assert accepted == {"op": "subscribed", "channel": f"trader.{ALICE}", "seq": 0, "id": 2}
    assert hub.subscribers(f"trader.{BOB}") == 0


def test_login_happens_once_per_connection() -> None:
    hub = _hub_with_btc_perp()
    hub.open("c")
    first, second = _ask(
        hub, "c", {"op": "login", "token": ADMIN_TOKEN}, {"op": "login", "token": ADMIN_TOKEN}
    )
    assert first == {"op": "loggedIn", "admin": "ops"}
    assert second["code"] == "ALREADY_LOGGED_IN"


def test_subscriptions_are_bounded_and_a_resubscribe_is_a_fresh_snapshot() -> None:
    # State: a connection allowed 1 subscription, holding market.BTC-PERP.
    hub = _hub_with_btc_perp(max_subscriptions=1)
    hub.open("c")
    _, first, again, other = _ask(
        hub,
        "c",
        {"op": "login", "token": f"token-{ALICE}"},
        {"op": "subscribe", "channel": "market.BTC-PERP"},
        {"op": "subscribe", "channel": "market.BTC-PERP"},
        {"op": "subscribe", "channel": f"trader.{ALICE}"},
    )
    # Expectation: subscribing again answers a snapshot again; a second channel is refused.
    assert first["op"] == again["op"] == "subscribed" and "snapshot" in again
    assert other["code"] == "TOO_MANY_SUBSCRIPTIONS"


def test_unsubscribe_stops_the_pushes() -> None:
    hub, log, commands = Hub(outbox_max=100), Log(), Commands()
    hub.apply_entry(log.entry(commands.create()))
    hub.open("c")
    _ask(hub, "c", {"op": "subscribe", "channel": "market.BTC-PERP"})
    (reply,) = _ask(hub, "c", {"op": "unsubscribe", "channel": "market.BTC-PERP"})
    hub.apply_entry(log.entry(commands.set_mark(650_000)))
    assert reply == {"op": "unsubscribed", "channel": "market.BTC-PERP"}
    assert frames(hub, "c") == []
