"""Backtesting: a strategy against recorded market data, through the real matcher and risk cores.

    recorded commands ─┐                    ┌─▶ trade-log entry ─▶ RiskEngine.apply_entry (the
                       ├─▶ MatchingEngine ──┤     strategy's events and market events only)
    strategy commands ─┘  (one per market)  └─▶ callbacks: on_book, on_trade, on_fill, on_mark
      └─ RiskEngine.apply_command (pre-trade: nonce, collateral) ─▶ forwarded MatcherCommands

The recorded commands of every other trader are re-entered in their recorded order; the
strategy's commands are interleaved by time: a command placed while handling data at time `t`
is sent at `t + latency_us`, before the first recorded command later than that. Time comes only
from the data (no wall clock), so a run is a pure function of (data, strategy, parameters): two
runs give the same report, and `summary.json` carries both engines' final state hashes to prove it.

The strategy trades from one account, known to the real `RiskEngine` with a deposit
(`deposit_micro`): collateral is reserved before the matcher sees an order, fees, positions,
funding, settlement and liquidation are booked by the same code as in production. Every other
trader's orders bypass risk (the recording already passed it) and go straight to the matcher.

The strategy API (the callbacks and `Context`) is documented in docs/replay.md.
"""

from __future__ import annotations

import heapq
import importlib.util
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from msgspec.structs import replace

from services.common.money import Lots, MicroUsdc, Ticks, unrealized_pnl
from services.common.records import (
    CancelAllOrders,
    CancelOrder,
    DepositConfirmed,
    FundingApplied,
    LiquiditySide,
    MarketDefinition,
    MarketKind,
    MarketSettled,
    MarkPriceSet,
    MatcherCommand,
    OrderFilled,
    OrderRejected,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    TradeExecuted,
    TraderCommand,
)
from services.matcher.core.engine import Event, MatchingEngine, log_entry
from services.risk.core import FundingPaid, RiskEngine, RiskEvent

STRATEGY_TRADER = "0x" + "b4c7e57".rjust(40, "0")
"""The strategy's account: an address no recorded trader has."""
_IDS = uuid.UUID("0b5e27a1-3c1e-4d5a-9f0e-7a5c0ffee000")
"""uuid5 namespace of the strategy's order and command ids (derived from a counter: deterministic)."""
MAX_COMMANDS_PER_STEP = 10_000
"""A strategy that places this many commands in response to one recorded command is looping."""
_BOOK_EVENTS = ("OrderRested", "OrderCancelled", "OrderFilled", "OrderAmended", "MarketStatusChanged")


# -- what the strategy sees ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Depth:
    """A market's book after an entry: up to `levels` price levels a side, best first.

    `bids` and `asks` are (price in ticks, total size in lots) pairs.
    """

    market: str
    ts: int
    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]

    @property
    def best_bid(self) -> int | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> int | None:
        return self.asks[0][0] if self.asks else None


@dataclass(frozen=True, slots=True)
class Trade:
    """A trade printed on the market (anyone's, the strategy's own included)."""

    market: str
    ts: int
    trade_id: int
    price: int
    size: int
    aggressor_side: Side
    maker_trader: str
    taker_trader: str


@dataclass(frozen=True, slots=True)
class Fill:
    """One fill of one of the strategy's orders; `fee` in micro-USDC (what the matcher charged)."""

    market: str
    ts: int
    order_id: str
    trade_id: int
    side: Side
    liquidity: LiquiditySide
    price: int
    size: int
    fee: int
    cum_qty: int
    leaves_qty: int


@dataclass(frozen=True, slots=True)
class Mark:
    """A market's mark and index price (ticks), as the funding/expiry service set them."""

    market: str
    ts: int
    mark_price: int
    index_price: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """One of the strategy's commands refused, by risk (2xxx) or the matcher (3xxx)."""

    ts: int
    order_id: str | None
    reason_code: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class PositionView:
    """The strategy's position on one market as risk books it (lots, micro-USDC)."""

    size: int
    basis: int
    collateral: int
    realized_pnl: int


@dataclass(frozen=True, slots=True)
class BalanceView:
    """The strategy's USDC buckets as risk books them (micro-USDC)."""

    free: int
    reserved: int
    withdrawing: int
    locked: int


class Strategy(Protocol):
    """What a strategy may implement; every callback is optional (see `BaseStrategy`).

    Callbacks run after the entry that caused them was applied by both engines; commands placed
    in them are sent `latency_us` later. `on_book` and `on_trade` follow recorded commands only
    (the strategy's own results come back through `on_fill` and `on_reject`), so a strategy that
    quotes on every book change cannot feed on its own quotes.
    """

    def on_start(self, ctx: Context) -> None: ...
    def on_book(self, ctx: Context, depth: Depth) -> None: ...
    def on_trade(self, ctx: Context, trade: Trade) -> None: ...
    def on_fill(self, ctx: Context, fill: Fill) -> None: ...
    def on_mark(self, ctx: Context, mark: Mark) -> None: ...
    def on_reject(self, ctx: Context, rejection: Rejection) -> None: ...
    def on_end(self, ctx: Context) -> None: ...


class BaseStrategy:
    """Does nothing on every callback: subclass it and override what the strategy needs."""

    def on_start(self, ctx: Context) -> None:
        """Before the first recorded command (markets appear as their listings are replayed)."""

    def on_book(self, ctx: Context, depth: Depth) -> None:
        """After a recorded command changed `depth.market`'s book."""

    def on_trade(self, ctx: Context, trade: Trade) -> None:
        """After a recorded command printed a trade."""

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        """After one of the strategy's orders filled (the ledger already booked it)."""

    def on_mark(self, ctx: Context, mark: Mark) -> None:
        """After a mark price was set (the ledger already followed it)."""

    def on_reject(self, ctx: Context, rejection: Rejection) -> None:
        """After one of the strategy's commands was refused."""

    def on_end(self, ctx: Context) -> None:
        """After the last recorded command (commands placed here are still sent)."""


# -- what the harness records -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The account at one moment: cash buckets, PnL at the latest marks, and exposure per market.

    `equity` = free + reserved + withdrawing + locked + the positions' value at the marks
    (see `Backtest.equity`). `exposure` and `positions` map a market to its notional at the mark
    (signed, micro-USDC) and its size (signed lots).
    """

    ts: int
    equity: int
    free: int
    locked: int
    realized_pnl: int
    unrealized_pnl: int
    fees: int
    funding: int
    positions: dict[str, int]
    exposure: dict[str, int]


@dataclass
class Outcome:
    """Everything a run produced; `report.write_report` turns it into files."""

    trader: str
    deposit: int
    commands: int = 0
    entries: int = 0
    placed: int = 0
    fills: list[Fill] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    funding: int = 0
    liquidations: int = 0
    first_ts: int = 0
    last_ts: int = 0
    matcher_state_hash: str = ""
    risk_state_hash: str = ""


# -- the strategy's handle ----------------------------------------------------------------------


class Context:
    """The strategy's view of the exchange and its way to trade. Amounts are the exchange's
    integers: prices in ticks, sizes in lots, money in micro-USDC (docs/risk.md)."""

    def __init__(self, backtest: Backtest) -> None:
        self._bt = backtest

    @property
    def now(self) -> int:
        """Time of the data being handled, µs since 1970 (from the data, never the wall clock)."""
        return self._bt.now

    @property
    def trader(self) -> str:
        """The strategy's account address."""
        return self._bt.trader

    def markets(self) -> dict[str, MarketDefinition]:
        """The markets listed so far (the listing commands are part of the data)."""
        return {s: m.definition for s, m in self._bt.matcher.markets.items()}

    def depth(self, market: str, levels: int = 5) -> Depth:
        """The book of `market` now, `levels` levels a side."""
        return self._bt.depth(market, levels)

    def mark(self, market: str) -> int | None:
        """Latest mark price of `market` (ticks), None before the first."""
        return self._bt.marks.get(market)

    def place_limit(
        self,
        market: str,
        side: Side | str,
        size: int,
        price: int,
        *,
        post_only: bool = False,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
        reduce_only: bool = False,
        expire_at: int | None = None,
        client_order_id: str | None = None,
    ) -> str:
        """Send a limit order; returns its order id (fills come back through `on_fill`)."""
        return self._bt.place(
            market, Side(side), size, price, OrderType.LIMIT, TimeInForce(time_in_force),
            post_only=post_only, reduce_only=reduce_only, expire_at=expire_at,
            client_order_id=client_order_id,
        )  # fmt: skip

    def place_market(
        self, market: str, side: Side | str, size: int, worst_price: int, *, reduce_only: bool = False
    ) -> str:
        """Send an IOC market order that trades up to `worst_price`; returns its order id."""
        return self._bt.place(
            market, Side(side), size, worst_price, OrderType.MARKET, TimeInForce.IOC, reduce_only=reduce_only
        )

    def cancel(self, market: str, order_id: str) -> None:
        """Cancel one of the strategy's orders (an order already gone is refused, `on_reject`)."""
        self._bt.send(CancelOrder(market=market, order_id=order_id, nonce=0, signature=b""))

    def cancel_all(self, market: str | None = None, side: Side | str | None = None) -> None:
        """Cancel the strategy's open orders (of one market, or of one side)."""
        self._bt.send(
            CancelAllOrders(market=market, side=None if side is None else Side(side), nonce=0, signature=b"")
        )

    def open_orders(self, market: str | None = None) -> list[str]:
        """Ids of the strategy's orders risk still holds open, oldest first."""
        ledger = self._bt.risk.ledger
        return [o.order_id for o in ledger.trader_orders(self._bt.trader) if market in (None, o.market)]

    def position(self, market: str) -> PositionView:
        """The strategy's position on `market` (zeros when flat or never traded)."""
        p = self._bt.risk.ledger.positions.get((self._bt.trader, market))
        return (
            PositionView(0, 0, 0, 0)
            if p is None
            else PositionView(p.size, p.basis, p.collateral, p.realized_pnl)
        )

    def holding(self, market: str) -> int:
        """Synth lots the strategy holds on a spot market (free and reserved)."""
        h = self._bt.risk.ledger.holdings.get((self._bt.trader, market))
        return 0 if h is None else h.held + h.reserved

    def balance(self) -> BalanceView:
        """The strategy's USDC buckets."""
        a = self._bt.risk.ledger.accounts.get(self._bt.trader)
        return (
            BalanceView(0, 0, 0, 0) if a is None else BalanceView(a.free, a.reserved, a.withdrawing, a.locked)
        )

    def equity(self) -> int:
        """Cash plus the positions' value at the latest marks (micro-USDC)."""
        return self._bt.sample().equity


# -- the harness ----------------------------------------------------------------------------------


class Backtest:
    """One run: a fresh matcher, a fresh risk engine holding the strategy's account, the strategy."""

    def __init__(
        self,
        strategy: Any,
        *,
        deposit_micro: int,
        latency_us: int = 0,
        trader: str = STRATEGY_TRADER,
        depth_levels: int = 5,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.strategy = strategy
        self.trader = trader
        self.latency_us = latency_us
        self.depth_levels = depth_levels
        self.matcher = MatchingEngine()
        self.risk = RiskEngine()
        self.ctx = Context(self)
        self.now = 0
        self.marks: dict[str, int] = {}
        self.last_price: dict[str, int] = {}
        self.outcome = Outcome(trader=trader, deposit=deposit_micro)
        self._pending: list[tuple[int, int, TraderCommand]] = []
        self._sequence = 0
        self._nonce = 0
        self._progress = progress
        self._deposit(deposit_micro)

    # -- running -----------------------------------------------------------------------------

    def run(self, commands: Iterable[tuple[str, MatcherCommand]]) -> Outcome:
        """Replay `commands` (source, command) with the strategy trading among them."""
        self._call("on_start")
        for source, command in commands:
            self._send_pending(until=command.ts_init)
            self.now = max(self.now, command.ts_init)
            if not self.outcome.first_ts:
                self.outcome.first_ts = command.ts_init
            self.outcome.commands += 1
            self._book(command, source, recorded=True)
            if self._progress is not None:
                self._progress(1)
        self._call("on_end")
        self._send_pending(until=None)
        self.outcome.last_ts = self.now
        self.outcome.samples.append(self.sample())
        self.matcher.validate()
        self.risk.validate()
        self.outcome.matcher_state_hash = self.matcher.state_hash()
        self.outcome.risk_state_hash = self.risk.state_hash()
        return self.outcome

    def _deposit(self, amount: int) -> None:
        if amount > 0:
            body = DepositConfirmed(
                amount=amount, chain_id=0, tx_hash="backtest", log_index=0, block_number=0
            )
            self.risk.apply_deposit(self.trader, body)

    def _book(self, command: MatcherCommand, source: str, *, recorded: bool) -> None:
        """One command through the matcher; its entry to risk (the strategy's part) and to the strategy."""
        entry = log_entry(command, self.matcher.apply(command), source)
        self.outcome.entries += 1
        risk_events = self.risk.apply_entry(entry, self._owns)
        for liquidation in self.risk.drain_forward():  # risk closing the strategy's position itself
            self.outcome.liquidations += 1
            self._book(liquidation, f"liquidation:{liquidation.command_id}", recorded=False)
        self._observe(entry.market, entry.events, risk_events, recorded=recorded)

    def _owns(self, trader: str) -> bool:
        return trader == self.trader

    def _observe(  # noqa: PLR0912 - one branch per event kind reads best as one table
        self, market: str, events: list[Event], risk_events: list[RiskEvent], *, recorded: bool
    ) -> None:
        """Follow prices, record the strategy's fills, then call the strategy back."""
        calls: list[tuple[str, Any]] = []
        sample = False
        book_changed = False
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                assert isinstance(event, TradeExecuted)
                self.last_price[market] = event.price
                if recorded:
                    calls.append(("on_trade", _trade(market, self.now, event)))
            elif kind is OrderFilled:
                assert isinstance(event, OrderFilled)
                if event.trader == self.trader:
                    fill = _fill(market, self.now, event)
                    self.outcome.fills.append(fill)
                    calls.append(("on_fill", fill))
                    sample = True
            elif kind is MarkPriceSet:
                assert isinstance(event, MarkPriceSet)
                self.marks[market] = event.mark_price
                calls.append(("on_mark", Mark(market, self.now, event.mark_price, event.index_price)))
                sample = True
            elif kind is OrderRejected:
                assert isinstance(event, OrderRejected)
                if event.trader == self.trader:
                    calls.append(("on_reject", _rejection(self.now, event)))
            elif kind in (FundingApplied, MarketSettled):
                sample = True
            if recorded and kind.__name__ in _BOOK_EVENTS:
                book_changed = True
        self.outcome.funding += sum(e.amount for e in risk_events if isinstance(e, FundingPaid))
        if sample:
            self.outcome.samples.append(self.sample())
        for name, argument in calls:
            self._call(name, argument)
        if book_changed and market in self.matcher.markets:
            self._call("on_book", self.depth(market, self.depth_levels))

    def _call(self, name: str, *arguments: Any) -> None:
        callback = getattr(self.strategy, name, None)
        if callback is not None:
            callback(self.ctx, *arguments)

    # -- the strategy's commands ----------------------------------------------------------------

    def place(  # noqa: PLR0917 - the order's fields, in PlaceOrder's order
        self,
        market: str,
        side: Side,
        size: int,
        price: int,
        order_type: OrderType,
        time_in_force: TimeInForce,
        *,
        post_only: bool = False,
        reduce_only: bool = False,
        expire_at: int | None = None,
        client_order_id: str | None = None,
    ) -> str:
        """Queue a PlaceOrder; returns its (deterministic) order id."""
        order_id = str(uuid.uuid5(_IDS, f"order:{self._sequence}"))
        body = PlaceOrder(
            market=market, order_id=order_id, client_order_id=client_order_id or f"bt{self._sequence}",
            side=side, order_type=order_type, price=price, size=size, time_in_force=time_in_force,
            post_only=post_only, reduce_only=reduce_only, expire_at=expire_at, nonce=0, signature=b"",
        )  # fmt: skip
        self.send(body)
        self.outcome.placed += 1
        return order_id

    def send(self, body: Any) -> None:
        """Queue one trader command, to be sent `latency_us` after now."""
        self._sequence += 1
        at = self.now + self.latency_us
        # Nonces are µs timestamps, unique and increasing per signer (risk checks them).
        self._nonce = max(self._nonce + 1, at)
        body = _with_nonce(body, self._nonce)
        command = TraderCommand(
            command_id=str(uuid.uuid5(_IDS, f"command:{self._sequence}")),
            trader=self.trader,
            ts_init=at,
            body=body,
        )
        heapq.heappush(self._pending, (at, self._sequence, command))

    def _send_pending(self, until: int | None) -> None:
        """Send the queued strategy commands due at or before `until` (None: all of them)."""
        sent = 0
        while self._pending and (until is None or self._pending[0][0] <= until):
            at, _, command = heapq.heappop(self._pending)
            self.now = max(self.now, at)
            sent += 1
            if sent > MAX_COMMANDS_PER_STEP:
                raise RuntimeError(
                    f"the strategy sent over {MAX_COMMANDS_PER_STEP} commands at {at}: a loop?"
                )
            result = self.risk.apply_command(command)
            refusal = result.rejection
            if refusal is not None:
                self.outcome.rejections.append(_rejection(self.now, refusal))
                self._call("on_reject", self.outcome.rejections[-1])
            for forwarded in result.forward:
                self._book(forwarded, f"strategy:{command.command_id}", recorded=False)

    # -- reading ------------------------------------------------------------------------------

    def depth(self, market: str, levels: int) -> Depth:
        """`levels` levels a side of `market`'s book (empty for an unknown market)."""
        state = self.matcher.markets.get(market)
        if state is None:
            return Depth(market, self.now, (), ())
        book = state.book

        def side(book_side: Any) -> tuple[tuple[int, int], ...]:
            keys = heapq.nsmallest(levels, book_side.levels)
            return tuple(
                (book_side.price(k), sum(o.leaves_qty for o in book_side.levels[k].values())) for k in keys
            )

        return Depth(market, self.now, side(book.bids), side(book.asks))

    def sample(self) -> Sample:
        """The account now, valued at the latest marks (the last trade price before a first mark)."""
        ledger = self.risk.ledger
        account = ledger.accounts.get(self.trader)
        cash = (
            0 if account is None else account.free + account.reserved + account.withdrawing + account.locked
        )
        realized = unrealized = value_total = 0
        positions: dict[str, int] = {}
        exposure: dict[str, int] = {}
        for (trader, market), position in ledger.positions.items():
            if trader != self.trader:
                continue
            realized += position.realized_pnl
            definition = self.matcher.markets[market].definition
            price = self.marks.get(market, self.last_price.get(market, 0))
            positions[market] = position.size
            value = price * position.size * definition.quote_per_tick_lot
            exposure[market] = value
            if not position.size:
                continue
            pnl = unrealized_pnl(
                Lots(position.size),
                MicroUsdc(position.basis),
                Ticks(price),
                MicroUsdc(definition.quote_per_tick_lot),
            )
            unrealized += pnl
            # A perpetual's or future's collateral is in `locked` already: add what it gained or
            # lost. An option's premium changed hands at the fill: add (or owe) its value.
            value_total += value if definition.kind is MarketKind.OPTION else pnl
        for (trader, market), holding in ledger.holdings.items():
            if trader != self.trader:
                continue
            definition = self.matcher.markets[market].definition
            price = self.marks.get(market, self.last_price.get(market, 0))
            lots = holding.held + holding.reserved
            positions[market] = lots
            exposure[market] = price * lots * definition.quote_per_tick_lot
            value_total += exposure[market]
        fees = sum(f.fee for f in self.outcome.fills)
        return Sample(
            ts=self.now, equity=cash + value_total, free=0 if account is None else account.free,
            locked=0 if account is None else account.locked, realized_pnl=realized, unrealized_pnl=unrealized,
            fees=fees, funding=self.outcome.funding, positions=positions, exposure=exposure,
        )  # fmt: skip


def _with_nonce(body: Any, nonce: int) -> Any:
    return replace(body, nonce=nonce)


def _trade(market: str, ts: int, e: TradeExecuted) -> Trade:
    return Trade(market, ts, e.trade_id, e.price, e.size, e.aggressor_side, e.maker_trader, e.taker_trader)


def _fill(market: str, ts: int, e: OrderFilled) -> Fill:
    return Fill(
        market=market, ts=ts, order_id=e.order_id, trade_id=e.trade_id, side=e.side,
        liquidity=e.liquidity_side, price=e.last_px, size=e.last_qty, fee=e.fee, cum_qty=e.cum_qty,
        leaves_qty=e.leaves_qty,
    )  # fmt: skip


def _rejection(ts: int, e: OrderRejected) -> Rejection:
    return Rejection(ts, e.order_id, e.reason_code, e.reason, e.detail or "")


def load_strategy(spec: str, params: dict[str, Any] | None = None) -> Any:
    """The strategy `path/to/file.py:ClassName`, instantiated with `params` as keyword arguments."""
    path_text, _, name = spec.rpartition(":")
    if not path_text or not name:
        raise ValueError(f"expected path/to/strategy.py:ClassName, got {spec!r}")
    path = Path(path_text)
    module_spec = importlib.util.spec_from_file_location(f"cxpt_strategy_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f"{path} has no {name}")
    return cls(**(params or {}))


__all__ = [
    "STRATEGY_TRADER",
    "Backtest",
    "BalanceView",
    "BaseStrategy",
    "Context",
    "Depth",
    "Fill",
    "Mark",
    "Outcome",
    "PositionView",
    "Rejection",
    "Sample",
    "Strategy",
    "Trade",
    "load_strategy",
]
