"""Rounds over time: TWAPs, the bounded history, rebuilding it from published rounds."""

from __future__ import annotations

import pytest

from services.common.records import IndexPrice
from services.oracle.core import ClockWentBack, OraclePolicy, OracleState, remember, run_round
from services.oracle.ports import SourceFailure, SourceQuote
from tests.unit.oracle.kit import BTC, ETH, T0, S, failure, quote

POLICY = OraclePolicy(twap_windows_s=(60, 120), jump_quorum=0)  # prices move freely here


def rounds(prices: list[int | None], step_s: int = 30, policy: OraclePolicy = POLICY) -> list[IndexPrice]:
    """One BTC round every `step_s` from T0, at each price (None: the only source is down)."""
    state, out = OracleState(), []
    for i, price in enumerate(prices):
        now = T0 + i * step_s * S
        item = failure() if price is None else quote(price, now_us=now)
        result = run_round(policy, state, now, [item])
        state = result.state
        out += result.prices
    return out


def test_the_first_round_twap_is_its_own_price() -> None:
    (first,) = rounds([100])
    assert [(t.window_s, t.price_e9, t.samples) for t in first.twaps] == [(60, 100, 1), (120, 100, 1)]


def test_each_price_holds_until_the_next_round() -> None:
    # State: 100 at 0 s, 200 at 30 s, 400 at 60 s. Action: the round at 60 s.
    # Expectation: the 60 s window [0 s + 1 µs, 60 s + 1 µs): 100 × (30 s − 1 µs), 200 × 30 s, 400 × 1 µs.
    last = rounds([100, 200, 400])[-1]
    weighted = 100 * (30 * S - 1) + 200 * 30 * S + 400
    assert last.twaps[0].price_e9 == -((-2 * weighted + 60 * S) // (2 * 60 * S))  # half down
    assert last.twaps[0].price_e9 == 150
    assert last.twaps[0].samples == 2  # 0 s is before the window's start: it only holds into it
    assert last.twaps[1].samples == 3


def test_the_price_before_a_window_holds_into_it() -> None:
    # State: 100, 100, 100, 100, then 300 at 120 s. The 60 s window starts at 60 s + 1 µs.
    last = rounds([100, 100, 100, 100, 300])[-1]
    assert last.twaps[0].samples == 2  # 90 s and 120 s
    assert last.twaps[0].price_e9 == 100  # 100 over 60 s − 1 µs, 300 over 1 µs


def test_a_round_without_price_adds_nothing_and_the_last_price_holds() -> None:
    prices = rounds([100, None, None])
    assert prices[-1].price_e9 is None
    assert [(t.price_e9, t.samples) for t in prices[-1].twaps] == [(100, 0), (100, 1)]


def test_history_is_bounded_by_the_longest_window() -> None:
    state = OracleState()
    for i in range(200):
        now = T0 + i * 30 * S
        state = run_round(POLICY, state, now, [quote(100 + i, now_us=now)]).state
    # 120 s window at 30 s steps: 4 samples inside it, and the one holding into it.
    assert len(state.history[BTC]) == 5


def test_a_round_not_after_the_last_is_refused() -> None:
    state = run_round(POLICY, OracleState(), T0, [quote(100)]).state
    with pytest.raises(ClockWentBack):
        run_round(POLICY, state, T0, [quote(100)])


def test_remembering_published_rounds_rebuilds_the_same_state() -> None:
    # State: 10 rounds of two indexes, some without price. Action: replay the records (twice).
    state = OracleState()
    published: list[IndexPrice] = []
    for i in range(10):
        now = T0 + i * 30 * S
        items: list[SourceQuote | SourceFailure] = [
            quote(1_000 + i * 7, now_us=now), quote(50 + i, index=ETH, now_us=now),
        ]  # fmt: skip
        if i % 4 == 3:
            items = [failure(), quote(50 + i, index=ETH, now_us=now)]
        result = run_round(POLICY, state, now, items)
        state, published = result.state, published + result.prices
    rebuilt = OracleState()
    for record in published + published:  # a re-published round changes nothing
        rebuilt = remember(POLICY, rebuilt, record)
    # Expectation: the same history and last round, so the next round is the same too.
    assert rebuilt == state
    later = T0 + 10 * 30 * S
    assert run_round(POLICY, rebuilt, later, [quote(5, now_us=later)]) == run_round(
        POLICY, state, later, [quote(5, now_us=later)]
    )
