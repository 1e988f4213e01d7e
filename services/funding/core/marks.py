"""Mark prices: what funding, and later liquidation, value positions at.

**Perpetuals and futures** — the index plus a clamped moving average of the book's basis:

    basis_i = mid_i − index_i                    at each oracle round i (ticks; 0 if the book is
                                                 not two-sided: no evidence of a premium)
    avg     = round_half_down(Σ basis over the last N rounds / rounds held)
    mark    = index + clamp(avg, −⌊index × clamp_bps / 10 000⌋, +⌊…⌋)

N = 10 rounds (5 min at the oracle's default 30 s cadence) and clamp = 50 bps by default (settings
`MARK_BASIS_ROUNDS`, `MARK_CLAMP_BPS`). Why: the index alone ignores where the market trades,
the last trade or the mid alone can be pushed by one order; an average of the basis over a minute
follows a persistent premium (which funding then charges) but not a spike, and the clamp bounds
what any book can do to the mark. The mark is always > 0 (the clamp is below half the index).

**Options** — the book's mid if it is two-sided and its spread is at most `max_spread_bps` of the
mid (default 1,000 bps = 10 %: option books are wide), else the Black-76 value
(`black76.py`) from the underlying index (forward, r = 0), the strike, the time to expiry and the
configured volatility of the underlying (setting `OPTION_VOLS`, e.g. `BTC-USD=0.6,ETH-USD=0.75`,
else `OPTION_VOL_DEFAULT`). A CALL here pays `min(S − K, K)` (docs/risk.md), i.e. a call spread
K / 2K, so its model value is `C(K) − C(2K)`. The model value is rounded to the nearest tick (ties
down) and is at least 1 tick (a mark must be positive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from services.common.money import BPS_PER_UNIT
from services.common.records import OptionType
from services.common.twap import round_half_down
from services.funding.core import black76

DEFAULT_MARK_ROUNDS = 10
DEFAULT_MARK_CLAMP_BPS = 50
DEFAULT_OPTION_MAX_SPREAD_BPS = 1_000


@dataclass(frozen=True, slots=True)
class BasisWindow:
    """The last `rounds` basis samples (mid − index, ticks), oldest first. Immutable: `observe`
    returns the next window."""

    rounds: int = DEFAULT_MARK_ROUNDS
    samples: tuple[int, ...] = ()

    def observe(self, basis: int) -> BasisWindow:
        """This window with `basis` appended and the oldest sample dropped beyond `rounds`."""
        if self.rounds < 1:
            raise ValueError(f"the basis window needs at least one round, got {self.rounds}")
        return BasisWindow(self.rounds, (*self.samples, basis)[-self.rounds :])

    def average(self) -> int:
        """Mean basis in ticks, rounded half down; 0 before any round."""
        if not self.samples:
            return 0
        return round_half_down(sum(self.samples), len(self.samples))


def basis_sample(mid: int | None, index_ticks: int) -> int:
    """One round's basis: mid − index, or 0 when the book has no mid."""
    return 0 if mid is None else mid - index_ticks


def perp_mark(index_ticks: int, window: BasisWindow, clamp_bps: int = DEFAULT_MARK_CLAMP_BPS) -> int:
    """index + the window's average basis, clamped to ±clamp_bps of the index (ticks).

    >>> perp_mark(10_000, BasisWindow(3, (30, 90, 60)))        # avg 60, clamp ±50
    10050
    >>> perp_mark(10_000, BasisWindow(3, (-7, -8)))            # avg −7.5 → −8 (half down)
    9992
    """
    if index_ticks <= 0:
        raise ValueError(f"index must be positive, got {index_ticks} ticks")
    if not 0 <= clamp_bps < BPS_PER_UNIT // 2:
        raise ValueError(f"clamp must be in [0, 5000) bps, got {clamp_bps}")
    bound = index_ticks * clamp_bps // BPS_PER_UNIT
    return index_ticks + max(-bound, min(bound, window.average()))


class MarkSource(StrEnum):
    """Where an option mark came from."""

    BOOK = "BOOK"
    MODEL = "MODEL"


@dataclass(frozen=True, slots=True)
class OptionMark:
    """An option's mark in ticks, and whether the book or the model gave it."""

    price: int
    source: MarkSource


def book_mark(bid: int | None, ask: int | None, max_spread_bps: int) -> int | None:
    """The mid (half down) if the book is two-sided and (ask − bid) ≤ max_spread_bps of the mid."""
    if bid is None or ask is None or bid <= 0:
        return None
    mid = round_half_down(bid + ask, 2)
    if (ask - bid) * BPS_PER_UNIT > max_spread_bps * mid:
        return None
    return mid


def option_model_value(
    option_type: OptionType, index_ticks: int, strike_ticks: int, t_years: float, vol: float
) -> float:
    """Black-76 value in ticks of this exchange's option (a CALL capped at the strike)."""
    forward, strike = float(index_ticks), float(strike_ticks)
    value = black76.price(option_type, forward, strike, t_years, vol)
    if option_type is OptionType.CALL:
        value -= black76.price(OptionType.CALL, forward, 2.0 * strike, t_years, vol)
    return value


def option_mark(
    option_type: OptionType,
    *,
    bid: int | None,
    ask: int | None,
    index_ticks: int,
    strike_ticks: int,
    t_years: float,
    vol: float,
    max_spread_bps: int = DEFAULT_OPTION_MAX_SPREAD_BPS,
) -> OptionMark:
    """The option's mark: a tight enough book's mid, else the model (at least 1 tick)."""
    from_book = book_mark(bid, ask, max_spread_bps)
    if from_book is not None:
        return OptionMark(from_book, MarkSource.BOOK)
    value = option_model_value(option_type, index_ticks, strike_ticks, t_years, vol)
    return OptionMark(max(1, math.ceil(value - 0.5)), MarkSource.MODEL)
