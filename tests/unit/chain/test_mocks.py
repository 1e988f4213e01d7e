"""The mock-feed command's pure parts: feed lists, exact price → answer, descriptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.chain.deployments import Deployment, DeploymentError, deployment_path, write
from services.chain.mocks import describe, oracle_env, parse_feeds, price_to_answer


def test_feeds_parse_in_order_with_their_prices_as_given() -> None:
    assert parse_feeds("BTC-USD=65000, ETH-USD=3500.5,") == {"BTC-USD": "65000", "ETH-USD": "3500.5"}


@pytest.mark.parametrize("text", ["", "BTC-USD", "btc-usd=1", "BTC=1", "BTC-USD=1e3", "BTC-USD=1,BTC-USD=2"])
def test_malformed_feed_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_feeds(text)


@pytest.mark.parametrize(
    ("price", "decimals", "answer"),
    [
        ("65000", 8, 6_500_000_000_000),
        ("65000.5", 8, 6_500_050_000_000),
        ("0.00000001", 8, 1),
        ("3500.120000000", 8, 350_012_000_000),  # trailing zeros beyond the decimals are fine
        ("1.5", 18, 1_500_000_000_000_000_000),
        ("0", 8, 0),
        ("-2", 8, -200_000_000),
        ("7", 0, 7),
    ],
)
def test_prices_become_the_feeds_integer_answer_exactly(price: str, decimals: int, answer: int) -> None:
    assert price_to_answer(price, decimals) == answer


@pytest.mark.parametrize(("price", "decimals"), [("0.000000001", 8), ("1.5", 0), ("abc", 8), ("1.", 8)])
def test_prices_the_feed_cannot_hold_are_refused(price: str, decimals: int) -> None:
    with pytest.raises(ValueError):
        price_to_answer(price, decimals)


def test_descriptions_follow_chainlinks_pair_format() -> None:
    assert describe("BTC-USD") == "BTC / USD"


def test_the_oracle_setting_lists_the_recorded_feeds(tmp_path: Path) -> None:
    # State: two feeds recorded.
    btc, eth = "0x700b6A60ce7EaaEA56F065753d8dcB9653dbAD35", "0xA15BB66138824a1c7167f5E85b957d04Dd34E468"
    write(deployment_path(tmp_path), Deployment(31337, {"ETH-USD": eth, "BTC-USD": btc}))
    # Action / Expectation: ORACLE_CHAINLINK_FEEDS in the oracle's INDEX=value syntax.
    assert oracle_env(deployment_path(tmp_path)) == f"ORACLE_CHAINLINK_FEEDS=BTC-USD={btc},ETH-USD={eth}"


def test_no_deployment_file_is_an_error_saying_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="ensure"):
        oracle_env(deployment_path(tmp_path))
