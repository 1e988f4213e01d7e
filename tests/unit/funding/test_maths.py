"""Funding, expiry, marks and Black-76: the pure maths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.money import Lots
from services.common.records import OptionType
from services.funding.core import black76
from services.funding.core.expiry import (
    holder_receives,
    option_payoff_per_lot,
    settlement_price,
    writer_settlement,
)
from services.funding.core.funding import (
    first_interval_after,
    funding_payment,
    funding_rate_e9,
    interval_containing,
)
from services.funding.core.marks import BasisWindow, MarkSource, option_mark, perp_mark
from services.funding.core.prices import index_to_ticks

HOUR_US = 3_600_000_000

# -- funding ------------------------------------------------------------------------------------------


def test_intervals_are_aligned_to_the_epoch() -> None:
    # State: an instant 90 min after an hour boundary. Expectation: the hour it is in, and the next.
    at = 1_795_392_000_000_000 + 90 * 60_000_000
    assert interval_containing(at, 3_600) == (1_795_395_600_000_000, 1_795_395_600_000_000 + HOUR_US)
    assert first_interval_after(at, 3_600)[0] == 1_795_399_200_000_000
    assert first_interval_after(1_795_392_000_000_000, 3_600)[0] == 1_795_392_000_000_000


@given(
    mark=st.integers(1, 10**9), index=st.integers(1, 10**9), cap=st.integers(0, 10**9)
)  # fmt: skip
def test_rate_is_the_premium_truncated_toward_zero_and_clamped(mark: int, index: int, cap: int) -> None:
    # Action: the rate. Expectation: within the cap, same sign as the premium, never rounded away.
    rate = funding_rate_e9(mark, index, cap)
    premium = mark - index
    toward_zero = abs(premium) * 10**9 // index * (1 if premium >= 0 else -1)
    assert rate == max(-cap, min(cap, toward_zero))
    assert abs(rate) <= cap


@st.composite
def matched_positions(draw: st.DrawFn) -> list[int]:
    """Signed positions of one market that net to zero (every long lot has a short lot)."""
    trades = draw(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(1, 50)), max_size=30))
    sizes = [0] * 8
    for buyer, seller, lots in trades:
        sizes[buyer] += lots
        sizes[seller] -= lots
    return sizes


@given(
    sizes=matched_positions(),
    rate=st.integers(-5_000_000, 5_000_000),
    index=st.integers(1, 10**8),
    qptl=st.integers(1, 10_000),
)
def test_funding_nets_to_zero_in_clearing_and_fees_take_only_the_rounding(
    sizes: list[int], rate: int, index: int, qptl: int
) -> None:
    # State: positions netting to zero. Action: each one's funding for one interval.
    payments = [funding_payment(Lots(size), rate, index, qptl) for size in sizes]
    # Expectation: CLEARING nets exactly to zero; money is conserved (traders + FEES + CLEARING = 0);
    # payers pay ceil per lot (the rounding to FEES), receivers get floor per lot.
    assert sum(p.clearing_delta for p in payments) == 0
    assert sum(p.amount + p.to_fees + p.clearing_delta for p in payments) == 0
    value = index * qptl * abs(rate)
    ceil, floor = -(-value // 10**9), value // 10**9
    for size, payment in zip(sizes, payments, strict=True):
        pays = size != 0 and rate != 0 and (size > 0) == (rate > 0)
        if pays:
            assert (payment.amount, payment.to_fees) == (-ceil * abs(size), (ceil - floor) * abs(size))
        else:
            assert (payment.amount, payment.to_fees) == (floor * abs(size), 0)


def test_positive_rate_longs_pay_shorts_and_negative_the_other_way() -> None:
    # State: BTC at 65,000 USD (650,000 ticks of 0.1), 100 µUSDC per tick-lot, rate +0.01 %.
    # Expectation: 6.5 USDC per lot, long pays, short receives; reversed for a negative rate.
    assert funding_payment(Lots(2), 100_000, 650_000, 100).amount == -13_000
    assert funding_payment(Lots(-2), 100_000, 650_000, 100).amount == 13_000
    assert funding_payment(Lots(2), -100_000, 650_000, 100).amount == 13_000
    assert funding_payment(Lots(-2), -100_000, 650_000, 100).amount == -13_000
    assert funding_payment(Lots(0), 100_000, 650_000, 100).amount == 0


# -- expiry -------------------------------------------------------------------------------------------


def test_settlement_price_is_the_index_twap_over_the_window_before_expiry() -> None:
    # State: rounds 100 (held from before the window), 200 from mid-window, 900 after expiry.
    expiry = 10_000_000_000
    window_s = 1_800
    start = expiry - window_s * 1_000_000
    rounds = [(start - 5, 100), (start + 900_000_000, 200), (expiry, 900)]
    # Expectation: (100 × 900 s + 200 × 900 s) / 1,800 s; the post-expiry round does not count.
    assert settlement_price(rounds, expiry, window_s) == 150
    assert settlement_price([(expiry, 900)], expiry, window_s) is None


@given(
    option_type=st.sampled_from(OptionType),
    settle=st.integers(1, 10**7),
    strike=st.integers(1, 10**7),
    qptl=st.integers(1, 1_000),
    lots=st.integers(0, 1_000),
)
def test_writers_pay_exactly_what_holders_get_within_their_collateral(
    option_type: OptionType, settle: int, strike: int, qptl: int, lots: int
) -> None:
    # Action: settle `lots` written and held at `settle`.
    writer = writer_settlement(Lots(lots), option_type, settle, strike, qptl)
    held = holder_receives(Lots(lots), option_type, settle, strike, qptl)
    # Expectation: conservation, payoff within the strike × qptl collateral, the CALL cap.
    assert writer.pays == held
    assert writer.pays + writer.released == strike * qptl * lots
    assert writer.released >= 0
    per_lot = option_payoff_per_lot(option_type, settle, strike, qptl)
    if option_type is OptionType.CALL:
        assert per_lot == min(max(settle - strike, 0), strike) * qptl
    else:
        assert per_lot == max(strike - settle, 0) * qptl


# -- prices and marks ---------------------------------------------------------------------------------


def test_index_converts_to_ticks_half_down() -> None:
    assert index_to_ticks(65_000_050_000_000, 100_000_000) == 650_000
    assert index_to_ticks(65_000_050_000_001, 100_000_000) == 650_001
    assert index_to_ticks(65_000_049_999_999, 100_000_000) == 650_000


def test_perp_mark_follows_the_average_basis_within_the_clamp() -> None:
    # State: a window of 3 rounds. Action: observe four bases (the first drops out).
    window = BasisWindow(3)
    for basis in (1_000, 10, 20, 30):
        window = window.observe(basis)
    # Expectation: the average of the last three; a large basis is clamped to 50 bps.
    assert window.samples == (10, 20, 30)
    assert perp_mark(100_000, window) == 100_020
    assert perp_mark(100_000, BasisWindow(3, (5_000,))) == 100_500
    assert perp_mark(100_000, BasisWindow(3)) == 100_000


def test_option_mark_uses_a_tight_book_else_the_model() -> None:
    common = {"index_ticks": 650_000, "strike_ticks": 650_000, "t_years": 30 / 365, "vol": 0.6}
    # Tight book (spread 2 % of mid): the mid.
    tight = option_mark(OptionType.PUT, bid=29_700, ask=30_300, **common)  # type: ignore[arg-type]
    assert tight == (tight.__class__(30_000, MarkSource.BOOK))
    # Wide or one-sided book: Black-76 (ATM ≈ 0.4 × F × σ√T ≈ 44,960 ticks).
    wide = option_mark(OptionType.PUT, bid=1, ask=90_000, **common)  # type: ignore[arg-type]
    assert wide.source is MarkSource.MODEL
    assert wide.price == pytest.approx(44_900, rel=0.01)
    # A CALL is capped at the strike: worth less than the plain call.
    call = option_mark(OptionType.CALL, bid=None, ask=None, **common)  # type: ignore[arg-type]
    plain = black76.price(OptionType.CALL, 650_000.0, 650_000.0, 30 / 365, 0.6)
    assert call.price <= round(plain)


def test_deep_out_of_the_money_model_mark_is_at_least_one_tick() -> None:
    mark = option_mark(
        OptionType.PUT, bid=None, ask=None, index_ticks=650_000, strike_ticks=100, t_years=0.01, vol=0.5
    )
    assert mark.price == 1


# -- Black-76 -----------------------------------------------------------------------------------------


@given(
    option_type=st.sampled_from(OptionType),
    moneyness=st.floats(0.5, 2.0),
    t_years=st.floats(1 / 365, 2.0),
    vol=st.floats(0.05, 3.0),
)
def test_price_to_implied_vol_to_price_round_trips(
    option_type: OptionType, moneyness: float, t_years: float, vol: float
) -> None:
    # State: a Black-76 price of a 100-forward option.
    forward, strike = 100.0, 100.0 * moneyness
    value = black76.price(option_type, forward, strike, t_years, vol)
    # Prices indistinguishable from intrinsic carry no information about σ.
    if value - black76.intrinsic(option_type, forward, strike) < 1e-6:
        return
    # Action: invert it.
    result = black76.implied_vol(option_type, value, forward, strike, t_years)
    # Expectation: a vol whose price is the same price (the vol itself may be flat in price).
    assert result.vol is not None, result
    assert black76.price(option_type, forward, strike, t_years, result.vol) == pytest.approx(value, abs=1e-6)


def test_put_call_parity_and_vega() -> None:
    f, k, t, v = 100.0, 90.0, 0.5, 0.4
    call, put = black76.price(OptionType.CALL, f, k, t, v), black76.price(OptionType.PUT, f, k, t, v)
    assert call - put == pytest.approx(f - k)
    bump = (black76.price(OptionType.CALL, f, k, t, v + 1e-6) - call) / 1e-6
    assert black76.vega(f, k, t, v) == pytest.approx(bump, rel=1e-4)


@pytest.mark.parametrize(
    ("option_type", "price", "failure"),
    [
        (OptionType.CALL, 5.0, black76.IvFailure.BELOW_INTRINSIC),  # intrinsic is 10
        (OptionType.CALL, 100.0, black76.IvFailure.ABOVE_MAXIMUM),  # a call is worth less than F
        (OptionType.PUT, 90.0, black76.IvFailure.ABOVE_MAXIMUM),  # a put is worth less than K
    ],
)
def test_prices_outside_no_arbitrage_bounds_have_no_vol(
    option_type: OptionType, price: float, failure: black76.IvFailure
) -> None:
    result = black76.implied_vol(option_type, price, 100.0, 90.0, 0.5)
    assert (result.vol, result.failure) == (None, failure)
    assert black76.implied_vol(OptionType.CALL, 12.0, 100.0, 90.0, 0.0).failure is black76.IvFailure.EXPIRED
