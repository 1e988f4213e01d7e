"""A deterministic simulated price feed: the price is a pure function of (seed, index, second).

No global random state, no memory: any process, at any time, computes the same price for the same
second, so local runs and tests are reproducible and a restart does not jump.

The path is fractal value noise on a dyadic lattice. At each scale L (0 ≤ L < `LEVELS`, periods of
2^L seconds) a hash of (seed, index, L, k) gives a value at the lattice point k·2^L, uniform in
±A_L with A_L = 1 bp × √(2^L) (the √t growth of a random walk); between lattice points the value is
interpolated linearly (integers, floor division). The sum of the scales is the offset from the
start price, in parts per billion: it moves about ±1 bp per second, ±1–3 % over a day, and stays
within ±9 % of the start price forever (Σ A_L), so prices never reach zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from math import isqrt

from services.oracle.adapters.clock import Clock
from services.oracle.ports import SourceFailure, SourceQuote

LEVELS = 17
"""Scales from 1 s to 2^16 s (18 h)."""
PPB = 1_000_000_000
BP_PPB = 100_000
"""One basis point in parts per billion."""
US = 1_000_000
BPS = 10_000
SOURCE = "simulated"


def amplitude_ppb(level: int) -> int:
    """A_L = 1 bp × √(2^L), in ppb (integer square root of 2^L × 2^16, over 2^8)."""
    return BP_PPB * isqrt((1 << level) << 16) >> 8


def _lattice(seed: int, index_symbol: str, level: int, k: int) -> int:
    """The hashed value at lattice point k of scale `level`: uniform-ish in ±A_L ppb."""
    digest = hashlib.blake2b(f"{seed}|{index_symbol}|{level}|{k}".encode(), digest_size=8).digest()
    amplitude = amplitude_ppb(level)
    return int.from_bytes(digest, "big") % (2 * amplitude + 1) - amplitude


def offset_ppb(seed: int, index_symbol: str, t_s: int) -> int:
    """The path's offset from the start price at second `t_s`, in parts per billion."""
    total = 0
    for level in range(LEVELS):
        period = 1 << level
        k, r = t_s >> level, t_s & (period - 1)
        left = _lattice(seed, index_symbol, level, k)
        right = _lattice(seed, index_symbol, level, k + 1) if r else 0
        total += (left * (period - r) + right * r) // period
    return total


def simulated_price(seed: int, index_symbol: str, start_e9: int, t_s: int) -> int:
    """The simulated price of `index_symbol` at second `t_s` (since the epoch), × 1e9."""
    return start_e9 + start_e9 * offset_ppb(seed, index_symbol, t_s) // PPB


@dataclass(frozen=True, slots=True)
class SimulatedFeed:
    """One simulated feed. `bias_bps` and `lag_s` make a deviating or a stale feed on purpose."""

    index_symbol: str
    start_e9: int
    feed: str = ""
    """Feed name; empty: `sim-<index>`."""
    bias_bps: int = 0
    """Added to the path's price (basis points): a source that disagrees."""
    lag_s: int = 0
    """The feed publishes the price of `lag_s` seconds ago, stamped then: a source that lags."""

    @property
    def name(self) -> str:
        return self.feed or f"sim-{self.index_symbol}"


class SimulatedSource:
    """The simulated feeds of one seed, read at the clock's current second."""

    name = SOURCE

    def __init__(self, feeds: Iterable[SimulatedFeed], *, seed: int, clock: Clock) -> None:
        self.feeds = tuple(feeds)
        self.seed = seed
        self._clock = clock

    def fetch(self) -> list[SourceQuote | SourceFailure]:
        """Every feed's price at this second (its published time: the start of that second)."""
        now_us = self._clock()
        return [self.quote(feed, now_us) for feed in self.feeds]

    def quote(self, feed: SimulatedFeed, now_us: int) -> SourceQuote:
        """`feed`'s quote as seen at `now_us`."""
        t_s = (now_us - feed.lag_s * US) // US
        price = simulated_price(self.seed, feed.index_symbol, feed.start_e9, t_s)
        return SourceQuote(
            source=SOURCE,
            feed=feed.name,
            index_symbol=feed.index_symbol,
            price_e9=price * (BPS + feed.bias_bps) // BPS,
            confidence_e9=None,
            published_at_us=t_s * US,
        )
