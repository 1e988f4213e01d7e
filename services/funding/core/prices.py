"""Oracle prices onto a market's tick grid."""

from __future__ import annotations

from services.common.twap import round_half_down


def index_to_ticks(price_e9: int, tick_size_e9: int) -> int:
    """An index price (USD × 1e9) in the market's ticks, rounded half down.

    Half down, like every TWAP and median in the exchange, so that a price exactly between two ticks
    goes to the lower one whichever side asks. (tick_size_e9 is the market's tick in USD × 1e9.)

    >>> index_to_ticks(65_000_050_000_000, 100_000_000)   # 65,000.05 USD on a 0.1 USD grid
    650000
    >>> index_to_ticks(65_000_060_000_000, 100_000_000)
    650001
    """
    if tick_size_e9 <= 0:
        raise ValueError(f"tick size must be positive, got {tick_size_e9}")
    return round_half_down(price_e9, tick_size_e9)
