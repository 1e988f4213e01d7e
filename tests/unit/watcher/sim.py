"""A simulated chain that forks, for the watcher's core: blocks, Vault logs, reorgs, and a reader
that feeds the tracker the way the service does (one block at a time, walking back on DROP)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.watcher.core import (
    Anchor,
    Block,
    Deposited,
    FinalityTracker,
    Rule,
    Step,
    VaultLog,
    resume_after,
)

GENESIS_PARENT = "0x" + "00" * 32


def trader(n: int) -> str:
    return "0x" + f"{n:040x}"


@dataclass
class SimChain:
    """Every block ever mined (by hash) and the canonical chain (hashes by number)."""

    blocks: dict[str, Block] = field(default_factory=dict)
    logs: dict[str, tuple[VaultLog, ...]] = field(default_factory=dict)
    canonical: list[str] = field(default_factory=list)
    highest_ever: int = -1
    _serial: int = 0

    @property
    def head(self) -> int:
        return len(self.canonical) - 1

    def mine(self, log_count: int = 0) -> Block:
        """A new block on the canonical tip with `log_count` deposits, each in its own tx."""
        self._serial += 1
        number = len(self.canonical)
        parent = self.canonical[-1] if self.canonical else GENESIS_PARENT
        block = Block(number, f"0x{self._serial:064x}", parent, timestamp=1_800_000_000 + number * 12)
        logs = []
        for index in range(log_count):
            self._serial += 1
            logs.append(
                VaultLog(
                    block_number=number,
                    block_hash=block.hash,
                    tx_hash=f"0x{self._serial:064x}",
                    log_index=index,
                    event=Deposited(
                        trader=trader(self._serial % 7), sender=trader(99), amount=self._serial, shares=1
                    ),
                )
            )
        self.blocks[block.hash] = block
        self.logs[block.hash] = tuple(logs)
        self.canonical.append(block.hash)
        self.highest_ever = max(self.highest_ever, number)
        return block

    def fork(self, keep_through: int) -> None:
        """Abandon every canonical block after `keep_through` (they stay known, orphaned)."""
        del self.canonical[keep_through + 1 :]

    def at(self, number: int) -> Block | None:
        return self.blocks[self.canonical[number]] if 0 <= number <= self.head else None

    def canonical_logs(self) -> list[VaultLog]:
        return [log for h in self.canonical for log in self.logs[h]]


@dataclass
class Reader:
    """The service's loop, one RPC-sized step at a time, over a `SimChain`."""

    chain: SimChain
    confirmations: int
    start_block: int = 0
    emitted: list[VaultLog] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    tracker: FinalityTracker = field(init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """What the service does on start: the anchor is the highest block of an emitted log."""
        number = resume_after([log.block_number for log in self.emitted], self.start_block)
        block = self.chain.at(number)
        self.tracker = FinalityTracker(self.confirmations, Anchor(number, block.hash if block else None))

    def read_one(self) -> bool:
        """Offer the next block if the chain has it; False when caught up."""
        block = self.chain.at(self.tracker.next_number)
        if block is None:
            return False
        step = self.tracker.offer(block, self.chain.logs[block.hash])
        self.steps.append(step)
        for final in step.final:
            self.emitted.extend(final.logs)
        return step.rule is not Rule.HALT

    def catch_up(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.read_one():
                return
        raise AssertionError("reader did not catch up")
