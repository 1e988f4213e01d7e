"""The hub: log records in, (channel, message) pairs out, fanned out to subscribers' outboxes.

Every pushed message is `{"channel", "type", "seq", "ts", "data"}` (docs/wspush.md):

* `seq` numbers the messages of one channel: 1, 2, 3, … with no gap. A `subscribed` reply gives
  the channel's seq at that instant (and, for a market, the depth snapshot at that same instant);
  the next message on the channel carries seq + 1. A client that sees any other number has missed
  something and subscribes again (a fresh snapshot; the subscription is kept).
* Market and admin channels are numbered from the market's first entry: the service folds the
  whole trade log at start, so every replica gives the same message the same seq, and a client
  may reconnect to another replica and compare. Depth deltas carry that seq.
* Trader channels are numbered per replica while they have subscribers (accounts.events is read
  from its end), so their seq is only comparable within one subscription.
* `ts` is the record's own time (command time, µs): never a clock of this service.

Within one trade-log entry the hub pushes the entry's events in book order (trades, marks,
funding, order updates, state changes), then one depth delta with every level the entry changed.

Market-channel messages are counted even when nobody listens (so seq stays the log's), but a
message is only encoded when it has subscribers — once, shared by all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from services.common.records import (
    AccountEvent,
    MarketCreated,
    MarketSettled,
    MarketStatus,
    MarketStatusChanged,
    MarkPriceSet,
    TradeLogEntry,
)
from services.marketdata.core.depth import DepthBook
from services.wspush.core import messages as m
from services.wspush.core.channels import (
    ANONYMOUS,
    Channel,
    ChannelKind,
    Identity,
    admin_channel,
    authorize,
    market_channel,
    trader_channel,
)
from services.wspush.core.errors import ErrorCode
from services.wspush.core.outbox import Outbox, OutboxState

MAX_SUBSCRIPTIONS = 50
"""Channels one connection may hold at once (a trader needs a few markets and its own channel)."""


def encode(message: dict[str, Any]) -> str:
    """Compact JSON text of one message."""
    return json.dumps(message, separators=(",", ":"))


@dataclass(slots=True)
class Connection:
    """One client connection: who it is, what it reads, and what waits to be sent to it."""

    id: str
    outbox: Outbox
    identity: Identity = ANONYMOUS
    subscriptions: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Delivery:
    """What a step did to connections: those with new messages to send, those just dropped."""

    woken: set[str] = field(default_factory=set)
    dropped: list[str] = field(default_factory=list)

    def merge(self, other: Delivery) -> None:
        self.woken |= other.woken
        self.dropped.extend(other.dropped)


@dataclass(slots=True)
class _Market:
    status: MarketStatus
    mark: dict[str, Any] | None = None


class Hub:
    """The fold of the log that ws-push needs (depth, marks, statuses, channel seqs) and the
    subscriptions of every connection of this replica."""

    def __init__(self, outbox_max: int, max_subscriptions: int = MAX_SUBSCRIPTIONS) -> None:
        self.outbox_max = outbox_max
        self.max_subscriptions = max_subscriptions
        self.depth = DepthBook()
        self.connections: dict[str, Connection] = {}
        self.published = 0
        """Messages encoded so far (each once, whatever the number of subscribers)."""
        self._markets: dict[str, _Market] = {}
        self._subscribers: dict[str, set[str]] = {}
        self._seq: dict[str, int] = {}

    # -- connections -------------------------------------------------------------------------------

    def open(self, connection_id: str) -> Connection:
        """A new connection: anonymous, subscribed to nothing."""
        if connection_id in self.connections:
            raise ValueError(f"connection {connection_id} is already open")
        connection = self.connections[connection_id] = Connection(connection_id, Outbox(self.outbox_max))
        return connection

    def close(self, connection_id: str) -> None:
        """Forget a connection (closed by either side, or dropped)."""
        connection = self.connections.pop(connection_id, None)
        if connection is None:
            return
        self._unsubscribe_all(connection)
        connection.outbox.close()

    def knows_market(self, symbol: str) -> bool:
        """Whether the trade log listed `symbol`."""
        return symbol in self._markets

    def subscribe(self, connection: Connection, channel: Channel) -> dict[str, Any] | ErrorCode:
        """Subscribe (or subscribe again: a fresh snapshot); the `subscribed` reply, or why not."""
        if channel.kind is not ChannelKind.TRADER and channel.key not in self._markets:
            return ErrorCode.UNKNOWN_CHANNEL
        refusal = authorize(connection.identity, channel)
        if refusal is not None:
            return refusal
        name = channel.name
        if name not in connection.subscriptions and len(connection.subscriptions) >= self.max_subscriptions:
            return ErrorCode.TOO_MANY_SUBSCRIPTIONS
        connection.subscriptions.add(name)
        self._subscribers.setdefault(name, set()).add(connection.id)
        reply: dict[str, Any] = {"op": "subscribed", "channel": name, "seq": self._seq.get(name, 0)}
        if channel.kind is ChannelKind.MARKET:
            market = self._markets[channel.key]
            snapshot = m.depth_snapshot(self.depth.market(channel.key))
            reply["snapshot"] = snapshot | {"status": market.status.value, "markPrice": market.mark}
        elif channel.kind is ChannelKind.ADMIN:
            reply["snapshot"] = {"status": self._markets[channel.key].status.value}
        return reply

    def unsubscribe(self, connection: Connection, name: str) -> bool:
        """Stop pushing channel `name` to the connection; False if it was not subscribed."""
        if name not in connection.subscriptions:
            return False
        connection.subscriptions.discard(name)
        self._forget_subscriber(name, connection.id)
        return True

    def send(self, connection_id: str, replies: list[dict[str, Any]]) -> Delivery:
        """Queue replies to one connection (behind whatever it already awaits, so a `subscribed`
        reply precedes the messages numbered after it)."""
        delivery = Delivery()
        connection = self.connections.get(connection_id)
        if connection is not None:
            for reply in replies:
                self._put(connection, encode(reply), delivery)
        self._after(delivery)
        return delivery

    def subscribers(self, name: str) -> int:
        """How many connections read channel `name`."""
        return len(self._subscribers.get(name, ()))

    # -- the log -----------------------------------------------------------------------------------

    def apply_entry(self, entry: TradeLogEntry) -> Delivery:
        """Fold one trade-log entry in and push what it means to every channel it concerns."""
        delivery = Delivery()
        market = entry.market
        changes = self.depth.apply(entry)  # first: MarketCreated makes the market known
        for index, event in enumerate(entry.events):
            kind = type(event)
            if kind in m.ORDER_EVENTS:
                name = trader_channel(getattr(event, "trader", ""))
                if name not in self._subscribers:
                    continue  # trader channels are not numbered without subscribers: nothing to build
                data = m.fields(event) | {"event": m.ORDER_EVENTS[kind], "market": market}
                if entry.first_seq:
                    data["logSeq"] = entry.first_seq + index
                self._publish(name, m.PushType.ORDER_UPDATE, entry.ts_event, data, delivery)
            elif kind in m.MARKET_PUSHES:
                if isinstance(event, MarkPriceSet) and market in self._markets:
                    self._markets[market].mark = m.fields(event)
                pushed = partial(m.fields, event)
                self._publish_counted(
                    market_channel(market), m.MARKET_PUSHES[kind], entry.ts_event, pushed, delivery
                )
            elif kind in m.STATE_EVENTS:
                self._track_status(market, event)
                state = partial(_state_change, event, m.STATE_EVENTS[kind])
                self._publish_counted(
                    admin_channel(market), m.PushType.STATE_CHANGE, entry.ts_event, state, delivery
                )
        if changes:
            levels = partial(m.depth_data, changes)
            self._publish_counted(market_channel(market), m.PushType.DEPTH, entry.ts_event, levels, delivery)
        self._after(delivery)
        return delivery

    def apply_account(self, event: AccountEvent) -> Delivery:
        """Push one accounts.events record to its trader's channel, if it is a pushed kind."""
        delivery = Delivery()
        push = m.ACCOUNT_PUSHES.get(type(event.body))
        if push is not None:
            push_type, extra = push
            data = m.fields(event.body) | extra | {"eventId": event.event_id}
            self._publish(trader_channel(event.trader), push_type, event.ts_event, data, delivery)
        self._after(delivery)
        return delivery

    # -- internals ---------------------------------------------------------------------------------

    def _track_status(self, market: str, event: object) -> None:
        if isinstance(event, MarketCreated):
            self._markets[market] = _Market(event.definition.status)
        elif isinstance(event, MarketStatusChanged) and market in self._markets:
            self._markets[market].status = event.status
        elif isinstance(event, MarketSettled) and market in self._markets:
            self._markets[market].status = MarketStatus.SETTLED

    def _publish_counted(
        self, name: str, push_type: str, ts: int, data: Callable[[], dict[str, Any]], delivery: Delivery
    ) -> None:
        """A market or admin channel message: numbered whether or not anyone listens; `data` is
        only called (the message only built) when someone does."""
        seq = self._seq[name] = self._seq.get(name, 0) + 1
        subscribers = self._subscribers.get(name)
        if subscribers:
            message = {"channel": name, "type": push_type, "seq": seq, "ts": ts, "data": data()}
            self._fan_out(subscribers, message, delivery)

    def _publish(self, name: str, push_type: str, ts: int, data: dict[str, Any], delivery: Delivery) -> None:
        """A trader channel message: numbered only while the channel has subscribers."""
        subscribers = self._subscribers.get(name)
        if not subscribers:
            return
        seq = self._seq[name] = self._seq.get(name, 0) + 1
        message = {"channel": name, "type": push_type, "seq": seq, "ts": ts, "data": data}
        self._fan_out(subscribers, message, delivery)

    def _fan_out(self, subscribers: set[str], message: dict[str, Any], delivery: Delivery) -> None:
        text = encode(message)
        self.published += 1
        for connection_id in subscribers:
            self._put(self.connections[connection_id], text, delivery)

    def _put(self, connection: Connection, text: str, delivery: Delivery) -> None:
        if connection.outbox.put(text):
            delivery.woken.add(connection.id)
        elif connection.outbox.state is OutboxState.DROPPED and connection.id not in delivery.dropped:
            delivery.dropped.append(connection.id)

    def _after(self, delivery: Delivery) -> None:
        """Unsubscribe the connections this step dropped (not while iterating subscriber sets)."""
        for connection_id in delivery.dropped:
            delivery.woken.discard(connection_id)
            connection = self.connections.get(connection_id)
            if connection is not None:
                self._unsubscribe_all(connection)

    def _unsubscribe_all(self, connection: Connection) -> None:
        for name in connection.subscriptions:
            self._forget_subscriber(name, connection.id)
        connection.subscriptions.clear()

    def _forget_subscriber(self, name: str, connection_id: str) -> None:
        subscribers = self._subscribers.get(name)
        if subscribers is None:
            return
        subscribers.discard(connection_id)
        if not subscribers:
            del self._subscribers[name]
            if name.startswith(ChannelKind.TRADER.value + "."):
                self._seq.pop(name, None)  # per-replica numbering: restarts with the next subscriber


def _state_change(event: object, name: str) -> dict[str, Any]:
    return m.fields(event) | {"event": name}
