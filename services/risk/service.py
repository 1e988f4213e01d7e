"""Risk service: orders.commands + risk.postings + accounts.events → risk core → outputs, exactly once.

Inputs, all keyed by trader and co-partitioned, so partition p of each lands on one process and
one `RiskEngine` per partition number serves all three:

* `orders.commands` (TraderCommand, pre-trade): forwarded `MatcherCommand`s go to matcher.commands
  (keyed by market); refusals (`OrderRejected`) and `WithdrawalRequested` to accounts.events;
* `risk.postings` (TradeLogEntry, post-trade): each entry arrives on every partition owning one of
  its traders (on all of them when it lists a market or changes its status); a partition applies
  the events of its own traders — `partition_for(trader)` is this partition — and market events;
* `accounts.events` (AccountEvent): deposits are credited; risk's own outputs read back change nothing.

Every balance, inventory and position change, and every shortfall flag, goes to accounts.events as
an `AccountEvent` (event ids derived from the input position).

**State: a changelog, not a replay.** The three inputs' interleaving is not recorded by Kafka, so
replaying them could rebuild a different state than the one whose outputs were committed. Instead,
every transaction also writes to the compacted `risk.changelog`, partition p, the full state after
the batch of every trader the batch touched, and the partition-global state (markets, exchange
accounts, totals, dedupe sets) under `~partition:<p>`. Recovery (start, rebalance, aborted
transaction) reads changelog partition p to its end — last value per key — and imports it: exactly
the state the committed offsets correspond to.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import zlib
from collections.abc import Iterable
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from services.common import records
from services.common.bus import (
    Bus,
    Inbound,
    InvalidRecord,
    Outbound,
    TransactionalProcessor,
    decode_message,
    watermarks,
)
from services.common.partitioning import partition_for
from services.common.records import (
    AccountEvent,
    DepositConfirmed,
    ExchangeAccountsChanged,
    RiskStateRecord,
    TradeLogEntry,
    TraderCommand,
    WithdrawalFailed,
    WithdrawalPaid,
)
from services.common.topics import (
    ACCOUNTS_EVENTS,
    MATCHER_COMMANDS,
    ORDERS_COMMANDS,
    RISK_CHANGELOG,
    RISK_POSTINGS,
)
from services.risk.core import InvalidRiskInput, RiskEngine, RiskEvent, postings
from services.risk.core import events as core_events
from services.risk.core.state import export_order, export_partition, export_trader, import_state

log = logging.getLogger(__name__)

GROUP_ID = "risk"
CODEC = "json-zlib-1"
PARTITION_KEY = "~partition:{}"
"""Changelog key of a partition's global state (`~` sorts after every 0x address)."""
ORDER_KEY = "~order:{}"
"""Changelog key of one open order's state; a tombstone deletes it when the order closes."""
EXCHANGE_KEY = "~exchange:{}"
"""accounts.events key (and `trader`) of a partition's exchange accounts (`ExchangeAccountsChanged`)."""

AccountBody = (
    records.OrderRejected
    | records.WithdrawalRequested
    | records.BalanceChanged
    | records.InventoryChanged
    | records.PositionChanged
    | records.InsuranceDrawn
    | records.PositionUnderCollateralized
)

_EVENT_RECORDS: dict[type[Any], type[Any]] = {
    core_events.BalanceChanged: records.BalanceChanged,
    core_events.InventoryChanged: records.InventoryChanged,
    core_events.PositionChanged: records.PositionChanged,
    core_events.InsuranceDrawn: records.InsuranceDrawn,
    core_events.PositionUnderCollateralized: records.PositionUnderCollateralized,
    core_events.FundingPaid: records.FundingPaid,
    core_events.LiquidationAlert: records.LiquidationAlert,
}


def event_record(event: RiskEvent) -> AccountBody:
    """The Avro record (an `AccountEvent` body) for one of the core's events."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    for name in ("reason", "action"):  # enums travel as their names
        if name in fields:
            fields[name] = str(fields[name])
    record: AccountBody = _EVENT_RECORDS[type(event)](**fields)
    return record


def encode_payload(state: dict[str, Any]) -> bytes:
    """`state` as codec json-zlib-1: compact JSON, zlib. msgspec writes the JSON `json.dumps` does,
    ~5x faster, and zlib level 1 is ~3x faster than 6: the changelog was a fifth of risk's CPU."""
    return zlib.compress(msgspec.json.encode(state), 1)


def decode_payload(codec: str, payload: bytes) -> dict[str, Any]:
    if codec != CODEC:
        raise ValueError(f"unknown risk state codec {codec!r}")
    state: dict[str, Any] = msgspec.json.decode(zlib.decompress(payload))
    return state


class RiskService:
    """The risk process: one engine per assigned partition, wired to the transactional loop."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.engines: dict[int, RiskEngine] = {}
        self._dirty_traders: dict[int, set[str]] = {}
        self._dirty_partitions: set[int] = set()
        self._exchange_accounts: dict[int, tuple[int, int, int]] = {}
        """Per partition, the (FEES, CLEARING, INSURANCE) last published on accounts.events."""
        self._last_input: dict[int, Inbound] = {}
        self._kinds = {
            bus.topic(ORDERS_COMMANDS).name: "command",
            bus.topic(RISK_POSTINGS).name: "posting",
            bus.topic(ACCOUNTS_EVENTS).name: "account",
        }
        self.processor = TransactionalProcessor(
            bus,
            group_id=GROUP_ID,
            inputs=[ORDERS_COMMANDS, RISK_POSTINGS, ACCOUNTS_EVENTS],
            handler=self.handle,
            transactional_id=f"{bus.settings.topic_prefix}risk-{bus.settings.instance_id}",
            on_assign=self.recover,
            on_revoke=self.forget,
            on_batch_end=self.changelog,
            # A caller waits on each command; postings and account events may wait to share its
            # transaction (services/common/bus.py, "Group commit").
            urgent_inputs=[ORDERS_COMMANDS],
        )
        bus.serde(RISK_CHANGELOG)
        bus.serde(MATCHER_COMMANDS)

    def run(self, stop: threading.Event) -> None:
        self.processor.run(stop)

    # -- processing ----------------------------------------------------------------------------

    def handle(self, message: Inbound) -> list[Outbound]:
        """Apply one input to its partition's engine; returns what it produces."""
        engine = self.engines[message.partition]
        self._last_input[message.partition] = message
        try:
            kind = self._kinds[message.topic]
            if kind == "command":
                return self._command(engine, message)
            if kind == "posting":
                return self._posting(engine, message)
            return self._account_event(engine, message)
        except InvalidRiskInput as exc:
            raise InvalidRecord(str(exc)) from exc

    def _command(self, engine: RiskEngine, message: Inbound) -> list[Outbound]:
        command: TraderCommand = message.record
        self._touch(message.partition, command.trader)
        result = engine.apply_command(command)
        produced = [Outbound(MATCHER_COMMANDS, key=f.market, value=f) for f in result.forward]
        bodies: list[tuple[str, AccountBody]] = [(command.trader, b) for b in result.account_events]
        bodies += [(e.trader, event_record(e)) for e in result.events]
        return produced + _account_events(message, command.ts_init, bodies)

    def _posting(self, engine: RiskEngine, message: Inbound) -> list[Outbound]:
        """Apply the events of a trade-log entry that concern this partition's traders."""
        entry: TradeLogEntry = message.record

        def owns(trader: str) -> bool:
            return partition_for(trader, RISK_POSTINGS.partitions) == message.partition

        changes: list[RiskEvent] = []
        for posting in postings(entry, owns):
            trader = getattr(posting.body, "trader", None)
            self._touch(message.partition, trader if isinstance(trader, str) else None, partition_state=True)
            changes.extend(engine.apply_posting(posting))
        for change in changes:  # market events (funding, settlement, marks) change many traders
            self._touch(message.partition, change.trader)
        liquidations = [Outbound(MATCHER_COMMANDS, key=c.market, value=c) for c in engine.drain_forward()]
        return liquidations + _account_events(
            message, entry.ts_event, [(e.trader, event_record(e)) for e in changes]
        )

    def _account_event(self, engine: RiskEngine, message: Inbound) -> list[Outbound]:
        event: AccountEvent = message.record
        if not isinstance(event.body, DepositConfirmed | WithdrawalPaid | WithdrawalFailed):
            return []  # risk's own outputs, read back: they change nothing
        self._touch(message.partition, event.trader, partition_state=True)
        events = engine.apply_account_event(event)
        return _account_events(message, event.ts_event, [(e.trader, event_record(e)) for e in events])

    def _touch(self, partition: int, trader: str | None, *, partition_state: bool = False) -> None:
        """Mark what the current batch changes, before changing it (a failing input may still
        have changed something the next inputs build on)."""
        if trader:
            self._dirty_traders.setdefault(partition, set()).add(trader)
        if partition_state:
            self._dirty_partitions.add(partition)

    def changelog(self) -> list[Outbound]:
        """The changelog records of the batch: each touched trader's state, each changed order's
        (a tombstone for a closed one), then each touched partition's global state, on the
        changelog partition of their input partition."""
        produced = []
        for partition, traders in sorted(self._dirty_traders.items()):
            engine = self.engines[partition]
            for trader in sorted(traders):
                produced.append(_state_record(partition, trader, export_trader(engine, trader)))
        for partition, engine in sorted(self.engines.items()):
            for order_id in engine.drain_touched_orders():
                key = ORDER_KEY.format(order_id)
                state = export_order(engine, order_id)
                produced.append(
                    _state_record(partition, key, state)
                    if state is not None
                    else Outbound(RISK_CHANGELOG, key=key, value=None, partition=partition)
                )
        for partition in sorted(self._dirty_partitions):
            state = export_partition(self.engines[partition])
            produced.append(_state_record(partition, PARTITION_KEY.format(partition), state))
        produced += self._exchange_accounts_changed()
        self._dirty_traders.clear()
        self._dirty_partitions.clear()
        self._last_input.clear()
        return produced

    def _exchange_accounts_changed(self) -> list[Outbound]:
        """For each partition whose FEES, CLEARING or INSURANCE moved in this batch, their values on
        accounts.events partition p — the batch's last record there, so settlement can cut its
        batches where every transaction is complete (docs/settlement.md)."""
        produced = []
        for partition in sorted(self._dirty_partitions):
            ledger = self.engines[partition].ledger
            now = (ledger.fees, ledger.clearing, ledger.insurance)
            before = self._exchange_accounts.get(partition, (0, 0, 0))
            if now == before:
                continue
            self._exchange_accounts[partition] = now
            body = ExchangeAccountsChanged(
                partition=partition,
                fees=now[0],
                clearing=now[1],
                insurance=now[2],
                delta_fees=now[0] - before[0],
                delta_clearing=now[1] - before[1],
                delta_insurance=now[2] - before[2],
            )
            last = self._last_input[partition]
            event = AccountEvent(
                event_id=f"{last.position}:exchange",
                trader=EXCHANGE_KEY.format(partition),
                ts_event=last.timestamp_ms * 1_000,
                body=body,
            )
            produced.append(Outbound(ACCOUNTS_EVENTS, key=event.trader, value=event, partition=partition))
        return produced

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, committed: dict[tuple[str, int], int | None]) -> None:
        """Rebuild each assigned partition's engine from its changelog partition."""
        partitions = sorted({partition for _, partition in committed})
        rebuilt = rebuild(self.bus, partitions)
        for partition, engine in rebuilt.items():  # what the last committed batch published
            ledger = engine.ledger
            self._exchange_accounts[partition] = (ledger.fees, ledger.clearing, ledger.insurance)
        for engine in rebuilt.values():
            # The next batch rewrites every open order's record: a changelog of an older format
            # kept orders inside their trader's record, which that batch replaces.
            engine.ledger.touched_orders.update(engine.ledger.orders)
        self.engines.update(rebuilt)
        for partition in partitions:
            self._dirty_traders.pop(partition, None)
            self._dirty_partitions.discard(partition)

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        for _, partition in partitions:
            self.engines.pop(partition, None)
            self._exchange_accounts.pop(partition, None)
            self._dirty_traders.pop(partition, None)
            self._dirty_partitions.discard(partition)


def _account_events(
    message: Inbound, ts_event: int, bodies: Iterable[tuple[str, AccountBody]]
) -> list[Outbound]:
    """(trader, body) pairs as AccountEvents on accounts.events, keyed by trader, ids from the input."""
    produced = []
    for index, (trader, body) in enumerate(bodies):
        event = AccountEvent(event_id=message.event_id(index), trader=trader, ts_event=ts_event, body=body)
        produced.append(Outbound(ACCOUNTS_EVENTS, key=trader, value=event))
    return produced


def _state_record(partition: int, key: str, state: dict[str, Any]) -> Outbound:
    """`state` as the changelog record of `key`."""
    record = RiskStateRecord(key=key, codec=CODEC, payload=encode_payload(state))
    return Outbound(RISK_CHANGELOG, key=key, value=record, partition=partition)


def read_changelog(bus: Bus, partitions: Iterable[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """The latest committed state per key of each changelog partition in `partitions`.

    One read_committed consumer reads them all from the beginning to their end (their last stable
    offset: our own transactions are settled, since the producer was initialised before)."""
    name = bus.topic(RISK_CHANGELOG).name
    latest: dict[int, dict[bytes, Message]] = {p: {} for p in partitions}
    consumer = Consumer(bus.consumer_config("changelog-reader") | {"enable.partition.eof": True})
    try:
        pending = set()
        for partition in latest:
            low, high = watermarks(consumer, TopicPartition(name, partition))
            if high > low:
                pending.add(partition)
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in sorted(pending)])
        while pending:
            message = consumer.poll(10)
            if message is None:
                raise TimeoutError(f"no end of {name} partitions {sorted(pending)} within 10 s")
            error = message.error()
            if error is None and message.value() is None:  # a tombstone: the key's state is gone
                latest[message.partition() or 0].pop(message.key() or b"", None)
            elif error is None:
                latest[message.partition() or 0][message.key() or b""] = message
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition() or 0)
            else:
                raise RuntimeError(f"reading {name}: {error}")
    finally:
        consumer.close()
    states: dict[int, dict[str, dict[str, Any]]] = {}
    for partition, messages in latest.items():
        states[partition] = {}
        for message in messages.values():
            record: RiskStateRecord = decode_message(bus, message, RISK_CHANGELOG).record
            states[partition][record.key] = decode_payload(record.codec, record.payload)
    return states


def rebuild(bus: Bus, partitions: Iterable[int]) -> dict[int, RiskEngine]:
    """The engine of each input partition in `partitions` as of its last committed transaction."""
    engines = {}
    for partition, states in read_changelog(bus, partitions).items():
        global_state = states.pop(PARTITION_KEY.format(partition), None)
        orders = [state for key, state in states.items() if key.startswith(ORDER_KEY.format(""))]
        trader_states = [state for key, state in states.items() if not key.startswith(ORDER_KEY.format(""))]
        engine = import_state(global_state, trader_states, orders)
        engine.validate()
        engines[partition] = engine
        log.info(
            "risk partition %s recovered from the changelog: %d traders, %d orders, state %s",
            partition, len(trader_states), len(orders), engine.state_hash(),
        )  # fmt: skip
    return engines
