"""Properties of the batch builder over random ledgers: complete risk transactions on several
partitions (trades, deposits, withdrawals requested, paid and failed, refusals), interleaved across
partitions in any order and with clock ticks anywhere.

* every batch sums to exactly 0, its deltas sorted, non-zero, its range continuing its partition's;
* all batches together move each trader by exactly the ledger's net change (T − deposits +
  withdrawals paid) and each partition's exchange accounts by exactly their final values;
* the ids are deterministic, and a rebuild told the recorded batches reproduces them exactly.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.records import AccountEvent, BatchStatus
from services.settlement.core import FoldConfig, Settlement
from services.settlement.core.settlement import BuiltBatch
from tests.kit import trader_address
from tests.unit.settlement.risk_stream import RiskPartition

TOPIC = "accounts.events"
VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PARTITIONS = 3
TRADERS = tuple(trader_address(0xA000 + i) for i in range(6))

Step = tuple[str, int, int, int, int, int]


def steps() -> st.SearchStrategy[list[Step]]:
    kind = st.sampled_from(["deposit", "trade", "trade", "trade", "request", "resolve", "noise", "tick"])
    small = st.integers(0, 10**6)
    return st.lists(
        st.tuples(kind, st.integers(0, PARTITIONS - 1), small, small, small, st.integers(0, 5)), max_size=120
    )


def run(history: list[Step]) -> tuple[list[RiskPartition], list[tuple[int, AccountEvent]], list[int | None]]:
    """The records (partition, event) of `history` and, between them, ticks (None = none)."""
    risk = [RiskPartition(p) for p in range(PARTITIONS)]
    log: list[tuple[int, AccountEvent]] = []
    ticks: list[int | None] = []
    clock = 0
    opening = [("deposit", i % PARTITIONS, 10**6, 0, 0, i // PARTITIONS) for i in range(len(TRADERS))]
    for kind, p, a, b, c, n in opening + history:
        ledger = risk[p]
        mine = [t for i, t in enumerate(TRADERS) if i % PARTITIONS == p]
        trader = mine[n % len(mine)]
        records: list[AccountEvent] = []
        if kind == "deposit":
            records = ledger.deposit(trader, a + 1)
        elif kind == "trade":
            other = mine[(n + 1) % len(mine)]
            move = min(b, ledger.account(trader).free)  # what the payer can pay
            fee = min(c % 1000, move)
            insurance = min(c % 3, move - fee)  # INSURANCE takes a little, or pays (negative) below
            insurance = -insurance if b % 2 else insurance
            gets = move - fee - insurance
            lock = min(a % 500, ledger.account(other).free + gets)
            records = ledger.trade(
                {trader: -move, other: gets}, fees=fee, insurance=insurance, lock={other: lock}
            )
        elif kind == "request" and ledger.account(trader).free > 0:
            records = ledger.request_withdrawal(trader, 1 + a % ledger.account(trader).free)
        elif kind == "resolve" and ledger.withdrawing:
            wid = sorted(ledger.withdrawing)[n % len(ledger.withdrawing)]
            records = ledger.withdrawal_paid(wid) if b % 2 else ledger.withdrawal_failed(wid)
        elif kind == "noise":
            records = ledger.noise(trader)
        elif kind == "tick":
            clock += a * 20
            ticks.append(clock)
            continue
        for record in records:
            log.append((p, record))
            ticks.append(None)
    return risk, log, ticks


def replay(
    log: list[tuple[int, AccountEvent]], ticks: list[int | None], config: FoldConfig, core: Settlement
) -> list[BuiltBatch]:
    """Feed `log` in order (offsets per partition), ticks where they fell; log time = offset × 1000 µs."""
    built: list[BuiltBatch] = []
    offsets = [0] * PARTITIONS
    records = iter(log)
    for tick in ticks:
        if tick is not None:
            built += core.tick(tick)
            continue
        partition, event = next(records)
        built += core.apply(partition, offsets[partition], offsets[partition] * 1000, event)
        offsets[partition] += 1
    built += core.tick(10**18)  # the end: every open batch at a cut that moves something closes
    return built


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps(), max_traders=st.integers(1, 4), window=st.integers(0, 50_000))
def test_batches_conserve_and_sum_to_the_ledger_and_rebuild_identically(
    history: list[Step], max_traders: int, window: int
) -> None:
    config = FoldConfig(max_traders=max_traders, window_us=window)
    risk, log, ticks = run(history)
    core = Settlement(TOPIC, PARTITIONS, config, 31337, VAULT)
    built = replay(log, ticks, config, core)

    # Each batch: balanced, tidy, contiguous with its partition's previous one.
    ends = [0] * PARTITIONS
    for b in built:
        assert not b.recorded
        assert b.batch.total == 0
        assert list(b.batch.deltas) == sorted(b.batch.deltas) and all(d != 0 for _, d in b.batch.deltas)
        assert b.batch.from_offset == ends[b.batch.partition] < b.batch.to_offset
        ends[b.batch.partition] = b.batch.to_offset
        assert b.batch_id == b.batch.id(31337, VAULT)
    assert len({b.batch_id for b in built}) == len(built)

    # Together: exactly the ledger's net change, per trader and per exchange account. (Every history
    # ends with complete transactions, so every partition ends at a cut.)
    for ledger in risk:
        fold = core.folds[ledger.partition]
        assert fold.at_cut
        mine = [b.batch for b in built if b.batch.partition == ledger.partition]
        for trader in ledger.accounts:
            assert sum(d for b in mine for t, d in b.deltas if t == trader) == ledger.net_change(trader)
        assert sum(b.fees_delta for b in mine) == ledger.fees
        assert sum(b.clearing_delta for b in mine) == ledger.clearing
        assert sum(b.insurance_delta for b in mine) == ledger.insurance
        assert fold.totals == {t: a.total for t, a in ledger.accounts.items() if t in fold.totals}

    # Rebuild: told the recorded batches, a new core closes exactly there (no ticks needed).
    rebuilt = Settlement(TOPIC, PARTITIONS, FoldConfig(max_traders=1, window_us=0), 31337, VAULT)
    for b in built:
        rebuilt.restore(b.batch_id, b.batch, BatchStatus.BUILT)
    again = replay(log, [None] * len(log), config, rebuilt)
    # (The same batches; across partitions the order may differ: ticks interleaved them.)
    assert {b.batch_id: b.batch for b in again} == {b.batch_id: b.batch for b in built}
    assert len(again) == len(built) and all(b.recorded for b in again)
    assert not rebuilt.rebuilding

    # Deterministic: the same inputs give the same batches.
    twin = Settlement(TOPIC, PARTITIONS, config, 31337, VAULT)
    assert [b.batch_id for b in replay(log, ticks, config, twin)] == [b.batch_id for b in built]
