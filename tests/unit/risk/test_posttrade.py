"""Post-trade risk: fills, fees, positions, CLEARING and INSURANCE, releases — hand-computed.

Every scenario runs the real matcher on the commands risk forwards. Numbers: on the BTC grid one
tick on one lot is 100 micro-USDC, so one lot at 500_000 ticks is 50 USDC and its 0.5 % fee 0.25.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from services.common.records import MarketStatus, OrderCancelled, OrderRejected, Side, TimeInForce
from services.risk.core import (
    BalanceChanged,
    ChangeReason,
    InsuranceDrawn,
    InventoryChanged,
    PositionChanged,
    PositionUnderCollateralized,
    ShortfallReason,
)
from tests.kit import ALICE, BOB, CAROL, trader_address
from tests.unit.risk.exchange import ALL_MARKETS, USDC, Exchange

DAVE = trader_address(0xDA7E)
PERP, SPOT, ODD = "BTC-PERP", "BTC-USDC", "ODD-PERP"
CALL_60K, PUT_40K = "BTC-20261225-60000-C", "BTC-20261225-40000-P"


def exchange_each_with(usdc: int, *traders: str) -> Exchange:
    x = Exchange(*ALL_MARKETS)
    for trader in traders:
        x.deposit(trader, usdc)
    return x


def exchange_alice_long_1_bob_short_1_perp_at_50k() -> Exchange:
    """Four traders with 1,000 USDC; Alice bought 1 BTC-PERP lot at 500_000 from Bob."""
    x = exchange_each_with(1_000 * USDC, ALICE, BOB, CAROL, DAVE)
    x.place(BOB, PERP, Side.SELL, 1, 500_000)
    x.place(ALICE, PERP, Side.BUY, 1, 500_000)
    return x


# -- spot -----------------------------------------------------------------------------------------


def test_spot_trade_moves_usdc_and_synth_and_returns_the_unused_reservation() -> None:
    # State: Bob holds 3 BTC synth lots and offers 2 at 500_000; Alice has 1,000 USDC.
    x = exchange_each_with(1_000 * USDC, ALICE, BOB)
    x.deposit_synth(BOB, SPOT, 3)
    x.place(BOB, SPOT, Side.SELL, 2, 500_000)
    assert x.held(BOB, SPOT) == (1, 2)
    # Action: Alice bids 510_000 for 2 (reserves 2 × 51.255 = 102.51) and fills at 500_000.
    step = x.place(ALICE, SPOT, Side.BUY, 2, 510_000)
    # Expectation: Alice pays 100 + 0.5 fee and gets back 2.01; Bob gets 100 − 0.5.
    assert (x.free(ALICE), x.held(ALICE, SPOT)) == (899_500_000, (2, 0))
    assert (x.free(BOB), x.held(BOB, SPOT)) == (1_099_500_000, (1, 0))
    ledger = x.risk.ledger
    assert (ledger.fees, ledger.clearing, ledger.clearing_inventory[SPOT]) == (1_000_000, 0, 0)
    alice = [e for e in step.events if getattr(e, "trader", None) == ALICE]
    assert alice == [
        InventoryChanged(
            trader=ALICE,
            market=SPOT,
            held=2,
            reserved=0,
            delta_held=2,
            reason=ChangeReason.ORDER_FILLED,
            ref=step.order_id,
        ),
        BalanceChanged(
            trader=ALICE,
            free=899_500_000,
            reserved=0,
            withdrawing=0,
            locked=0,
            delta_free=2_010_000,
            reason=ChangeReason.ORDER_FILLED,
            ref=step.order_id,
        ),
    ]


# -- perpetuals: positions, clearing, insurance ---------------------------------------------------


class Balances(NamedTuple):
    alice: int
    bob: int
    carol: int
    clearing: int


def test_realized_pnl_against_a_new_counterparty_is_paid_through_clearing() -> None:
    # State: Alice bought 2 lots at 500_000 from Bob; each locked 100 and paid a 0.5 fee.
    x = exchange_each_with(1_000 * USDC, ALICE, BOB, CAROL)
    x.place(BOB, PERP, Side.SELL, 2, 500_000)
    x.place(ALICE, PERP, Side.BUY, 2, 500_000)
    assert Balances(x.free(ALICE), x.free(BOB), x.free(CAROL), x.risk.ledger.clearing) == Balances(
        899_500_000, 899_500_000, 1_000_000_000, 0
    )
    assert (x.locked(ALICE), x.locked(BOB)) == (100_000_000, 100_000_000)
    # Action: Alice sells her long at 550_000 to Carol, who opens a long.
    x.place(CAROL, PERP, Side.BUY, 2, 550_000)
    x.place(ALICE, PERP, Side.SELL, 2, 550_000, reduce_only=True)
    # Expectation: Alice gets 110 − 0.55; the 10 profit comes out of CLEARING, not from Carol.
    assert Balances(x.free(ALICE), x.free(BOB), x.free(CAROL), x.risk.ledger.clearing) == Balances(
        1_008_950_000, 899_500_000, 889_450_000, -10_000_000
    )
    assert x.position(ALICE, PERP).realized_pnl == 10_000_000
    # Action: Bob buys back his short at 550_000 from Carol, who closes her long.
    x.place(BOB, PERP, Side.BUY, 2, 550_000, reduce_only=True)
    x.place(CAROL, PERP, Side.SELL, 2, 550_000)
    # Expectation: Bob loses 10 into CLEARING, which is back to 0 with every position flat.
    assert Balances(x.free(ALICE), x.free(BOB), x.free(CAROL), x.risk.ledger.clearing) == Balances(
        1_008_950_000, 988_950_000, 998_900_000, 0
    )
    assert x.risk.ledger.fees == 3_200_000  # 6 fills: 0.5 + 0.5 + 4 × 0.55
    assert all(p.size == p.basis == p.collateral == 0 for p in x.risk.ledger.positions.values())


def test_partial_reduction_releases_proportional_collateral_rounded_down() -> None:
    # State: on ODD-PERP (1 micro-USDC per tick-lot) Alice buys 1 lot at 100 and 1 at 101: basis 201.
    x = exchange_each_with(10_000, ALICE, BOB, CAROL)
    x.place(BOB, ODD, Side.SELL, 1, 100)
    x.place(BOB, ODD, Side.SELL, 1, 101)
    x.place(ALICE, ODD, Side.BUY, 2, 101)
    position = x.position(ALICE, ODD)
    assert (position.size, position.basis, position.collateral) == (2, 201, 201)
    # Action: she sells 1 lot at 100 to Carol.
    x.place(CAROL, ODD, Side.BUY, 1, 100)
    x.place(ALICE, ODD, Side.SELL, 1, 100, reduce_only=True)
    # Expectation: floor(201 / 2) = 100 released, PnL 100 − 100 = 0; 101 stay locked.
    assert (position.size, position.basis, position.collateral, position.realized_pnl) == (1, 101, 101, 0)
    # Action: she sells the last lot at 100.
    x.place(CAROL, ODD, Side.BUY, 1, 100)
    x.place(ALICE, ODD, Side.SELL, 1, 100, reduce_only=True)
    # Expectation: everything left is released: PnL 100 − 101 = −1.
    assert (position.size, position.basis, position.collateral, position.realized_pnl) == (0, 0, 0, -1)
    assert x.locked(ALICE) == 0


def test_short_losing_more_than_its_collateral_gets_zero_and_insurance_pays_the_rest() -> None:
    # State: Bob short 1 at 500_000 (collateral 50); Carol offers 1 at 1_100_000 (the price more
    # than doubled).
    x = exchange_alice_long_1_bob_short_1_perp_at_50k()
    x.place(CAROL, PERP, Side.SELL, 1, 1_100_000)
    bob_free = x.free(BOB)
    # Action: Bob buys back at 1_100_000.
    step = x.market_order(BOB, PERP, Side.BUY, 1, 1_100_000, reduce_only=True)
    # Expectation: his value 50 + (50 − 110) = −10 is clamped to 0; INSURANCE pays 10 and says so;
    # he pays only the 0.55 fee. CLEARING takes his full 60 loss.
    assert x.free(BOB) == bob_free - 550_000
    assert x.position(BOB, PERP).realized_pnl == -60_000_000
    assert (x.risk.ledger.insurance, x.risk.ledger.clearing) == (-10_000_000, 60_000_000)
    assert (
        InsuranceDrawn(
            trader=BOB,
            market=PERP,
            order_id=step.order_id,
            trade_id=2,
            amount=10_000_000,
            reason=ShortfallReason.LOSS_BEYOND_COLLATERAL,
        )
        in step.events
    )
    # Action: Alice sells her long at 1_100_000 to Dave.
    x.place(DAVE, PERP, Side.BUY, 1, 1_100_000)
    x.place(ALICE, PERP, Side.SELL, 1, 1_100_000, reduce_only=True)
    # Expectation: she gets 110 (profit 60 out of CLEARING, now 0 again); the loss stays in INSURANCE.
    assert x.free(ALICE) == 1_000 * USDC - 250_000 + 60_000_000 - 550_000
    assert (x.risk.ledger.insurance, x.risk.ledger.clearing) == (-10_000_000, 0)


class SellAboveLimit(NamedTuple):
    deposit: int
    free_after: int
    collateral: int
    shortfall: int | None


@pytest.mark.parametrize(
    "case",
    [
        # reserved 40 + 0.2 at the protective 400_000; the fill at 500_000 needs 50 + 0.25: the
        # 10.05 more come from free
        SellAboveLimit(100 * USDC, 49_750_000, 50_000_000, None),
        # nothing else free: the short opens with 40.2 − 0.25 = 39.95 of its 50 collateral
        SellAboveLimit(40_200_000, 0, 39_950_000, 10_050_000),
    ],
    ids=["extra_collateral_from_free", "short_opens_under_collateralized"],
)
def test_short_filled_above_its_limit_locks_the_fill_notional(case: SellAboveLimit) -> None:
    # State: Alice bids 1 at 500_000; Bob has `deposit`.
    x = exchange_each_with(1_000 * USDC, ALICE)
    x.deposit(BOB, case.deposit)
    x.place(ALICE, PERP, Side.BUY, 1, 500_000)
    # Action: Bob sells 1 at market, protective price 400_000.
    step = x.market_order(BOB, PERP, Side.SELL, 1, 400_000)
    # Expectation: short 1 at 500_000 (basis 50), collateral as funded.
    position = x.position(BOB, PERP)
    assert (position.size, position.basis, position.collateral) == (-1, 50_000_000, case.collateral)
    assert x.free(BOB) == case.free_after
    flags = [e for e in step.events if isinstance(e, PositionUnderCollateralized)]
    assert [f.shortfall for f in flags] == ([] if case.shortfall is None else [case.shortfall])


def test_one_fill_can_close_a_long_and_open_a_short() -> None:
    # State: Alice long 1 at 500_000 (949.75 free); Carol bids 3 at 500_000.
    x = exchange_alice_long_1_bob_short_1_perp_at_50k()
    x.place(CAROL, PERP, Side.BUY, 3, 500_000)
    # Action: Alice sells 3 (reserving 3 × 50.25 for the worst case, all opening).
    step = x.place(ALICE, PERP, Side.SELL, 3, 500_000)
    # Expectation: 1 lot closes (50 back, PnL 0), 2 open short (100 locked); fees 0.25 + 0.75.
    assert x.free(ALICE) == 899_000_000
    assert (
        PositionChanged(
            trader=ALICE,
            market=PERP,
            order_id=step.order_id,
            trade_id=2,
            size=-2,
            delta_size=-3,
            basis=100_000_000,
            collateral=100_000_000,
            realized_pnl=0,
            last_px=500_000,
        )
        in step.events
    )


def test_reduce_only_order_filling_after_its_position_is_gone_opens_from_free() -> None:
    # State: Alice long 1; her reduce-only sell of 1 rests at 600_000 (0.3 fee held); then she
    # closes the long with an ordinary sell to Carol.
    x = exchange_alice_long_1_bob_short_1_perp_at_50k()
    x.place(ALICE, PERP, Side.SELL, 1, 600_000, reduce_only=True)
    x.place(CAROL, PERP, Side.BUY, 1, 500_000)
    x.place(ALICE, PERP, Side.SELL, 1, 500_000)
    assert x.position(ALICE, PERP).size == 0
    free = x.free(ALICE)
    # Action: Dave lifts the stale reduce-only sell.
    x.place(DAVE, PERP, Side.BUY, 1, 600_000)
    # Expectation: it opens a short of 1 at 600_000; the 60 collateral and 0.3 fee come from the
    # 0.3 held plus her free balance.
    position = x.position(ALICE, PERP)
    assert (position.size, position.collateral) == (-1, 60_000_000)
    assert x.free(ALICE) == free - 60_000_000


# -- options --------------------------------------------------------------------------------------


def test_option_premium_goes_buyer_to_writer_and_buy_back_releases_writer_collateral() -> None:
    # State: Bob (100 USDC) writes 1 CALL strike 60,000 at premium 20_000 ticks (2 USDC): 60 held.
    x = exchange_each_with(1_000 * USDC, ALICE)
    x.deposit(BOB, 100 * USDC)
    x.place(BOB, CALL_60K, Side.SELL, 1, 20_000)
    assert x.free(BOB) == 40 * USDC
    # Action: Alice buys it.
    x.place(ALICE, CALL_60K, Side.BUY, 1, 20_000)
    # Expectation: Alice pays 2 + 0.01; Bob gets 2 − 0.01 and locks 60.
    alice, bob = x.position(ALICE, CALL_60K), x.position(BOB, CALL_60K)
    assert (x.free(ALICE), alice.size, alice.basis, alice.collateral) == (997_990_000, 1, 2_000_000, 0)
    assert (x.free(BOB), bob.size, bob.basis, bob.collateral) == (41_990_000, -1, 2_000_000, 60_000_000)
    assert x.risk.ledger.clearing == 0
    # Action: Bob buys it back at 30_000 (3 USDC) from Alice.
    x.place(BOB, CALL_60K, Side.BUY, 1, 30_000, reduce_only=True)
    x.place(ALICE, CALL_60K, Side.SELL, 1, 30_000, reduce_only=True)
    # Expectation: Bob: 60 released − 3 premium − 0.015 fee, PnL −1; Alice: 3 − 0.015, PnL +1.
    assert (x.free(BOB), bob.size, bob.collateral, bob.realized_pnl) == (98_975_000, 0, 0, -1_000_000)
    assert (x.free(ALICE), alice.size, alice.realized_pnl) == (1_000_975_000, 0, 1_000_000)
    assert (x.risk.ledger.clearing, x.risk.ledger.fees) == (0, 50_000)


def test_put_buy_back_above_the_collateral_without_funds_is_advanced_by_insurance() -> None:
    # State: Bob (40 USDC) wrote 1 PUT strike 40,000 to Alice at 2 USDC: 40 locked, 1.99 free.
    x = exchange_each_with(1_000 * USDC, ALICE, CAROL)
    x.deposit(BOB, 40 * USDC)
    x.place(BOB, PUT_40K, Side.SELL, 1, 20_000)
    x.place(ALICE, PUT_40K, Side.BUY, 1, 20_000)
    assert (x.free(BOB), x.locked(BOB)) == (1_990_000, 40_000_000)
    # Action: he buys it back from Carol at 450_000 ticks (45 USDC), reduce-only (0.225 fee held).
    x.place(CAROL, PUT_40K, Side.SELL, 1, 450_000)
    step = x.place(BOB, PUT_40K, Side.BUY, 1, 450_000, reduce_only=True)
    # Expectation: 40 released + 1.99 free cover 41.99 of 45.225; INSURANCE advances 3.235.
    assert (x.free(BOB), x.locked(BOB), x.risk.ledger.insurance) == (0, 0, -3_235_000)
    assert [e.amount for e in step.events if isinstance(e, InsuranceDrawn)] == [3_235_000]
    assert x.position(BOB, PUT_40K).realized_pnl == 2_000_000 - 45_000_000


# -- fees -----------------------------------------------------------------------------------------


def test_each_fill_pays_its_own_rounded_fee_within_the_per_lot_reservation() -> None:
    # State: on ODD-PERP (maker 0.2 %, taker 0.5 %) Alice bids 3 at 333: 3 × (333 + 2) held.
    x = exchange_each_with(10_000, ALICE, BOB)
    x.place(ALICE, ODD, Side.BUY, 3, 333)
    assert x.free(ALICE) == 10_000 - 1_005
    # Action: Bob sells into it one lot at a time.
    for _ in range(3):
        x.place(BOB, ODD, Side.SELL, 1, 333)
    # Expectation: Alice (maker) pays 333 + ceil(0.666) = 334 per fill, 3 come back; Bob (taker)
    # locks 333 + ceil(1.665) = 335 per fill, exactly what he reserved.
    assert (x.free(ALICE), x.free(BOB)) == (10_000 - 3 * 334, 10_000 - 3 * 335)
    assert x.risk.ledger.fees == 3 * 1 + 3 * 2


# -- releases -------------------------------------------------------------------------------------


def _bob_offers_1_at_50k(x: Exchange) -> None:
    x.place(BOB, PERP, Side.SELL, 1, 500_000)


@pytest.mark.parametrize(
    ("scenario", "alice_free_after"),
    [
        # Alice buys 3, 1 fills against Bob, the IOC remainder is cancelled: she paid 50.25
        ("ioc_remainder", 949_750_000),
        # a post-only bid that would cross is rejected by the matcher (3010): nothing paid
        ("post_only_would_cross", 1_000 * USDC),
        # a FOK for 3 with 1 available is rejected by the matcher (3011)
        ("fok_would_not_fill", 1_000 * USDC),
        # a GTC for 3 fills 1, then she cancels the 2 left
        ("user_cancel_after_partial_fill", 949_750_000),
        # a GTT bid expires when the next command reaches the book
        ("gtt_expired", 1_000 * USDC),
        # the market settles: resting orders are cancelled (MARKET_CLOSED)
        ("market_settled", 1_000 * USDC),
        # self-trade prevention cancels Alice's own resting offer (her new bid rests)
        ("self_trade_cancels_maker", 1_000 * USDC - 50_250_000),
        # the matcher refuses a client order id already open (risk does not check those)
        ("duplicate_client_order_id", 1_000 * USDC - 49_245_000),
    ],
)
def test_what_the_matcher_does_not_fill_is_released(scenario: str, alice_free_after: int) -> None:
    # State: Alice and Bob have 1,000 USDC each.
    x = exchange_each_with(1_000 * USDC, ALICE, BOB)
    # Action: the scenario.
    if scenario == "ioc_remainder":
        _bob_offers_1_at_50k(x)
        x.place(ALICE, PERP, Side.BUY, 3, 500_000, time_in_force=TimeInForce.IOC)
    elif scenario == "post_only_would_cross":
        _bob_offers_1_at_50k(x)
        assert x.place(ALICE, PERP, Side.BUY, 1, 500_000, post_only=True).code == 3010
    elif scenario == "fok_would_not_fill":
        _bob_offers_1_at_50k(x)
        assert x.place(ALICE, PERP, Side.BUY, 3, 500_000, time_in_force=TimeInForce.FOK).code == 3011
    elif scenario == "user_cancel_after_partial_fill":
        _bob_offers_1_at_50k(x)
        oid = x.place(ALICE, PERP, Side.BUY, 3, 500_000).order_id
        x.cancel(ALICE, PERP, oid)
    elif scenario == "gtt_expired":
        x.place(ALICE, PERP, Side.BUY, 1, 400_000, time_in_force=TimeInForce.GTT, expire_at=x.now + 1_500)
        x.place(BOB, PERP, Side.SELL, 1, 600_000)
        x.cancel_all(BOB)
    elif scenario == "market_settled":
        x.place(ALICE, PERP, Side.BUY, 1, 400_000)
        x.set_status(PERP, MarketStatus.SETTLED)
        assert x.bodies(OrderCancelled)[0].reason == "MARKET_CLOSED"
    elif scenario == "self_trade_cancels_maker":
        x.place(ALICE, PERP, Side.SELL, 1, 500_000)
        x.place(ALICE, PERP, Side.BUY, 1, 500_000)
        assert x.bodies(OrderCancelled)[0].reason == "SELF_TRADE_PREVENTED"
    elif scenario == "duplicate_client_order_id":
        x.place(ALICE, PERP, Side.BUY, 1, 490_000, client_order_id="mine")
        x.place(ALICE, PERP, Side.BUY, 1, 480_000, client_order_id="mine")
        assert x.bodies(OrderRejected)[0].reason == "DUPLICATE_CLIENT_ORDER_ID"
    # Expectation: whatever was not filled is back in free.
    assert x.free(ALICE) == alice_free_after
    assert x.reserved(ALICE) == sum(o.reserved_usdc for o in x.risk.ledger.trader_orders(ALICE))


def test_amend_refused_by_the_matcher_gives_back_what_risk_held_for_it() -> None:
    # State: Bob offers at 500_000; Alice bids 1 at 490_000 (49.245 held).
    x = exchange_each_with(1_000 * USDC, ALICE, BOB)
    _bob_offers_1_at_50k(x)
    oid = x.place(ALICE, PERP, Side.BUY, 1, 490_000).order_id
    # Action: she amends to 500_000; risk holds 1.005 more, the matcher refuses (would cross).
    step = x.amend(ALICE, PERP, oid, new_price=500_000)
    # Expectation: refused with 3031, and the 1.005 is free again.
    assert step.code == 3031
    assert (x.free(ALICE), x.risk.ledger.orders[oid].reserved_usdc) == (950_755_000, 49_245_000)
    assert x.risk.ledger.orders[oid].amend is None


# -- deposits -------------------------------------------------------------------------------------


def test_deposit_is_credited_once() -> None:
    # State: an empty exchange.
    x = Exchange(*ALL_MARKETS)
    # Action: a deposit, then the same deposit again (a replay of the chain event).
    events = x.deposit(ALICE, 5 * USDC)
    (_, deposit) = x.inputs[-1][1]
    again = x.risk.apply_deposit(ALICE, deposit)
    # Expectation: credited once, reported once.
    assert x.free(ALICE) == 5 * USDC and again == []
    assert events == [
        BalanceChanged(
            trader=ALICE,
            free=5 * USDC,
            reserved=0,
            withdrawing=0,
            locked=0,
            delta_free=5 * USDC,
            reason=ChangeReason.DEPOSIT,
            ref=f"0:{deposit.tx_hash}:0",
        )
    ]
