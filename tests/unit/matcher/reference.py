"""A naive reference matcher: the matching engine's spec written for clarity, never for speed.

It implements the contract of `services/matcher/core/engine.py` independently (nothing here comes
from `services/matcher`), so the property tests can run both on the same commands and demand the
same results. Each market is a plain list of resting orders; the queue of a side is found by
sorting that list every time it is needed (best price first, then the oldest priority stamp).

The rules, as the engine's docstring, `docs/matching.md` and the schemas state them:

* Time comes only from `ts_init`; each market's clock is `max(clock, ts_init)` and is swept for
  expired GTT orders (expiry at or before the clock) at the start of every command on the market,
  earliest expiry first, ties in time priority.
* A placed order yields `OrderAccepted`, then per match `TradeExecuted`, maker `OrderFilled`,
  taker `OrderFilled`, then `OrderRested` or `OrderCancelled` for whatever is left.
* Self-trade prevention follows the taker's mode; FOK and post-only refusals have no side effects;
  MARKET orders are IOC or FOK and never rest.
* Amend: a price change or a size increase gets a new priority stamp, a size decrease keeps it;
  an amend that would cross is refused.
* Cancel-all cancels in the order the orders reached the book; settling or deleting a market
  cancels the bids, then the asks, each in priority order.
* Ids: a venue id must differ from every open order's in the market, a client id (when not empty)
  from the trader's open orders'; an id of a closed order may come back.
* Refusals carry the engine's codes, reasons and detail texts (the property tests compare them all),
  checked in the engine's order so that the first failing check names the refusal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from services.common.codes import CancelReason, MatcherReject
from services.common.records import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    CommandRejected,
    CreateMarket,
    LiquiditySide,
    MarketCreated,
    MarketDefinition,
    MarketKind,
    MarketStatus,
    MarketStatusChanged,
    MatcherCommand,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRested,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    SetMarketStatus,
    Side,
    TimeInForce,
    TradeExecuted,
)

Event = (
    MarketCreated
    | MarketStatusChanged
    | OrderAccepted
    | OrderRejected
    | OrderRested
    | OrderFilled
    | OrderCancelled
    | OrderAmended
    | TradeExecuted
    | CommandRejected
)

MS, STP, TIF = MarketStatus, SelfTradePrevention, TimeInForce

LEGAL_STATUS_CHANGES = {
    MS.ACTIVE: {MS.PAUSED, MS.SETTLED, MS.DELETED},
    MS.PAUSED: {MS.ACTIVE, MS.SETTLED, MS.DELETED},
    MS.SETTLED: {MS.DELETED},
    MS.DELETED: set(),
}
"""Where each market status may go; SETTLED and DELETED close the book."""

BPS = 10_000


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """Same shape as the engine's CommandResult: the market, the seq of the first event, events."""

    market: str
    first_seq: int
    events: list[Event]


@dataclass(slots=True, eq=False)  # identity: list.remove must take this very order
class Order:
    """A resting order (or the taker being matched). `stamp` orders time priority: lower is older."""

    order_id: str
    client_order_id: str
    trader: str
    side: Side
    price: int
    size: int
    expire_at: int | None
    stp: SelfTradePrevention
    stamp: int
    filled: int = 0

    @property
    def open_qty(self) -> int:
        return self.size - self.filled


@dataclass(slots=True)
class Market:
    """One market: parameters, status, clock, counters and the unsorted list of resting orders."""

    definition: MarketDefinition
    status: MarketStatus
    clock: int
    last_seq: int = 0
    last_trade_id: int = 0
    last_stamp: int = 0
    resting: list[Order] = field(default_factory=list)

    def next_stamp(self) -> int:
        self.last_stamp += 1
        return self.last_stamp


class Refusal(Exception):
    """Stops a command; becomes an OrderRejected or CommandRejected event."""

    def __init__(self, code: MatcherReject, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


# -- reading a book ---------------------------------------------------------------------------------


def opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def queue(market: Market, side: Side) -> list[Order]:
    """The resting orders of `side` in matching order: best price first, then oldest first."""
    if side is Side.BUY:
        return sorted((o for o in market.resting if o.side is side), key=lambda o: (-o.price, o.stamp))
    return sorted((o for o in market.resting if o.side is side), key=lambda o: (o.price, o.stamp))


def best_price(market: Market, side: Side) -> int | None:
    orders = queue(market, side)
    return orders[0].price if orders else None


def reaches(side: Side, limit: int, resting_price: int) -> bool:
    """Whether an order on `side` with price `limit` may trade at `resting_price`."""
    return limit >= resting_price if side is Side.BUY else limit <= resting_price


# -- events -------------------------------------------------------------------------------------------


def cancelled(order: Order, reason: CancelReason) -> OrderCancelled:
    """All of the order's open quantity leaves the book."""
    return OrderCancelled(
        order_id=order.order_id,
        trader=order.trader,
        side=order.side,
        price=order.price,
        cancelled_qty=order.open_qty,
        reason_code=int(reason),
        reason=reason.name,
    )


def filled(order: Order, trade: TradeExecuted, liquidity: LiquiditySide, fee: int) -> OrderFilled:
    return OrderFilled(
        order_id=order.order_id,
        trader=order.trader,
        trade_id=trade.trade_id,
        side=order.side,
        liquidity_side=liquidity,
        last_px=trade.price,
        last_qty=trade.size,
        cum_qty=order.filled,
        leaves_qty=order.open_qty,
        fee=fee,
    )


def fee(notional: int, bps: int) -> int:
    """Fees round up: ceil(notional × bps / 10000), with integers only."""
    return (notional * bps + BPS - 1) // BPS


def refusal_event(command: MatcherCommand, refusal: Refusal) -> OrderRejected | CommandRejected:
    """Order commands from a named trader are refused to that trader; anything else is a command."""
    body = command.body
    code, name, detail = int(refusal.code), refusal.code.name, refusal.detail
    if not command.trader or isinstance(body, CreateMarket | SetMarketStatus):
        return CommandRejected(reason_code=code, reason=name, detail=detail)
    order_id = body.order_id if isinstance(body, PlaceOrder | CancelOrder | AmendOrder) else None
    client_order_id = body.client_order_id if isinstance(body, PlaceOrder | CancelOrder) else None
    return OrderRejected(
        order_id=order_id,
        client_order_id=client_order_id,
        trader=command.trader,
        reason_code=code,
        reason=name,
        detail=detail,
    )


# -- the matcher --------------------------------------------------------------------------------------


class ReferenceMatcher:
    """Markets by symbol; `apply` takes one command and returns what it did."""

    def __init__(self) -> None:
        self.markets: dict[str, Market] = {}

    def apply(self, command: MatcherCommand) -> ReferenceResult:
        events: list[Event] = []
        market = self.markets.get(command.market)
        if market is not None:
            market.clock = max(market.clock, command.ts_init)
            self._expire(market, events)
        try:
            self._handle(command, events)
        except Refusal as refusal:
            events.append(refusal_event(command, refusal))
        market = self.markets.get(command.market)
        if market is None:  # nothing is numbered on a market that does not exist
            return ReferenceResult(command.market, 0, events)
        first_seq = market.last_seq + 1
        market.last_seq += len(events)
        return ReferenceResult(command.market, first_seq, events)

    def _handle(self, command: MatcherCommand, events: list[Event]) -> None:
        body = command.body
        if isinstance(body, PlaceOrder):
            self._place(command, body, events)
        elif isinstance(body, CancelOrder):
            self._cancel(command, body, events)
        elif isinstance(body, CancelAllOrders):
            self._cancel_all(command, body, events)
        elif isinstance(body, AmendOrder):
            self._amend(command, body, events)
        elif isinstance(body, CreateMarket):
            self._create(command, body, events)
        elif isinstance(body, SetMarketStatus):
            self._set_status(command, body, events)
        else:
            raise Refusal(MatcherReject.UNSUPPORTED_COMMAND, type(body).__name__)

    # -- time -----------------------------------------------------------------------------------------

    def _expire(self, market: Market, events: list[Event]) -> None:
        """GTT orders whose expiry is at or before the clock leave, earliest expiry (then oldest) first."""
        due = [o for o in market.resting if o.expire_at is not None and o.expire_at <= market.clock]
        for order in sorted(due, key=lambda o: (o.expire_at or 0, o.stamp)):
            market.resting.remove(order)
            events.append(cancelled(order, CancelReason.EXPIRED))

    # -- orders ---------------------------------------------------------------------------------------

    def _place(self, command: MatcherCommand, order: PlaceOrder, events: list[Event]) -> None:
        market = self._active_market(command, order.market)
        trader = _named_trader(command)
        _check_new_order(market, trader, order)
        best = best_price(market, opposite(order.side))
        if order.post_only and best is not None and reaches(order.side, order.price, best):
            raise Refusal(MatcherReject.POST_ONLY_WOULD_CROSS, f"best opposite price {best}")
        if order.time_in_force is TIF.FOK and not self._would_fill_completely(market, trader, order):
            raise Refusal(MatcherReject.FOK_WOULD_NOT_FILL, "not enough liquidity at or inside the price")
        taker = Order(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            trader=trader,
            side=order.side,
            price=order.price,
            size=order.size,
            expire_at=order.expire_at,
            stp=order.stp,
            stamp=market.next_stamp(),
        )
        events.append(_accepted(trader, order))
        stopped_by_stp = self._match(market, taker, events)
        if taker.open_qty == 0:
            return
        if stopped_by_stp:
            events.append(cancelled(taker, CancelReason.SELF_TRADE_PREVENTED))
        elif order.order_type is OrderType.LIMIT and order.time_in_force in (TIF.GTC, TIF.GTT):
            market.resting.append(taker)
            events.append(
                OrderRested(
                    order_id=taker.order_id,
                    trader=trader,
                    side=taker.side,
                    price=taker.price,
                    leaves_qty=taker.open_qty,
                )
            )
        else:
            events.append(cancelled(taker, CancelReason.IOC_REMAINDER))

    def _would_fill_completely(self, market: Market, trader: str, order: PlaceOrder) -> bool:
        """FOK: match a throw-away copy of the book and see whether nothing is left."""
        scratch = dataclasses.replace(market, resting=[dataclasses.replace(o) for o in market.resting])
        taker = Order(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            trader=trader,
            side=order.side,
            price=order.price,
            size=order.size,
            expire_at=None,
            stp=order.stp,
            stamp=0,
        )
        self._match(scratch, taker, [])
        return taker.open_qty == 0

    def _match(self, market: Market, taker: Order, events: list[Event]) -> bool:
        """Trade `taker` against the head of the opposite queue while it reaches; True if STP stopped it."""
        while taker.open_qty > 0:
            makers = queue(market, opposite(taker.side))
            if not makers or not reaches(taker.side, taker.price, makers[0].price):
                return False
            maker = makers[0]
            if maker.trader == taker.trader:
                if taker.stp in (STP.CANCEL_MAKER, STP.CANCEL_BOTH):
                    market.resting.remove(maker)
                    events.append(cancelled(maker, CancelReason.SELF_TRADE_PREVENTED))
                if taker.stp is not STP.CANCEL_MAKER:
                    return True
                continue
            self._trade(market, maker, taker, events)
        return False

    def _trade(self, market: Market, maker: Order, taker: Order, events: list[Event]) -> None:
        qty = min(maker.open_qty, taker.open_qty)
        definition = market.definition
        value = maker.price * qty * definition.quote_per_tick_lot
        market.last_trade_id += 1
        trade = TradeExecuted(
            trade_id=market.last_trade_id,
            price=maker.price,
            size=qty,
            aggressor_side=taker.side,
            maker_order_id=maker.order_id,
            maker_trader=maker.trader,
            taker_order_id=taker.order_id,
            taker_trader=taker.trader,
            notional=value,
            maker_fee=fee(value, definition.maker_fee_bps),
            taker_fee=fee(value, definition.taker_fee_bps),
        )
        maker.filled += qty
        taker.filled += qty
        if maker.open_qty == 0:
            market.resting.remove(maker)
        events.append(trade)
        events.append(filled(maker, trade, LiquiditySide.MAKER, trade.maker_fee))
        events.append(filled(taker, trade, LiquiditySide.TAKER, trade.taker_fee))

    def _cancel(self, command: MatcherCommand, cancel: CancelOrder, events: list[Event]) -> None:
        market = self._existing_market(command, cancel.market)
        order = _own_order(market, _named_trader(command), cancel.order_id, cancel.client_order_id)
        market.resting.remove(order)
        events.append(cancelled(order, CancelReason.USER_CANCELLED))

    def _cancel_all(self, command: MatcherCommand, cancel: CancelAllOrders, events: list[Event]) -> None:
        market = self._existing_market(command, cancel.market or command.market)
        trader = _named_trader(command)
        mine = [
            o for o in market.resting if o.trader == trader and (cancel.side is None or o.side is cancel.side)
        ]
        for order in sorted(mine, key=lambda o: o.stamp):  # in the order they reached the book
            market.resting.remove(order)
            events.append(cancelled(order, CancelReason.USER_CANCELLED))

    def _amend(self, command: MatcherCommand, amend: AmendOrder, events: list[Event]) -> None:
        market = self._active_market(command, amend.market)
        order = _own_order(market, _named_trader(command), amend.order_id, None)
        price = order.price if amend.new_price is None else amend.new_price
        size = order.size if amend.new_size is None else amend.new_size
        if price == order.price and size == order.size:
            raise Refusal(MatcherReject.INVALID_AMEND, "nothing to change")
        if price <= 0:
            raise Refusal(MatcherReject.INVALID_PRICE, f"price {price} ticks")
        if size <= order.filled or size < market.definition.min_size:
            raise Refusal(MatcherReject.INVALID_AMEND, f"size {size} not above filled {order.filled}")
        best = best_price(market, opposite(order.side))
        if best is not None and reaches(order.side, price, best):
            raise Refusal(MatcherReject.AMEND_WOULD_CROSS, f"best opposite price {best}")
        keeps_priority = price == order.price and size < order.size
        if not keeps_priority:
            order.stamp = market.next_stamp()
        order.price, order.size = price, size
        events.append(
            OrderAmended(
                order_id=order.order_id,
                trader=order.trader,
                side=order.side,
                price=price,
                size=size,
                leaves_qty=order.open_qty,
                priority_kept=keeps_priority,
            )
        )

    # -- markets --------------------------------------------------------------------------------------

    def _create(self, command: MatcherCommand, create: CreateMarket, events: list[Event]) -> None:
        if command.market in self.markets:
            raise Refusal(MatcherReject.MARKET_EXISTS, command.market)
        problems = _definition_problems(command.market, create.definition)
        if problems:
            raise Refusal(MatcherReject.INVALID_MARKET_DEFINITION, "; ".join(problems))
        definition = create.definition
        self.markets[command.market] = Market(definition, definition.status, clock=command.ts_init)
        events.append(MarketCreated(definition=definition))

    def _set_status(self, command: MatcherCommand, change: SetMarketStatus, events: list[Event]) -> None:
        market = self._existing_market(command, command.market)
        previous = market.status
        if change.status not in LEGAL_STATUS_CHANGES[previous]:
            raise Refusal(MatcherReject.ILLEGAL_STATUS_TRANSITION, f"{previous} → {change.status}")
        market.status = change.status
        events.append(MarketStatusChanged(previous=previous, status=change.status, reason=change.reason))
        if change.status in (MS.SETTLED, MS.DELETED):
            for order in queue(market, Side.BUY) + queue(market, Side.SELL):
                market.resting.remove(order)
                events.append(cancelled(order, CancelReason.MARKET_CLOSED))

    def _existing_market(self, command: MatcherCommand, symbol: str) -> Market:
        if symbol != command.market:
            raise Refusal(MatcherReject.MARKET_MISMATCH, f"{symbol} sent on {command.market}'s partition")
        if symbol not in self.markets:
            raise Refusal(MatcherReject.UNKNOWN_MARKET, symbol)
        return self.markets[symbol]

    def _active_market(self, command: MatcherCommand, symbol: str) -> Market:
        market = self._existing_market(command, symbol)
        if market.status is not MS.ACTIVE:
            raise Refusal(MatcherReject.MARKET_NOT_ACTIVE, f"{symbol} is {market.status}")
        return market


# -- rules without state ------------------------------------------------------------------------------


def _named_trader(command: MatcherCommand) -> str:
    if not command.trader:
        raise Refusal(MatcherReject.MISSING_TRADER, "order commands must name their trader")
    return command.trader


def _check_new_order(market: Market, trader: str, order: PlaceOrder) -> None:
    """The checks a new order passes before it may touch the book, in the engine's order."""
    if order.size <= 0:
        raise Refusal(MatcherReject.INVALID_SIZE, f"size {order.size} lots")
    if order.size < market.definition.min_size:
        raise Refusal(MatcherReject.BELOW_MIN_SIZE, f"size {order.size} < {market.definition.min_size} lots")
    if order.price <= 0:
        raise Refusal(MatcherReject.INVALID_PRICE, f"price {order.price} ticks")
    rests = order.time_in_force in (TIF.GTC, TIF.GTT)
    if order.order_type is OrderType.MARKET and (order.post_only or rests):
        raise Refusal(MatcherReject.INVALID_ORDER_FLAGS, "MARKET orders are IOC or FOK and never post-only")
    if order.post_only and not rests:
        raise Refusal(MatcherReject.INVALID_ORDER_FLAGS, "post-only orders must be GTC or GTT")
    if (order.time_in_force is TIF.GTT) != (order.expire_at is not None):
        raise Refusal(MatcherReject.INVALID_EXPIRY, "expire_at is required for GTT and only for GTT")
    if order.expire_at is not None and order.expire_at <= market.clock:
        raise Refusal(MatcherReject.INVALID_EXPIRY, "expire_at is not in the future")
    if any(o.order_id == order.order_id for o in market.resting):
        raise Refusal(MatcherReject.DUPLICATE_ORDER_ID, order.order_id)
    if order.client_order_id and any(
        o.trader == trader and o.client_order_id == order.client_order_id for o in market.resting
    ):
        raise Refusal(MatcherReject.DUPLICATE_CLIENT_ORDER_ID, order.client_order_id)


def _own_order(market: Market, trader: str, order_id: str | None, client_order_id: str | None) -> Order:
    """The trader's resting order by venue id (or else client id); others' orders look unknown."""
    if order_id is not None:
        mine = [o for o in market.resting if o.order_id == order_id and o.trader == trader]
    elif client_order_id is not None:
        mine = [o for o in market.resting if o.client_order_id == client_order_id and o.trader == trader]
    else:
        mine = []
    if not mine:
        raise Refusal(MatcherReject.UNKNOWN_ORDER, order_id or client_order_id or "no id given")
    return mine[0]


def _definition_problems(symbol: str, d: MarketDefinition) -> list[str]:
    problems = []
    if d.market != symbol:
        problems.append(f"definition names {d.market}")
    if d.quote_per_tick_lot <= 0 or d.min_size < 1:
        problems.append("quote_per_tick_lot and min_size must be positive")
    if not (0 <= d.maker_fee_bps <= BPS and 0 <= d.taker_fee_bps <= BPS):
        problems.append("fees must be 0..10000 bps")
    if d.status not in (MS.ACTIVE, MS.PAUSED):
        problems.append("a market starts ACTIVE or PAUSED")
    if d.kind in (MarketKind.FUTURE, MarketKind.OPTION) and d.expiry is None:
        problems.append(f"a {d.kind} needs an expiry")
    if d.kind is MarketKind.OPTION and (d.strike is None or d.strike <= 0 or d.option_type is None):
        problems.append("an option needs a positive strike and an option type")
    return problems


def _accepted(trader: str, order: PlaceOrder) -> OrderAccepted:
    return OrderAccepted(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        trader=trader,
        side=order.side,
        order_type=order.order_type,
        price=order.price,
        size=order.size,
        time_in_force=order.time_in_force,
        post_only=order.post_only,
        reduce_only=order.reduce_only,
        expire_at=order.expire_at,
    )
