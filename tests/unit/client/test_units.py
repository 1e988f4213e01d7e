"""Human decimals ↔ ticks, lots and micro-USDC: exact, and off-grid values are refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.client.units import (
    E9,
    INT64_MAX,
    OffGrid,
    from_lots,
    from_ticks,
    from_units,
    micro_to_usdc,
    to_lots,
    to_ticks,
    to_units,
    usdc_to_micro,
)

BTC_TICK_E9 = 100_000_000  # 0.1 USDC
BTC_LOT_E9 = 1_000_000  # 0.001 BTC


@pytest.mark.parametrize(
    ("text", "ticks"),
    [("65000.5", 650_005), ("65000.50", 650_005), ("0.1", 1), ("65000", 650_000), ("6.5e4", 650_000),
     (Decimal("65000.5"), 650_005), (65000, 650_000)],
)  # fmt: skip
def test_prices_on_the_grid_convert_exactly(text: str | Decimal | int, ticks: int) -> None:
    assert to_ticks(text, BTC_TICK_E9) == ticks


@pytest.mark.parametrize("text", ["65000.05", "0.05", "1.0000000001", "65000.55"])
def test_prices_off_the_grid_are_refused_not_rounded(text: str) -> None:
    with pytest.raises(OffGrid, match=r"not a multiple of 0\.1"):
        to_ticks(text, BTC_TICK_E9)


@pytest.mark.parametrize("text", ["0", "-0.1", "abc", "", "NaN", "Infinity", "0x10", "1,5"])
def test_non_positive_or_non_numbers_are_refused(text: str) -> None:
    with pytest.raises(OffGrid):
        to_lots(text, BTC_LOT_E9)


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        to_ticks(0.1, BTC_TICK_E9)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_ticks(True, BTC_TICK_E9)


def test_sizes_convert_exactly() -> None:
    assert to_lots("0.003", BTC_LOT_E9) == 3
    assert from_lots(3, BTC_LOT_E9) == Decimal("0.003")
    with pytest.raises(OffGrid, match=r"0\.001"):
        to_lots("0.0035", BTC_LOT_E9)


def test_large_values_do_not_round_in_a_decimal_context() -> None:
    # 28 significant digits is Decimal's default precision: this has 30 and must still be exact.
    text = "92233720368547758.07"  # (2**63 - 1) hundredths
    assert to_units(text, 10_000_000) == INT64_MAX
    assert from_units(INT64_MAX, 10_000_000) == Decimal(text)
    with pytest.raises(OffGrid, match="int64"):
        to_units("92233720368547758.08", 10_000_000)


def test_display_has_no_trailing_zeros_and_no_exponent_for_whole_numbers() -> None:
    assert str(from_ticks(650_000, BTC_TICK_E9)) == "65000"
    assert str(from_units(100, E9)) == "100"
    assert format(from_units(1, 1), "f") == "0.000000001"


def test_usdc_has_six_decimals() -> None:
    assert usdc_to_micro("12.5") == 12_500_000
    assert usdc_to_micro("0.000001") == 1
    assert micro_to_usdc(-1_250_000) == Decimal("-1.250000")
    with pytest.raises(OffGrid, match="6 decimals"):
        usdc_to_micro("0.0000001")
    with pytest.raises(OffGrid, match="positive"):
        usdc_to_micro("0")


def test_the_unit_must_be_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="unit_e9"):
        to_units("1", 0)


units_e9 = st.integers(min_value=1, max_value=10**12)


@given(st.integers(min_value=1, max_value=10**15), units_e9)
def test_units_round_trip_through_their_decimal(units: int, unit_e9: int) -> None:
    value = from_units(units, unit_e9)
    assert to_units(value, unit_e9) == units
    assert to_units(format(value, "f"), unit_e9) == units
    assert to_units(str(value), unit_e9) == units


@given(st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal(10**9), places=9), units_e9)
def test_any_decimal_is_either_exactly_on_the_grid_or_refused(value: Decimal, unit_e9: int) -> None:
    on_grid = (value * E9) % unit_e9 == 0
    if on_grid:
        assert from_units(to_units(value, unit_e9), unit_e9) == value
    else:
        with pytest.raises(OffGrid):
            to_units(value, unit_e9)


@given(st.integers(min_value=1, max_value=INT64_MAX))
def test_usdc_round_trips(micro: int) -> None:
    assert usdc_to_micro(micro_to_usdc(micro)) == micro
