"""Human decimals ↔ the exchange's integers (ticks, lots, micro-USDC), exactly. Pure.

A market's grid is given in billionths (`tick_size_e9`, `lot_size_e9`, as `GET /markets` and the
Avro `MarketDefinition` carry it): a price of "65000.5" on a 0.1 tick (`tick_size_e9` 100_000_000)
is 650_005 ticks. Conversions go through `fractions.Fraction`, so no float and no `Decimal` context
ever rounds: a value off the grid is refused (`OffGrid`), never nudged onto it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Final

from services.common.money import MICRO_PER_USDC, Lots, MicroUsdc, Ticks

E9: Final = 1_000_000_000
INT64_MAX: Final = 2**63 - 1

DecimalLike = str | Decimal | int
"""What the conversions take: a decimal string, a `Decimal` or an `int` — never a float."""


class OffGrid(ValueError):
    """A value that is not a positive whole number of the unit (or not a number at all)."""


def to_units(value: DecimalLike, unit_e9: int, what: str = "value") -> int:
    """`value` as a positive whole number of units of `unit_e9`/1e9; `OffGrid` if it is not one.

    >>> to_units("65000.5", 100_000_000, "price")
    650005
    """
    if isinstance(unit_e9, bool) or not isinstance(unit_e9, int) or unit_e9 <= 0:
        raise ValueError(f"unit_e9 must be a positive integer, got {unit_e9!r}")
    exact = _exact(value, what)
    units = exact * E9 / unit_e9
    if units.denominator != 1:
        raise OffGrid(f"{what} {value} is not a multiple of {from_units(1, unit_e9)}")
    if not 0 < units.numerator <= INT64_MAX:
        raise OffGrid(f"{what} {value} must be positive (and fit int64 once counted in units)")
    return units.numerator


def from_units(units: int, unit_e9: int) -> Decimal:
    """`units` counts of `unit_e9`/1e9 as an exact `Decimal` without trailing zeros (print it with
    `format(value, "f")` to avoid the exponent `str` uses below 1e-6).

    >>> from_units(650005, 100_000_000)
    Decimal('65000.5')
    """
    with localcontext() as context:
        context.prec = 80  # int64 × int64 has at most 38 digits: nothing here can round
        value = (Decimal(units) * Decimal(unit_e9)).scaleb(-9).normalize()
        # normalize() writes 1E+2 for 100: back to a plain integer when there is no fraction.
        exponent = value.as_tuple().exponent
        return value.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else value


def to_ticks(price: DecimalLike, tick_size_e9: int) -> Ticks:
    """A price in quote units (e.g. USDC) as ticks of the market's grid; refuses off-grid prices."""
    return Ticks(to_units(price, tick_size_e9, "price"))


def to_lots(size: DecimalLike, lot_size_e9: int) -> Lots:
    """A size in base units (e.g. BTC) as lots of the market's grid; refuses off-grid sizes."""
    return Lots(to_units(size, lot_size_e9, "size"))


def from_ticks(ticks: int, tick_size_e9: int) -> Decimal:
    """Ticks back to a price in quote units."""
    return from_units(ticks, tick_size_e9)


def from_lots(lots: int, lot_size_e9: int) -> Decimal:
    """Lots back to a size in base units."""
    return from_units(lots, lot_size_e9)


def usdc_to_micro(amount: DecimalLike) -> MicroUsdc:
    """A positive USDC amount as micro-USDC; refuses more than USDC's 6 decimals."""
    micro = _exact(amount, "amount") * MICRO_PER_USDC
    if micro.denominator != 1:
        raise OffGrid(f"amount {amount} has more than USDC's 6 decimals")
    if not 0 < micro.numerator <= INT64_MAX:
        raise OffGrid(f"amount {amount} must be positive")
    return MicroUsdc(micro.numerator)


def micro_to_usdc(micro: int) -> Decimal:
    """Micro-USDC as a USDC `Decimal` with its 6 places (e.g. `Decimal('-1.250000')`)."""
    return Decimal(micro).scaleb(-6)


def _exact(value: DecimalLike, what: str) -> Fraction:
    """`value` as an exact fraction; floats are refused (0.1 is not one tenth)."""
    if isinstance(value, bool | float):
        raise TypeError(f"{what} must be a decimal string, Decimal or int, not {type(value).__name__}")
    if isinstance(value, int):
        return Fraction(value)
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, AttributeError):
        raise OffGrid(f"{what} {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise OffGrid(f"{what} {value!r} is not a finite number")
    return Fraction(number)
