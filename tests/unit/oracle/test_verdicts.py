"""The verdict rules, one row of the table at a time, and the median."""

from __future__ import annotations

import pytest

from services.common.records import QuoteStatus
from services.oracle.core import OraclePolicy, OracleState, median, run_round
from services.oracle.ports import SourceFailure, SourceQuote
from tests.unit.oracle.kit import BTC, ETH, T0, failure, quote

POLICY = OraclePolicy(max_age_s=60, max_future_skew_s=5, max_deviation_bps=100, max_confidence_bps=50)
P = 65_000 * 10**9


def verdicts(*items: SourceQuote | SourceFailure) -> list[tuple[QuoteStatus, str]]:
    (price,) = run_round(POLICY, OracleState(), T0, list(items)).prices
    return [(q.status, q.reason) for q in price.quotes]


@pytest.mark.parametrize(
    ("item", "status", "reason_part"),
    [
        (failure(reason="HTTP 503"), QuoteStatus.UNAVAILABLE, "HTTP 503"),
        (quote(0), QuoteStatus.INVALID, "price 0 <= 0"),
        (quote(-5), QuoteStatus.INVALID, "<= 0"),
        (quote(P, age_s=-6), QuoteStatus.INVALID, "after the round"),
        (quote(P, age_s=-5), QuoteStatus.ACCEPTED, ""),  # exactly the skew allowed
        (quote(P, age_s=61), QuoteStatus.STALE, "max age 60 s"),
        (quote(P, age_s=60), QuoteStatus.ACCEPTED, ""),  # exactly the max age
        (quote(P, conf=-1), QuoteStatus.INVALID, "confidence -1 < 0"),
        (quote(P, conf=P * 50 // 10_000 + 1), QuoteStatus.LOW_CONFIDENCE, "max 50 bps"),
        (quote(P, conf=P * 50 // 10_000), QuoteStatus.ACCEPTED, ""),  # exactly 50 bps
        (quote(P, conf=None), QuoteStatus.ACCEPTED, ""),  # no confidence given: nothing to check
    ],
)
def test_each_rule_on_a_lone_quote(
    item: SourceQuote | SourceFailure, status: QuoteStatus, reason_part: str
) -> None:
    # State: one item in the round. Action: the round. Expectation: the rule's verdict and reason.
    ((got, reason),) = verdicts(item)
    assert got is status
    assert reason_part in reason
    assert (reason == "") == (status is QuoteStatus.ACCEPTED)


def test_the_first_matching_rule_decides() -> None:
    # State: a quote both stale and far too uncertain. Expectation: STALE (rule 4 before rule 6).
    ((status, _),) = verdicts(quote(P, age_s=600, conf=P))
    assert status is QuoteStatus.STALE


def test_a_quote_beyond_the_deviation_from_the_median_is_rejected() -> None:
    # State: three quotes around P and one 2 % above (max 1 %); the median of all four is P + 0.5.
    near = [quote(P - 10**9, feed="a"), quote(P, feed="b"), quote(P + 10**9, feed="c")]
    far = quote(P * 102 // 100, feed="far")
    # Action: the round. Expectation: the far one is DEVIATING, the index is the others' median.
    (price,) = run_round(POLICY, OracleState(), T0, [*near, far]).prices
    assert [q.status for q in price.quotes] == [QuoteStatus.ACCEPTED] * 3 + [QuoteStatus.DEVIATING]
    assert "from the median" in price.quotes[3].reason
    assert price.price_e9 == P


def test_exactly_at_the_deviation_limit_is_accepted() -> None:
    # State: the median is P (three quotes at P); one at exactly P + 1 %.
    items = [quote(P, feed=f) for f in "abc"] + [quote(P + P // 100, feed="edge")]
    (price,) = run_round(POLICY, OracleState(), T0, items).prices
    assert all(q.status is QuoteStatus.ACCEPTED for q in price.quotes)


def test_stale_quotes_do_not_count_in_the_median_reference() -> None:
    # State: two fresh quotes at P, three stale ones at half P (they would drag the median).
    items = [quote(P, feed="a"), quote(P, feed="b")] + [quote(P // 2, feed=f, age_s=900) for f in "xyz"]
    (price,) = run_round(POLICY, OracleState(), T0, items).prices
    assert [q.status for q in price.quotes][:2] == [QuoteStatus.ACCEPTED] * 2
    assert price.price_e9 == P


def test_two_quotes_that_disagree_leave_no_index() -> None:
    # State: two sources 4 % apart (each 2 % from their midpoint, max 1 %).
    (price,) = run_round(
        POLICY, OracleState(), T0, [quote(P, feed="a"), quote(P * 104 // 100, feed="b")]
    ).prices
    assert [q.status for q in price.quotes] == [QuoteStatus.DEVIATING] * 2
    assert price.price_e9 is None


def test_fewer_accepted_than_min_sources_publishes_no_price() -> None:
    # State: min_sources 2, one good quote and one failure.
    policy = OraclePolicy(min_sources=2)
    (price,) = run_round(policy, OracleState(), T0, [quote(P), failure()]).prices
    # Expectation: the good quote keeps its verdict, the index is null.
    assert [q.status for q in price.quotes] == [QuoteStatus.ACCEPTED, QuoteStatus.UNAVAILABLE]
    assert price.price_e9 is None
    assert [t.price_e9 for t in price.twaps] == [None, None]


def test_one_record_per_index_seen_sorted_by_symbol() -> None:
    items: list[SourceQuote | SourceFailure] = [
        quote(3_500 * 10**9, index=ETH), quote(P, index=BTC), failure(index="SOL-USD"),
    ]  # fmt: skip
    prices = run_round(POLICY, OracleState(), T0, items).prices
    assert [(p.index_symbol, p.price_e9) for p in prices] == [
        (BTC, P), (ETH, 3_500 * 10**9), ("SOL-USD", None),
    ]  # fmt: skip
    assert all(p.ts_event == T0 for p in prices)


def test_a_failure_is_published_with_zero_price_and_time() -> None:
    (price,) = run_round(POLICY, OracleState(), T0, [failure(feed="0xabc", reason="no answer")]).prices
    (q,) = price.quotes
    assert (q.source, q.feed, q.price_e9, q.published_at, q.confidence_e9) == ("pyth", "0xabc", 0, 0, None)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([7], 7), ([1, 2], 1), ([2, 3], 2), ([-3, -2], -3), ([4, 1, 3, 2], 2), ([5, 1, 9], 5), ([2, 2], 2)],
)
def test_median_of_even_counts_rounds_half_down(values: list[int], expected: int) -> None:
    assert median(values) == expected


def test_median_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_an_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="min_sources"):
        OraclePolicy(min_sources=0)
    with pytest.raises(ValueError, match="TWAP windows"):
        OraclePolicy(twap_windows_s=())
    with pytest.raises(ValueError, match="negative"):
        OraclePolicy(max_age_s=-1)


# -- rule 8: the jump guard ------------------------------------------------------------------------


def _after_one_round_at(price: int, *items: SourceQuote) -> tuple[int | None, list[tuple[QuoteStatus, str]]]:
    """The index and verdicts of a round 30 s after one that priced the index at `price`."""
    first = run_round(POLICY, OracleState(), T0, [quote(price)])
    now = T0 + 30 * 1_000_000
    (second,) = run_round(
        POLICY, first.state, now, [quote(i.price_e9, feed=i.feed, now_us=now) for i in items]
    ).prices
    return second.price_e9, [(q.status, q.reason) for q in second.quotes]


def test_a_lone_source_jumping_50_percent_is_refused_and_the_index_holds_nothing_new() -> None:
    # State: the index at 65,000. Action: the only source quotes 97,500 (+50 %).
    index, [(status, reason)] = _after_one_round_at(P, quote(P * 3 // 2))
    # Expectation: DEVIATING with the jump in the reason; no index price this round (nothing for
    # the mark or funding to use; the previous price holds in the TWAPs).
    assert status is QuoteStatus.DEVIATING and "jumped 5000 bps from the last index" in reason
    assert index is None


def test_a_move_within_the_jump_limit_is_accepted() -> None:
    index, [(status, _)] = _after_one_round_at(P, quote(P * 109 // 100))
    assert status is QuoteStatus.ACCEPTED and index == P * 109 // 100


def test_independent_sources_agreeing_may_move_the_index_further() -> None:
    # Action: two sources both quote a 50 % crash (the jump quorum is 2).
    index, verdicts_ = _after_one_round_at(P, quote(P // 2, feed="a"), quote(P // 2, feed="b"))
    assert [s for s, _ in verdicts_] == [QuoteStatus.ACCEPTED] * 2 and index == P // 2


def test_garbage_and_a_spike_among_sane_quotes_leave_the_index_where_the_sane_ones_are() -> None:
    # Action: a zero, a 50 % spike and two sane quotes (rule 7's median catches the spike).
    index, verdicts_ = _after_one_round_at(
        P, quote(0, feed="z"), quote(P * 3 // 2, feed="j"), quote(P, feed="a"), quote(P + 1, feed="b")
    )
    assert [s for s, _ in verdicts_] == [
        QuoteStatus.INVALID,
        QuoteStatus.DEVIATING,
        QuoteStatus.ACCEPTED,
        QuoteStatus.ACCEPTED,
    ]
    assert index == P
