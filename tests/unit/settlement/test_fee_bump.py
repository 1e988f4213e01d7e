"""The fee of a replacement transaction: 12.5 % more, rounded up, never equal to the stuck one's."""

from __future__ import annotations

import pytest

from services.settlement.vault import bumped_fee


@pytest.mark.parametrize(
    ("stuck_wei", "replacement_wei"),
    [(8, 9), (1, 2), (0, 1), (7, 8), (1_000_000_000, 1_125_000_000), (1_000_000_001, 1_125_000_002)],
)
def test_a_replacement_pays_an_eighth_more_rounded_up(stuck_wei: int, replacement_wei: int) -> None:
    assert bumped_fee(stuck_wei) == replacement_wei


def test_a_replacement_always_pays_strictly_more_and_at_least_an_eighth_more() -> None:
    for fee in range(0, 5_000):
        assert bumped_fee(fee) > fee and 8 * bumped_fee(fee) >= 9 * fee
