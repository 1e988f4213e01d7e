"""Marks, funding intervals and expiry settlement as the book sequences them.

The matcher does no derivatives maths: it checks that a lifecycle command may happen now, records
it in the log, and for a settlement closes the book. Risk books the money (tests/unit/risk).
"""

from __future__ import annotations

import pytest

from services.common.codes import CancelReason
from services.common.records import (
    CommandRejected,
    FundingApplied,
    MarketSettled,
    MarketStatus,
    MarketStatusChanged,
    MarkPriceSet,
    OrderCancelled,
    Side,
)
from services.matcher.core.engine import MatchingEngine, export_state, import_state
from tests.kit import (
    ALICE,
    BOB,
    EXPIRY_2026_12_25,
    TS_2026_11_23,
    Commands,
    btc_future_dec26,
    btc_perp,
)
from tests.unit.matcher.test_engine import Market, kinds, rejection

HOUR_US = 3_600_000_000
H0 = TS_2026_11_23 + HOUR_US  # an hour boundary after the listing


@pytest.fixture
def perp() -> Market:
    return Market()


@pytest.fixture
def future() -> Market:
    """BTC-20261225 listed, Alice bidding and Bob offering."""
    market = Market()
    market.engine, market.commands = MatchingEngine(), Commands("BTC-20261225")
    market.apply(market.commands.create(btc_future_dec26()))
    market.place(ALICE, Side.BUY, 2, 600_000)
    market.place(BOB, Side.SELL, 3, 610_000)
    return market


def test_a_mark_price_is_recorded_in_the_log(perp: Market) -> None:
    # Action: the funding/expiry service sets the mark at 650,010 with the index at 650,000.
    events = perp.apply(perp.commands.set_mark(650_010, 650_000)).events
    # Expectation: one MarkPriceSet, numbered like any event of the market.
    assert events == [MarkPriceSet(mark_price=650_010, index_price=650_000)]


def test_a_mark_must_be_positive(perp: Market) -> None:
    assert rejection(perp.apply(perp.commands.set_mark(0, 650_000)).events) == "INVALID_PRICE"


def test_a_funding_interval_is_applied_once(perp: Market) -> None:
    # State: nothing funded yet. Action: [H0, H0+1h) at +0.01 %, then the same interval again.
    first = perp.apply(perp.commands.apply_funding(H0, H0 + HOUR_US, 100_000, 650_000)).events
    again = perp.apply(perp.commands.apply_funding(H0, H0 + HOUR_US, 100_000, 650_000)).events
    # Expectation: the first is in the log, the resend refused with a stable code.
    assert isinstance(first[0], FundingApplied) and first[0].rate_e9 == 100_000
    assert rejection(again) == "FUNDING_ALREADY_APPLIED"
    # ... and the next interval is fine.
    nxt = perp.apply(perp.commands.apply_funding(H0 + HOUR_US, H0 + 2 * HOUR_US, -5, 650_000)).events
    assert kinds(nxt) == ["FundingApplied"]


def test_funding_for_an_interval_not_over_yet_is_refused(perp: Market) -> None:
    # Action: the command arrives (ts_init) before the interval's end.
    command = perp.commands.apply_funding(H0, H0 + HOUR_US, 1, 650_000, at=H0 + HOUR_US - 1)
    assert rejection(perp.apply(command).events) == "FUNDING_NOT_DUE"


def test_only_perpetuals_pay_funding(future: Market) -> None:
    command = future.commands.apply_funding(H0, H0 + HOUR_US, 1, 650_000)
    assert rejection(future.apply(command).events) == "NOT_A_PERPETUAL"


def test_how_far_a_market_is_funded_survives_a_snapshot(perp: Market) -> None:
    perp.apply(perp.commands.apply_funding(H0, H0 + HOUR_US, 1, 650_000))
    restored = import_state(export_state(perp.engine))
    assert restored.state_hash() == perp.engine.state_hash()
    result = restored.apply(perp.commands.apply_funding(H0, H0 + HOUR_US, 1, 650_000))
    assert rejection(result.events) == "FUNDING_ALREADY_APPLIED"


def test_settling_an_expired_future_closes_the_book_then_records_the_price(future: Market) -> None:
    # Action: after expiry, settle at 620,000 ticks.
    events = future.apply(future.commands.settle(620_000, at=EXPIRY_2026_12_25)).events
    # Expectation: SETTLED, both resting orders cancelled (market closed), then the price.
    assert kinds(events) == ["MarketStatusChanged", "OrderCancelled", "OrderCancelled", "MarketSettled"]
    status = events[0]
    assert isinstance(status, MarketStatusChanged) and status.status is MarketStatus.SETTLED
    assert all(e.reason == CancelReason.MARKET_CLOSED.name for e in events if isinstance(e, OrderCancelled))
    assert events[-1] == MarketSettled(settlement_price=620_000, method="test")
    assert not future.book.orders
    # ... and it settles only once.
    assert rejection(future.apply(future.commands.settle(620_000)).events) == "MARKET_NOT_ACTIVE"


def test_a_market_is_not_settled_before_its_expiry(future: Market) -> None:
    events = future.apply(future.commands.settle(620_000, at=EXPIRY_2026_12_25 - 1)).events
    assert rejection(events) == "NOT_EXPIRED"


def test_an_expired_market_takes_no_orders_while_it_waits_for_settlement(future: Market) -> None:
    # Action: an order whose command time is past expiry, before any SettleMarket.
    events = future.apply(future.commands.limit(ALICE, Side.BUY, 1, 600_000, at=EXPIRY_2026_12_25)).events
    # Expectation: refused; the resting orders stay until the settlement cancels them.
    assert rejection(events) == "MARKET_EXPIRED"
    assert len(future.book.orders) == 2


def test_perpetuals_never_settle(perp: Market) -> None:
    assert rejection(perp.apply(perp.commands.settle(650_000)).events) == "NOT_SETTLEABLE"


def test_lifecycle_commands_name_no_trader_and_are_refused_as_commands() -> None:
    engine, commands = MatchingEngine(), Commands()
    engine.apply(commands.create(btc_perp()))
    engine.apply(commands.set_status(MarketStatus.SETTLED))
    refused = engine.apply(commands.set_mark(650_000)).events
    assert isinstance(refused[0], CommandRejected) and refused[0].reason == "MARKET_NOT_ACTIVE"
