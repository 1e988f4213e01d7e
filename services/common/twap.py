"""Time-weighted average price of a step series: each sample holds until the next one.

Used by the oracle (index TWAPs over trailing windows) and by funding/expiry (TWAP of mark and
index over a funding interval, settlement TWAP before expiry). Integers in, integer out.

A sample at `ts` holds its price over [ts, next sample's ts). The average over [start, end) covers
only the part of the window where a price is known: from the last sample at or before `start` (if
any, it holds from `start`), else from the first sample inside the window. The result is rounded to
the nearest integer, ties toward negative infinity ("half down"), so it never favours the side that
asks for the larger number.
"""

from __future__ import annotations

from collections.abc import Sequence


def twap(samples: Sequence[tuple[int, int]], start: int, end: int) -> int | None:
    """TWAP over [start, end) of `samples`, (ts, price) pairs in ascending ts; None if no price.

    >>> twap([(0, 100), (30, 200)], 0, 60)
    150
    >>> twap([(0, 100), (45, 201)], 0, 60)   # (100·45 + 201·15) / 60 = 125.25
    125
    >>> twap([(70, 100)], 0, 60) is None
    True
    """
    if end <= start:
        raise ValueError(f"empty window [{start}, {end})")
    weighted = covered = 0
    for i, (ts, price) in enumerate(samples):
        until = samples[i + 1][0] if i + 1 < len(samples) else end
        lo, hi = max(ts, start), min(until, end)
        if hi > lo:
            weighted += price * (hi - lo)
            covered += hi - lo
        if ts >= end:
            break
    if covered == 0:
        return None
    return round_half_down(weighted, covered)


def round_half_down(numerator: int, denominator: int) -> int:
    """numerator / denominator to the nearest integer, ties toward negative infinity.

    >>> round_half_down(5, 2), round_half_down(-5, 2), round_half_down(7, 3)
    (2, -3, 2)
    """
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    return -((-2 * numerator + denominator) // (2 * denominator))
