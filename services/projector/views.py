"""The read model's pure core: log events → the rows the order gateway reads. No I/O, no clock.

Inputs are the trade log (entries per market, their events numbered by a gap-free per-market
`seq`) and accounts.events (per trader, all on the trader's partition, in offset order). Outputs
are typed writes (`Write`) onto the tables of `docs/read-model.md`; the adapter
(`services/projector/service.py`) turns them into Cassandra statements.

Idempotent and order-safe
-------------------------
Every write carries a `version`, which the adapter uses as Cassandra's write timestamp
(`USING TIMESTAMP`): the event's per-market `seq` for market and order rows, the offset of the
accounts.events record for balance and position rows. Each row is written from one ordering only
(an order lives in one market; a trader's account events sit on one partition), and each write
holds the row's whole state after the event, never a delta. Cassandra keeps, per cell, the value
with the highest timestamp, so:

* writing an event twice writes the same values with the same timestamp: nothing changes;
* writing an older event after a newer one loses to it: a redelivered batch (at least once) cannot
  move a row back, not even for a moment, and neither can a consumer fenced out by a rebalance;
* replaying from offset 0 writes the same final values with the same timestamps: the same state.

Deltas. An `OrderFilled` carries absolute `cum_qty` / `leaves_qty` but a per-fill fee and price,
so the fees paid and the average price need the sums so far. `OrderStates` keeps them: the open
orders of the markets the projector follows, folded from their `OrderAccepted` on. An order it
has not followed (after a restart, or when a market's `seq` does not continue where it stopped —
a redelivery or another consumer's work) is loaded from `orders_by_id` first. If the loaded row is
already past the event (`last_seq` ≥ the event's seq: a redelivery), the event is not applied again;
the row's current writes are issued again instead — same values, same timestamps — which repairs a
batch whose writes only partly landed before a crash.

Why not the alternatives (figures in docs/read-model.md): a lightweight transaction per write
(`IF last_seq < ?`) is a Paxos round, 2.5–4x the cost of a plain write, and still needs a read to
add a fill to the sums; reading each order before writing it costs a read per event. With the state
kept in memory the steady state does plain, timestamped writes only, and reads happen after a
restart or a rebalance, once per order.

Order statuses are `services.common.lifecycle`'s (events folded through `next_status`; an illegal
transition raises): ACCEPTED, RESTING, PARTIALLY_FILLED, FILLED, CANCELLED (the reason says why:
USER_CANCELLED, IOC_REMAINDER, SELF_TRADE_PREVENTED, EXPIRED, MARKET_CLOSED) and REJECTED.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

from services.common.codes import MatcherReject, RiskReject
from services.common.lifecycle import TERMINAL, OrderStatus, Transition, next_status
from services.common.records import (
    AccountEvent,
    BalanceChanged,
    FundingApplied,
    InventoryChanged,
    MarketCreated,
    MarketDefinition,
    MarketKind,
    MarketSettled,
    MarketStatus,
    MarketStatusChanged,
    MarkPriceSet,
    OptionType,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRested,
    OrderType,
    PositionChanged,
    Side,
    TimeInForce,
    TradeLogEntry,
)

USDC = "USDC"
"""The asset of the collateral balance row; a spot market's synth holdings use the market symbol."""

OPEN_STATUSES = frozenset(OrderStatus) - TERMINAL
"""Statuses of an order still on (or entering) the book."""

RISK_REFUSAL_VERSION = 0
"""Version of an order row risk refused: below any trade-log seq, so the book's word always wins."""

OrderEvent = OrderAccepted | OrderRested | OrderFilled | OrderCancelled | OrderAmended | OrderRejected
_UPDATES = (OrderRested, OrderFilled, OrderCancelled, OrderAmended)
_ORDER_EVENTS = (OrderAccepted, OrderRejected, *_UPDATES)
_NOT_A_PLACEMENT = frozenset(
    {
        MatcherReject.UNKNOWN_ORDER,  # a cancel naming both ids of an order it cannot find
        MatcherReject.DUPLICATE_ORDER_ID,  # the id is another, open, order's
        RiskReject.UNKNOWN_ORDER,
        RiskReject.DUPLICATE_ORDER_ID,
        # A signed order sent again after the gateway that took it died (its retry under the same
        # Idempotency-Key reached a gateway that had not seen the key): risk spent the nonce on the
        # first. Projected as a placement it would add a REJECTED row beside the live order, and
        # whether coalescing kept it would depend on poll boundaries (the fault soak found both).
        RiskReject.NONCE_REUSED,
    }
)


class ProjectionError(Exception):
    """The log contradicts the projected state (a broken invariant): stop rather than write it."""


class LogPosition(NamedTuple):
    """Where an event sits: its version (per-market seq, or accounts.events offset) and its time."""

    version: int
    ts_event: int
    """Microseconds since the epoch (the command's or the block's time)."""


# -- rows ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order's whole state: a row of `orders_by_id`, `orders_by_trader` and, while the order is
    open, `open_orders_by_market`. Prices in ticks, sizes in lots, money in micro-USDC."""

    order_id: str
    trader: str
    market: str | None
    """None for an order risk refused: its refusal does not name the market."""
    client_order_id: str | None
    side: Side | None
    """None (with order_type … expire_at) for a refused order: refusals do not repeat the order."""
    order_type: OrderType | None
    price: int | None
    size: int | None
    time_in_force: TimeInForce | None
    post_only: bool
    reduce_only: bool
    expire_at: int | None
    status: OrderStatus
    rested: bool
    """Whether the order has rested on the book (it is in `open_orders_by_market` while open)."""
    cum_qty: int
    leaves_qty: int
    avg_px_num: int
    """Σ last_px × last_qty over the fills (tick-lots): the average fill price is avg_px_num / cum_qty."""
    last_px: int | None
    fees_paid: int
    reason_code: int | None
    """Why the order was cancelled (31xx) or rejected (2xxx, 3xxx); None while it is open or filled."""
    reason: str | None
    created_at: int
    """Microseconds since the epoch: the time of the command that placed the order."""
    updated_at: int
    last_seq: int
    """Seq of the last event applied (0 for a risk refusal); also the rows' write timestamp."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class BalanceRow:
    """A row of `balances_by_trader`: USDC buckets (micro-USDC), or a spot market's synth lots
    (asset = the market symbol: free = held, reserved = held for open sells; 0 withdrawing/locked)."""

    trader: str
    asset: str
    free: int
    reserved: int
    withdrawing: int
    locked: int
    updated_at: int
    version: int
    """Offset of the accounts.events record that set it; also the write timestamp."""


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A row of `positions_by_trader`, as risk reported it after the latest fill (`PositionChanged`).

    size: signed lots; basis: entry value of the open lots; collateral: locked; realized_pnl:
    cumulative on the market (all micro-USDC). Unrealised PnL is the reader's, from a mark price:
    mark × size × quote_per_tick_lot − basis for a perpetual or future.
    """

    trader: str
    market: str
    size: int
    basis: int
    collateral: int
    realized_pnl: int
    last_px: int
    last_trade_id: int
    updated_at: int
    version: int


@dataclass(frozen=True, slots=True)
class MarketRow:
    """A row of `markets`: the listing's parameters, its status now, and how far it is projected."""

    market: str
    kind: MarketKind
    base_asset: str
    quote_asset: str
    quote_per_tick_lot: int
    tick_size_e9: int
    lot_size_e9: int
    min_size: int
    maker_fee_bps: int
    taker_fee_bps: int
    expiry: int | None
    strike: int | None
    option_type: OptionType | None
    index_symbol: str | None
    status: MarketStatus
    status_reason: str | None
    status_changed_at: int
    created_at: int
    last_seq: int
    """Seq of the market's latest event projected: the read model reflects its log up to here."""
    updated_at: int
    mark_price: int | None = None
    """Latest mark in ticks (perpetuals, futures, options), None before the first."""
    index_price: int | None = None
    marked_at: int | None = None
    funding_rate_e9: int | None = None
    """Rate of the latest funding interval applied (perpetuals), × 1e9."""
    funded_until: int | None = None
    settlement_price: int | None = None
    """Price a settled future or option settled at, ticks."""


# -- writes ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderUpsert:
    """Put the order's whole state in `orders_by_id` and `orders_by_trader`."""

    row: OrderRow

    @property
    def version(self) -> int:
        return self.row.last_seq

    @property
    def key(self) -> tuple[str, ...]:
        return ("order", self.row.order_id)


@dataclass(frozen=True, slots=True)
class OpenOrderUpsert:
    """Put a resting order's state in `open_orders_by_market`."""

    row: OrderRow

    @property
    def version(self) -> int:
        return self.row.last_seq

    @property
    def key(self) -> tuple[str, ...]:
        return ("open", self.row.market or "", self.row.order_id)


@dataclass(frozen=True, slots=True)
class OpenOrderDelete:
    """Remove an order that rested, and is now closed, from `open_orders_by_market`."""

    market: str
    order_id: str
    version: int

    @property
    def key(self) -> tuple[str, ...]:
        return ("open", self.market, self.order_id)


@dataclass(frozen=True, slots=True)
class MarketUpsert:
    """Put a listed market's parameters and initial status in `markets`."""

    definition: MarketDefinition
    created_at: int
    version: int

    @property
    def key(self) -> tuple[str, ...]:
        return ("market", self.definition.market)


@dataclass(frozen=True, slots=True)
class MarketStatusUpdate:
    """Set a market's status (and why, and when) in `markets`."""

    market: str
    status: MarketStatus
    reason: str
    changed_at: int
    version: int

    @property
    def key(self) -> tuple[str, ...]:
        return ("market-status", self.market)


@dataclass(frozen=True, slots=True)
class MarketMarkUpdate:
    """Set a market's latest mark and index price in `markets`."""

    market: str
    mark_price: int
    index_price: int
    marked_at: int
    version: int

    @property
    def key(self) -> tuple[str, ...]:
        return ("market-mark", self.market)


@dataclass(frozen=True, slots=True)
class MarketFundingUpdate:
    """Set a perpetual's latest funding interval (rate and end) in `markets`."""

    market: str
    rate_e9: int
    funded_until: int
    version: int

    @property
    def key(self) -> tuple[str, ...]:
        return ("market-funding", self.market)


@dataclass(frozen=True, slots=True)
class MarketSettlementUpdate:
    """Set the price a future or option settled at in `markets`."""

    market: str
    settlement_price: int
    version: int

    @property
    def key(self) -> tuple[str, ...]:
        return ("market-settlement", self.market)


@dataclass(frozen=True, slots=True)
class MarketProgress:
    """Record in `markets` the seq of the market's latest projected event."""

    market: str
    last_seq: int
    updated_at: int

    @property
    def version(self) -> int:
        return self.last_seq

    @property
    def key(self) -> tuple[str, ...]:
        return ("market-progress", self.market)


@dataclass(frozen=True, slots=True)
class BalanceUpsert:
    """Put a trader's balance of one asset in `balances_by_trader`."""

    row: BalanceRow

    @property
    def version(self) -> int:
        return self.row.version

    @property
    def key(self) -> tuple[str, ...]:
        return ("balance", self.row.trader, self.row.asset)


@dataclass(frozen=True, slots=True)
class PositionUpsert:
    """Put a trader's position on one market in `positions_by_trader`."""

    row: PositionRow

    @property
    def version(self) -> int:
        return self.row.version

    @property
    def key(self) -> tuple[str, ...]:
        return ("position", self.row.trader, self.row.market)


Write = (
    OrderUpsert
    | OpenOrderUpsert
    | OpenOrderDelete
    | MarketUpsert
    | MarketStatusUpdate
    | MarketMarkUpdate
    | MarketFundingUpdate
    | MarketSettlementUpdate
    | MarketProgress
    | BalanceUpsert
    | PositionUpsert
)


def coalesce(writes: Iterable[Write]) -> list[Write]:
    """Per key, only the write with the highest version (the later one among equals).

    Each write holds its key's whole state (or, for a market, the whole of the columns it sets), and
    the store keeps the highest timestamp anyway, so the others would be overwritten: a batch need
    not send them.
    """
    latest: dict[tuple[str, ...], Write] = {}
    for write in writes:
        held = latest.get(write.key)
        if held is None or write.version >= held.version:
            latest[write.key] = write
    return list(latest.values())


# -- orders ----------------------------------------------------------------------------------------


def is_placement_refusal(rejected: OrderRejected) -> bool:
    """Whether an `OrderRejected` refused a new order (rather than an amend or a cancel).

    The log does not name the command; its shape does: a PlaceOrder names both a venue and a client
    order id, an AmendOrder only the venue id, a CancelOrder one of them (rarely both — then it is
    refused as UNKNOWN_ORDER), a CancelAllOrders neither. Codes that name another order's id
    (DUPLICATE_ORDER_ID) do not describe a new order either.
    """
    return (
        rejected.order_id is not None
        and rejected.client_order_id is not None
        and rejected.reason_code not in _NOT_A_PLACEMENT
    )


def refused_order(rejected: OrderRejected, market: str | None, at: LogPosition) -> OrderRow:
    """The row of an order refused before it reached the book (by the matcher, or by risk)."""
    if rejected.order_id is None:
        raise ProjectionError("a refused placement always names its order id")
    return OrderRow(
        order_id=rejected.order_id,
        trader=rejected.trader,
        market=market,
        client_order_id=rejected.client_order_id,
        side=None,
        order_type=None,
        price=None,
        size=None,
        time_in_force=None,
        post_only=False,
        reduce_only=False,
        expire_at=None,
        status=next_status(None, Transition.REJECT),
        rested=False,
        cum_qty=0,
        leaves_qty=0,
        avg_px_num=0,
        last_px=None,
        fees_paid=0,
        reason_code=rejected.reason_code,
        reason=rejected.reason,
        created_at=at.ts_event,
        updated_at=at.ts_event,
        last_seq=at.version,
    )


def order_update(prior: OrderRow | None, market: str, event: OrderEvent, at: LogPosition) -> OrderRow | None:
    """The order's state after one trade-log event of `market` at `at` (None: no order changes).

    `prior` is its state before (None before `OrderAccepted`). Raises `ProjectionError` (or the
    lifecycle's `IllegalTransition`) when the event contradicts it.
    """
    if isinstance(event, OrderRejected):
        return refused_order(event, market, at) if is_placement_refusal(event) else None
    if isinstance(event, OrderAccepted):
        return OrderRow(
            order_id=event.order_id,
            trader=event.trader,
            market=market,
            client_order_id=event.client_order_id,
            side=event.side,
            order_type=event.order_type,
            price=event.price,
            size=event.size,
            time_in_force=event.time_in_force,
            post_only=event.post_only,
            reduce_only=event.reduce_only,
            expire_at=event.expire_at,
            status=next_status(None, Transition.ACCEPT),
            rested=False,
            cum_qty=0,
            leaves_qty=event.size,
            avg_px_num=0,
            last_px=None,
            fees_paid=0,
            reason_code=None,
            reason=None,
            created_at=at.ts_event,
            updated_at=at.ts_event,
            last_seq=at.version,
        )
    if prior is None:
        name = type(event).__name__
        raise ProjectionError(f"{name} at seq {at.version} of {market}: unknown order {event.order_id}")
    if prior.market != market or prior.trader != event.trader:
        raise ProjectionError(f"order {event.order_id} is {prior.trader}'s on {prior.market}, not {market}")
    if isinstance(event, OrderRested):
        return replace(
            prior,
            status=next_status(prior.status, Transition.REST),
            rested=True,
            price=event.price,
            leaves_qty=event.leaves_qty,
            updated_at=at.ts_event,
            last_seq=at.version,
        )
    if isinstance(event, OrderFilled):
        expected = (prior.cum_qty + event.last_qty, prior.leaves_qty - event.last_qty)
        if expected != (event.cum_qty, event.leaves_qty):
            raise ProjectionError(
                f"fill of {event.last_qty} lots on {event.order_id} at seq {at.version}: cum/leaves "
                f"{prior.cum_qty}/{prior.leaves_qty} → {event.cum_qty}/{event.leaves_qty}"
            )
        transition = Transition.FULL_FILL if event.leaves_qty == 0 else Transition.PARTIAL_FILL
        return replace(
            prior,
            status=next_status(prior.status, transition),
            cum_qty=event.cum_qty,
            leaves_qty=event.leaves_qty,
            avg_px_num=prior.avg_px_num + event.last_px * event.last_qty,
            last_px=event.last_px,
            fees_paid=prior.fees_paid + event.fee,
            updated_at=at.ts_event,
            last_seq=at.version,
        )
    if isinstance(event, OrderCancelled):
        if event.cancelled_qty != prior.leaves_qty:
            raise ProjectionError(
                f"cancel of {event.cancelled_qty} lots on {event.order_id} with {prior.leaves_qty} open"
            )
        return replace(
            prior,
            status=next_status(prior.status, Transition.CANCEL),
            leaves_qty=0,
            reason_code=event.reason_code,
            reason=event.reason,
            updated_at=at.ts_event,
            last_seq=at.version,
        )
    return replace(
        prior,
        status=next_status(prior.status, Transition.AMEND),
        price=event.price,
        size=event.size,
        leaves_qty=event.leaves_qty,
        updated_at=at.ts_event,
        last_seq=at.version,
    )


def order_writes(row: OrderRow) -> list[Write]:
    """What an order's state implies: its row and, once it has rested, its place among its market's
    open orders (an order that never rested — IOC, FOK, market, refused — never enters that table, so
    leaving it costs no tombstone)."""
    writes: list[Write] = [OrderUpsert(row)]
    if row.rested and row.market is not None:
        if row.is_open:
            writes.append(OpenOrderUpsert(row))
        else:
            writes.append(OpenOrderDelete(row.market, row.order_id, row.last_seq))
    return writes


# -- markets ---------------------------------------------------------------------------------------


MarketEvent = MarketCreated | MarketStatusChanged | MarkPriceSet | FundingApplied | MarketSettled
_MARKET_EVENTS = (MarketCreated, MarketStatusChanged, MarkPriceSet, FundingApplied, MarketSettled)


def market_writes(market: str, event: MarketEvent, at: LogPosition) -> list[Write]:
    """A listing, status change, mark, funding interval or settlement of `market`."""
    if isinstance(event, MarketCreated):
        return [MarketUpsert(event.definition, at.ts_event, at.version)]
    if isinstance(event, MarketStatusChanged):
        return [MarketStatusUpdate(market, event.status, event.reason, at.ts_event, at.version)]
    if isinstance(event, MarkPriceSet):
        return [MarketMarkUpdate(market, event.mark_price, event.index_price, at.ts_event, at.version)]
    if isinstance(event, FundingApplied):
        return [MarketFundingUpdate(market, event.rate_e9, event.interval_end, at.version)]
    return [MarketSettlementUpdate(market, event.settlement_price, at.version)]


# -- the trade log, entry by entry -----------------------------------------------------------------


class OrderStates:
    """The per-order state between events: open orders of the markets followed without a gap.

    For each entry: `needs(entry)` names the orders to load from the store first (empty in the
    steady state), `load(rows)` takes them, `apply(entry)` returns the entry's writes.
    """

    def __init__(self) -> None:
        self._orders: dict[str, OrderRow] = {}
        self._by_market: dict[str, set[str]] = {}
        self._next_seq: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_id: str) -> OrderRow | None:
        return self._orders.get(order_id)

    def needs(self, entry: TradeLogEntry) -> set[str]:
        """The orders `entry` updates that are not held (their OrderAccepted was not followed)."""
        if not entry.first_seq:
            return set()
        self._follow(entry)
        accepted: set[str] = set()
        missing: set[str] = set()
        for event in entry.events:
            if isinstance(event, OrderAccepted):
                accepted.add(event.order_id)
            elif (
                isinstance(event, _UPDATES)
                and event.order_id not in accepted
                and event.order_id not in self._orders
            ):
                missing.add(event.order_id)
        return missing

    def load(self, rows: Iterable[OrderRow]) -> None:
        """Hold orders read back from the store (their state as of their `last_seq`)."""
        for row in rows:
            self._hold(row)

    def apply(self, entry: TradeLogEntry) -> list[Write]:
        """The writes one entry implies; an event already reflected in a held order (a redelivery)
        re-issues that order's current writes instead of being applied again."""
        if not entry.first_seq or not entry.events:
            # No market (nothing numbered), or a command that changed nothing (a cancel-all with
            # nothing open): no event, no seq of its own — a progress write would share the
            # previous entry's seq (its write timestamp) with another value, a tie Cassandra
            # breaks by value, not by order.
            return []
        self._follow(entry)
        writes: list[Write] = []
        touched: set[str] = set()
        for index, event in enumerate(entry.events):
            at = LogPosition(entry.first_seq + index, entry.ts_event)
            if isinstance(event, _MARKET_EVENTS):
                writes += market_writes(entry.market, event, at)
            elif isinstance(event, _ORDER_EVENTS):
                if event.order_id is None:
                    continue  # a refused cancel-all names no order
                prior = self._orders.get(event.order_id)
                if prior is not None and at.version <= prior.last_seq:
                    writes += order_writes(prior)
                    continue
                row = order_update(prior, entry.market, event, at)
                if row is not None:
                    self._hold(row)
                    touched.add(row.order_id)
                    writes += order_writes(row)
            # TradeExecuted (fills come from OrderFilled), CommandRejected: nothing to project
        last_seq = entry.first_seq + len(entry.events) - 1
        self._next_seq[entry.market] = last_seq + 1
        writes.append(MarketProgress(entry.market, last_seq, entry.ts_event))
        for order_id in touched:
            if not self._orders[order_id].is_open:
                self._drop(order_id)
        return writes

    def forget(self) -> None:
        """Drop everything (after a failed write: the store may not hold what was folded)."""
        self._orders.clear()
        self._by_market.clear()
        self._next_seq.clear()

    def _follow(self, entry: TradeLogEntry) -> None:
        """Forget a market's orders when `entry` does not continue its seq where this left it."""
        if self._next_seq.get(entry.market) != entry.first_seq:
            for order_id in self._by_market.pop(entry.market, set()):
                self._orders.pop(order_id, None)
            self._next_seq[entry.market] = entry.first_seq

    def _hold(self, row: OrderRow) -> None:
        self._orders[row.order_id] = row
        self._by_market.setdefault(row.market or "", set()).add(row.order_id)

    def _drop(self, order_id: str) -> None:
        row = self._orders.pop(order_id)
        self._by_market.get(row.market or "", set()).discard(order_id)


# -- accounts.events -------------------------------------------------------------------------------


def account_writes(event: AccountEvent, version: int) -> list[Write]:
    """The writes one account event implies; `version` is its accounts.events offset.

    Balance and position events carry absolute values (after the change), so each is a whole row.
    Risk's refusals of new orders become REJECTED orders (without a market: the refusal does not
    name it). Deposits, withdrawals and the insurance flags only feed the account history.
    """
    body, at = event.body, LogPosition(version, event.ts_event)
    if isinstance(body, BalanceChanged):
        row = BalanceRow(
            body.trader, USDC, body.free, body.reserved, body.withdrawing, body.locked, at.ts_event, version
        )
        return [BalanceUpsert(row)]
    if isinstance(body, InventoryChanged):
        row = BalanceRow(body.trader, body.market, body.held, body.reserved, 0, 0, at.ts_event, version)
        return [BalanceUpsert(row)]
    if isinstance(body, PositionChanged):
        position = PositionRow(
            trader=body.trader,
            market=body.market,
            size=body.size,
            basis=body.basis,
            collateral=body.collateral,
            realized_pnl=body.realized_pnl,
            last_px=body.last_px,
            last_trade_id=body.trade_id,
            updated_at=at.ts_event,
            version=version,
        )
        return [PositionUpsert(position)]
    if isinstance(body, OrderRejected) and is_placement_refusal(body):
        return order_writes(refused_order(body, None, LogPosition(RISK_REFUSAL_VERSION, at.ts_event)))
    return []
