"""Settlement's whole state: one fold per accounts.events partition, every batch and its status, and
the withdrawal queue — as a function of the two logs it is rebuilt from.

The service drives it with three kinds of input, all deterministic but the last:

* `restore(batch, status)` — what settlement.batches recorded (on start, in topic order);
* `apply(partition, offset, log_time_us, event)` — accounts.events records, in offset order;
* `tick(now_us)` — the service's clock, only to close a batch whose window passed while idle.

and reports back what it did (`set_status`, the withdrawal queue's `move`).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.records import (
    AccountEvent,
    BatchStatus,
    WithdrawalFailed,
    WithdrawalPaid,
    WithdrawalRequested,
)
from services.settlement.core.batches import Batch, advance
from services.settlement.core.fold import FoldConfig, PartitionFold, SettlementInvariantError
from services.settlement.core.withdrawals import ExecuteWithdrawal, FailWithdrawal, WithdrawalQueue


@dataclass(frozen=True, slots=True)
class BuiltBatch:
    """A batch the fold closed, with its id; `recorded` if settlement.batches already had it."""

    batch_id: str
    batch: Batch
    recorded: bool


class Settlement:
    """Folds, batches, statuses and withdrawals of one Vault (chain id + address)."""

    def __init__(self, topic: str, partitions: int, config: FoldConfig, chain_id: int, vault: str) -> None:
        self.topic = topic
        self.chain_id = chain_id
        self.vault = vault
        self.folds = {p: PartitionFold(topic, p, config) for p in range(partitions)}
        self.batches: dict[str, Batch] = {}
        self.statuses: dict[str, BatchStatus] = {}
        self._by_partition: dict[int, list[str]] = {p: [] for p in range(partitions)}
        self._confirmed_count: dict[int, int] = dict.fromkeys(range(partitions), 0)
        """Per partition, how many of its first batches (in log order) are CONFIRMED."""
        self.withdrawals = WithdrawalQueue()

    # -- inputs ----------------------------------------------------------------------------------

    def restore(self, batch_id: str, batch: Batch, status: BatchStatus) -> None:
        """A batch recorded on settlement.batches (first time seen: its BUILT record), or a later
        status of one already restored."""
        if batch_id in self.batches:
            self.set_status(batch_id, status)
            return
        if batch.topic != self.topic or batch.id(self.chain_id, self.vault) != batch_id:
            raise SettlementInvariantError(f"recorded batch {batch_id} is not {batch} on this Vault")
        ids = self._by_partition[batch.partition]
        expected_from = self.batches[ids[-1]].to_offset if ids else 0
        if batch.from_offset != expected_from:
            raise SettlementInvariantError(
                f"recorded batch {batch_id} starts at {batch.from_offset}, not {expected_from}"
            )
        self.folds[batch.partition].expect_cut(batch.to_offset)
        self.batches[batch_id] = batch
        ids.append(batch_id)
        self.statuses[batch_id] = advance(None, BatchStatus.BUILT)
        if status is not BatchStatus.BUILT:
            self.set_status(batch_id, status)

    def apply(self, partition: int, offset: int, log_time_us: int, event: AccountEvent) -> list[BuiltBatch]:
        """One accounts.events record; the batch it closes (0 or 1)."""
        body = event.body
        if isinstance(body, WithdrawalRequested):
            self.withdrawals.requested(partition, offset, event.trader, body)
        elif isinstance(body, WithdrawalPaid | WithdrawalFailed):
            self.withdrawals.resolved(body.withdrawal_id)
        closed = self.folds[partition].apply(offset, log_time_us, event)
        return [] if closed is None else [self._built(closed)]

    def tick(self, now_us: int) -> list[BuiltBatch]:
        """Close every open batch at a cut whose window has passed by `now_us`."""
        built = []
        for fold in self.folds.values():
            closed = fold.tick(now_us)
            if closed is not None:
                built.append(self._built(closed))
        return built

    def set_status(self, batch_id: str, status: BatchStatus) -> None:
        """Move a batch along the status table (`batches.TRANSITIONS`); raises on an illegal move."""
        self.statuses[batch_id] = advance(self.statuses.get(batch_id), status)
        partition = self.batches[batch_id].partition
        ids = self._by_partition[partition]
        count = self._confirmed_count[partition]
        # Batches may confirm in any order; the prefix grows only over consecutive confirmed ones.
        while count < len(ids) and self.statuses[ids[count]] is BatchStatus.CONFIRMED:
            count += 1
        self._confirmed_count[partition] = count

    # -- queries ---------------------------------------------------------------------------------

    def unconfirmed(self) -> list[str]:
        """Ids of batches not CONFIRMED, per partition in log order (partitions interleaved by id order)."""
        return [i for p in sorted(self._by_partition) for i in self._by_partition[p]
                if self.statuses[i] is not BatchStatus.CONFIRMED]  # fmt: skip

    def confirmed_through(self, partition: int) -> int:
        """First offset of `partition` not covered by its longest prefix of CONFIRMED batches."""
        count = self._confirmed_count[partition]
        return self.batches[self._by_partition[partition][count - 1]].to_offset if count else 0

    def covered(self, partition: int, offset: int) -> bool:
        """Whether the record at (partition, offset) is in a confirmed prefix batch."""
        return offset < self.confirmed_through(partition)

    def withdrawal_actions(
        self, chain_now_us: int, margin_us: int
    ) -> list[ExecuteWithdrawal | FailWithdrawal]:
        """What to do with the waiting withdrawals now (see `WithdrawalQueue.actions`)."""
        return self.withdrawals.actions(chain_now_us, margin_us, self.covered)

    @property
    def rebuilding(self) -> bool:
        """Whether some partition has not reached the end of its recorded batches yet."""
        return any(f.pending_cuts for f in self.folds.values())

    # -- internals -------------------------------------------------------------------------------

    def _built(self, closed: Batch) -> BuiltBatch:
        batch_id = closed.id(self.chain_id, self.vault)
        recorded = self.batches.get(batch_id)
        if recorded is not None:
            if recorded != closed:
                raise SettlementInvariantError(
                    f"batch {batch_id} rebuilt from accounts.events differs from the one recorded: "
                    f"{closed} ≠ {recorded}"
                )
            return BuiltBatch(batch_id, closed, recorded=True)
        if closed.total != 0:  # the fold closes only at cuts: a bug otherwise
            raise SettlementInvariantError(f"batch {batch_id} sums to {closed.total}")
        self.batches[batch_id] = closed
        self._by_partition[closed.partition].append(batch_id)
        self.statuses[batch_id] = advance(None, BatchStatus.BUILT)
        return BuiltBatch(batch_id, closed, recorded=False)
