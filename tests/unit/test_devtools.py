"""Developer tools parse decimals exactly and refuse what is off the grid."""

from decimal import Decimal

import pytest

from services.common.settings import Settings
from services.devtools.book import to_units
from services.devtools.feeds import target_prices
from services.oracle.adapters.simulated import simulated_price


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


def test_mock_feeds_follow_the_simulated_price_of_their_index() -> None:
    # State: the oracle's simulated feeds configured as locally. Action: the prices for one second.
    settings = Settings(oracle_simulated="BTC-USD=65000,ETH-USD=3500.5", oracle_simulated_seed=1)
    prices = target_prices(settings, 1_795_392_000)
    # Expectation: each index's simulated price at that second, as an exact decimal string.
    assert set(prices) == {"BTC-USD", "ETH-USD"}
    assert Decimal(prices["BTC-USD"]) * 10**9 == simulated_price(1, "BTC-USD", 65_000 * 10**9, 1_795_392_000)
