"""The risk engine: (ledger, input) → outputs. Pure: no clock, no I/O, no randomness, no floats.

exchange-core's R1 and R2 in one state machine:

* **pre-trade** (`apply_command`, one `TraderCommand` from orders.commands): spend the command's
  signed nonce (risk is the authority on replays: it alone sees every command of a trader, once,
  with state that survives crashes), check the market, the order and the trader's free
  collateral, move the order's worst-case cost into a reservation, and forward the command to the
  matcher — or refuse it with a stable 2xxx code (`RiskReject`);
* **post-trade** (`apply_entry`, one `TradeLogEntry` from risk.postings, applied one `Posting` —
  one of its events — at a time by `apply_posting`): apply what the matcher did — fills move money
  between buckets and open or close positions, cancels and rejections give reservations back,
  amendments re-size them.

Fills are applied from the per-order `OrderFilled` events (one per side, each concerning one trader);
`TradeExecuted` is ignored, so nothing is applied twice. An entry reaches every risk partition that
owns one of its traders: each applies the events of its own traders (and market events, which
concern every partition).
Time exists only as `ts_init` of commands. Every step leaves `validate()` true.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from msgspec.structs import replace

from services.common.codes import GatewayReject, RiskReject
from services.common.money import Lots, MicroUsdc, Ticks, unrealized_pnl
from services.common.nonces import NonceInvariantError, NonceRejected, ReplayGuard
from services.common.records import (
    AccountEvent,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    DepositConfirmed,
    FundingApplied,
    MarketCreated,
    MarketDefinition,
    MarketKind,
    MarketSettled,
    MarketStatus,
    MarketStatusChanged,
    MarkPriceSet,
    MatcherCommand,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RequestWithdrawal,
    Side,
    TimeInForce,
    TradeLogEntry,
    TraderCommand,
    WithdrawalFailed,
    WithdrawalPaid,
    WithdrawalRequested,
)
from services.matcher.core.engine import MARKET_EVENTS, Event
from services.risk.core.errors import InvalidRiskInput, LedgerInvariantError
from services.risk.core.events import (
    AlertAction,
    BalanceChanged,
    ChangeReason,
    InventoryChanged,
    LiquidationAlert,
    RiskEvent,
)
from services.risk.core.fills import apply_fill
from services.risk.core.ledger import Ledger, Market, Order, PendingAmend, Position
from services.risk.core.lifecycle import pay_funding, settle_position
from services.risk.core.rules import (
    ALERT_LOSS_BPS,
    LIQUIDATION_LOSS_BPS,
    Rates,
    covered_by_reservation,
    liquidation_price,
    loss_bps,
    order_rates,
)

AccountBody = OrderRejected | WithdrawalRequested

_NONCE_CODES = {
    GatewayReject.NONCE_REUSED: RiskReject.NONCE_REUSED,
    GatewayReject.NONCE_TOO_OLD: RiskReject.NONCE_TOO_OLD,
    GatewayReject.NONCE_TOO_FAR_AHEAD: RiskReject.NONCE_TOO_FAR_AHEAD,
}
"""The guard's verdicts as risk's codes (no deadline reaches risk, so never SIGNATURE_EXPIRED)."""


class Posting(NamedTuple):
    """One event of a trade-log entry, with its position in the log."""

    market: str
    seq: int
    """Per-market sequence number (0: the market does not exist, the event is not numbered)."""
    event_id: str
    command_id: str
    ts_event: int
    body: Event


LIQUIDATIONS = uuid.UUID("6f1c3a52-5d0e-4b8e-9a51-0c1f6d2b7e10")
"""uuid5 namespace of liquidation order ids: derived from the mark event, so a replay reuses them."""


def _everyone(trader: str) -> bool:
    return True


def postings(entry: TradeLogEntry, owns: Callable[[str], bool] = _everyone) -> Iterator[Posting]:
    """The events of `entry` risk applies: those of the traders `owns` accepts, and market events."""
    for index, body in enumerate(entry.events):
        trader = getattr(body, "trader", None)
        if owns(trader) if trader is not None else isinstance(body, MARKET_EVENTS):
            yield Posting(
                market=entry.market,
                seq=entry.first_seq + index if entry.first_seq else 0,
                event_id=f"{entry.source}:{index}",
                command_id=entry.command_id,
                ts_event=entry.ts_event,
                body=body,
            )


@dataclass(frozen=True, slots=True)
class RiskResult:
    """What pre-trade risk did with one trader command.

    `forward`: the commands for matcher.commands (several for a cancel-all across markets, none
    when refused). `account_events`: bodies for accounts.events (an `OrderRejected`, or a
    `WithdrawalRequested`). `events`: the balance changes the command caused.
    """

    command: TraderCommand
    forward: tuple[MatcherCommand, ...]
    account_events: tuple[AccountBody, ...]
    events: tuple[RiskEvent, ...]

    @property
    def rejection(self) -> OrderRejected | None:
        """The refusal, if risk refused the command."""
        for body in self.account_events:
            if isinstance(body, OrderRejected):
                return body
        return None

    def account_records(self, event_id: Callable[[int], str]) -> list[AccountEvent]:
        """`account_events` wrapped for accounts.events; `event_id(i)` names the i-th (the adapter
        derives it from the command's log position, so replays reuse it)."""
        return [
            AccountEvent(
                event_id=event_id(i), trader=self.command.trader, ts_event=self.command.ts_init, body=body
            )
            for i, body in enumerate(self.account_events)
        ]


class _Refused(Exception):
    """Internal: stops a command with a refusal. Raised before any state has changed (but the
    command's nonce, which is spent before anything else is checked)."""

    def __init__(self, code: RiskReject, detail: str) -> None:
        self.code = code
        self.detail = detail


class RiskEngine:
    """The balances, positions and open orders of the traders of one risk partition."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.markets: dict[str, Market] = {}
        self.last_seq: dict[str, int] = {}
        """Per market, the highest trade-log seq applied; older postings are replays and ignored."""
        self.nonces = ReplayGuard()
        """The nonces the partition's traders signed: the authoritative replay check."""
        self._before: dict[str, tuple[int, int, int, int]] = {}
        self._before_holding: dict[tuple[str, str], tuple[int, int]] = {}
        self._forward: list[MatcherCommand] = []
        self._posting_handlers: dict[type[Any], Callable[[Posting, Any], list[RiskEvent]]] = {
            MarketCreated: self._market_created,
            MarketStatusChanged: self._status_changed,
            OrderFilled: self._filled,
            OrderCancelled: self._cancelled,
            OrderAmended: self._amended,
            OrderRejected: self._rejected,
            OrderAccepted: self._accepted,
            MarkPriceSet: self._marked,
            FundingApplied: self._funded,
            MarketSettled: self._settled,
        }
        """What each trade-log event does to the ledger (events not listed change nothing)."""

    # -- markets -------------------------------------------------------------------------------

    def apply_market(self, definition: MarketDefinition) -> None:
        """Learn a market (from `MarketCreated`); the same definition again is a no-op."""
        known = self.markets.get(definition.market)
        if known is not None:
            if known.definition != definition:
                raise InvalidRiskInput(f"{definition.market} is already defined differently")
            return
        _validate_definition(definition)
        self.markets[definition.market] = Market(definition, definition.status)

    def apply_market_status(self, market: str, status: MarketStatus) -> None:
        """Follow a market's status (from `MarketStatusChanged`): only ACTIVE markets take orders."""
        known = self.markets.get(market)
        if known is None:
            raise InvalidRiskInput(f"status change for unknown market {market}")
        known.status = status

    # -- money in and out ----------------------------------------------------------------------

    def apply_deposit(self, trader: str, deposit: DepositConfirmed) -> list[RiskEvent]:
        """Credit a confirmed deposit to free; a deposit seen before (same chain, tx, log) is ignored."""
        if deposit.amount <= 0:
            raise InvalidRiskInput(f"deposit of {deposit.amount} micro-USDC")
        deposit_id = f"{deposit.chain_id}:{deposit.tx_hash}:{deposit.log_index}"
        self._begin(trader)
        if not self.ledger.record_deposit(trader, deposit_id):
            return []
        self.ledger.account(trader).free += deposit.amount
        self.ledger.deposited += deposit.amount
        return self._changes(ChangeReason.DEPOSIT, deposit_id)

    def apply_account_event(self, event: AccountEvent) -> list[RiskEvent]:
        """An accounts.events record: deposits, and withdrawals paid on-chain or failed, are applied
        (each once: a redelivery is ignored); risk's own outputs read back change nothing."""
        body = event.body
        if isinstance(body, DepositConfirmed):
            return self.apply_deposit(event.trader, body)
        if isinstance(body, WithdrawalPaid | WithdrawalFailed):
            seen = f"withdrawal:{body.withdrawal_id}"
            if seen in self.ledger.deposit_ids:
                return []  # the watcher or settlement said it again (a restart): already booked
            if isinstance(body, WithdrawalPaid):
                events = self.apply_withdrawal_paid(event.trader, body.withdrawal_id)
            else:
                events = self.apply_withdrawal_failed(event.trader, body.withdrawal_id)
            self.ledger.record_deposit(event.trader, seen)  # after: an unknown withdrawal raised
            return events
        return []

    def apply_synth_deposit(self, trader: str, market: str, lots: int, deposit_id: str) -> list[RiskEvent]:
        """Credit synth lots deposited to the Vault for a spot market (no schema yet; see docs/risk.md)."""
        known = self.markets.get(market)
        if known is None or known.definition.kind is not MarketKind.SPOT or lots <= 0:
            raise InvalidRiskInput(f"synth deposit of {lots} lots on {market}")
        key = f"synth:{deposit_id}"
        self._begin(trader, market)
        if not self.ledger.record_deposit(trader, key):
            return []
        self.ledger.holding(trader, market).held += lots
        self.ledger.synth_supply[market] = self.ledger.synth_supply.get(market, 0) + lots
        return self._changes(ChangeReason.SYNTH_DEPOSIT, deposit_id)

    def apply_withdrawal_paid(self, trader: str, withdrawal_id: str) -> list[RiskEvent]:
        """Settlement paid a requested withdrawal on-chain: it leaves the ledger (no schema yet)."""
        amount = self._take_withdrawal(trader, withdrawal_id)
        self.ledger.withdrawn += amount
        return self._changes(ChangeReason.WITHDRAWAL_PAID, withdrawal_id)

    def apply_withdrawal_failed(self, trader: str, withdrawal_id: str) -> list[RiskEvent]:
        """Settlement could not pay a requested withdrawal: the amount returns to free (no schema yet)."""
        amount = self._take_withdrawal(trader, withdrawal_id)
        self.ledger.account(trader).free += amount
        return self._changes(ChangeReason.WITHDRAWAL_FAILED, withdrawal_id)

    def _take_withdrawal(self, trader: str, withdrawal_id: str) -> int:
        account = self.ledger.accounts.get(trader)
        if account is None or withdrawal_id not in account.withdrawals:
            raise InvalidRiskInput(f"no pending withdrawal {withdrawal_id} for {trader}")
        self._begin(trader)
        amount = account.withdrawals.pop(withdrawal_id)
        account.withdrawing -= amount
        return amount

    # -- pre-trade -----------------------------------------------------------------------------

    def apply_command(self, command: TraderCommand) -> RiskResult:
        """Check one trader command; forward it to the matcher or refuse it."""
        body = command.body
        market = getattr(body, "market", None)
        self._begin(command.trader, market if isinstance(market, str) else None)
        reason, ref = ChangeReason.ORDER_PLACED, getattr(body, "order_id", None) or ""
        account_events: list[AccountBody] = []
        try:
            self._spend_nonce(command)  # first, and kept whatever follows
            if isinstance(body, PlaceOrder):
                forward = [self._place(command, body)]
            elif isinstance(body, CancelOrder):
                forward = [self._cancel(command, body)]
            elif isinstance(body, CancelAllOrders):
                forward = self._cancel_all(command, body)
            elif isinstance(body, AmendOrder):
                reason = ChangeReason.AMEND_REQUESTED
                forward = [self._amend(command, body)]
            elif isinstance(body, RequestWithdrawal):
                reason, ref = ChangeReason.WITHDRAWAL_REQUESTED, body.withdrawal_id
                account_events.append(self._withdraw(command, body))
                forward = []
            else:  # pragma: no cover - the union is closed; a new member must be handled here
                raise _Refused(RiskReject.UNSUPPORTED_COMMAND, type(body).__name__)
        except _Refused as refusal:
            return RiskResult(command, (), (_rejection(command, refusal),), ())
        return RiskResult(command, tuple(forward), tuple(account_events), tuple(self._changes(reason, ref)))

    def _spend_nonce(self, command: TraderCommand) -> None:
        """Refuse a replayed or out-of-window nonce; otherwise record it — whatever the command's
        fate afterwards: the signature is consumed (Hyperliquid's rule), so a signed message runs
        at most once, even after a refusal for collateral. The command time is `ts_init`; the
        deadline was the gateway's to check (the Avro command does not carry it)."""
        trader, nonce, now = command.trader, command.body.nonce, command.ts_init
        verdict = self.nonces.check(trader, nonce, now, deadline=None)
        if isinstance(verdict, NonceRejected):
            raise _Refused(_NONCE_CODES[verdict.code], f"nonce {nonce} at command time {now}")
        self.nonces.prune_signer(trader, now)
        self.nonces.record(trader, nonce)

    def _place(self, command: TraderCommand, order: PlaceOrder) -> MatcherCommand:
        market = self._trading_market(order.market)
        d = market.definition
        if order.size <= 0 or order.price <= 0:
            raise _Refused(RiskReject.INVALID_ORDER, f"size {order.size} lots, price {order.price} ticks")
        if order.order_id in self.ledger.orders:
            raise _Refused(RiskReject.DUPLICATE_ORDER_ID, order.order_id)
        size = order.size
        if order.reduce_only:
            if d.kind is MarketKind.SPOT:
                raise _Refused(
                    RiskReject.INVALID_ORDER, "reduce-only needs a position; spot markets have none"
                )
            size = min(size, self._reduce_only_room(command.trader, order.market, order.side, None))
        rates = order_rates(d, order.side, order.price, order.reduce_only)
        self._check_funds(command.trader, order.market, size * rates.usdc, size * rates.inventory)
        self.ledger.open_order(
            Order(
                order_id=order.order_id,
                command_id=command.command_id,
                trader=command.trader,
                market=order.market,
                side=order.side,
                price=order.price,
                size=size,
                leaves=size,
                cum=0,
                reduce_only=order.reduce_only,
                rates=rates,
            )
        )
        return _forward(command, order.market, order if size == order.size else replace(order, size=size))

    def _cancel(self, command: TraderCommand, cancel: CancelOrder) -> MatcherCommand:
        if cancel.market not in self.markets:
            raise _Refused(RiskReject.UNKNOWN_MARKET, cancel.market)
        return _forward(command, cancel.market, cancel)

    def _cancel_all(self, command: TraderCommand, cancel: CancelAllOrders) -> list[MatcherCommand]:
        if cancel.market is not None:
            if cancel.market not in self.markets:
                raise _Refused(RiskReject.UNKNOWN_MARKET, cancel.market)
            return [_forward(command, cancel.market, cancel)]
        markets = {
            o.market
            for o in self.ledger.trader_orders(command.trader)
            if o.leaves and (cancel.side is None or o.side is cancel.side)
        }
        return [_forward(command, m, replace(cancel, market=m)) for m in sorted(markets)]

    def _amend(self, command: TraderCommand, amend: AmendOrder) -> MatcherCommand:
        self._trading_market(amend.market)
        order = self.ledger.orders.get(amend.order_id)
        if (
            order is None
            or order.trader != command.trader
            or order.market != amend.market
            or not order.leaves
        ):
            raise _Refused(RiskReject.UNKNOWN_ORDER, amend.order_id)
        if order.amend is not None:
            raise _Refused(RiskReject.AMEND_PENDING, f"amendment {order.amend.command_id} is in flight")
        price = order.price if amend.new_price is None else amend.new_price
        size = order.size if amend.new_size is None else amend.new_size
        if price <= 0 or size <= order.cum:
            raise _Refused(
                RiskReject.INVALID_ORDER, f"price {price} ticks, size {size} lots, filled {order.cum}"
            )
        new_leaves = size - order.cum
        if order.reduce_only and new_leaves > order.leaves:
            room = self._reduce_only_room(command.trader, order.market, order.side, order.order_id)
            if new_leaves > room:
                raise _Refused(RiskReject.REDUCE_ONLY_WOULD_INCREASE, f"{new_leaves} lots > {room} reducible")
        d = self.markets[order.market].definition
        order.amend = PendingAmend(
            command.command_id, price, size, order_rates(d, order.side, price, order.reduce_only)
        )
        need = order.requirement()
        extra_usdc, extra_lots = need.usdc - order.reserved_usdc, need.inventory - order.reserved_inventory
        try:
            self._check_funds(command.trader, order.market, extra_usdc, extra_lots)
        except _Refused:
            order.amend = None
            raise
        self.ledger.hold(order, extra_usdc, extra_lots)
        return _forward(command, order.market, amend)

    def _withdraw(self, command: TraderCommand, request: RequestWithdrawal) -> WithdrawalRequested:
        if request.amount <= 0:
            raise _Refused(RiskReject.INVALID_WITHDRAWAL, f"amount {request.amount} micro-USDC")
        if command.ts_init > request.expire_at:
            raise _Refused(RiskReject.WITHDRAWAL_EXPIRED, f"expired at {request.expire_at}")
        account = self.ledger.accounts.get(command.trader)
        if account is not None and request.withdrawal_id in account.withdrawals:
            raise _Refused(RiskReject.DUPLICATE_WITHDRAWAL_ID, request.withdrawal_id)
        self._check_funds(command.trader, None, request.amount, 0)
        account = self.ledger.account(command.trader)
        account.free -= request.amount
        account.withdrawing += request.amount
        account.withdrawals[request.withdrawal_id] = request.amount
        return WithdrawalRequested(
            withdrawal_id=request.withdrawal_id,
            amount=request.amount,
            as_cxpt=request.as_cxpt,
            nonce=request.nonce,
            expire_at=request.expire_at,
            signature=request.signature,
        )

    def _trading_market(self, symbol: str) -> Market:
        market = self.markets.get(symbol)
        if market is None:
            raise _Refused(RiskReject.UNKNOWN_MARKET, symbol)
        if market.status is not MarketStatus.ACTIVE:
            raise _Refused(RiskReject.MARKET_NOT_ACTIVE, f"{symbol} is {market.status}")
        return market

    def _reduce_only_room(self, trader: str, market: str, side: Side, exclude: str | None) -> int:
        """Lots a reduce-only order on `side` may still take off the position (refuses if none)."""
        position = self.ledger.positions.get((trader, market))
        size = position.size if position is not None else 0
        if not (size < 0 if side is Side.BUY else size > 0):
            raise _Refused(RiskReject.REDUCE_ONLY_WOULD_INCREASE, f"position {size} lots, order side {side}")
        committed = sum(
            o.committed_lots()
            for o in self.ledger.trader_orders(trader)
            if o.market == market and o.reduce_only and o.side is side and o.order_id != exclude
        )
        room = abs(size) - committed
        if room <= 0:
            raise _Refused(
                RiskReject.REDUCE_ONLY_WOULD_INCREASE,
                f"open reduce-only orders already cover {abs(size)} lots",
            )
        return room

    def _check_funds(self, trader: str, market: str | None, usdc: int, lots: int) -> None:
        if lots > 0 and market is not None and lots > self.ledger.free_inventory(trader, market):
            have = self.ledger.free_inventory(trader, market)
            raise _Refused(RiskReject.INSUFFICIENT_INVENTORY, f"needs {lots} lots, {have} free")
        if usdc > self.ledger.free_usdc(trader):
            have = self.ledger.free_usdc(trader)
            raise _Refused(RiskReject.INSUFFICIENT_COLLATERAL, f"needs {usdc} micro-USDC, {have} free")

    # -- post-trade ----------------------------------------------------------------------------

    def apply_entry(self, entry: TradeLogEntry, owns: Callable[[str], bool] = _everyone) -> list[RiskEvent]:
        """Apply the events of one trade-log entry that concern traders `owns` accepts."""
        changes: list[RiskEvent] = []
        for posting in postings(entry, owns):
            changes.extend(self.apply_posting(posting))
        return changes

    def apply_posting(self, posting: Posting) -> list[RiskEvent]:
        """Apply one trade-log event; returns the changes traders see."""
        if posting.seq <= self.last_seq.get(posting.market, 0):
            return []
        self.last_seq[posting.market] = posting.seq
        handler = self._posting_handlers.get(type(posting.body))
        # TradeExecuted (fills come from OrderFilled), OrderRested, CommandRejected: nothing to do.
        return handler(posting, posting.body) if handler is not None else []

    def _market_created(self, posting: Posting, created: MarketCreated) -> list[RiskEvent]:
        self.apply_market(created.definition)
        return []

    def _status_changed(self, posting: Posting, changed: MarketStatusChanged) -> list[RiskEvent]:
        self.apply_market_status(posting.market, changed.status)
        return []

    def _cancelled(self, posting: Posting, cancelled: OrderCancelled) -> list[RiskEvent]:
        order = self._posted_order(posting, cancelled.order_id, cancelled.trader)
        _expect(
            0 < cancelled.cancelled_qty <= order.leaves,
            f"{order.order_id}: cancels {cancelled.cancelled_qty} lots",
        )
        self._begin_order(order)
        order.leaves -= cancelled.cancelled_qty
        order.size -= cancelled.cancelled_qty
        self.ledger.release_excess(order)
        return self._changes(ChangeReason.ORDER_CANCELLED, order.order_id)

    def _accepted(self, posting: Posting, accepted: OrderAccepted) -> list[RiskEvent]:
        order = self._posted_order(posting, accepted.order_id, accepted.trader)
        _expect(
            order.size == accepted.size and order.side is accepted.side,
            f"{order.order_id} accepted differently",
        )
        return []

    def _filled(self, posting: Posting, fill: OrderFilled) -> list[RiskEvent]:
        order = self._posted_order(posting, fill.order_id, fill.trader)
        _expect(0 < fill.last_qty <= order.leaves, f"{order.order_id}: fill of {fill.last_qty} lots")
        _expect(fill.side is order.side, f"{order.order_id}: fill on the other side")
        better_or_equal = (
            fill.last_px <= order.price if order.side is Side.BUY else fill.last_px >= order.price
        )
        _expect(
            better_or_equal, f"{order.order_id}: filled at {fill.last_px} through its price {order.price}"
        )
        self._begin_order(order)
        order.leaves -= fill.last_qty
        order.cum += fill.last_qty
        _expect(
            (order.leaves, order.cum) == (fill.leaves_qty, fill.cum_qty),
            f"{order.order_id}: leaves/cum {order.leaves}/{order.cum} != {fill.leaves_qty}/{fill.cum_qty}",
        )
        share, share_lots = self.ledger.take_excess(order)
        definition = self.markets[order.market].definition
        if not order.reduce_only:
            covered = covered_by_reservation(definition, order.side, fill.last_px, fill.last_qty, fill.fee)
            _expect(share >= covered, f"{order.order_id}: reservation share {share} < {covered} to cover")
        events = apply_fill(self.ledger, definition, order, fill, share=share, share_lots=share_lots)
        self.ledger.close_if_finished(order)
        return events + self._changes(ChangeReason.ORDER_FILLED, order.order_id)

    def _amended(self, posting: Posting, amended: OrderAmended) -> list[RiskEvent]:
        order = self._posted_order(posting, amended.order_id, amended.trader)
        pending = order.amend
        _expect(
            pending is not None and pending.command_id == posting.command_id,
            f"{order.order_id}: amended by {posting.command_id}, which risk did not forward",
        )
        assert pending is not None
        _expect(
            (amended.price, amended.size, amended.leaves_qty)
            == (pending.price, pending.size, pending.size - order.cum),
            f"{order.order_id}: amended to {amended.price}/{amended.size},"
            f" risk forwarded {pending.price}/{pending.size}",
        )
        self._begin_order(order)
        order.price, order.size, order.leaves, order.rates = (
            pending.price,
            pending.size,
            amended.leaves_qty,
            pending.rates,
        )
        order.amend = None
        self.ledger.release_excess(order)
        return self._changes(ChangeReason.ORDER_AMENDED, order.order_id)

    def _rejected(self, posting: Posting, rejected: OrderRejected) -> list[RiskEvent]:
        """The matcher refused a command risk forwarded: give back what it reserved."""
        order = self.ledger.orders.get(rejected.order_id or "")
        if order is None or order.trader != rejected.trader or order.market != posting.market:
            return []  # e.g. a cancel of an order that was already gone: nothing was reserved for it
        if order.amend is not None and order.amend.command_id == posting.command_id:
            self._begin_order(order)
            order.amend = None
        elif order.command_id == posting.command_id and order.cum == 0 and order.leaves == order.size:
            self._begin_order(order)
            order.leaves = order.size = 0
        else:
            return []
        self.ledger.release_excess(order)
        return self._changes(ChangeReason.ORDER_REJECTED, order.order_id)

    def _posted_order(self, posting: Posting, order_id: str, trader: str) -> Order:
        order = self.ledger.orders.get(order_id)
        if order is None or order.trader != trader or order.market != posting.market:
            raise LedgerInvariantError(f"{posting.event_id}: order {order_id} of {trader} is unknown to risk")
        self.ledger.touched_orders.add(order_id)
        return order

    # -- marks, funding, settlement ------------------------------------------------------------

    def _open_positions(self, market: str) -> list[tuple[str, Position]]:
        """This partition's open positions on `market`, by trader (a stable order for the events)."""
        return sorted(
            ((t, p) for (t, m), p in self.ledger.positions.items() if m == market and p.size),
            key=lambda x: x[0],
        )

    def _marked(self, posting: Posting, mark: MarkPriceSet) -> list[RiskEvent]:
        """Follow the mark; alert on positions that lost `ALERT_LOSS_BPS` of their collateral, and
        close those at `LIQUIDATION_LOSS_BPS` with a reduce-only market order (`drain_forward`)."""
        market = self.markets[posting.market]
        market.mark_price = mark.mark_price
        d = market.definition
        events: list[RiskEvent] = []
        for trader, position in self._open_positions(posting.market):
            if d.kind is MarketKind.OPTION and position.size > 0:
                continue  # a held option can lose its premium, nothing more: nothing to watch
            pnl = unrealized_pnl(
                Lots(position.size),
                MicroUsdc(position.basis),
                Ticks(mark.mark_price),
                MicroUsdc(d.quote_per_tick_lot),
            )
            loss = loss_bps(position.collateral, pnl)
            if loss < ALERT_LOSS_BPS:
                continue
            order_id = None
            if loss >= LIQUIDATION_LOSS_BPS and market.status is MarketStatus.ACTIVE:
                order_id = self._liquidate(posting, trader, position, mark.mark_price)
            events.append(
                LiquidationAlert(
                    trader=trader,
                    market=posting.market,
                    size=position.size,
                    mark_price=mark.mark_price,
                    collateral=position.collateral,
                    unrealized_pnl=pnl,
                    equity=position.collateral + pnl,
                    loss_bps=loss,
                    action=AlertAction.ALERT if order_id is None else AlertAction.LIQUIDATING,
                    order_id=order_id,
                )
            )
        return events

    def _liquidate(self, posting: Posting, trader: str, position: Position, mark: int) -> str | None:
        """Send a reduce-only IOC market order closing `position`; None if one is already out."""
        market = posting.market
        if any(o.liquidation and o.market == market for o in self.ledger.trader_orders(trader)):
            return None
        side = Side.BUY if position.size < 0 else Side.SELL
        order_id = str(uuid.uuid5(LIQUIDATIONS, f"{posting.event_id}:{trader}"))
        size, price = abs(position.size), liquidation_price(side, mark)
        # No reservation: closing frees collateral, and a fee it cannot pay falls on INSURANCE.
        order = Order(
            order_id=order_id,
            command_id=order_id,
            trader=trader,
            market=market,
            side=side,
            price=price,
            size=size,
            leaves=size,
            cum=0,
            reduce_only=True,
            rates=Rates(0),
            liquidation=True,
        )
        self.ledger.open_order(order)
        body = PlaceOrder(
            market=market,
            order_id=order_id,
            client_order_id="",
            side=side,
            order_type=OrderType.MARKET,
            price=price,
            size=size,
            time_in_force=TimeInForce.IOC,
            reduce_only=True,
            nonce=0,
            signature=b"",
        )
        self._forward.append(
            MatcherCommand(
                command_id=order_id, market=market, trader=trader, ts_init=posting.ts_event, body=body
            )
        )
        return order_id

    def _funded(self, posting: Posting, funding: FundingApplied) -> list[RiskEvent]:
        d = self.markets[posting.market].definition
        events: list[RiskEvent] = []
        if funding.rate_e9 == 0:
            return events
        for trader, position in self._open_positions(posting.market):
            self._begin(trader)
            events += pay_funding(self.ledger, d, trader, position, funding, ref=posting.command_id)
            events += self._changes(ChangeReason.FUNDING, posting.market)
        return events

    def _settled(self, posting: Posting, settled: MarketSettled) -> list[RiskEvent]:
        d = self.markets[posting.market].definition
        events: list[RiskEvent] = []
        for trader, position in self._open_positions(posting.market):
            self._begin(trader)
            price = settled.settlement_price
            events += settle_position(self.ledger, d, trader, position, price, ref=posting.command_id)
            events += self._changes(ChangeReason.SETTLEMENT, posting.market)
        return events

    def drain_forward(self) -> list[MatcherCommand]:
        """Commands risk itself sends to the matcher (liquidations) since the last call; forgets them."""
        forward, self._forward = self._forward, []
        return forward

    def drain_touched_orders(self) -> list[str]:
        """The ids of the orders changed or closed since the last call, sorted; forgets them."""
        touched = sorted(self.ledger.touched_orders)
        self.ledger.touched_orders.clear()
        return touched

    # -- reporting changes ---------------------------------------------------------------------

    def _begin(self, trader: str, market: str | None = None) -> None:
        """Start a step for `trader`: remember their buckets to report what changes."""
        self._before.clear()
        self._before_holding.clear()
        account = self.ledger.accounts.get(trader)
        self._before[trader] = account.snapshot() if account is not None else (0, 0, 0, 0)
        known = self.markets.get(market) if market is not None else None
        if known is not None and known.definition.kind is MarketKind.SPOT:
            holding = self.ledger.holdings.get((trader, known.definition.market))
            self._before_holding[(trader, known.definition.market)] = (
                (holding.held, holding.reserved) if holding is not None else (0, 0)
            )

    def _begin_order(self, order: Order) -> None:
        self._begin(order.trader, order.market)

    def _changes(self, reason: ChangeReason, ref: str) -> list[RiskEvent]:
        events: list[RiskEvent] = []
        for (trader, market), before in self._before_holding.items():
            holding = self.ledger.holdings.get((trader, market))
            if holding is not None and (holding.held, holding.reserved) != before:
                events.append(
                    InventoryChanged(
                        trader=trader,
                        market=market,
                        held=holding.held,
                        reserved=holding.reserved,
                        delta_held=holding.held - before[0],
                        reason=reason,
                        ref=ref,
                    )
                )
        for trader, snapshot in self._before.items():
            account = self.ledger.accounts.get(trader)
            if account is not None and account.snapshot() != snapshot:
                events.append(
                    BalanceChanged(
                        trader=trader,
                        free=account.free,
                        reserved=account.reserved,
                        withdrawing=account.withdrawing,
                        locked=account.locked,
                        delta_free=account.free - snapshot[0],
                        reason=reason,
                        ref=ref,
                    )
                )
        self._before.clear()
        self._before_holding.clear()
        return events

    # -- checking ------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise LedgerInvariantError unless the ledger balances exactly and every bucket agrees,
        and the nonce sets are well-formed."""
        try:
            self.nonces.validate()
        except NonceInvariantError as error:
            raise LedgerInvariantError(f"nonces: {error}") from error
        for order in self.ledger.orders.values():
            _expect(order.market in self.markets, f"order {order.order_id} on unknown market {order.market}")
        for _, symbol in self.ledger.positions:
            _expect(symbol in self.markets, f"position on unknown market {symbol}")
        self.ledger.validate(self.markets)

    def state_hash(self) -> str:
        """A digest of the whole state; the same inputs in the same order give the same hash."""
        markets = sorted(
            (s, repr(m.definition), m.status.value, m.mark_price) for s, m in self.markets.items()
        )
        state = (markets, sorted(self.last_seq.items()), self.ledger.state(), self.nonces.state_hash())
        return hashlib.blake2b(repr(state).encode(), digest_size=16).hexdigest()


# -- pure helpers ---------------------------------------------------------------------------------


def _forward(
    command: TraderCommand, market: str, body: PlaceOrder | CancelOrder | CancelAllOrders | AmendOrder
) -> MatcherCommand:
    return MatcherCommand(
        command_id=command.command_id,
        market=market,
        trader=command.trader,
        ts_init=command.ts_init,
        body=body,
    )


def _rejection(command: TraderCommand, refusal: _Refused) -> OrderRejected:
    body = command.body
    order_id = getattr(body, "order_id", None)
    client_order_id = getattr(body, "client_order_id", None)
    return OrderRejected(
        order_id=order_id if isinstance(order_id, str) else None,
        client_order_id=client_order_id if isinstance(client_order_id, str) else None,
        trader=command.trader,
        reason_code=int(refusal.code),
        reason=refusal.code.name,
        detail=refusal.detail,
    )


def _validate_definition(d: MarketDefinition) -> None:
    problems = []
    if d.quote_per_tick_lot <= 0:
        problems.append("quote_per_tick_lot must be positive")
    if not (0 <= d.maker_fee_bps <= 10_000 and 0 <= d.taker_fee_bps <= 10_000):
        problems.append("fees must be 0..10000 bps")
    if d.kind is MarketKind.OPTION and (d.strike is None or d.strike <= 0 or d.option_type is None):
        problems.append("an option needs a positive strike and an option type")
    if problems:
        raise InvalidRiskInput(f"{d.market}: " + "; ".join(problems))


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise LedgerInvariantError(message)
