"""The finality rules, one table row at a time (State / Action / Expectation)."""

from __future__ import annotations

import pytest

from services.watcher.core import Anchor, Block, FinalityTracker, Rule, TrackerHalted
from tests.unit.watcher.sim import Reader, SimChain


def chain_of(blocks: int, logs_per_block: int = 1) -> SimChain:
    chain = SimChain()
    for _ in range(blocks):
        chain.mine(logs_per_block)
    return chain


def test_a_block_is_final_once_confirmations_deep_under_the_linked_tip() -> None:
    # State: depth 3, blocks 0..4 with one deposit each.
    chain = chain_of(5)
    reader = Reader(chain, confirmations=3)
    # Action: read everything.
    reader.catch_up()
    # Expectation: tip 4 → blocks 0, 1, 2 final (4 − 2 + 1 = 3), 3 and 4 pending.
    assert [log.block_number for log in reader.emitted] == [0, 1, 2]
    assert [b.number for b in reader.tracker.pending] == [3, 4]
    assert reader.tracker.anchor == Anchor(2, chain.canonical[2])


def test_depth_one_makes_a_block_final_as_soon_as_it_links() -> None:
    chain = chain_of(3)
    reader = Reader(chain, confirmations=1)
    reader.catch_up()
    assert [log.block_number for log in reader.emitted] == [0, 1, 2]
    assert reader.tracker.pending == ()


def test_link_drop_walks_back_to_the_fork_and_orphaned_logs_are_never_emitted() -> None:
    # State: depth 4, blocks 0..5 read; 3, 4, 5 pending.
    chain = chain_of(6)
    reader = Reader(chain, confirmations=4)
    reader.catch_up()
    orphaned = {log.tx_hash for h in chain.canonical[3:] for log in chain.logs[h]}
    # Action: a 3-block reorg (fork after block 2), the new branch 4 blocks long, then 3 more.
    chain.fork(2)
    for _ in range(7):
        chain.mine(1)
    reader.catch_up()
    # Expectation: three DROPs (5, 4, 3), then links; no orphaned log emitted; 0..6 final.
    rules = [s.rule for s in reader.steps]
    assert rules.count(Rule.DROP) == 3
    assert [b.number for s in reader.steps for b in s.dropped] == [5, 4, 3]
    assert not orphaned & {log.tx_hash for log in reader.emitted}
    assert [log.block_number for log in reader.emitted] == list(range(7))


def test_a_replaced_final_block_halts_the_tracker() -> None:
    # State: depth 2, blocks 0..4 read, so 0..3 are final.
    chain = chain_of(5)
    reader = Reader(chain, confirmations=2)
    reader.catch_up()
    before = list(reader.emitted)
    # Action: a reorg forking after block 1, replacing final blocks 2 and 3 (3 blocks deep ≥ 2).
    chain.fork(1)
    for _ in range(5):
        chain.mine(1)
    reader.catch_up()
    # Expectation: DROP of pending block 4, then HALT on its replacement, whose parent is not the
    # final block 3; nothing more emitted, and the tracker refuses further blocks.
    last = reader.steps[-1]
    assert last.rule is Rule.HALT and last.halt is not None
    assert last.halt.anchor.number == 3
    assert "deep reorg" in last.halt.describe()
    assert reader.emitted == before
    with pytest.raises(TrackerHalted):
        reader.tracker.offer(chain.at(reader.tracker.next_number) or chain.mine(), [])


def test_offers_out_of_order_or_with_foreign_logs_are_adapter_bugs() -> None:
    chain = chain_of(3)
    tracker = FinalityTracker(2, Anchor(-1, None))
    with pytest.raises(ValueError, match="expected 0"):
        tracker.offer(chain.at(1) or Block(1, "x", "y", 0), [])
    with pytest.raises(ValueError, match="not in block"):
        tracker.offer(chain.at(0) or Block(0, "x", "y", 0), chain.logs[chain.canonical[1]])


def test_confirmations_below_one_are_refused() -> None:
    with pytest.raises(ValueError):
        FinalityTracker(0, Anchor(-1, None))


def test_a_restart_resumes_after_the_highest_emitted_block_without_repeating() -> None:
    # State: depth 2; logs only in blocks 1 and 3 of 0..5; read, so 1 and 3 are emitted.
    chain = SimChain()
    for count in (0, 1, 0, 1, 0, 0):
        chain.mine(count)
    reader = Reader(chain, confirmations=2)
    reader.catch_up()
    assert [log.block_number for log in reader.emitted] == [1, 3]
    # Action: restart (anchor = block 3), two more blocks with logs.
    reader.restart()
    assert reader.tracker.anchor == Anchor(3, chain.canonical[3])
    chain.mine(1)
    chain.mine(1)
    reader.catch_up()
    # Expectation: nothing twice; block 6 final, 7 pending.
    assert [log.block_number for log in reader.emitted] == [1, 3, 6]


def test_a_start_block_skips_history_before_the_vault() -> None:
    chain = chain_of(6)
    reader = Reader(chain, confirmations=1, start_block=4)
    reader.catch_up()
    assert [log.block_number for log in reader.emitted] == [4, 5]
