"""The fold of one accounts.events partition, and the batch builder on top of it.

Risk partition p writes every account event of its traders — and, as the last record of each of
its transactions that moved them, its exchange accounts (`ExchangeAccountsChanged`) — to
accounts.events partition p, so each partition is an independent ledger stream. Per partition:

* each trader's total T = free + reserved + withdrawing + locked (from `BalanceChanged`, values
  after; T is 0 before a trader's first record);
* a `BalanceChanged`'s settlement delta is T_after − T_before, except for reasons `DEPOSIT` (the
  Vault was credited by the deposit itself) and `WITHDRAWAL_PAID` (the Vault's withdraw debited
  it): those move T without a delta;
* an `ExchangeAccountsChanged` adds its `delta_fees`, `delta_clearing`, `delta_insurance`.

The ledger conserves USDC, so the running sum of all deltas is exactly 0 after every complete risk
transaction. A batch closes only at a record after which the running sum is 0 — a *consistent
cut* — and only when one of the rules below holds there:

====================================  ===========================================================
rule                                  why
====================================  ===========================================================
the batch holds a withdrawal request  the withdrawal waits for its batch's confirmation: close at
                                      the first cut after it, whatever else
it moves something, and has touched   bounds the size of one `settle` transaction
``max_traders`` traders
it moves something, and its first     bounds how long a trade waits to be on-chain (log time of
record is ``window_us`` old           the records; `tick` brings the adapter's clock when idle)
====================================  ===========================================================

A batch that moves nothing and holds no withdrawal request never closes by itself: its range
simply grows into the next batch, so idle partitions do not fill settlement.batches with empty
batches.

**Recorded cuts win.** On a restart the service tells the fold where its recorded batches end
(`expect_cut`); up to the last of them the fold closes exactly there and nowhere else (and fails
loudly if a recorded cut is not a consistent one), so a rebuilt batch has the same range — hence
the same id — as the one recorded, whatever the clock said the first time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from services.common.money import MicroUsdc
from services.common.records import (
    AccountEvent,
    BalanceChanged,
    ExchangeAccountsChanged,
    WithdrawalRequested,
)
from services.settlement.core.batches import Batch

EXEMPT_REASONS = frozenset({"DEPOSIT", "WITHDRAWAL_PAID"})
"""BalanceChanged reasons whose change of T is already on-chain: no settlement delta."""


class SettlementInvariantError(Exception):
    """The log contradicts itself or the recorded batches: corrupt input, never a business outcome."""


@dataclass(frozen=True, slots=True)
class FoldConfig:
    """When a batch may close (see the module docstring)."""

    max_traders: int
    window_us: int

    def __post_init__(self) -> None:
        if self.max_traders < 1 or self.window_us < 0:
            raise ValueError(f"invalid fold config {self}")


@dataclass(slots=True)
class _OpenBatch:
    from_offset: int
    first_time_us: int
    deltas: dict[str, int] = field(default_factory=dict)
    fees: int = 0
    clearing: int = 0
    insurance: int = 0
    withdrawals: int = 0

    def moves(self) -> bool:
        return any(self.deltas.values()) or bool(self.fees or self.clearing or self.insurance)


class PartitionFold:
    """Per-trader totals of one accounts.events partition, and its open batch."""

    def __init__(self, topic: str, partition: int, config: FoldConfig) -> None:
        self.topic = topic
        self.partition = partition
        self.config = config
        self.totals: dict[str, int] = {}
        """T per trader, after the last record applied."""
        self.exchange: tuple[int, int, int] = (0, 0, 0)
        """(FEES, CLEARING, INSURANCE) after the last ExchangeAccountsChanged."""
        self.running = 0
        """Σ deltas of the open batch (= since the last cut): 0 exactly at a consistent cut."""
        self.next_from = 0
        """First offset of the next batch: the `to_offset` of the last one closed."""
        self.last_offset = -1
        self.net_settled: dict[str, int] = {}
        """Σ of every closed batch's delta per trader (what the Vault holds beyond deposits − withdrawals)."""
        self._open: _OpenBatch | None = None
        self._expected: deque[int] = deque()

    # -- inputs ----------------------------------------------------------------------------------

    def expect_cut(self, to_offset: int) -> None:
        """A recorded batch ends at `to_offset`: close there, and nowhere before (rebuild)."""
        last = self._expected[-1] if self._expected else self.next_from
        if to_offset <= last:
            raise SettlementInvariantError(
                f"partition {self.partition}: recorded cut {to_offset} is not after {last}"
            )
        self._expected.append(to_offset)

    def apply(self, offset: int, log_time_us: int, event: AccountEvent) -> Batch | None:
        """Fold the record at `offset`; the batch it closes, if any. A redelivered offset is ignored."""
        if offset <= self.last_offset:
            return None
        if self._expected and offset >= self._expected[0]:
            raise SettlementInvariantError(
                f"partition {self.partition}: record {offset} is past the recorded cut "
                f"{self._expected[0]} without reaching it"
            )
        self.last_offset = offset
        batch = self._open
        if batch is None:
            batch = self._open = _OpenBatch(from_offset=self.next_from, first_time_us=log_time_us)
        body = event.body
        if isinstance(body, BalanceChanged):
            self._balance(batch, body)
        elif isinstance(body, ExchangeAccountsChanged):
            self._exchange(batch, body)
        elif isinstance(body, WithdrawalRequested):
            batch.withdrawals += 1
        if self._expected:
            if offset + 1 < self._expected[0]:
                return None
            if self.running != 0:
                raise SettlementInvariantError(
                    f"partition {self.partition}: recorded cut {offset + 1} is not consistent "
                    f"(running sum {self.running})"
                )
            self._expected.popleft()
            return self._close()
        if self.running == 0 and self._rule_holds(batch, log_time_us):
            return self._close()
        return None

    def tick(self, now_us: int) -> Batch | None:
        """The adapter's clock: close the open batch if it is at a cut and its window has passed."""
        batch = self._open
        if batch is None or self._expected or self.running != 0:
            return None
        if batch.withdrawals or (batch.moves() and now_us - batch.first_time_us >= self.config.window_us):
            return self._close()
        return None

    # -- queries ---------------------------------------------------------------------------------

    @property
    def at_cut(self) -> bool:
        """Whether the records applied so far end at a consistent cut."""
        return self.running == 0

    @property
    def pending_cuts(self) -> int:
        """Recorded cuts not reached yet (0 once the rebuild has passed every recorded batch)."""
        return len(self._expected)

    # -- internals -------------------------------------------------------------------------------

    def _balance(self, batch: _OpenBatch, body: BalanceChanged) -> None:
        buckets = (body.free, body.reserved, body.withdrawing, body.locked)
        if min(buckets) < 0:
            raise SettlementInvariantError(f"negative bucket for {body.trader}: {buckets}")
        after = sum(buckets)
        before = self.totals.get(body.trader, 0)
        self.totals[body.trader] = after
        if body.reason in EXEMPT_REASONS:
            return
        delta = after - before
        batch.deltas[body.trader] = batch.deltas.get(body.trader, 0) + delta
        self.running += delta

    def _exchange(self, batch: _OpenBatch, body: ExchangeAccountsChanged) -> None:
        if body.partition != self.partition:
            raise SettlementInvariantError(
                f"ExchangeAccountsChanged of partition {body.partition} on partition {self.partition}"
            )
        fees, clearing, insurance = self.exchange
        if (body.fees, body.clearing, body.insurance) != (
            fees + body.delta_fees,
            clearing + body.delta_clearing,
            insurance + body.delta_insurance,
        ):
            raise SettlementInvariantError(
                f"partition {self.partition}: exchange accounts {self.exchange} + deltas "
                f"({body.delta_fees}, {body.delta_clearing}, {body.delta_insurance}) ≠ "
                f"({body.fees}, {body.clearing}, {body.insurance})"
            )
        self.exchange = (body.fees, body.clearing, body.insurance)
        batch.fees += body.delta_fees
        batch.clearing += body.delta_clearing
        batch.insurance += body.delta_insurance
        self.running += body.delta_fees + body.delta_clearing + body.delta_insurance

    def _rule_holds(self, batch: _OpenBatch, now_us: int) -> bool:
        if batch.withdrawals:
            return True
        if not batch.moves():
            return False
        return (
            len(batch.deltas) >= self.config.max_traders
            or now_us - batch.first_time_us >= self.config.window_us
        )

    def _close(self) -> Batch:
        batch = self._open
        if batch is None or self.running != 0:  # callers check both; a bug otherwise
            raise SettlementInvariantError(f"partition {self.partition}: close outside a cut")
        deltas = tuple(sorted((t, MicroUsdc(d)) for t, d in batch.deltas.items() if d != 0))
        for trader, delta in deltas:
            self.net_settled[trader] = self.net_settled.get(trader, 0) + delta
        closed = Batch(
            topic=self.topic,
            partition=self.partition,
            from_offset=batch.from_offset,
            to_offset=self.last_offset + 1,
            deltas=deltas,
            fees_delta=MicroUsdc(batch.fees),
            clearing_delta=MicroUsdc(batch.clearing),
            insurance_delta=MicroUsdc(batch.insurance),
        )
        self.next_from = closed.to_offset
        self._open = None
        return closed
