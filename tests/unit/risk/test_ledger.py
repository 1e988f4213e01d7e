"""The ledger's checks: validate() catches every kind of corruption, state_hash() is a pure function
of the inputs, replays are ignored, and inputs that contradict the ledger fail loudly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from msgspec.structs import replace

from services.common.records import (
    AccountEvent,
    DepositConfirmed,
    LiquiditySide,
    MarketStatus,
    OrderFilled,
    OrderRejected,
    Side,
    TradeExecuted,
    WithdrawalRequested,
)
from services.risk.core import InvalidRiskInput, LedgerInvariantError, Posting, RiskEngine
from tests.kit import ALICE, BOB, btc_perp
from tests.unit.risk.exchange import ALL_MARKETS, USDC, Exchange

PERP, SPOT = "BTC-PERP", "BTC-USDC"


def exchange_with_open_orders_positions_and_holdings() -> Exchange:
    """Alice long 1 BTC-PERP lot from Bob, a bid resting, and a spot sell of 1 of her 2 synth lots."""
    x = Exchange(*ALL_MARKETS)
    x.deposit(ALICE, 1_000 * USDC)
    x.deposit(BOB, 1_000 * USDC)
    x.deposit_synth(ALICE, SPOT, 2)
    x.place(BOB, PERP, Side.SELL, 1, 500_000)
    x.place(ALICE, PERP, Side.BUY, 1, 500_000)
    x.place(ALICE, PERP, Side.BUY, 1, 400_000)
    x.place(ALICE, SPOT, Side.SELL, 1, 600_000)
    x.risk.validate()
    return x


def _tamper_free(x: Exchange) -> None:
    x.risk.ledger.accounts[ALICE].free += 1


def _tamper_clearing(x: Exchange) -> None:
    x.risk.ledger.clearing -= 1


def _tamper_order_reservation(x: Exchange) -> None:
    order = next(iter(x.risk.ledger.orders.values()))
    order.reserved_usdc += 1
    x.risk.ledger.accounts[order.trader].reserved += 1
    x.risk.ledger.accounts[order.trader].free -= 1


def _tamper_collateral_above_basis(x: Exchange) -> None:
    position = x.risk.ledger.positions[(ALICE, PERP)]
    position.collateral += 1
    x.risk.ledger.accounts[ALICE].locked += 1
    x.risk.ledger.accounts[ALICE].free -= 1


def _tamper_negative_free(x: Exchange) -> None:
    x.risk.ledger.accounts[ALICE].free -= 10**12
    x.risk.ledger.insurance += 10**12


def _tamper_synth(x: Exchange) -> None:
    x.risk.ledger.holdings[(ALICE, SPOT)].held += 1


def _tamper_locked_total(x: Exchange) -> None:
    x.risk.ledger.accounts[ALICE].locked += 1
    x.risk.ledger.accounts[ALICE].free -= 1


def _tamper_flat_position_keeps_collateral(x: Exchange) -> None:
    position = x.risk.ledger.positions[(ALICE, PERP)]
    position.size = 0


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_tamper_free, "does not balance"),
        (_tamper_clearing, "does not balance"),
        (_tamper_order_reservation, "requirement"),
        (_tamper_collateral_above_basis, "collateral above basis"),
        (_tamper_negative_free, "negative free"),
        (_tamper_synth, "synth lots"),
        (_tamper_locked_total, "locked out of step"),
        (_tamper_flat_position_keeps_collateral, "flat but holds"),
    ],
    ids=lambda v: v.__name__.removeprefix("_tamper_") if callable(v) else None,
)
def test_validate_catches_corruption(tamper: Callable[[Exchange], None], message: str) -> None:
    # State: a ledger with every kind of bucket in use.
    x = exchange_with_open_orders_positions_and_holdings()
    # Action: corrupt it.
    tamper(x)
    # Expectation: validate() refuses, naming the problem.
    with pytest.raises(LedgerInvariantError, match=message):
        x.risk.validate()


def test_state_hash_is_a_function_of_the_inputs() -> None:
    # State: a history, and a fresh engine replaying it.
    x = exchange_with_open_orders_positions_and_holdings()
    replayed = x.replay()
    # Expectation: equal hashes; one more input changes it.
    assert replayed.state_hash() == x.risk.state_hash()
    x.deposit(ALICE, 1)
    assert replayed.state_hash() != x.risk.state_hash()


def test_a_posting_seen_before_is_ignored() -> None:
    # State: a history with fills.
    x = exchange_with_open_orders_positions_and_holdings()
    before = x.risk.state_hash()
    # Action: the whole trade log again (an at-least-once redelivery).
    for kind, item in list(x.inputs):
        if kind == "posting":
            assert x.risk.apply_posting(item) == []
    # Expectation: nothing changed.
    assert x.risk.state_hash() == before


def test_trade_executed_is_not_applied_fills_come_from_order_filled() -> None:
    # State: a fill happened; take its TradeExecuted event.
    x = Exchange(*ALL_MARKETS)
    x.deposit(ALICE, 1_000 * USDC)
    x.deposit(BOB, 1_000 * USDC)
    x.place(BOB, PERP, Side.SELL, 1, 500_000)
    x.place(ALICE, PERP, Side.BUY, 1, 500_000)
    (trade,) = x.bodies(TradeExecuted)
    ledger_before = x.risk.ledger.state()
    # Action: post it again under a new sequence number.
    x.risk.apply_posting(
        Posting(PERP, seq=10_000, event_id="t:0:9:0", command_id="c", ts_event=0, body=trade)
    )
    # Expectation: the ledger is unchanged.
    assert x.risk.ledger.state() == ledger_before


def test_fill_for_an_order_risk_never_forwarded_fails_loudly() -> None:
    # State: an engine that knows BTC-PERP.
    engine = RiskEngine()
    engine.apply_market(btc_perp())
    fill = OrderFilled(
        order_id="ghost",
        trader=ALICE,
        trade_id=1,
        side=Side.BUY,
        liquidity_side=LiquiditySide.TAKER,
        last_px=1,
        last_qty=1,
        cum_qty=1,
        leaves_qty=0,
        fee=0,
    )
    posting = Posting(event_id="t:0:1:0", market=PERP, seq=1, command_id="c", ts_event=0, body=fill)
    # Action / Expectation: a broken invariant, not a silent skip.
    with pytest.raises(LedgerInvariantError, match="unknown to risk"):
        engine.apply_posting(posting)


def test_fill_disagreeing_with_risk_on_leaves_fails_loudly() -> None:
    # State: Alice's order of 2 is open in risk.
    x = Exchange(*ALL_MARKETS, run_matcher=False)
    x.deposit(ALICE, 1_000 * USDC)
    oid = x.place(ALICE, PERP, Side.BUY, 2, 500_000).order_id
    fill = OrderFilled(
        order_id=oid,
        trader=ALICE,
        trade_id=1,
        side=Side.BUY,
        liquidity_side=LiquiditySide.MAKER,
        last_px=500_000,
        last_qty=1,
        cum_qty=1,
        leaves_qty=5,
        fee=0,
    )
    posting = Posting(event_id="t:0:9:0", market=PERP, seq=99, command_id="c", ts_event=0, body=fill)
    # Action / Expectation: the matcher and risk disagree: fail.
    with pytest.raises(LedgerInvariantError, match="leaves/cum"):
        x.risk.apply_posting(posting)


@pytest.mark.parametrize(
    "act",
    [
        lambda e: e.apply_deposit(
            ALICE, DepositConfirmed(amount=0, chain_id=1, tx_hash="0x1", log_index=0, block_number=1)
        ),
        lambda e: e.apply_synth_deposit(ALICE, PERP, 1, "s1"),  # not a spot market
        lambda e: e.apply_withdrawal_paid(ALICE, "never-requested"),
        lambda e: e.apply_market_status("DOGE-PERP", MarketStatus.PAUSED),
        lambda e: e.apply_market(replace(btc_perp(), maker_fee_bps=60)),  # redefined differently
        lambda e: e.apply_market(replace(btc_perp(), market="X", quote_per_tick_lot=0)),
    ],
    ids=[
        "deposit_of_zero",
        "synth_deposit_on_a_perpetual",
        "unknown_withdrawal_paid",
        "status_of_unknown_market",
        "market_redefined",
        "market_with_zero_tick_value",
    ],
)
def test_impossible_inputs_are_refused_for_dead_lettering(act: Callable[[RiskEngine], object]) -> None:
    # State: an engine that knows BTC-PERP.
    engine = RiskEngine()
    engine.apply_market(btc_perp())
    before = engine.state_hash()
    # Action / Expectation: InvalidRiskInput, nothing changed.
    with pytest.raises(InvalidRiskInput):
        act(engine)
    assert engine.state_hash() == before


def test_account_events_apply_deposits_and_ignore_risks_own_outputs() -> None:
    # State: an empty engine.
    engine = RiskEngine()
    deposit = DepositConfirmed(amount=7, chain_id=1, tx_hash="0xab", log_index=3, block_number=9)
    own: list[WithdrawalRequested | OrderRejected] = [
        WithdrawalRequested(withdrawal_id="w", amount=1, as_cxpt=False, nonce=1),
        OrderRejected(trader=ALICE, reason_code=2001, reason="INSUFFICIENT_COLLATERAL"),
    ]
    # Action: the accounts.events topic read back.
    bodies: list[DepositConfirmed | WithdrawalRequested | OrderRejected] = [deposit, *own]
    for i, body in enumerate(bodies):
        engine.apply_account_event(AccountEvent(event_id=f"a:0:{i}:0", trader=ALICE, ts_event=0, body=body))
    # Expectation: only the deposit counted.
    assert engine.ledger.free_usdc(ALICE) == 7
    engine.validate()


def test_core_imports_without_kafka_or_stores() -> None:
    # Action: import the core in a fresh interpreter.
    code = (
        "import sys, services.risk.core, services.risk.core.engine;"
        "bad = [m for m in sys.modules if m.startswith(('confluent_kafka', 'services.common.bus',"
        " 'services.common.stores', 'cassandra', 'clickhouse_connect'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    # Expectation: none of the adapters' dependencies were loaded.
    assert result.returncode == 0, result.stdout + result.stderr
