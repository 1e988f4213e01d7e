"""The depth fold against the engine's own book, after every trade-log entry.

Two flows: `realistic_flow` (adds near the touch, cancels, crossing and market orders), and the
matcher property tests' generated flows (amends, GTT expiry, self-trade prevention, pauses,
settlements and refusals), so every event that moves resting quantity is exercised.
"""

from __future__ import annotations

from hypothesis import given

from services.common.records import (
    MarketCreated,
    OrderRested,
    Side,
    TradeLogEntry,
)
from services.marketdata.core.depth import DepthBook, DepthInvariantError, LevelChange
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.flows import realistic_flow
from tests.kit import ALICE, btc_perp
from tests.unit.matcher.test_properties import FLOW_SETTINGS, Flow, command_flows

Levels = dict[tuple[str, Side], dict[int, int]]


def engine_levels(engine: MatchingEngine) -> Levels:
    """price → total leaves per market and side, read from the engine's book."""
    return {
        (symbol, side): {
            market.book.side(side).price(key): sum(o.leaves_qty for o in level.values())
            for key, level in market.book.side(side).levels.items()
        }
        for symbol, market in engine.markets.items()
        for side in Side
    }


def fold_levels(depth: DepthBook) -> Levels:
    return {
        (symbol, side): dict(market.levels(side)) for symbol, market in depth.markets.items() for side in Side
    }


def run_and_compare(commands: list) -> int:  # type: ignore[type-arg]
    """Apply each command to an engine and its entry to the fold; compare after every entry."""
    engine, depth = MatchingEngine(), DepthBook()
    before = fold_levels(depth)
    checked = 0
    for i, command in enumerate(commands):
        entry = log_entry(command, engine.apply(command), f"matcher.commands:0:{i}")
        changes = depth.apply(entry)
        after = fold_levels(depth)
        # Expectation: the fold's levels are exactly the engine's ...
        assert after == engine_levels(engine), f"levels differ after {command!r}"
        # ... the reported changes cover every level that differs, and each carries its level's new
        # total (a level touched twice in one entry — an order expiring where another rests — may be
        # reported though its total came back: a delta with the current value is harmless) ...
        assert set(expected_changes(before, after)) <= set(changes), f"changes missed after {command!r}"
        assert all(c.qty == after.get((c.market, c.side), {}).get(c.price, 0) for c in changes), (
            f"changes wrong after {command!r}"
        )
        # ... and best prices and mid agree with the book.
        for symbol, market in engine.markets.items():
            view = depth.markets[symbol]
            bid, ask = market.book.best_price(Side.BUY), market.book.best_price(Side.SELL)
            assert (view.best_bid(), view.best_ask()) == (bid, ask)
            assert view.mid() == (None if bid is None or ask is None else (bid + ask) // 2)
        before = after
        checked += 1
    return checked


def expected_changes(before: Levels, after: Levels) -> list[LevelChange]:
    changes = []
    for (symbol, side), levels in after.items():
        old = before.get((symbol, side), {})
        for price in sorted(set(old) | set(levels)):
            if old.get(price, 0) != levels.get(price, 0):
                changes.append(LevelChange(symbol, side, price, levels.get(price, 0)))
    return sorted(changes, key=lambda c: (c.side, c.price))


def test_realistic_flow_fold_matches_the_engine_book_after_every_entry() -> None:
    # State: a fresh engine and fold. Action: 3,000 realistic commands, entry by entry.
    # Expectation (inside): identical levels, changes, best prices and mid after every entry.
    assert run_and_compare(realistic_flow(3_000)) == 3_001


@FLOW_SETTINGS
@given(flow=command_flows())
def test_generated_flows_fold_matches_the_engine_book_after_every_entry(flow: Flow) -> None:
    # State / Action / Expectation: as above, on flows with amends, expiries, STP and settlements.
    run_and_compare(flow.commands())


def test_mid_rounds_half_down_and_needs_both_sides() -> None:
    # State: BTC-PERP listed, one bid at 100.
    depth = DepthBook()
    depth.apply(_entry(MarketCreated(definition=btc_perp())))
    depth.apply(_entry(OrderRested(order_id="b", trader=ALICE, side=Side.BUY, price=100, leaves_qty=2)))
    # Expectation: one-sided book has no mid.
    market = depth.markets["BTC-PERP"]
    assert market.mid() is None
    # Action: an ask at 103 rests. Expectation: mid 101.5 → 101 (half down).
    changes = depth.apply(
        _entry(OrderRested(order_id="a", trader=ALICE, side=Side.SELL, price=103, leaves_qty=1))
    )
    assert changes == [LevelChange("BTC-PERP", Side.SELL, 103, 1)]
    assert market.mid() == 101


def test_a_fill_of_an_order_that_never_rested_is_refused_loudly() -> None:
    # State: a listed market with nothing resting.
    from services.common.records import LiquiditySide, OrderFilled

    depth = DepthBook()
    depth.apply(_entry(MarketCreated(definition=btc_perp())))
    fill = OrderFilled(
        order_id="ghost", trader=ALICE, trade_id=1, side=Side.BUY, liquidity_side=LiquiditySide.MAKER,
        last_px=100, last_qty=1, cum_qty=1, leaves_qty=0, fee=0,
    )  # fmt: skip
    # Action / Expectation: the fold refuses to invent a level.
    try:
        depth.apply(_entry(fill))
    except DepthInvariantError:
        return
    raise AssertionError("expected DepthInvariantError")


def _entry(event: object) -> TradeLogEntry:
    return TradeLogEntry(
        market="BTC-PERP", first_seq=1, source="t:0:0", command_id="c", ts_event=0,
        events=[event],  # type: ignore[list-item]
    )  # fmt: skip
