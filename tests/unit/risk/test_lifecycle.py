"""Risk through the derivatives lifecycle: funding payments, expiry settlement, marks and
liquidations — hand-computed, on the real matcher.

Numbers: on the BTC grid one tick on one lot is 100 micro-USDC; one lot at 500_000 ticks is 50 USDC.
Balances are compared with what they were just before the lifecycle event, so fees of the opening
trades do not enter the arithmetic.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.records import OrderCancelled, OrderFilled, Side
from services.risk.core import (
    AlertAction,
    BalanceChanged,
    ChangeReason,
    FundingPaid,
    InsuranceDrawn,
    LiquidationAlert,
    PositionChanged,
    ShortfallReason,
)
from tests.kit import ALICE, BOB, CAROL, trader_address
from tests.unit.risk.exchange import ALL_MARKETS, USDC, Exchange

PERP, FUTURE, ODD = "BTC-PERP", "BTC-20261225", "ODD-PERP"
CALL_60K, PUT_40K = "BTC-20261225-60000-C", "BTC-20261225-40000-P"


def alice_long_bob_short(market: str, lots: int, price: int, usdc: int = 1_000 * USDC) -> Exchange:
    """Alice, Bob and Carol funded with `usdc`; Alice bought `lots` of `market` from Bob at `price`."""
    x = Exchange(*ALL_MARKETS)
    for trader in (ALICE, BOB, CAROL):
        x.deposit(trader, usdc)
    x.place(BOB, market, Side.SELL, lots, price)
    x.place(ALICE, market, Side.BUY, lots, price)
    return x


def of(kind: type, events: list) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


# -- funding --------------------------------------------------------------------------------------


def test_a_positive_rate_makes_longs_pay_shorts_exactly() -> None:
    # State: Alice long 10 lots, Bob short 10 lots at 500_000.
    x = alice_long_bob_short(PERP, 10, 500_000)
    alice, bob, fees = x.free(ALICE), x.free(BOB), x.risk.ledger.fees
    # Action: funding at +0.01 % (rate_e9 100_000) on an index of 500_000 ticks.
    events = x.fund(PERP, 100_000, 500_000)
    # Expectation: per lot 500_000 × 100 × 1e-4 = 5_000 micro-USDC, no rounding: Alice pays 50_000,
    # Bob receives 50_000, CLEARING back to 0, FEES unchanged.
    paid = {e.trader: e.amount for e in of(FundingPaid, events)}
    assert paid == {ALICE: -50_000, BOB: 50_000}
    assert (x.free(ALICE), x.free(BOB)) == (alice - 50_000, bob + 50_000)
    assert x.risk.ledger.clearing == 0 and x.risk.ledger.fees == fees
    assert {e.reason for e in of(BalanceChanged, events)} == {ChangeReason.FUNDING}
    # ... and funding counts as realized PnL.
    assert x.position(ALICE, PERP).realized_pnl == -50_000


def test_a_negative_rate_makes_shorts_pay_longs() -> None:
    x = alice_long_bob_short(PERP, 2, 500_000)
    events = x.fund(PERP, -200_000, 500_000)
    assert {e.trader: e.amount for e in of(FundingPaid, events)} == {ALICE: 20_000, BOB: -20_000}


def test_payers_round_up_receivers_round_down_and_the_remainder_is_a_fee() -> None:
    # State: ODD-PERP, where one tick on one lot is 1 micro-USDC; Alice long 3 lots, Bob short 3.
    x = alice_long_bob_short(ODD, 3, 333)
    fees = x.risk.ledger.fees
    # Action: rate 1e-6 (1_000 e9) on index 333: per lot 0.000333 micro-USDC.
    events = x.fund(ODD, 1_000, 333)
    # Expectation: each paying lot pays 1, each receiving lot gets 0; the 3 go to FEES; CLEARING 0.
    assert {e.trader: e.amount for e in of(FundingPaid, events)} == {ALICE: -3, BOB: 0}
    assert x.risk.ledger.fees == fees + 3 and x.risk.ledger.clearing == 0


def test_funding_beyond_the_free_balance_comes_from_collateral_then_insurance() -> None:
    # State: Alice put all she had into 2 lots at 500_000 (100 USDC + 0.5 USDC fee) — no free balance.
    x = alice_long_bob_short(PERP, 2, 500_000, usdc=100_500_000)
    assert x.free(ALICE) == 0
    # Action: an extreme rate of 60 % on the index (2 lots × 30 USDC).
    events = x.fund(PERP, 600_000_000, 500_000)
    # Expectation: 60 USDC out of the 100 USDC collateral, nothing from INSURANCE.
    [alice] = [e for e in of(FundingPaid, events) if e.trader == ALICE]
    assert alice.amount == -60 * USDC and alice.from_collateral == 60 * USDC
    assert x.position(ALICE, PERP).collateral == 40 * USDC == x.locked(ALICE)
    # Action: again — only 40 USDC of collateral is left.
    events = x.fund(PERP, 600_000_000, 500_000)
    drawn = of(InsuranceDrawn, events)
    assert [(d.amount, d.reason) for d in drawn] == [(20 * USDC, ShortfallReason.FUNDING_NOT_COVERED)]
    assert x.risk.ledger.insurance == -20 * USDC and x.position(ALICE, PERP).collateral == 0


def test_a_zero_rate_moves_nothing() -> None:
    x = alice_long_bob_short(PERP, 1, 500_000)
    assert x.fund(PERP, 0, 500_000) == []


# -- futures settlement ---------------------------------------------------------------------------


def test_an_expired_future_settles_every_position_at_the_settlement_price() -> None:
    # State: Alice long 4 lots of the December future at 500_000, Bob short 4.
    x = alice_long_bob_short(FUTURE, 4, 500_000)
    alice, bob = x.free(ALICE), x.free(BOB)
    # Action: expiry; settlement at 550_000.
    events = x.settle(FUTURE, 550_000)
    # Expectation: Alice gets her 200 USDC collateral back plus 4 × 5_000 ticks × 100 = 20 USDC; Bob
    # his collateral minus 20 USDC. Both flat; nothing locked; CLEARING back to 0.
    assert x.free(ALICE) == alice + 220 * USDC and x.free(BOB) == bob + 180 * USDC
    assert x.position(ALICE, FUTURE).size == 0 == x.position(BOB, FUTURE).size
    assert x.locked(ALICE) == 0 == x.locked(BOB) and x.risk.ledger.clearing == 0
    settled = {e.trader: (e.delta_size, e.realized_pnl, e.last_px) for e in of(PositionChanged, events)}
    assert settled == {ALICE: (-4, 20 * USDC, 550_000), BOB: (4, -20 * USDC, 550_000)}
    assert {e.reason for e in of(BalanceChanged, events)} == {ChangeReason.SETTLEMENT}


def test_settlement_releases_the_reservations_of_resting_orders_first() -> None:
    # State: Carol has a bid resting on the future (50 USDC + fee reserved).
    x = alice_long_bob_short(FUTURE, 1, 500_000)
    x.place(CAROL, FUTURE, Side.BUY, 1, 500_000)
    assert x.free(CAROL) < 1_000 * USDC
    # Action: settlement. Expectation: the order is cancelled, Carol has all her USDC back.
    x.settle(FUTURE, 500_000)
    assert x.bodies(OrderCancelled) and x.free(CAROL) == 1_000 * USDC and x.reserved(CAROL) == 0


def test_a_short_settling_beyond_its_collateral_gets_zero_and_insurance_pays() -> None:
    # State: Bob short 1 lot at 500_000 (50 USDC collateral). Action: settlement at 1_100_000.
    x = alice_long_bob_short(FUTURE, 1, 500_000)
    bob = x.free(BOB)
    events = x.settle(FUTURE, 1_100_000)
    # Expectation: Bob's loss is 60 USDC; he gets 0 back, INSURANCE pays the 10 USDC beyond.
    assert x.free(BOB) == bob
    assert [(d.trader, d.amount) for d in of(InsuranceDrawn, events)] == [(BOB, 10 * USDC)]
    assert x.risk.ledger.insurance == -10 * USDC


# -- options settlement ---------------------------------------------------------------------------


def test_an_in_the_money_call_pays_holders_from_writers_collateral() -> None:
    # State: Bob wrote 2 calls struck at 600_000 to Alice at a premium of 10_000 ticks (1 USDC a lot);
    # Bob locked 2 × 60 USDC.
    x = alice_long_bob_short(CALL_60K, 2, 10_000)
    assert x.locked(BOB) == 120 * USDC
    alice, bob = x.free(ALICE), x.free(BOB)
    # Action: settlement at 650_000. Expectation: payoff 50_000 ticks a lot = 5 USDC: Alice +10 USDC,
    # Bob gets 120 − 10 = 110 USDC of collateral back; realized PnL = payoff − premium.
    x.settle(CALL_60K, 650_000)
    assert x.free(ALICE) == alice + 10 * USDC and x.free(BOB) == bob + 110 * USDC
    assert x.position(ALICE, CALL_60K).realized_pnl == 8 * USDC
    assert x.position(BOB, CALL_60K).realized_pnl == -8 * USDC
    assert x.locked(BOB) == 0 and x.risk.ledger.clearing == 0


def test_a_call_payoff_is_capped_at_the_strike() -> None:
    # Action: settlement at 1_500_000, far above twice the strike. Expectation: payoff = K = 60 USDC.
    x = alice_long_bob_short(CALL_60K, 1, 10_000)
    alice, bob = x.free(ALICE), x.free(BOB)
    x.settle(CALL_60K, 1_500_000)
    assert x.free(ALICE) == alice + 60 * USDC and x.free(BOB) == bob
    assert x.risk.ledger.insurance == 0


def test_an_out_of_the_money_put_expires_worthless_and_releases_the_collateral() -> None:
    x = alice_long_bob_short(PUT_40K, 3, 5_000)
    alice, bob = x.free(ALICE), x.free(BOB)
    x.settle(PUT_40K, 450_000)
    assert x.free(ALICE) == alice and x.free(BOB) == bob + 3 * 40 * USDC
    assert x.position(ALICE, PUT_40K).realized_pnl == -3 * 5_000 * 100


# -- marks, alerts and liquidation ------------------------------------------------------------------


def test_a_short_that_lost_80_percent_of_its_collateral_gets_an_alert() -> None:
    # State: Bob short 2 lots at 500_000 (100 USDC collateral).
    x = alice_long_bob_short(PERP, 2, 500_000)
    # Action: mark at 900_000: Bob's loss is 2 × 400_000 × 100 = 80 USDC = 80 %.
    events = x.mark(PERP, 900_000)
    # Expectation: one ALERT for Bob (Alice's long is in profit); nothing sent to the book.
    [alert] = of(LiquidationAlert, events)
    assert (alert.trader, alert.action, alert.loss_bps, alert.equity) == (
        BOB,
        AlertAction.ALERT,
        8_000,
        20 * USDC,
    )
    assert alert.unrealized_pnl == -80 * USDC and not x.bodies(OrderFilled)


def test_a_short_at_95_percent_is_closed_by_a_reduce_only_market_order() -> None:
    # State: Bob short 2 lots at 500_000; Carol offers 2 lots at 980_000.
    x = alice_long_bob_short(PERP, 2, 500_000)
    x.place(CAROL, PERP, Side.SELL, 2, 980_000)
    bob = x.free(BOB)
    # Action: mark at 975_000 (loss 95 %).
    events = x.mark(PERP, 975_000)
    # Expectation: LIQUIDATING; the order bought Carol's 2 lots at 980_000: Bob is flat, gets back his
    # collateral minus the 96 USDC loss minus the 0.98 USDC taker fee.
    [alert] = of(LiquidationAlert, events)
    assert alert.action is AlertAction.LIQUIDATING and alert.order_id is not None
    assert x.position(BOB, PERP).size == 0 and x.locked(BOB) == 0
    assert x.free(BOB) == bob + 100 * USDC - 96 * USDC - 980_000
    assert not x.risk.ledger.orders


def test_a_liquidation_without_liquidity_is_retried_at_the_next_mark() -> None:
    # State: Bob short 1 lot at 500_000, nobody offering.
    x = alice_long_bob_short(PERP, 1, 500_000)
    first = of(LiquidationAlert, x.mark(PERP, 990_000))
    # Expectation: the order found nothing and was cancelled (IOC); the next mark sends a new one.
    assert x.position(BOB, PERP).size == -1 and not x.risk.ledger.orders
    second = of(LiquidationAlert, x.mark(PERP, 995_000))
    assert first[0].order_id != second[0].order_id and second[0].action is AlertAction.LIQUIDATING


def test_no_second_liquidation_order_while_one_is_on_its_way() -> None:
    # State: Bob short 1 lot; the matcher lags behind risk, so the first mark's liquidation order
    # is still queued for the book when the next mark reaches risk.
    x = alice_long_bob_short(PERP, 1, 500_000)
    x.in_flight = True
    x.mark(PERP, 990_000)
    x.deliver(1)
    assert [o.liquidation for o in x.risk.ledger.orders.values()] == [True]
    x.in_flight = False
    # Action: the next mark.
    events = x.mark(PERP, 995_000)
    # Expectation: only an alert; still one liquidation order out.
    assert [e.action for e in of(LiquidationAlert, events)] == [AlertAction.ALERT]
    assert [o.liquidation for o in x.risk.ledger.orders.values()] == [True]


def test_the_lifecycle_replays_to_the_same_state() -> None:
    x = alice_long_bob_short(PERP, 2, 500_000)
    x.fund(PERP, 100_000, 500_000)
    x.place(CAROL, PERP, Side.SELL, 2, 980_000)
    x.mark(PERP, 975_000)
    assert x.replay().state_hash() == x.risk.state_hash()


# -- exactness, for any positions ------------------------------------------------------------------

TRADERS = (ALICE, BOB, CAROL, trader_address(0xDA7E), trader_address(0xE121))
trades = st.lists(
    st.tuples(st.sampled_from(TRADERS), st.sampled_from(TRADERS), st.integers(1, 9), st.integers(1, 5_000)),
    min_size=1,
    max_size=12,
)


def _positions(market: str, flow: list[tuple[str, str, int, int]], usdc: int = 10**12) -> Exchange:
    """Random trades on `market` (seller, buyer, lots, price), each trader funded with `usdc`."""
    x = Exchange(*ALL_MARKETS)
    for trader in TRADERS:
        x.deposit(trader, usdc)
    for seller, buyer, lots, price in flow:
        if seller != buyer:
            x.place(seller, market, Side.SELL, lots, price)
            x.place(buyer, market, Side.BUY, lots, price)
            x.cancel_all(seller)  # what did not trade (self-trade prevention) leaves the book
    return x


def _total(x: Exchange) -> int:
    ledger = x.risk.ledger
    buckets = sum(a.free + a.reserved + a.withdrawing + a.locked for a in ledger.accounts.values())
    return buckets + ledger.fees + ledger.clearing + ledger.insurance


@settings(max_examples=150, deadline=None)
@given(trades, st.integers(-(10**9), 10**9), st.integers(1, 10**6))
def test_funding_nets_to_zero_but_for_the_rounding_that_goes_to_fees(
    flow: list[tuple[str, str, int, int]], rate_e9: int, index: int
) -> None:
    # State: random positions on ODD-PERP (one tick on one lot = 1 micro-USDC: rounding everywhere).
    x = _positions(ODD, flow)
    fees, clearing, total = x.risk.ledger.fees, x.risk.ledger.clearing, _total(x)
    # Action: one funding interval at a random rate and index.
    events = x.fund(ODD, rate_e9, index)
    # Expectation: what traders paid and received sums to minus what FEES took; CLEARING is where it
    # was; FEES took exactly the per-lot rounding of the payers; no USDC appeared or vanished.
    paid = of(FundingPaid, events)
    remainder = x.risk.ledger.fees - fees
    assert sum(e.amount for e in paid) == -remainder
    assert x.risk.ledger.clearing == clearing
    exact = index * abs(rate_e9)
    payer_lots = sum(
        abs(e.size) for e in paid if e.amount < 0 or (e.amount == 0 and (e.size > 0) == (rate_e9 > 0))
    )
    assert remainder == (-(-exact // 10**9) - exact // 10**9) * payer_lots if rate_e9 else remainder == 0
    assert _total(x) == total


@settings(max_examples=100, deadline=None)
@given(trades, st.integers(1, 20_000), st.sampled_from((FUTURE, CALL_60K, PUT_40K)))
def test_settlement_conserves_usdc_and_leaves_clearing_at_zero(
    flow: list[tuple[str, str, int, int]], price: int, market: str
) -> None:
    # State: random positions on the future or an option; the settlement at a random price.
    x = _positions(market, [(s, b, lots, p * 50) for s, b, lots, p in flow])
    total, insurance = _total(x), x.risk.ledger.insurance
    events = x.settle(market, price * 100)
    # Expectation: no USDC appeared or vanished; every position is flat and its collateral released;
    # INSURANCE paid exactly what it flagged; CLEARING is back to its rule: 0 for options, minus the
    # realized PnL of the (now all closed) future positions.
    assert _total(x) == total
    assert all(
        p.size == 0 and p.collateral == 0 for (_, m), p in x.risk.ledger.positions.items() if m == market
    )
    assert all(x.locked(t) == 0 for t in TRADERS)
    drawn = sum(e.amount for e in of(InsuranceDrawn, events))
    assert x.risk.ledger.insurance == insurance - drawn
    if market == FUTURE:
        assert x.risk.ledger.clearing == -sum(
            p.realized_pnl for (_, m), p in x.risk.ledger.positions.items() if m == market
        )
    else:
        assert x.risk.ledger.clearing == 0
