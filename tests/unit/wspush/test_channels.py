"""Channel names and the authorization table."""

from __future__ import annotations

import pytest

from services.wspush.core.channels import (
    ANONYMOUS,
    Channel,
    ChannelKind,
    Identity,
    authorize,
    parse_channel,
)
from services.wspush.core.errors import ErrorCode
from tests.kit import ALICE, BOB


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("market.BTC-PERP", Channel(ChannelKind.MARKET, "BTC-PERP")),
        ("admin.BTC-PERP", Channel(ChannelKind.ADMIN, "BTC-PERP")),
        (f"trader.{ALICE}", Channel(ChannelKind.TRADER, ALICE)),
        (f"trader.{ALICE.upper().replace('0X', '0x')}", Channel(ChannelKind.TRADER, ALICE)),
        ("trader.alice", None),
        ("trader.0x1234", None),
        ("market.", None),
        ("market", None),
        ("news.BTC-PERP", None),
        (42, None),
    ],
)
def test_channel_names_parse_to_their_canonical_form(name: object, parsed: Channel | None) -> None:
    # Action / Expectation: a mixed-case address names the trader's (lower-case) channel.
    assert parse_channel(name) == parsed


ALICE_LOGGED_IN = Identity(trader=ALICE)
AN_ADMIN = Identity(admin="ops")


@pytest.mark.parametrize(
    ("identity", "channel", "refusal"),
    [
        (ANONYMOUS, "market.BTC-PERP", None),
        (ANONYMOUS, f"trader.{ALICE}", ErrorCode.NOT_AUTHENTICATED),
        (ALICE_LOGGED_IN, f"trader.{ALICE}", None),
        (ALICE_LOGGED_IN, f"trader.{BOB}", ErrorCode.FORBIDDEN),
        (AN_ADMIN, f"trader.{ALICE}", ErrorCode.NOT_AUTHENTICATED),
        (ANONYMOUS, "admin.BTC-PERP", ErrorCode.NOT_AUTHENTICATED),
        (ALICE_LOGGED_IN, "admin.BTC-PERP", ErrorCode.FORBIDDEN),
        (AN_ADMIN, "admin.BTC-PERP", None),
    ],
)
def test_who_may_read_which_channel(identity: Identity, channel: str, refusal: ErrorCode | None) -> None:
    parsed = parse_channel(channel)
    assert parsed is not None
    assert authorize(identity, parsed) == refusal
