"""Money: exact notional, and rounding that never favours the trader."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.money import (
    BasisPoints,
    Lots,
    MicroUsdc,
    Ticks,
    fee_charged,
    format_usdc,
    mul_div_ceil,
    mul_div_floor,
    notional,
    unrealized_pnl,
    usdc_to_micro,
)


def test_notional_is_exact() -> None:
    # State: BTC-PERP, tick 0.1 USDC, lot 0.001 BTC → one tick on one lot = 100 micro-USDC.
    # Action: 2 lots at 650,001 ticks (65,000.1 USDC).
    value = notional(Ticks(650_001), Lots(2), MicroUsdc(100))
    # Expectation: 130.0002 USDC exactly.
    assert value == 130_000_200


@pytest.mark.parametrize(
    ("amount", "bps", "fee"),
    [
        (1_000_000, 50, 5_000),  # 1 USDC at 0.5 % = 0.005 USDC, exact
        (1, 50, 1),  # a fraction of a micro-unit rounds up to 1
        (199, 50, 1),  # 0.995 → 1
        (201, 50, 2),  # 1.005 → 2
        (0, 50, 0),
    ],
)
def test_fee_rounds_up(amount: int, bps: int, fee: int) -> None:
    assert fee_charged(MicroUsdc(amount), BasisPoints(bps)) == fee


@given(st.integers(-(10**15), 10**15), st.integers(0, 10**6), st.integers(1, 10**6))
def test_floor_and_ceil_bracket_the_exact_ratio(a: int, b: int, d: int) -> None:
    lo, hi = mul_div_floor(a, b, d), mul_div_ceil(a, b, d)
    assert lo * d <= a * b <= hi * d
    assert hi - lo in (0, 1)


def test_zero_divisor_is_refused() -> None:
    with pytest.raises(ValueError, match="divisor"):
        mul_div_floor(1, 1, 0)


def test_usdc_parsing_and_formatting_round_trip() -> None:
    assert usdc_to_micro(12, "5") == 12_500_000
    assert format_usdc(MicroUsdc(-1_250_000)) == "-1.250000"
    with pytest.raises(ValueError, match="6 decimals"):
        usdc_to_micro(1, "1234567")


@pytest.mark.parametrize(
    ("size", "basis", "mark", "pnl"),
    [
        (2, 130_000_000, 660_000, 2_000_000),  # long 2 lots from 650,000 ticks: +2 USDC at 660,000
        (-2, 130_000_000, 660_000, -2_000_000),  # the short's loss is the long's gain
        (-1, 65_000_000, 1_300_000, -65_000_000),  # a 1x short at twice its entry has lost it all
        (3, 3_000_000, 0, -3_000_000),  # a long can lose its entry value, no more
    ],
)
def test_unrealized_pnl_is_exact(size: int, basis: int, mark: int, pnl: int) -> None:
    # State: BTC-PERP, 100 micro-USDC per tick-lot. Action: value the position at `mark`.
    assert unrealized_pnl(Lots(size), MicroUsdc(basis), Ticks(mark), MicroUsdc(100)) == pnl
