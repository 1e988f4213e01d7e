"""Risk wired to the real matcher, the way the pipeline runs them, for tests.

    trader command ─▶ RiskEngine.apply_command ─▶ forwarded MatcherCommands ─▶ MatchingEngine.apply
        ─▶ trade-log entry ─▶ its events (numbered per market) ─▶ RiskEngine.apply_posting, one at a time

`validate()` runs after every risk input. Every input risk saw is recorded, so `replay()` can feed
the same inputs to a fresh engine and compare state hashes.

Time moves `STEP_US` per input. Trader commands are signed as a client with a correct clock signs
them: each one's nonce is its own `ts_init` (`next_nonce()`), so nonces are unique and increasing
µs timestamps, and risk's replay check passes unless a test replays one on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msgspec.structs import replace

from services.common.records import (
    AmendOrder,
    ApplyFunding,
    CancelAllOrders,
    CancelOrder,
    CreateMarket,
    DepositConfirmed,
    MarketDefinition,
    MarketKind,
    MarketStatus,
    MatcherCommand,
    OptionType,
    OrderType,
    RequestWithdrawal,
    SetMarketStatus,
    SetMarkPrice,
    SettleMarket,
    Side,
    TimeInForce,
    TraderCommand,
)
from services.matcher.core.engine import Event, MatchingEngine, log_entry
from services.risk.core import Posting, RiskEngine, RiskEvent, RiskResult, postings
from services.risk.core.ledger import Position
from tests.kit import (
    EXPIRY_2026_12_25,
    TS_2026_11_23,
    btc_future_dec26,
    btc_option_dec26,
    btc_perp,
    limit_order,
    order_id,
)

USDC = 1_000_000
"""Micro-USDC per USDC."""

STEP_US = 1_000
HOUR_US = 3_600_000_000
"""How far the clock moves per input (1 ms)."""


def btc_usdc_spot(*, fee_bps: int = 50) -> MarketDefinition:
    """BTC-USDC spot synth: tick 0.1 USDC, lot 0.001 BTC → one tick on one lot is 100 micro-USDC."""
    return replace(btc_perp(fee_bps=fee_bps), market="BTC-USDC", kind=MarketKind.SPOT, index_symbol=None)


def odd_perp_qptl1_maker20_taker50() -> MarketDefinition:
    """ODD-PERP: one tick on one lot is 1 micro-USDC, maker 0.2 %, taker 0.5 % — for rounding cases."""
    return MarketDefinition(
        market="ODD-PERP",
        kind=MarketKind.PERPETUAL,
        base_asset="ODD",
        quote_per_tick_lot=1,
        tick_size_e9=1,
        lot_size_e9=1,
        min_size=1,
        maker_fee_bps=20,
        taker_fee_bps=50,
        status=MarketStatus.ACTIVE,
        index_symbol="ODD-USD",
    )


BTC_CALL_60K = btc_option_dec26(OptionType.CALL, 600_000)
BTC_PUT_40K = btc_option_dec26(OptionType.PUT, 400_000)
ALL_MARKETS = (
    btc_usdc_spot(),
    btc_perp(),
    btc_future_dec26(),
    BTC_CALL_60K,
    BTC_PUT_40K,
    odd_perp_qptl1_maker20_taker50(),
)


@dataclass
class Step:
    """What one trader command did, end to end."""

    result: RiskResult
    log: list[Event] = field(default_factory=list)
    events: list[RiskEvent] = field(default_factory=list)
    """Risk's post-trade events for `log`."""

    @property
    def code(self) -> int | None:
        rejection = self.result.rejection
        if rejection is not None:
            return rejection.reason_code
        matcher_rejections = [e for e in self.log if type(e).__name__ == "OrderRejected"]
        return getattr(matcher_rejections[0], "reason_code", None) if matcher_rejections else None

    @property
    def order_id(self) -> str:
        """The venue order id the command named."""
        order_id = getattr(self.result.command.body, "order_id", None)
        assert isinstance(order_id, str)
        return order_id

    def bodies(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.log if isinstance(e, kind)]


class Exchange:
    """A risk engine and a matching engine, with the plumbing between them."""

    def __init__(self, *markets: MarketDefinition, run_matcher: bool = True, in_flight: bool = False) -> None:
        self.risk = RiskEngine()
        self.matcher = MatchingEngine()
        self.run_matcher = run_matcher
        self.in_flight = in_flight
        """Hold forwarded commands until `deliver()`, as if the matcher lagged behind risk."""
        self.queue: list[MatcherCommand] = []
        self.now = TS_2026_11_23
        self.n = 0
        self.offset = 0
        self.inputs: list[tuple[str, Any]] = []
        self.last_log: list[Event] = []
        """The trade-log events of the latest command."""
        for definition in markets:
            self.admin(definition.market, CreateMarket(definition=definition))
        self.deliver()

    # -- plumbing ------------------------------------------------------------------------------

    def _tick(self) -> int:
        self.n += 1
        self.now += STEP_US
        return self.n

    def next_nonce(self) -> int:
        """The nonce a trader with a correct clock signs the next command with: its `ts_init`."""
        return self.now + STEP_US

    def admin(self, market: str, body: Any, *, at: int | None = None) -> list[RiskEvent]:
        """An admin or lifecycle command (listing, status, mark, funding, settlement), sent at `at`."""
        if at is not None:
            self.now = at - STEP_US
        self._tick()
        self.last_log = []
        command = MatcherCommand(
            command_id=order_id(2_000_000 + self.n), market=market, ts_init=self.now, body=body
        )
        if self.in_flight:  # admin commands share matcher.commands with the orders risk forwarded
            self.queue.append(command)
            return []
        return self.book(command)

    def book(self, command: MatcherCommand) -> list[RiskEvent]:
        """Run `command` through the matcher and post every event it caused to risk."""
        self.offset += 1
        events: list[RiskEvent] = []
        entry = log_entry(command, self.matcher.apply(command), f"matcher.commands:0:{self.offset}")
        self.last_log.extend(entry.events)
        for posting in postings(entry):
            events.extend(self.post(posting))
        for liquidation in self.risk.drain_forward():  # risk's own orders go to the matcher too
            if self.in_flight:
                self.queue.append(liquidation)
            else:
                events.extend(self.book(liquidation))
        return events

    def post(self, posting: Posting) -> list[RiskEvent]:
        self.inputs.append(("posting", posting))
        events = self.risk.apply_posting(posting)
        self.risk.validate()
        return events

    def submit(self, trader: str, body: Any) -> Step:
        """Send one trader command through risk and, if forwarded, through the matcher."""
        n = self._tick()
        command = TraderCommand(
            command_id=order_id(3_000_000 + n), trader=trader, ts_init=self.now, body=body
        )
        self.inputs.append(("command", command))
        result = self.risk.apply_command(command)
        self.risk.validate()
        step = Step(result)
        self.last_log = step.log
        if self.in_flight:
            self.queue.extend(result.forward)
        elif self.run_matcher:
            for forwarded in result.forward:
                step.events.extend(self.book(forwarded))
        return step

    def deliver(self, count: int | None = None) -> None:
        """Let the matcher catch up on `count` queued commands (None: until nothing is queued, the
        liquidation orders risk sends while they are booked included)."""
        if count is None:
            while self.queue:
                self.book(self.queue.pop(0))
            return
        count = min(count, len(self.queue))
        for command in self.queue[:count]:
            self.book(command)
        del self.queue[:count]

    def replay(self) -> RiskEngine:
        """A fresh risk engine fed the same inputs, in the same order."""
        engine = RiskEngine()
        for kind, item in self.inputs:
            if kind == "command":
                engine.apply_command(item)
            elif kind == "posting":
                engine.apply_posting(item)
            elif kind == "deposit":
                engine.apply_deposit(*item)
            elif kind == "synth":
                engine.apply_synth_deposit(*item)
            elif kind == "paid":
                engine.apply_withdrawal_paid(*item)
            elif kind == "failed":
                engine.apply_withdrawal_failed(*item)
        return engine

    # -- inputs --------------------------------------------------------------------------------

    def deposit(self, trader: str, amount: int) -> list[RiskEvent]:
        n = self._tick()
        body = DepositConfirmed(amount=amount, chain_id=0, tx_hash=f"dev-{n}", log_index=0, block_number=0)
        self.inputs.append(("deposit", (trader, body)))
        events = self.risk.apply_deposit(trader, body)
        self.risk.validate()
        return events

    def deposit_synth(self, trader: str, market: str, lots: int) -> list[RiskEvent]:
        n = self._tick()
        args = (trader, market, lots, f"synth-{n}")
        self.inputs.append(("synth", args))
        events = self.risk.apply_synth_deposit(*args)
        self.risk.validate()
        return events

    def set_status(self, market: str, status: MarketStatus) -> list[RiskEvent]:
        return self.admin(market, SetMarketStatus(status=status, reason="test"))

    def mark(self, market: str, mark_price: int, index_price: int | None = None) -> list[RiskEvent]:
        return self.admin(market, SetMarkPrice(mark_price=mark_price, index_price=index_price or mark_price))

    def fund(self, market: str, rate_e9: int, index_price: int) -> list[RiskEvent]:
        """Apply the funding interval of the hour that just ended (sent 1 ms after it)."""
        end = (self.now // HOUR_US + 1) * HOUR_US
        body = ApplyFunding(
            interval_start=end - HOUR_US,
            interval_end=end,
            rate_e9=rate_e9,
            index_price=index_price,
            mark_twap=index_price,
            index_twap=index_price,
        )
        return self.admin(market, body, at=end + STEP_US)

    def settle(self, market: str, settlement_price: int, *, at: int = EXPIRY_2026_12_25) -> list[RiskEvent]:
        return self.admin(market, SettleMarket(settlement_price=settlement_price, method="test"), at=at)

    def place(self, trader: str, market: str, side: Side, size: int, price: int, **options: Any) -> Step:
        """A GTC limit order (options override PlaceOrder fields); its order id is order_id(n)."""
        return self.submit(
            trader,
            limit_order(
                self.n + 1, side, size, price, **({"market": market, "nonce": self.next_nonce()} | options)
            ),
        )

    def market_order(
        self, trader: str, market: str, side: Side, size: int, worst_price: int, **options: Any
    ) -> Step:
        return self.place(
            trader,
            market,
            side,
            size,
            worst_price,
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.IOC,
            **options,
        )

    def cancel(self, trader: str, market: str, order: str) -> Step:
        body = CancelOrder(market=market, order_id=order, nonce=self.next_nonce(), signature=b"")
        return self.submit(trader, body)

    def cancel_all(self, trader: str, market: str | None = None, side: Side | None = None) -> Step:
        body = CancelAllOrders(market=market, side=side, nonce=self.next_nonce(), signature=b"")
        return self.submit(trader, body)

    def amend(
        self,
        trader: str,
        market: str,
        order: str,
        *,
        new_price: int | None = None,
        new_size: int | None = None,
    ) -> Step:
        body = AmendOrder(
            market=market,
            order_id=order,
            new_price=new_price,
            new_size=new_size,
            nonce=self.next_nonce(),
            signature=b"",
        )
        return self.submit(trader, body)

    def withdraw(
        self, trader: str, amount: int, withdrawal_id: str = "w1", *, expire_at: int | None = None
    ) -> Step:
        body = RequestWithdrawal(
            withdrawal_id=withdrawal_id,
            amount=amount,
            nonce=self.next_nonce(),
            expire_at=self.now + 60_000_000 if expire_at is None else expire_at,
            signature=b"",
        )
        return self.submit(trader, body)

    # -- reading -------------------------------------------------------------------------------

    def bodies(self, kind: type[Any]) -> list[Any]:
        """Bodies of type `kind` among the trade-log events of the latest command."""
        return [e for e in self.last_log if isinstance(e, kind)]

    def free(self, trader: str) -> int:
        return self.risk.ledger.free_usdc(trader)

    def reserved(self, trader: str) -> int:
        account = self.risk.ledger.accounts.get(trader)
        return account.reserved if account is not None else 0

    def locked(self, trader: str) -> int:
        account = self.risk.ledger.accounts.get(trader)
        return account.locked if account is not None else 0

    def position(self, trader: str, market: str) -> Position:
        return self.risk.ledger.positions.get((trader, market)) or Position()

    def held(self, trader: str, market: str) -> tuple[int, int]:
        holding = self.risk.ledger.holdings.get((trader, market))
        return (holding.held, holding.reserved) if holding is not None else (0, 0)
