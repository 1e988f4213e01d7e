"""The hub: log records → channel messages with gap-free seqs, snapshots, fan-out, drops."""

from __future__ import annotations

import json
from typing import Any

from services.common.records import MarketStatus, Side
from services.wspush.core import protocol
from services.wspush.core.hub import Hub
from services.wspush.core.outbox import OutboxState
from tests.kit import ALICE, BOB, Commands
from tests.unit.wspush.kit import Log, Tokens, frames, position_event

PRICE = 650_000


def _subscribed(hub: Hub, connection_id: str, channel: str, token: str | None = None) -> dict[str, Any]:
    """Open `connection_id` (logged in with `token`), subscribe to `channel`, return the reply."""
    connection = hub.open(connection_id)
    if token is not None:
        protocol.login(connection, token, Tokens())
    protocol.receive(hub, connection_id, json.dumps({"op": "subscribe", "channel": channel}), Tokens())
    (reply,) = frames(hub, connection_id)
    return reply


def _listed_with_resting_orders(hub: Hub, log: Log, commands: Commands) -> None:
    """BTC-PERP listed; Bob rests sells of 3 lots at PRICE and 2 at PRICE + 10."""
    for command in (
        commands.create(),
        commands.limit(BOB, Side.SELL, 3, PRICE),
        commands.limit(BOB, Side.SELL, 2, PRICE + 10),
    ):
        hub.apply_entry(log.entry(command))


def test_a_subscriber_gets_the_depth_snapshot_then_deltas_and_trades_numbered_after_it() -> None:
    # State: BTC-PERP with two ask levels (three market messages so far: two depth deltas... and
    # the listing, which is an admin message).
    hub, log, commands = Hub(outbox_max=100), Log(), Commands()
    _listed_with_resting_orders(hub, log, commands)
    # Action: a client subscribes; Alice buys 4 lots through both levels; then a mark price.
    reply = _subscribed(hub, "c1", "market.BTC-PERP")
    hub.apply_entry(log.entry(commands.limit(ALICE, Side.BUY, 4, PRICE + 10)))
    hub.apply_entry(log.entry(commands.set_mark(PRICE + 5)))
    pushed = frames(hub, "c1")
    # Expectation: the snapshot is the book at seq 2; then the trades, the depth delta and the
    # mark follow with seq 3, 4, 5, 6 — no gap.
    assert reply["op"] == "subscribed" and reply["seq"] == 2
    assert reply["snapshot"]["asks"] == [[PRICE, 3], [PRICE + 10, 2]]
    assert reply["snapshot"]["bids"] == [] and reply["snapshot"]["status"] == "ACTIVE"
    assert [(p["type"], p["seq"]) for p in pushed] == [
        ("trade", 3),
        ("trade", 4),
        ("depth", 5),
        ("markPrice", 6),
    ]
    assert [(t["data"]["price"], t["data"]["size"]) for t in pushed[:2]] == [(PRICE, 3), (PRICE + 10, 1)]
    assert pushed[2]["data"] == {"bids": [], "asks": [[PRICE, 0], [PRICE + 10, 1]]}
    assert pushed[3]["data"] == {"markPrice": PRICE + 5, "indexPrice": PRICE + 5}


def test_market_seqs_are_the_logs_so_two_hubs_agree_whenever_they_started_serving() -> None:
    # State: two replicas fold the same log; one had a subscriber all along, the other none.
    log, commands = Log(), Commands()
    entries = [log.entry(c) for c in (commands.create(), commands.limit(BOB, Side.SELL, 1, PRICE))]
    early, late = Hub(outbox_max=100), Hub(outbox_max=100)
    early.apply_entry(entries[0])
    _subscribed(early, "c1", "market.BTC-PERP")
    late.apply_entry(entries[0])
    for entry in entries[1:]:
        early.apply_entry(entry)
        late.apply_entry(entry)
    # Action: a client subscribes to the late replica.
    reply = _subscribed(late, "c2", "market.BTC-PERP")
    # Expectation: its snapshot's seq is the seq of the last message the early subscriber got.
    assert reply["seq"] == frames(early, "c1")[-1]["seq"] == 1


def test_a_trader_sees_its_own_order_updates_in_book_order() -> None:
    # State: BTC-PERP with Bob's resting asks; Alice logged in on her channel.
    hub, log, commands = Hub(outbox_max=100), Log(), Commands()
    _listed_with_resting_orders(hub, log, commands)
    reply = _subscribed(hub, "alice", f"trader.{ALICE}", token=f"token-{ALICE}")
    # Action: Alice buys 4 lots (fills at two levels); her position comes back from risk.
    hub.apply_entry(log.entry(commands.limit(ALICE, Side.BUY, 4, PRICE + 10)))
    hub.apply_account(position_event(ALICE, 1, 4))
    hub.apply_account(position_event(BOB, 2, -4))  # someone else's: not on her channel
    pushed = frames(hub, "alice")
    # Expectation: ACCEPTED, FILLED, FILLED (her taker fills only), then the position; seq 1, 2, …
    assert reply["seq"] == 0
    assert [p["seq"] for p in pushed] == [1, 2, 3, 4]
    assert [(p["type"], p["data"].get("event") or p["data"]["cause"]) for p in pushed] == [
        ("orderUpdate", "ACCEPTED"),
        ("orderUpdate", "FILLED"),
        ("orderUpdate", "FILLED"),
        ("positionUpdate", "FILL"),
    ]
    assert [p["data"]["cumQty"] for p in pushed[1:3]] == [3, 4]
    assert pushed[3]["data"]["size"] == 4 and pushed[3]["data"]["trader"] == ALICE


def test_admin_channel_pushes_state_changes() -> None:
    hub, log, commands = Hub(outbox_max=100), Log(), Commands()
    hub.apply_entry(log.entry(commands.create()))
    reply = _subscribed(hub, "ops", "admin.BTC-PERP", token="admin-token")
    hub.apply_entry(log.entry(commands.set_status(MarketStatus.PAUSED, "maintenance")))
    (pushed,) = frames(hub, "ops")
    assert reply["seq"] == 1 and reply["snapshot"] == {"status": "ACTIVE"}
    assert pushed["type"] == "stateChange" and pushed["seq"] == 2
    assert (
        pushed["data"].items()
        >= {"event": "STATUS_CHANGED", "previous": "ACTIVE", "status": "PAUSED"}.items()
    )


def test_a_slow_subscriber_is_dropped_and_the_others_keep_everything() -> None:
    # State: two subscribers with outboxes of 3 and one mark price each; "slow" took its frame and
    # the write never completes (its TCP window is shut); "fast" writes everything it takes.
    hub, log, commands = Hub(outbox_max=3), Log(), Commands()
    hub.apply_entry(log.entry(commands.create()))
    _subscribed(hub, "slow", "market.BTC-PERP")
    _subscribed(hub, "fast", "market.BTC-PERP")
    hub.apply_entry(log.entry(commands.set_mark(PRICE)))
    assert hub.connections["slow"].outbox.take() is not None
    received = [p["seq"] for p in frames(hub, "fast")]
    dropped: list[str] = []
    # Action: nine more mark prices.
    for n in range(1, 10):
        delivery = hub.apply_entry(log.entry(commands.set_mark(PRICE + n)))
        dropped += delivery.dropped
        received += [p["seq"] for p in frames(hub, "fast")]
    # Expectation: "slow" dropped once (the 4th message behind its blocked write) and unsubscribed;
    # "fast" got all ten, in order.
    assert dropped == ["slow"]
    assert hub.connections["slow"].outbox.state is OutboxState.DROPPED
    assert hub.subscribers("market.BTC-PERP") == 1
    assert received == list(range(1, 11))


def test_messages_are_encoded_once_and_only_when_someone_listens() -> None:
    hub, log, commands = Hub(outbox_max=100), Log(), Commands()
    hub.apply_entry(log.entry(commands.create()))
    hub.apply_entry(log.entry(commands.set_mark(PRICE)))
    assert hub.published == 0
    for n in range(3):
        _subscribed(hub, f"c{n}", "market.BTC-PERP")
    hub.apply_entry(log.entry(commands.set_mark(PRICE + 1)))
    assert hub.published == 1
    assert all(len(frames(hub, f"c{n}")) == 1 for n in range(3))


def test_a_trader_channel_numbering_restarts_with_its_next_subscriber() -> None:
    hub = Hub(outbox_max=100)
    _subscribed(hub, "a", f"trader.{ALICE}", token=f"token-{ALICE}")
    hub.apply_account(position_event(ALICE, 1, 1))
    hub.close("a")
    hub.apply_account(position_event(ALICE, 2, 2))  # nobody listens: not numbered
    reply = _subscribed(hub, "b", f"trader.{ALICE}", token=f"token-{ALICE}")
    hub.apply_account(position_event(ALICE, 3, 3))
    assert reply["seq"] == 0
    assert [p["seq"] for p in frames(hub, "b")] == [1]
