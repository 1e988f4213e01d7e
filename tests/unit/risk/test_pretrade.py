"""Pre-trade risk: what each order reserves, what gets forwarded, and every refusal code.

Numbers: on the BTC grid one tick on one lot is 100 micro-USDC, so 500_000 ticks (50,000 USDC) on
one lot (0.001 BTC) is 50 USDC, and its 0.5 % fee is 0.25 USDC.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from services.common.records import (
    AccountEvent,
    MarketStatus,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RequestWithdrawal,
    Side,
    TimeInForce,
    WithdrawalFailed,
    WithdrawalPaid,
    WithdrawalRequested,
)
from services.risk.core import BalanceChanged, ChangeReason, InvalidRiskInput, RiskEngine, RiskReject
from services.risk.core.state import export_state, import_state
from tests.kit import ALICE, BOB, CAROL
from tests.unit.risk.exchange import ALL_MARKETS, USDC, Exchange

PERP, SPOT, FUTURE, ODD = "BTC-PERP", "BTC-USDC", "BTC-20261225", "ODD-PERP"
CALL_60K, PUT_40K = "BTC-20261225-60000-C", "BTC-20261225-40000-P"


def exchange_alice_1000_usdc_3_synth_lots(*, run_matcher: bool = True) -> Exchange:
    x = Exchange(*ALL_MARKETS, run_matcher=run_matcher)
    x.deposit(ALICE, 1_000 * USDC)
    x.deposit_synth(ALICE, SPOT, 3)
    return x


def exchange_alice_long_2_perp_at_50k() -> Exchange:
    """Alice is long 2 BTC-PERP lots at 500_000 (Bob is short them); both had 1,000 USDC."""
    x = exchange_alice_1000_usdc_3_synth_lots()
    x.deposit(BOB, 1_000 * USDC)
    x.place(BOB, PERP, Side.SELL, 2, 500_000)
    x.place(ALICE, PERP, Side.BUY, 2, 500_000)
    assert x.position(ALICE, PERP).size == 2
    return x


# -- reservations ---------------------------------------------------------------------------------


class Reservation(NamedTuple):
    market: str
    side: Side
    size: int
    price: int
    options: dict[str, Any]
    usdc: int
    """Micro-USDC held back."""
    lots: int
    """Synth lots held back."""


@pytest.mark.parametrize(
    "case",
    [
        # spot BUY: notional + fee = 2 × (50 + 0.25)
        Reservation(SPOT, Side.BUY, 2, 500_000, {}, 100_500_000, 0),
        # spot SELL: the synth lots, no USDC (the fee comes out of the proceeds)
        Reservation(SPOT, Side.SELL, 2, 500_000, {}, 0, 2),
        # perpetual, either side: the 1x collateral (notional) + fee
        Reservation(PERP, Side.BUY, 2, 500_000, {}, 100_500_000, 0),
        Reservation(PERP, Side.SELL, 2, 500_000, {}, 100_500_000, 0),
        # future: 51 + 0.255
        Reservation(FUTURE, Side.BUY, 1, 510_000, {}, 51_255_000, 0),
        # MARKET order: at its protective price, 55 + 0.275
        Reservation(
            PERP,
            Side.BUY,
            1,
            550_000,
            {"order_type": OrderType.MARKET, "time_in_force": TimeInForce.IOC},
            55_275_000,
            0,
        ),
        # option BUY: premium 2 USDC + 0.01 fee, per lot
        Reservation(CALL_60K, Side.BUY, 3, 20_000, {}, 6_030_000, 0),
        # option SELL: the writer collateral, strike × qptl = 40 (put) or 60 (call) USDC per lot
        Reservation(PUT_40K, Side.SELL, 2, 20_000, {}, 80_000_000, 0),
        Reservation(CALL_60K, Side.SELL, 1, 25_000, {}, 60_000_000, 0),
        # rounding: 333 ticks × 1 micro-USDC, fee max(0.2 %, 0.5 %) = 1.665 → 2 per lot, × 3 lots
        Reservation(ODD, Side.BUY, 3, 333, {}, 3 * (333 + 2), 0),
    ],
    ids=[
        "spot_buy_2_at_50k_reserves_100.5",
        "spot_sell_2_reserves_2_lots",
        "perp_buy_2_at_50k_reserves_100.5",
        "perp_sell_2_at_50k_reserves_100.5",
        "future_buy_1_at_51k_reserves_51.255",
        "market_buy_reserves_at_protective_55k",
        "call_buy_3_at_premium_2_reserves_6.03",
        "put_write_2_locks_strike_40_each",
        "call_write_1_locks_strike_60",
        "odd_perp_fee_rounds_up_per_lot",
    ],
)
def test_order_reserves_its_worst_case(case: Reservation) -> None:
    market, side, size, price, options, usdc, lots = case
    # State: Alice has 1,000 USDC and 3 BTC synth lots; the matcher is not run (nothing fills).
    x = exchange_alice_1000_usdc_3_synth_lots(run_matcher=False)
    # Action: she places the order.
    step = x.place(ALICE, market, side, size, price, **options)
    # Expectation: forwarded, with exactly that much held back from free.
    assert step.result.rejection is None and len(step.result.forward) == 1
    order = x.risk.ledger.orders[step.order_id]
    assert (order.reserved_usdc, order.reserved_inventory) == (usdc, lots)
    assert x.free(ALICE) == 1_000 * USDC - usdc
    assert x.held(ALICE, SPOT) == (3 - lots, lots)


def test_fee_is_reserved_at_the_larger_of_maker_and_taker() -> None:
    # State: ODD-PERP charges makers 0.2 % and takers 0.5 %.
    x = exchange_alice_1000_usdc_3_synth_lots(run_matcher=False)
    # Action: a 1-lot order at 1,000 ticks (1,000 micro-USDC).
    step = x.place(ALICE, ODD, Side.BUY, 1, 1_000, order_id="odd-1")
    # Expectation: 1,000 + 5 (0.5 %), whichever role the order ends up in.
    assert step.code is None
    assert x.risk.ledger.orders["odd-1"].reserved_usdc == 1_005


def test_accepted_command_is_forwarded_unchanged() -> None:
    # State: Alice has collateral.
    x = exchange_alice_1000_usdc_3_synth_lots(run_matcher=False)
    # Action: a plain limit order.
    step = x.place(ALICE, PERP, Side.BUY, 1, 500_000)
    # Expectation: one MatcherCommand with the command's id, trader, time and body, keyed by market.
    command, (forwarded,) = step.result.command, step.result.forward
    assert (forwarded.command_id, forwarded.trader, forwarded.ts_init, forwarded.body) == (
        command.command_id,
        ALICE,
        command.ts_init,
        command.body,
    )
    assert forwarded.market == PERP
    assert step.result.events == (
        BalanceChanged(
            trader=ALICE,
            free=1_000 * USDC - 50_250_000,
            reserved=50_250_000,
            withdrawing=0,
            locked=0,
            delta_free=-50_250_000,
            reason=ChangeReason.ORDER_PLACED,
            ref=step.order_id,
        ),
    )


# -- reduce-only ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier_ro_sell", "size", "forwarded_size"),
    [
        (0, 2, 2),  # closes the whole long
        (0, 5, 2),  # capped by the position
        (1, 5, 1),  # capped by the position minus the other open reduce-only sell
    ],
    ids=["ro_sell_2_of_long_2", "ro_sell_5_capped_to_long_2", "ro_sell_5_capped_to_1_after_ro_sell_1"],
)
def test_reduce_only_reserves_the_fee_and_is_capped_by_the_position(
    earlier_ro_sell: int, size: int, forwarded_size: int
) -> None:
    # State: Alice is long 2 lots; maybe an earlier reduce-only sell already rests.
    x = exchange_alice_long_2_perp_at_50k()
    if earlier_ro_sell:
        x.place(ALICE, PERP, Side.SELL, earlier_ro_sell, 600_000, reduce_only=True)
    free = x.free(ALICE)
    # Action: a reduce-only sell far above the market (it rests).
    step = x.place(ALICE, PERP, Side.SELL, size, 600_000, reduce_only=True)
    # Expectation: forwarded with the capped size; only the fee is held: 0.3 USDC per lot at 60,000.
    (forwarded,) = step.result.forward
    assert isinstance(forwarded.body, PlaceOrder) and forwarded.body.size == forwarded_size
    assert x.free(ALICE) == free - forwarded_size * 300_000


# -- every refusal --------------------------------------------------------------------------------


def _alice_places(x: Exchange, market: str = PERP, side: Side = Side.BUY, size: int = 1, **kw: Any) -> Any:
    return x.place(ALICE, market, side, size, kw.pop("price", 500_000), **kw)


REFUSALS: list[tuple[str, Any, RiskReject]] = [
    (
        "perp_buy_needing_50.25_with_1000_minus_960_free",
        lambda x: (x.withdraw(ALICE, 960 * USDC), _alice_places(x))[1],
        RiskReject.INSUFFICIENT_COLLATERAL,
    ),
    ("order_on_unknown_market", lambda x: _alice_places(x, market="DOGE-PERP"), RiskReject.UNKNOWN_MARKET),
    (
        "order_on_paused_market",
        lambda x: (x.set_status(PERP, MarketStatus.PAUSED), _alice_places(x))[1],
        RiskReject.MARKET_NOT_ACTIVE,
    ),
    (
        "spot_sell_4_holding_3",
        lambda x: _alice_places(x, market=SPOT, side=Side.SELL, size=4),
        RiskReject.INSUFFICIENT_INVENTORY,
    ),
    (
        "spot_sell_amended_from_3_to_4_lots_holding_3",
        lambda x: x.amend(
            ALICE, SPOT, _alice_places(x, market=SPOT, side=Side.SELL, size=3).order_id, new_size=4
        ),
        RiskReject.INSUFFICIENT_INVENTORY,
    ),
    (
        "reduce_only_sell_without_position",
        lambda x: _alice_places(x, side=Side.SELL, reduce_only=True),
        RiskReject.REDUCE_ONLY_WOULD_INCREASE,
    ),
    ("size_0", lambda x: _alice_places(x, size=0), RiskReject.INVALID_ORDER),
    ("price_0", lambda x: _alice_places(x, price=0), RiskReject.INVALID_ORDER),
    (
        "reduce_only_on_spot",
        lambda x: _alice_places(x, market=SPOT, side=Side.SELL, reduce_only=True),
        RiskReject.INVALID_ORDER,
    ),
    (
        "order_id_already_open",
        lambda x: (_alice_places(x, order_id="dup"), _alice_places(x, order_id="dup"))[1],
        RiskReject.DUPLICATE_ORDER_ID,
    ),
    (
        "amend_of_unknown_order",
        lambda x: x.amend(ALICE, PERP, "no-such-order", new_size=2),
        RiskReject.UNKNOWN_ORDER,
    ),
    (
        "amend_of_bobs_order",
        lambda x: (
            x.deposit(BOB, 100 * USDC),
            x.place(BOB, PERP, Side.BUY, 1, 400_000, order_id="bobs"),
            x.amend(ALICE, PERP, "bobs", new_size=2),
        )[2],
        RiskReject.UNKNOWN_ORDER,
    ),
    ("withdrawal_of_0", lambda x: x.withdraw(ALICE, 0), RiskReject.INVALID_WITHDRAWAL),
    (
        "withdrawal_id_pending",
        lambda x: (x.withdraw(ALICE, USDC, "w7"), x.withdraw(ALICE, USDC, "w7"))[1],
        RiskReject.DUPLICATE_WITHDRAWAL_ID,
    ),
    (
        "withdrawal_after_its_expiry",
        lambda x: x.withdraw(ALICE, USDC, expire_at=x.now),
        RiskReject.WITHDRAWAL_EXPIRED,
    ),
    (
        "withdrawal_above_free",
        lambda x: x.withdraw(ALICE, 1_000 * USDC + 1),
        RiskReject.INSUFFICIENT_COLLATERAL,
    ),
    (
        "cancel_on_unknown_market",
        lambda x: x.cancel(ALICE, "DOGE-PERP", "o"),
        RiskReject.UNKNOWN_MARKET,
    ),
    (
        "cancel_all_on_unknown_market",
        lambda x: x.cancel_all(ALICE, "DOGE-PERP"),
        RiskReject.UNKNOWN_MARKET,
    ),
]


@pytest.mark.parametrize(("name", "act", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal_has_a_stable_code_and_changes_nothing_but_spends_the_nonce(
    name: str, act: Any, code: RiskReject
) -> None:
    # State: Alice has 1,000 USDC and 3 synth lots.
    x = exchange_alice_1000_usdc_3_synth_lots()
    # Action: the refused command (after its own set-up), watching the state just before it.
    before: list[RiskEngine] = []
    original = x.risk.apply_command

    def spy(command: Any) -> Any:
        before.append(import_state(*export_state(x.risk)))
        return original(command)

    x.risk.apply_command = spy  # type: ignore[method-assign]
    step = act(x)
    # Expectation: an OrderRejected with the code, nothing forwarded, nothing changed but the
    # signature's nonce, which is spent (the signed command cannot run again).
    rejection = step.result.rejection
    assert isinstance(rejection, OrderRejected)
    assert (rejection.reason_code, rejection.reason, rejection.trader) == (int(code), code.name, ALICE)
    assert step.result.forward == () and step.result.events == ()
    command = step.result.command
    expected = before[-1]
    expected.nonces.use(ALICE, command.body.nonce, command.ts_init, deadline=None)
    assert x.risk.state_hash() == expected.state_hash()
    assert x.submit(ALICE, command.body).code == RiskReject.NONCE_REUSED


def test_reduce_only_refusals_when_it_would_increase() -> None:
    # State: Alice is long 2; a reduce-only sell of 2 already rests.
    x = exchange_alice_long_2_perp_at_50k()
    # Action / Expectation: a reduce-only BUY would increase the long.
    assert x.place(ALICE, PERP, Side.BUY, 1, 400_000, reduce_only=True).code == 2005
    # Action / Expectation: once reduce-only sells cover the whole long, another one is refused.
    assert x.place(ALICE, PERP, Side.SELL, 2, 600_000, reduce_only=True).code is None
    assert x.place(ALICE, PERP, Side.SELL, 1, 600_000, reduce_only=True).code == 2005


def test_amend_while_another_amend_is_in_flight_is_refused() -> None:
    # State: the matcher has not yet answered Alice's first amendment.
    x = exchange_alice_1000_usdc_3_synth_lots(run_matcher=False)
    oid = x.place(ALICE, PERP, Side.BUY, 1, 500_000).order_id
    assert x.amend(ALICE, PERP, oid, new_size=2).code is None
    # Action: a second amendment.
    step = x.amend(ALICE, PERP, oid, new_size=3)
    # Expectation: AMEND_PENDING.
    assert step.code == RiskReject.AMEND_PENDING


# -- amendments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new_price", "new_size", "extra", "after"),
    [
        # 2 lots at 51,000 (51.255 each), worst case while in flight: fill 1 old + 1 new = 101.505,
        # or 2 new = 102.51 → 52.26 more; once amended: 102.51.
        (510_000, 2, 52_260_000, 102_510_000),
        # smaller and cheaper: nothing more held while in flight; once amended: 1 × 49.245
        (490_000, 1, 0, 49_245_000),
        # cheaper but larger: 3 × 49.245 = 147.735 or 50.25 + 2 × 49.245 = 148.74 → 98.49 more
        (490_000, 3, 98_490_000, 147_735_000),
    ],
    ids=["bigger_and_dearer", "smaller_and_cheaper", "larger_but_cheaper"],
)
def test_amend_holds_the_in_flight_worst_case_then_the_new_reservation(
    new_price: int, new_size: int, extra: int, after: int
) -> None:
    # State: Alice's BUY 1 @ 500_000 rests (50.25 held).
    x = exchange_alice_1000_usdc_3_synth_lots(run_matcher=False)
    oid = "alice-buy"
    x.book(x.place(ALICE, PERP, Side.BUY, 1, 500_000, order_id=oid).result.forward[0])
    # Action: risk accepts an amendment (not yet applied by the matcher).
    step = x.amend(ALICE, PERP, oid, new_price=new_price, new_size=new_size)
    # Expectation: held back more only if the worst case grew.
    assert step.code is None
    assert x.risk.ledger.orders[oid].reserved_usdc == 50_250_000 + extra
    # Action: the matcher applies it.
    x.book(step.result.forward[0])
    # Expectation: the reservation is exactly the new order's.
    assert x.risk.ledger.orders[oid].reserved_usdc == after
    assert x.free(ALICE) == 1_000 * USDC - after


def test_amend_not_covered_is_refused() -> None:
    # State: Alice's BUY 1 @ 500_000 rests and she has 10 USDC left.
    x = exchange_alice_1000_usdc_3_synth_lots()
    oid = x.place(ALICE, PERP, Side.BUY, 1, 500_000).order_id
    x.withdraw(ALICE, x.free(ALICE) - 10 * USDC)
    # Action: amend to 2 lots (another 50.25).
    step = x.amend(ALICE, PERP, oid, new_size=2)
    # Expectation: INSUFFICIENT_COLLATERAL, the order untouched.
    assert step.code == RiskReject.INSUFFICIENT_COLLATERAL
    assert x.risk.ledger.orders[oid].amend is None


def test_reduce_only_amend_beyond_the_position_is_refused() -> None:
    # State: Alice is long 2 and has a reduce-only sell of 1 resting.
    x = exchange_alice_long_2_perp_at_50k()
    oid = x.place(ALICE, PERP, Side.SELL, 1, 600_000, reduce_only=True).order_id
    # Action / Expectation: growing it to 2 is fine, to 3 is not.
    assert x.amend(ALICE, PERP, oid, new_size=3).code == 2005
    assert x.amend(ALICE, PERP, oid, new_size=2).code is None


# -- cancels --------------------------------------------------------------------------------------


def test_cancel_all_across_markets_becomes_one_command_per_market_with_open_orders() -> None:
    # State: Alice has orders resting on BTC-USDC (a sell) and BTC-PERP (a buy), none on the others.
    x = exchange_alice_1000_usdc_3_synth_lots()
    x.place(ALICE, SPOT, Side.SELL, 1, 600_000)
    x.place(ALICE, PERP, Side.BUY, 1, 400_000)
    # Action: cancel all, every market; then cancel all buys.
    every = x.cancel_all(ALICE)
    # Expectation: one command per market, in symbol order, each naming its market.
    assert [(c.market, c.body.market) for c in every.result.forward] == [(PERP, PERP), (SPOT, SPOT)]  # type: ignore[union-attr]
    assert all(c.command_id == every.result.command.command_id for c in every.result.forward)
    assert x.reserved(ALICE) == 0 and x.held(ALICE, SPOT) == (3, 0)
    # Action / Expectation: nothing left, so nothing to forward and nothing refused.
    again = x.cancel_all(ALICE, side=Side.BUY)
    assert again.result.forward == () and again.result.rejection is None


def test_cancel_all_with_a_side_skips_markets_without_orders_on_that_side() -> None:
    # State: a spot sell and a perp buy rest.
    x = exchange_alice_1000_usdc_3_synth_lots(run_matcher=False)
    x.place(ALICE, SPOT, Side.SELL, 1, 600_000)
    x.place(ALICE, PERP, Side.BUY, 1, 400_000)
    # Action: cancel all buys.
    step = x.cancel_all(ALICE, side=Side.BUY)
    # Expectation: only BTC-PERP.
    assert [c.market for c in step.result.forward] == [PERP]


def test_cancel_is_forwarded_even_on_a_paused_market() -> None:
    # State: Alice's order rests; the market is paused (circuit breaker).
    x = exchange_alice_1000_usdc_3_synth_lots()
    oid = x.place(ALICE, PERP, Side.BUY, 1, 400_000).order_id
    x.set_status(PERP, MarketStatus.PAUSED)
    # Action: she cancels.
    step = x.cancel(ALICE, PERP, oid)
    # Expectation: forwarded, cancelled by the matcher, reservation released.
    assert step.code is None and len(step.result.forward) == 1
    assert x.free(ALICE) == 1_000 * USDC


# -- withdrawals ----------------------------------------------------------------------------------


def test_withdrawal_moves_free_to_withdrawing_until_paid_or_failed() -> None:
    # State: Alice has 1,000 USDC free; Carol has nothing.
    x = exchange_alice_1000_usdc_3_synth_lots()
    # Action: she asks for 400 and 100.
    step = x.withdraw(ALICE, 400 * USDC, "w1")
    x.withdraw(ALICE, 100 * USDC, "w2")
    # Expectation: WithdrawalRequested for accounts.events, 500 set aside.
    request = step.result.command.body
    assert isinstance(request, RequestWithdrawal)
    assert step.result.account_events == (
        WithdrawalRequested(
            withdrawal_id="w1",
            amount=400 * USDC,
            as_cxpt=False,
            nonce=request.nonce,
            expire_at=request.expire_at,
            signature=request.signature,  # the Vault checks it again on-chain
        ),
    )
    (record,) = step.result.account_records(lambda i: f"orders.commands:0:9:{i}")
    assert (record.event_id, record.trader, record.ts_event) == (
        "orders.commands:0:9:0",
        ALICE,
        x.now - 1_000,
    )
    account = x.risk.ledger.accounts[ALICE]
    assert (account.free, account.withdrawing) == (500 * USDC, 500 * USDC)
    # Action: settlement pays w1, and w2 fails.
    x.risk.apply_withdrawal_paid(ALICE, "w1")
    x.risk.apply_withdrawal_failed(ALICE, "w2")
    # Expectation: 400 left the exchange, 100 came back.
    x.risk.validate()
    assert (account.free, account.withdrawing) == (600 * USDC, 0)
    assert (x.risk.ledger.deposited, x.risk.ledger.withdrawn) == (1_000 * USDC, 400 * USDC)
    assert x.withdraw(CAROL, 1).code == RiskReject.INSUFFICIENT_COLLATERAL


def test_withdrawals_settled_on_chain_arrive_as_account_events_once() -> None:
    # State: Alice asked for 400 (w1) and 100 (w2) out of 1,000.
    x = exchange_alice_1000_usdc_3_synth_lots()
    x.withdraw(ALICE, 400 * USDC, "w1")
    x.withdraw(ALICE, 100 * USDC, "w2")

    def chain_says(body: WithdrawalPaid | WithdrawalFailed) -> list[object]:
        event = AccountEvent(event_id=f"chain:{body.withdrawal_id}", trader=ALICE, ts_event=x.now, body=body)
        return list(x.risk.apply_account_event(event))

    paid = WithdrawalPaid(
        trader=ALICE, withdrawal_id="w1", amount=400 * USDC, as_cxpt=False, chain_id=31337,
        tx_hash="0xab", log_index=0, block_number=7,
    )  # fmt: skip
    failed = WithdrawalFailed(trader=ALICE, withdrawal_id="w2", amount=100 * USDC, reason="DEADLINE_PASSED")
    # Action: the watcher reports w1 paid, settlement reports w2 failed — and each again after a restart.
    first = chain_says(paid) + chain_says(failed)
    again = chain_says(paid) + chain_says(failed)
    # Expectation: 400 left the exchange, 100 came back to free, once; the repeats change nothing.
    x.risk.validate()
    assert [e.reason for e in first if isinstance(e, BalanceChanged)] == [
        ChangeReason.WITHDRAWAL_PAID,
        ChangeReason.WITHDRAWAL_FAILED,
    ]
    assert again == []
    account = x.risk.ledger.accounts[ALICE]
    assert (account.free, account.withdrawing, x.risk.ledger.withdrawn) == (600 * USDC, 0, 400 * USDC)


def test_a_withdrawal_risk_never_reserved_is_invalid_input() -> None:
    x = exchange_alice_1000_usdc_3_synth_lots()
    body = WithdrawalFailed(trader=ALICE, withdrawal_id="nope", amount=1, reason="REVERTED")
    event = AccountEvent(event_id="settlement:1", trader=ALICE, ts_event=x.now, body=body)
    with pytest.raises(InvalidRiskInput, match="no pending withdrawal nope"):
        x.risk.apply_account_event(event)
    assert "withdrawal:nope" not in x.risk.ledger.deposit_ids  # nothing half-recorded
