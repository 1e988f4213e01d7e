"""Self-describing oracle fixtures: quotes named by what they are."""

from __future__ import annotations

from services.oracle.ports import SourceFailure, SourceQuote

T0 = 1_795_392_000_000_000
"""A round time (µs): 2026-11-24 00:00:00 UTC."""
S = 1_000_000
BTC = "BTC-USD"
ETH = "ETH-USD"


def quote(
    price_e9: int,
    *,
    feed: str = "f",
    index: str = BTC,
    age_s: int = 0,
    conf: int | None = None,
    source: str = "simulated",
    now_us: int = T0,
) -> SourceQuote:
    """A quote of `index` at `price_e9`, published `age_s` before `now_us`."""
    return SourceQuote(source, feed, index, price_e9, conf, now_us - age_s * S)


def failure(feed: str = "down", index: str = BTC, reason: str = "timeout") -> SourceFailure:
    return SourceFailure("pyth", feed, index, reason)
