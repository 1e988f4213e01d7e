"""When the matcher service snapshots a partition: by count, and in proportion to the books."""

from __future__ import annotations

from services.common.records import Side
from services.matcher.core.engine import MatchingEngine
from services.matcher.service import snapshot_due
from tests.kit import ALICE, Commands


def engine_with_resting(orders: int) -> MatchingEngine:
    """State: one market with `orders` bids resting (one lot each, below one another)."""
    commands = Commands()
    engine = MatchingEngine()
    engine.apply(commands.create())
    for i in range(orders):
        engine.apply(commands.limit(ALICE, Side.BUY, 1, 1_000 - i))
    assert engine.resting_orders() == orders
    return engine


def test_a_small_book_is_snapshotted_every_snapshot_every_commands() -> None:
    engine = engine_with_resting(3)
    assert not snapshot_due(199, 200, 4, engine)
    assert snapshot_due(200, 200, 4, engine)


def test_a_deep_book_waits_for_per_order_commands_for_each_resting_order() -> None:
    # State: 100 resting orders, 4 commands per order → the count alone (200) is not enough.
    engine = engine_with_resting(100)
    assert not snapshot_due(200, 200, 4, engine)
    assert not snapshot_due(399, 200, 4, engine)
    assert snapshot_due(400, 200, 4, engine)
    # With the proportional rule off, the count decides alone.
    assert snapshot_due(200, 200, 0, engine)
