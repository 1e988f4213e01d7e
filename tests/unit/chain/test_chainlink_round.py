"""A Chainlink round → a quote or a failure: exact conversion and the round checks (pure)."""

from __future__ import annotations

import pytest

from services.oracle.adapters.chainlink import SOURCE, ChainlinkSource, RoundData, quote_from_round
from services.oracle.ports import PriceSource, SourceFailure, SourceQuote

FEED_BTC = "0x000000000000000000000000000000000000c0de"
T_2026_11_23_S = 1_795_392_000
"""2026-11-23T00:00:00Z in seconds, the `updatedAt` of every example round."""


def round_(round_id: int = 7, answer: int = 6_500_012_345_678, answered_in: int | None = None) -> RoundData:
    return RoundData(
        round_id=round_id,
        answer=answer,
        started_at=T_2026_11_23_S,
        updated_at=T_2026_11_23_S,
        answered_in_round=round_id if answered_in is None else answered_in,
    )


def test_a_complete_round_is_a_quote_in_1e9_units_published_at_updated_at() -> None:
    # State: BTC/USD round 7 answered 65000.12345678 (8 decimals) at 2026-11-23T00:00Z.
    # Action: convert it.
    quote = quote_from_round("BTC-USD", FEED_BTC, 8, round_())
    # Expectation: 65000.123456780 in 1e-9 units, µs timestamp, no confidence interval.
    assert quote == SourceQuote(
        source=SOURCE,
        feed=FEED_BTC,
        index_symbol="BTC-USD",
        price_e9=65_000_123_456_780,
        confidence_e9=None,
        published_at_us=T_2026_11_23_S * 1_000_000,
    )


@pytest.mark.parametrize(
    ("decimals", "answer", "price_e9"),
    [
        (8, 350_012_345_678, 3_500_123_456_780),  # USD feeds: ×10
        (9, 3_500_123_456_789, 3_500_123_456_789),  # same units: unchanged
        (18, 3_500_123_456_789_999_999_999, 3_500_123_456_789),  # ETH-quoted feeds: truncated, not rounded
        (18, 1, 0),  # below 1e-9: truncated to zero (the core refuses a zero price)
        (0, 7, 7_000_000_000),
    ],
)
def test_answers_convert_exactly_whatever_the_decimals(decimals: int, answer: int, price_e9: int) -> None:
    # Action: convert a round of a feed with `decimals`.
    quote = quote_from_round("X-USD", FEED_BTC, decimals, round_(answer=answer))
    # Expectation: integer maths only, truncated toward zero below 1e-9.
    assert isinstance(quote, SourceQuote)
    assert quote.price_e9 == price_e9


@pytest.mark.parametrize(
    ("bad_round", "reason"),
    [
        (round_(answer=0), "non_positive_answer"),
        (round_(answer=-1), "non_positive_answer"),
        (RoundData(7, 6_500_000_000_000, 0, 0, 7), "incomplete_round"),
        (round_(round_id=7, answered_in=6), "carried_over_answer"),
    ],
    ids=["zero", "negative", "updated_at_zero", "answered_in_earlier_round"],
)
def test_unusable_rounds_are_failures_with_a_stable_reason(bad_round: RoundData, reason: str) -> None:
    # Action: convert a round no consumer may use.
    result = quote_from_round("BTC-USD", FEED_BTC, 8, bad_round)
    # Expectation: a failure naming feed and index; its reason starts with a stable token.
    assert isinstance(result, SourceFailure)
    assert (result.source, result.feed, result.index_symbol) == (SOURCE, FEED_BTC, "BTC-USD")
    assert result.reason.startswith(reason + ":")


def test_an_old_round_is_still_reported_staleness_is_the_cores_verdict() -> None:
    # State: a round updated a year before the example date.
    old = RoundData(7, 6_500_000_000_000, T_2026_11_23_S - 365 * 86_400, T_2026_11_23_S - 365 * 86_400, 7)
    # Expectation: a quote carrying its real publication time.
    quote = quote_from_round("BTC-USD", FEED_BTC, 8, old)
    assert isinstance(quote, SourceQuote)
    assert quote.published_at_us == (T_2026_11_23_S - 365 * 86_400) * 1_000_000


def test_chainlink_source_is_a_price_source() -> None:
    # Expectation: the class satisfies the oracle's port (checked by mypy through this assignment).
    source_type: type[PriceSource] = ChainlinkSource
    assert source_type.name == "chainlink"
