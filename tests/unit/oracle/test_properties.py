"""Properties of a round over generated quotes (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.records import QuoteStatus
from services.oracle.core import OraclePolicy, OracleState, run_round
from services.oracle.ports import SourceFailure, SourceQuote
from tests.unit.oracle.kit import BTC, T0, S

PRICE = st.integers(min_value=-10, max_value=10**15)
policies = st.builds(
    OraclePolicy,
    max_age_s=st.integers(0, 600),
    max_deviation_bps=st.integers(1, 2_000),
    max_confidence_bps=st.integers(0, 500),
    min_sources=st.integers(1, 4),
)


@st.composite
def items(draw: st.DrawFn) -> SourceQuote | SourceFailure:
    feed = draw(st.text("abcdef", min_size=1, max_size=3))
    if draw(st.booleans()) and draw(st.booleans()):
        return SourceFailure("pyth", feed, BTC, "down")
    conf = draw(st.none() | st.integers(-1, 10**12))
    age_s = draw(st.integers(-10, 900))
    return SourceQuote("simulated", feed, BTC, draw(PRICE), conf, T0 - age_s * S)


@given(policies, st.lists(items(), min_size=1, max_size=12))
def test_the_index_lies_within_the_accepted_quotes(policy: OraclePolicy, batch: list[SourceQuote]) -> None:
    # Action: any round. Expectation: one verdict per item, in order; the index is null or within
    # [min, max] of the accepted quotes, and null exactly when fewer than min_sources are accepted.
    (price,) = run_round(policy, OracleState(), T0, batch).prices
    assert [q.feed for q in price.quotes] == [i.feed for i in batch]
    accepted = [q.price_e9 for q in price.quotes if q.status is QuoteStatus.ACCEPTED]
    assert (price.price_e9 is None) == (len(accepted) < policy.min_sources)
    if price.price_e9 is not None:
        assert min(accepted) <= price.price_e9 <= max(accepted)
        assert all(p > 0 for p in accepted)


@given(policies, st.lists(items(), min_size=1, max_size=12))
def test_a_round_is_a_function_of_its_inputs(policy: OraclePolicy, batch: list[SourceQuote]) -> None:
    assert run_round(policy, OracleState(), T0, batch) == run_round(policy, OracleState(), T0, list(batch))


@st.composite
def cluster_and_outlier(draw: st.DrawFn) -> tuple[int, list[int], int]:
    """A deviation limit d, at least two prices within d/2 of each other, one price > 2d away."""
    d = draw(st.integers(1, 2_000))
    lo = draw(st.integers(10**6, 10**15))
    hi = lo + lo * d // 20_000
    cluster = draw(st.lists(st.integers(lo, hi), min_size=2, max_size=8))
    if draw(st.booleans()):
        outlier = draw(st.integers(hi * (10_000 + 2 * d) // 10_000 + 1, hi * 10))
    else:
        outlier = draw(st.integers(1, lo * (10_000 - 2 * d) // 10_000 - 1))
    return d, cluster, outlier


@given(cluster_and_outlier(), st.integers(0, 8))
def test_an_outlier_never_moves_the_index(case: tuple[int, list[int], int], position: int) -> None:
    # State: a tight cluster of quotes (≥ 2) and one far outlier, anywhere in the list.
    d, cluster, outlier = case
    policy = OraclePolicy(max_deviation_bps=d)
    quotes = [SourceQuote("simulated", f"c{i}", BTC, p, None, T0) for i, p in enumerate(cluster)]
    with_outlier = [*quotes]
    with_outlier.insert(position % (len(quotes) + 1), SourceQuote("pyth", "out", BTC, outlier, None, T0))
    # Action: the round with and without it. Expectation: the same index; the outlier DEVIATING.
    (alone,) = run_round(policy, OracleState(), T0, quotes).prices
    (joined,) = run_round(policy, OracleState(), T0, with_outlier).prices
    assert joined.price_e9 == alone.price_e9
    assert [q.status for q in joined.quotes if q.feed == "out"] == [QuoteStatus.DEVIATING]


@given(st.lists(st.integers(1, 10**15), min_size=1, max_size=30), st.integers(1, 120))
def test_twaps_lie_within_the_prices_of_their_window(prices: list[int], step_s: int) -> None:
    policy = OraclePolicy(twap_windows_s=(60, 600), jump_quorum=0)  # TWAP maths: no jump guard
    state = OracleState()
    seen: list[int] = []
    for i, p in enumerate(prices):
        now = T0 + i * step_s * S
        result = run_round(policy, state, now, [SourceQuote("simulated", "f", BTC, p, None, now)])
        state, seen = result.state, [*seen, p]
        for t in result.prices[0].twaps:
            assert t.price_e9 is not None
            assert min(seen) <= t.price_e9 <= max(seen)
            assert 1 <= t.samples <= len(seen)
