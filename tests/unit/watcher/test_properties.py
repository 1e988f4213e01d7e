"""Property: on a chain that forks and reorgs below the depth, with restarts anywhere, every final
log is emitted exactly once and no orphaned log ever is."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.watcher.core import Rule
from tests.unit.watcher.sim import Reader, SimChain

# One program step: mine a block with n logs, reorg, let the reader read some blocks, restart.
mine = st.tuples(st.just("mine"), st.integers(0, 3))
reorg = st.tuples(st.just("reorg"), st.integers(0, 30), st.integers(0, 6))  # (fork choice, new blocks)
read = st.tuples(st.just("read"), st.integers(1, 20))
restart = st.tuples(st.just("restart"), st.just(0))
program = st.lists(st.one_of(mine, mine, mine, read, read, reorg, restart), min_size=10, max_size=80)


def shallow_fork_point(chain: SimChain, confirmations: int, choice: int) -> int:
    """A fork point that replaces no block that was ever `confirmations` deep: every replaced block
    n had depth highest_ever − n + 1 < confirmations."""
    lowest = max(chain.highest_ever - confirmations + 1, -1)
    return min(chain.head, lowest + choice % confirmations)


@settings(max_examples=400, deadline=None)
@given(confirmations=st.integers(1, 6), steps=program)
def test_reorgs_below_the_depth_emit_every_final_log_exactly_once(
    confirmations: int, steps: list[tuple[str, int] | tuple[str, int, int]]
) -> None:
    chain = SimChain()
    reader = Reader(chain, confirmations)
    ever_orphaned: set[str] = set()
    for step in steps:
        match step:
            case ("mine", count):
                chain.mine(count)
            case ("reorg", choice, new_blocks):
                fork = shallow_fork_point(chain, confirmations, choice)
                ever_orphaned |= {log.tx_hash for h in chain.canonical[fork + 1 :] for log in chain.logs[h]}
                chain.fork(fork)
                for _ in range(new_blocks):
                    chain.mine(1)
            case ("read", count):
                for _ in range(count):
                    if not reader.read_one():
                        break
            case ("restart", _):
                reader.restart()
    # Settle: enough blocks on top for everything to be final, then read to the head.
    for _ in range(confirmations):
        chain.mine(0)
    reader.catch_up()

    ids = [(log.tx_hash, log.log_index) for log in reader.emitted]
    assert len(ids) == len(set(ids)), "a log was emitted twice"
    assert not ever_orphaned & {log.tx_hash for log in reader.emitted}, "an orphaned log was emitted"
    final_through = chain.head - confirmations + 1
    expected = [log for log in chain.canonical_logs() if log.block_number <= final_through]
    assert reader.emitted == expected, "emitted ≠ the canonical logs up to the final block, in order"
    assert all(s.rule is not Rule.HALT for s in reader.steps)


@settings(max_examples=200, deadline=None)
@given(confirmations=st.integers(1, 5), before=st.integers(0, 12), depth_over=st.integers(0, 4))
def test_a_reorg_as_deep_as_the_depth_under_a_final_block_halts(
    confirmations: int, before: int, depth_over: int
) -> None:
    # State: a chain read to its head, so blocks up to head − depth + 1 are final.
    chain = SimChain()
    for _ in range(confirmations + before):
        chain.mine(1)
    reader = Reader(chain, confirmations)
    reader.catch_up()
    emitted = list(reader.emitted)
    anchor = reader.tracker.anchor.number
    # Action: fork below the anchor (replacing a final block), new branch longer than the old.
    fork = max(anchor - 1 - depth_over, -1)
    chain.fork(fork)
    for _ in range(confirmations + 8):
        chain.mine(1)
    reader.catch_up()
    # Expectation: HALT, and nothing from the new branch emitted.
    assert reader.steps[-1].rule is Rule.HALT
    assert reader.emitted == emitted
