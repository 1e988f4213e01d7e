"""What a price source gives the oracle, and the one interface every source adapter implements.

Sources are adapters (Chainlink through web3, Pyth over HTTP, the simulated feed); the oracle's
pure core only ever sees `SourceQuote`s and `SourceFailure`s, never a connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PRICE_DECIMALS = 9
"""Index prices are integers: quote units (USD) per base unit × 1e9."""


@dataclass(frozen=True, slots=True)
class SourceQuote:
    """One source's latest value for one index, converted exactly to 1e-9 units."""

    source: str
    """Source kind: `chainlink`, `pyth` or `simulated`."""
    feed: str
    """The source's feed id: aggregator address, Pyth price id, simulated feed name."""
    index_symbol: str
    """Index it prices, e.g. `BTC-USD`."""
    price_e9: int
    confidence_e9: int | None
    """Pyth's confidence interval, same units; None when the source gives none."""
    published_at_us: int
    """When the source published the value (µs since the epoch)."""


@dataclass(frozen=True, slots=True)
class SourceFailure:
    """A source that could not be read this round (network error, bad answer, no round yet)."""

    source: str
    feed: str
    index_symbol: str
    reason: str


class PriceSource(Protocol):
    """A place prices come from. `fetch` never raises: failures come back as `SourceFailure`."""

    name: str

    def fetch(self) -> list[SourceQuote | SourceFailure]:
        """The latest quote of every index this source is configured for."""
        ...


def to_e9(mantissa: int, exponent: int) -> int:
    """mantissa × 10^exponent in 1e-9 units, exactly, truncated toward zero below 1e-9.

    >>> to_e9(6_512_345_678_901, -8)   # Chainlink BTC/USD answer with 8 decimals
    65123456789010
    >>> to_e9(-5, -10)
    0
    """
    shift = exponent + PRICE_DECIMALS
    scale: int = pow(10, abs(shift))
    if shift >= 0:
        return mantissa * scale
    quotient = abs(mantissa) // scale
    return quotient if mantissa >= 0 else -quotient
