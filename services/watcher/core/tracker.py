"""Which Vault logs are final: a confirmation depth over a window of linked blocks, reorg rules.

The tracker is fed the chain one block at a time, in number order, each block with the Vault logs
it holds, and answers with a `Step`. It keeps:

- the *anchor*: the newest final block (number and hash); everything up to it has been emitted;
- the *window*: blocks after the anchor, each linked to the one before by its parent hash, whose
  logs are pending (read, not yet final).

A block B (number n) is final once the window's newest block (the *tip*) is `confirmations`
deep above it: ``tip − n + 1 ≥ confirmations``. The tip is the newest block the tracker has linked,
not the node's `eth_blockNumber`: a block counts as deep only under blocks known to descend from it.

Rules (`RULES`; the first matching situation applies):

=====  =================================================  ============================================
rule   situation when block B (number n) is offered        action
=====  =================================================  ============================================
–      tracker halted (a deep reorg was seen)              `TrackerHalted` raised: nothing more is read
–      n ≠ `next_number`, or a log not in B                `ValueError` (an adapter bug)
LINK   B.parent_hash = hash of the tip (the window's       B joins the window with its logs; every
       newest block, or the anchor when the window is      window block with tip − number + 1 ≥ depth
       empty; an anchor of unknown hash links anything)    becomes final, oldest first: its logs are
                                                           emitted, the anchor moves to it
DROP   B.parent_hash ≠ tip hash, window not empty          the tip is orphaned (a reorg shallower than
                                                           the depth): it is dropped with its pending
                                                           logs, B is not kept, and the next block read
                                                           is the dropped one's number — walking back
                                                           until a block links again
HALT   B.parent_hash ≠ anchor hash, window empty           a final block was replaced: a reorg at least
                                                           `confirmations` deep. Reported (`Step.halt`)
                                                           and the tracker stops: operator decision
=====  =================================================  ============================================

Consequences: a log is emitted once, when its block becomes final (the anchor only moves
forward); a log of an orphaned block is never emitted, as long as reorgs stay shallower than the
depth (an orphaned block is then always still in the window when its replacement is read). With
``confirmations = 1`` a block is final as soon as it links, so every reorg is a HALT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from services.watcher.core.chain import Block, FinalBlock, VaultLog


class Rule(StrEnum):
    """What the tracker did with an offered block (see the module's table)."""

    LINK = "LINK"
    DROP = "DROP"
    HALT = "HALT"


@dataclass(frozen=True, slots=True)
class Anchor:
    """The newest final block. ``hash=None`` only before the first block ever read (genesis)."""

    number: int
    hash: str | None


@dataclass(frozen=True, slots=True)
class DeepReorg:
    """A reorg at least `confirmations` deep: a block the tracker had made final was replaced."""

    anchor: Anchor
    """The final block the chain no longer descends from."""
    offered: Block
    """The block whose parent is not the anchor."""

    def describe(self) -> str:
        return (
            f"deep reorg: block {self.offered.number} ({self.offered.hash}) has parent "
            f"{self.offered.parent_hash}, but final block {self.anchor.number} is {self.anchor.hash}"
        )


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one offered block."""

    rule: Rule
    final: tuple[FinalBlock, ...] = ()
    """Blocks that became final by this step, oldest first: their logs are to be emitted now."""
    dropped: tuple[Block, ...] = ()
    """Orphaned blocks removed from the window; their pending logs are discarded."""
    halt: DeepReorg | None = None
    """Set for HALT."""


class TrackerHalted(RuntimeError):
    """The tracker saw a deep reorg and reads nothing more: the operator decides what happens."""


@dataclass(slots=True)
class _Pending:
    block: Block
    logs: tuple[VaultLog, ...]


@dataclass(slots=True)
class FinalityTracker:
    """The state machine of the module docstring. `offer` the block `next_number`, in order."""

    confirmations: int
    anchor: Anchor
    _window: list[_Pending] = field(default_factory=list)
    _halted: DeepReorg | None = None

    def __post_init__(self) -> None:
        if self.confirmations < 1:
            raise ValueError(f"confirmations must be ≥ 1, not {self.confirmations}")

    @property
    def next_number(self) -> int:
        """The block to offer next."""
        return self.anchor.number + 1 + len(self._window)

    @property
    def tip(self) -> Anchor:
        """The newest linked block (the anchor when nothing is pending)."""
        if self._window:
            newest = self._window[-1].block
            return Anchor(newest.number, newest.hash)
        return self.anchor

    @property
    def pending(self) -> tuple[Block, ...]:
        """The window: linked blocks after the anchor, not final yet (oldest first)."""
        return tuple(p.block for p in self._window)

    @property
    def halted(self) -> DeepReorg | None:
        return self._halted

    def offer(self, block: Block, logs: Sequence[VaultLog]) -> Step:
        """Apply the rule for `block` (with all the Vault logs it holds); see the module's table."""
        if self._halted is not None:
            raise TrackerHalted(self._halted.describe())
        if block.number != self.next_number:
            raise ValueError(f"offered block {block.number}, expected {self.next_number}")
        for log in logs:
            if log.block_hash != block.hash or log.block_number != block.number:
                where = f"log {log.tx_hash}:{log.log_index}"
                raise ValueError(f"{where} is not in block {block.number} {block.hash}")
        rule = classify(self.tip, block, window_empty=not self._window)
        return RULES[rule](self, block, tuple(sorted(logs, key=lambda log: log.log_index)))

    # -- one handler per rule --------------------------------------------------------------------

    def _link(self, block: Block, logs: tuple[VaultLog, ...]) -> Step:
        self._window.append(_Pending(block, logs))
        final: list[FinalBlock] = []
        while self._window and block.number - self._window[0].block.number + 1 >= self.confirmations:
            done = self._window.pop(0)
            final.append(FinalBlock(done.block, done.logs))
            self.anchor = Anchor(done.block.number, done.block.hash)
        return Step(Rule.LINK, final=tuple(final))

    def _drop(self, block: Block, logs: tuple[VaultLog, ...]) -> Step:
        orphaned = self._window.pop()
        return Step(Rule.DROP, dropped=(orphaned.block,))

    def _halt(self, block: Block, logs: tuple[VaultLog, ...]) -> Step:
        self._halted = DeepReorg(anchor=self.anchor, offered=block)
        return Step(Rule.HALT, halt=self._halted)


def classify(tip: Anchor, block: Block, *, window_empty: bool) -> Rule:
    """Which rule applies to `block` offered on top of `tip`."""
    if tip.hash is None or block.parent_hash == tip.hash:
        return Rule.LINK
    return Rule.HALT if window_empty else Rule.DROP


RULES: dict[Rule, Callable[[FinalityTracker, Block, tuple[VaultLog, ...]], Step]] = {
    Rule.LINK: FinalityTracker._link,
    Rule.DROP: FinalityTracker._drop,
    Rule.HALT: FinalityTracker._halt,
}
"""The action of each rule (the table in the module docstring)."""
