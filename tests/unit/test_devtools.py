"""Developer tools parse decimals exactly and refuse what is off the grid."""

import pytest

from services.devtools.book import to_units


@pytest.mark.parametrize(
    ("text", "unit_e9", "units"),
    [("65000.5", 100_000_000, 650_005), ("0.003", 1_000_000, 3), ("1", 1_000_000_000, 1)],
)
def test_decimals_become_whole_ticks_and_lots(text: str, unit_e9: int, units: int) -> None:
    assert to_units(text, unit_e9, "price") == units


@pytest.mark.parametrize("text", ["65000.05", "0", "-1", "1e3", "0.0000000001", "abc"])
def test_off_grid_or_malformed_values_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="price"):
        to_units(text, 100_000_000, "price")
