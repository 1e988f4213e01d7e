"""TWAP of a step series: exact integer maths, each sample holding until the next."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.twap import round_half_down, twap


def test_a_price_holds_until_the_next_sample() -> None:
    # State: 100 from t=0, 200 from t=45. Action: TWAP over [0, 60).
    # Expectation: (100·45 + 200·15) / 60 = 125.
    assert twap([(0, 100), (45, 200)], 0, 60) == 125


def test_a_sample_before_the_window_prices_its_start() -> None:
    # State: 100 set long before the window, 300 in its middle.
    assert twap([(-1_000, 100), (30, 300)], 0, 60) == 200


def test_only_the_known_part_of_the_window_counts() -> None:
    # State: the first price arrives at t=40 of a [0, 60) window.
    assert twap([(40, 90)], 0, 60) == 90


def test_no_price_in_or_before_the_window_is_none() -> None:
    assert twap([], 0, 60) is None
    assert twap([(60, 100)], 0, 60) is None


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="empty window"):
        twap([(0, 1)], 10, 10)


@pytest.mark.parametrize(
    ("n", "d", "q"), [(5, 2, 2), (-5, 2, -3), (7, 2, 3), (7, 3, 2), (8, 3, 3), (0, 9, 0)]
)
def test_round_half_down(n: int, d: int, q: int) -> None:
    assert round_half_down(n, d) == q


samples = st.lists(st.tuples(st.integers(0, 10_000), st.integers(-(10**15), 10**15)), max_size=30).map(
    lambda pairs: sorted(dict(pairs).items())
)


@given(samples, st.integers(0, 10_000), st.integers(1, 5_000))
def test_twap_is_the_exact_average_rounded_half_down(
    series: list[tuple[int, int]], start: int, length: int
) -> None:
    # Expectation: equals the exact rational average, computed second by second, within half a unit.
    end = start + length
    held = [p for t in range(start, end) if (p := _price_at(series, t)) is not None]
    result = twap(series, start, end)
    if not held:
        assert result is None
        return
    exact = Fraction(sum(held), len(held))
    assert result is not None
    assert -Fraction(1, 2) < exact - result <= Fraction(1, 2)


def _price_at(series: list[tuple[int, int]], t: int) -> int | None:
    known = [p for ts, p in series if ts <= t]
    return known[-1] if known else None
