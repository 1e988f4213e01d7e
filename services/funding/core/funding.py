"""Funding of perpetuals: interval boundaries, the clamped rate, and the payment rule risk books.

**Intervals** are `[k·interval_s, (k+1)·interval_s)` in µs since the epoch (aligned, so every
replica and every restart agrees on them without state).

**Rate** of an interval, with TWAPs over the interval in ticks (`services/common/twap.py`):

    rate_e9 = clamp(trunc((TWAP(mark) − TWAP(index)) × 1e9 / TWAP(index)), −cap_e9, +cap_e9)

truncated toward zero (neither side is favoured by the rounding); > 0: longs pay shorts.

**Payment** per position, with the index price (ticks) of the `ApplyFunding`:

    per_lot_exact = index_price × quote_per_tick_lot × |rate_e9| / 1e9   (micro-USDC)

a payer pays `ceil(per_lot_exact) × lots`, a receiver gets `floor(per_lot_exact) × lots`. Of what a
payer pays, `floor(per_lot_exact) × lots` goes to CLEARING and the per-lot rounding difference
(0 or 1 micro-USDC per lot) to FEES; receivers are paid from CLEARING. Long lots equal short lots
in every market, so CLEARING's net change over all positions is exactly
`floor × (long lots − short lots) = 0` — charges round up, payouts round down, nothing is created.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.money import Lots, MicroUsdc, mul_div_ceil, mul_div_floor

E9 = 1_000_000_000
US_PER_S = 1_000_000


def interval_containing(ts_us: int, interval_s: int) -> tuple[int, int]:
    """The funding interval [start, end) in µs that contains `ts_us`."""
    length = _length_us(interval_s)
    start = ts_us // length * length
    return start, start + length


def first_interval_after(ts_us: int, interval_s: int) -> tuple[int, int]:
    """The first interval that starts at or after `ts_us` (a market's first full interval)."""
    length = _length_us(interval_s)
    start = -(-ts_us // length) * length
    return start, start + length


def funding_rate_e9(mark_twap: int, index_twap: int, cap_e9: int) -> int:
    """The interval's rate × 1e9: the premium of the mark over the index, truncated toward zero
    and clamped to ±cap_e9.

    >>> funding_rate_e9(650_650, 650_000, 5_000_000)   # +0.1 %
    1000000
    >>> funding_rate_e9(600_000, 650_000, 5_000_000)   # −7.7 % → the cap
    -5000000
    >>> funding_rate_e9(3, 7, 10**9)                   # −0.571428571…4 → toward zero
    -571428571
    """
    if index_twap <= 0 or cap_e9 < 0:
        raise ValueError(f"index TWAP {index_twap} must be positive and cap {cap_e9} non-negative")
    premium = mark_twap - index_twap
    magnitude = abs(premium) * E9 // index_twap
    rate = magnitude if premium >= 0 else -magnitude
    return max(-cap_e9, min(cap_e9, rate))


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One position's funding: `amount` is the trader's change (< 0: pays), `to_fees` the rounding
    that goes to FEES; CLEARING's change is `clearing_delta` (= −amount − to_fees)."""

    amount: MicroUsdc
    to_fees: MicroUsdc

    @property
    def clearing_delta(self) -> MicroUsdc:
        """What CLEARING receives (> 0) or pays (< 0) for this position."""
        return MicroUsdc(-self.amount - self.to_fees)


def funding_per_lot(rate_e9: int, index_price_ticks: int, quote_per_tick_lot: int) -> tuple[int, int]:
    """(ceil, floor) of `index × qptl × |rate_e9| / 1e9`: what a payer pays and a receiver gets per lot."""
    value = index_price_ticks * quote_per_tick_lot
    return mul_div_ceil(value, abs(rate_e9), E9), mul_div_floor(value, abs(rate_e9), E9)


def funding_payment(
    size_lots_signed: Lots, rate_e9: int, index_price_ticks: int, quote_per_tick_lot: int
) -> FundingPayment:
    """The funding a position of `size_lots_signed` (> 0 long) pays or receives for one interval.

    rate_e9 > 0: longs pay shorts; < 0: shorts pay longs. Payers pay ceil per lot, receivers get
    floor per lot, the difference goes to FEES (see the module docstring).

    >>> funding_payment(Lots(3), 1_000_000, 650_000, 100)   # 65 000 USD, 0.1 %: 65 000 µUSDC per lot
    FundingPayment(amount=-195000, to_fees=0)
    >>> funding_payment(Lots(-3), 1_000_001, 650_000, 100)  # 65 000.065 per lot: short receives floor
    FundingPayment(amount=195000, to_fees=0)
    >>> funding_payment(Lots(3), 1_000_001, 650_000, 100)   # long pays ceil; 1 per lot to FEES
    FundingPayment(amount=-195003, to_fees=3)
    """
    if index_price_ticks <= 0 or quote_per_tick_lot <= 0:
        raise ValueError(f"index {index_price_ticks} and qptl {quote_per_tick_lot} must be positive")
    lots = abs(size_lots_signed)
    if lots == 0 or rate_e9 == 0:
        return FundingPayment(MicroUsdc(0), MicroUsdc(0))
    ceil, floor = funding_per_lot(rate_e9, index_price_ticks, quote_per_tick_lot)
    pays = (size_lots_signed > 0) == (rate_e9 > 0)
    if pays:
        return FundingPayment(MicroUsdc(-ceil * lots), MicroUsdc((ceil - floor) * lots))
    return FundingPayment(MicroUsdc(floor * lots), MicroUsdc(0))


def _length_us(interval_s: int) -> int:
    if interval_s <= 0:
        raise ValueError(f"funding interval must be positive, got {interval_s} s")
    return interval_s * US_PER_S
