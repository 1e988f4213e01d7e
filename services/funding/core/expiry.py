"""Expiry of futures and options: the settlement price and the option payoff.

**Settlement price**: the TWAP of the market's index, converted to the market's ticks round by round
(half down), over the `window_s` seconds before expiry, `[expiry − window, expiry)`; the TWAP itself
rounds half down (`services/common/twap.py`). A TWAP rather than the last print, so that one
manipulated or stale oracle round just before expiry moves the price by at most its share of the
window. Default window: 1,800 s (30 min).

**Option payoff** per lot, in micro-USDC, European and cash-settled, S the settlement price and K
the strike, both in ticks (the option market's grid is its underlying's, docs/risk.md):

    CALL: min(max(S − K, 0), K) × qptl      (capped at the strike: 1x, like shorts)
    PUT:  max(K − S, 0) × qptl

Both are at most `K × qptl`, the writer collateral locked per written lot: a writer pays the payoff
out of that collateral and gets the rest back; a holder receives the payoff. Exact integers, so no
rounding: what writers pay is exactly what holders get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.money import Lots, MicroUsdc
from services.common.records import OptionType
from services.common.twap import twap

US_PER_S = 1_000_000
DEFAULT_SETTLEMENT_WINDOW_S = 1_800


def settlement_window(expiry_us: int, window_s: int) -> tuple[int, int]:
    """[start, end) in µs of the TWAP window before `expiry_us`."""
    if window_s <= 0:
        raise ValueError(f"settlement window must be positive, got {window_s} s")
    return expiry_us - window_s * US_PER_S, expiry_us


def settlement_price(index_ticks: Sequence[tuple[int, int]], expiry_us: int, window_s: int) -> int | None:
    """TWAP of the index rounds `(ts_us, price_ticks)` (ascending) over the window before expiry.

    None when no price is known in the window (nothing to settle at yet).
    """
    start, end = settlement_window(expiry_us, window_s)
    return twap(index_ticks, start, end)


def settlement_method(index_symbol: str, window_s: int) -> str:
    """The `method` text of a SettleMarket, e.g. 'TWAP of BTC-USD over 1800 s before expiry'."""
    return f"TWAP of {index_symbol} over {window_s} s before expiry"


def option_payoff_per_lot(
    option_type: OptionType, settlement_ticks: int, strike_ticks: int, quote_per_tick_lot: int
) -> MicroUsdc:
    """What one held lot receives (and one written lot pays) at expiry, micro-USDC.

    >>> option_payoff_per_lot(OptionType.CALL, 700, 600, 100)    # ITM call: (700 − 600) × 100
    10000
    >>> option_payoff_per_lot(OptionType.CALL, 1500, 600, 100)   # capped at the strike
    60000
    >>> option_payoff_per_lot(OptionType.PUT, 700, 600, 100)     # OTM put
    0
    """
    if strike_ticks <= 0 or settlement_ticks <= 0 or quote_per_tick_lot <= 0:
        raise ValueError("settlement price, strike and qptl must be positive")
    if option_type is OptionType.CALL:
        intrinsic = min(max(settlement_ticks - strike_ticks, 0), strike_ticks)
    else:
        intrinsic = max(strike_ticks - settlement_ticks, 0)
    return MicroUsdc(intrinsic * quote_per_tick_lot)


@dataclass(frozen=True, slots=True)
class WriterSettlement:
    """A written (short) option position at expiry: `pays` goes to the holders (through CLEARING),
    `released` is the rest of its collateral, back to the writer's free balance."""

    pays: MicroUsdc
    released: MicroUsdc


def writer_settlement(
    lots_written: Lots,
    option_type: OptionType,
    settlement_ticks: int,
    strike_ticks: int,
    quote_per_tick_lot: int,
) -> WriterSettlement:
    """Split a writer's `strike × qptl × lots` collateral into the payoff and the release.

    >>> writer_settlement(Lots(2), OptionType.PUT, 500, 600, 100)
    WriterSettlement(pays=20000, released=100000)
    """
    if lots_written < 0:
        raise ValueError(f"lots written must be >= 0, got {lots_written}")
    payoff = option_payoff_per_lot(option_type, settlement_ticks, strike_ticks, quote_per_tick_lot)
    collateral = strike_ticks * quote_per_tick_lot * lots_written
    pays = payoff * lots_written
    return WriterSettlement(MicroUsdc(pays), MicroUsdc(collateral - pays))


def holder_receives(
    lots_held: Lots,
    option_type: OptionType,
    settlement_ticks: int,
    strike_ticks: int,
    quote_per_tick_lot: int,
) -> MicroUsdc:
    """What a long option position of `lots_held` receives at expiry (0 when out of the money)."""
    if lots_held < 0:
        raise ValueError(f"lots held must be >= 0, got {lots_held}")
    return MicroUsdc(
        option_payoff_per_lot(option_type, settlement_ticks, strike_ticks, quote_per_tick_lot) * lots_held
    )
