"""Integer money and size types, and the rounding rules the exchange uses.

Every amount that decides a balance is an integer:

* prices are `Ticks` — a count of the market's tick size;
* sizes are `Lots` — a count of the market's lot size;
* collateral, fees and PnL are `MicroUsdc` — 1 USDC = 1_000_000 micro-USDC (USDC's own 6 decimals).

A market fixes `quote_per_tick_lot`: the micro-USDC value of one tick of price on one lot of size,
so notional = price_ticks × size_lots × quote_per_tick_lot exactly, with no rounding at all.

Rounding (only where a rate or ratio is applied, e.g. fees in basis points):

* amounts the exchange *charges* (fees, reservations) round **up** (`mul_div_ceil`);
* amounts the exchange *pays out* round **down** (`mul_div_floor`).

So rounding never creates money out of nothing; the remainder stays with the protocol fee account.
"""

from __future__ import annotations

from typing import NewType

Ticks = NewType("Ticks", int)
Lots = NewType("Lots", int)
MicroUsdc = NewType("MicroUsdc", int)
BasisPoints = NewType("BasisPoints", int)

MICRO_PER_USDC = 1_000_000
BPS_PER_UNIT = 10_000


def mul_div_floor(a: int, b: int, d: int) -> int:
    """a × b / d rounded toward negative infinity. `d` must be positive."""
    if d <= 0:
        raise ValueError(f"divisor must be positive, got {d}")
    return (a * b) // d


def mul_div_ceil(a: int, b: int, d: int) -> int:
    """a × b / d rounded toward positive infinity. `d` must be positive."""
    if d <= 0:
        raise ValueError(f"divisor must be positive, got {d}")
    return -((-a * b) // d)


def notional(price: Ticks, size: Lots, quote_per_tick_lot: MicroUsdc) -> MicroUsdc:
    """Exact value in micro-USDC of `size` lots at `price` ticks."""
    return MicroUsdc(price * size * quote_per_tick_lot)


def unrealized_pnl(size: Lots, basis: MicroUsdc, mark: Ticks, quote_per_tick_lot: MicroUsdc) -> MicroUsdc:
    """PnL of a position of `size` lots (signed) with entry value `basis` if closed at `mark`.

    A long gains what its lots are worth above what they cost; a short (a futures short, an option
    writer) what it received above what buying back costs. Exact: no rounding.
    """
    value = mark * abs(size) * quote_per_tick_lot
    return MicroUsdc(value - basis if size > 0 else basis - value)


def fee_charged(amount: MicroUsdc, rate: BasisPoints) -> MicroUsdc:
    """Fee on `amount` at `rate` basis points, rounded up (the trader pays the fraction)."""
    return MicroUsdc(mul_div_ceil(amount, rate, BPS_PER_UNIT))


def usdc_to_micro(whole: int, fraction: str = "") -> MicroUsdc:
    """Parse a decimal USDC amount given as its whole and fractional digits, exactly.

    >>> usdc_to_micro(12, "5")
    12500000
    """
    if len(fraction) > 6 or (fraction and not fraction.isdigit()):
        raise ValueError(f"USDC has 6 decimals; cannot represent fraction {fraction!r}")
    return MicroUsdc(whole * MICRO_PER_USDC + int(fraction.ljust(6, "0") or "0"))


def format_usdc(amount: MicroUsdc) -> str:
    """Render micro-USDC as a decimal string with 6 places, e.g. `-1.250000`."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), MICRO_PER_USDC)
    return f"{sign}{whole}.{frac:06d}"
