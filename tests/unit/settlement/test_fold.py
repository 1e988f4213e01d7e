"""The fold and the batch builder, rule by rule (State / Action / Expectation)."""

from __future__ import annotations

import pytest

from services.common.records import AccountEvent, BalanceChanged, BatchStatus, ExchangeAccountsChanged
from services.settlement.core import (
    Batch,
    FoldConfig,
    IllegalTransition,
    PartitionFold,
    Settlement,
    SettlementInvariantError,
    advance,
    batch_id,
)
from tests.kit import ALICE, BOB, CAROL
from tests.unit.settlement.risk_stream import RiskPartition

TOPIC = "accounts.events"
VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SECOND = 1_000_000
WIDE = FoldConfig(max_traders=100, window_us=10 * SECOND)


def feed(fold: PartitionFold, events: list[AccountEvent], start: int = 0, time_us: int = 0) -> list[Batch]:
    """Apply `events` at consecutive offsets from `start`, all at `time_us`; the batches closed."""
    closed = []
    for i, event in enumerate(events):
        batch = fold.apply(start + i, time_us, event)
        if batch is not None:
            closed.append(batch)
    return closed


# -- the id ---------------------------------------------------------------------------------------


def test_the_same_offsets_give_the_same_id_and_any_other_field_another() -> None:
    # State / Action: one id, and the id with each field changed in turn.
    base = (31337, VAULT, TOPIC, 3, 0, 17)
    variants = [
        (1, VAULT, TOPIC, 3, 0, 17),
        (31337, "0x" + "11" * 20, TOPIC, 3, 0, 17),
        (31337, VAULT, "t.accounts.events", 3, 0, 17),
        (31337, VAULT, TOPIC, 4, 0, 17),
        (31337, VAULT, TOPIC, 3, 1, 17),
        (31337, VAULT, TOPIC, 3, 0, 18),
    ]
    # Expectation: deterministic (the address in any case), 32 bytes, and unique per field.
    assert batch_id(*base) == batch_id(31337, VAULT.lower(), TOPIC, 3, 0, 17)
    assert len(bytes.fromhex(batch_id(*base)[2:])) == 32
    assert len({batch_id(*base), *(batch_id(*v) for v in variants)}) == 1 + len(variants)


def test_an_empty_range_has_no_id() -> None:
    with pytest.raises(ValueError):
        batch_id(31337, VAULT, TOPIC, 0, 5, 5)


# -- deltas ---------------------------------------------------------------------------------------


def test_deposits_and_paid_withdrawals_move_the_total_without_a_delta() -> None:
    # State: a partition where Alice deposits 1,000, trades −30 (fee 5, CLEARING +25), withdraws 200.
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, FoldConfig(max_traders=1, window_us=0))
    records = risk.deposit(ALICE, 1_000_000_000)
    records += risk.trade({ALICE: -30}, fees=5)
    # Action
    batches = feed(fold, records)
    # Expectation: one batch, closed right after the ExchangeAccountsChanged: only the trade moves.
    assert [(b.from_offset, b.to_offset, b.deltas, b.fees_delta, b.clearing_delta) for b in batches] == [
        (0, 4, ((ALICE, -30),), 5, 25)
    ]
    wid = "0190b7a4-0000-7000-8000-000000000001"
    later = risk.request_withdrawal(ALICE, 200, withdrawal_id=wid) + risk.withdrawal_paid(wid)
    batches = feed(fold, later, start=4)
    # The request closes an empty batch at the first cut after it — the request itself (it must be
    # confirmed before paying); the request's own BalanceChanged and the payment move nothing.
    assert [(b.from_offset, b.to_offset, b.empty) for b in batches] == [(4, 5, True)]
    assert fold.totals[ALICE] == 1_000_000_000 - 30 - 200
    assert fold.net_settled == {ALICE: -30}


def test_a_batch_never_closes_while_the_running_sum_is_not_zero() -> None:
    # State: a fold that would close at every record (max 1 trader, window 0).
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, FoldConfig(max_traders=1, window_us=0))
    feed(fold, risk.deposit(ALICE, 100) + risk.deposit(BOB, 100))
    # Action: a transaction Alice −10, Bob +4, FEES +1, CLEARING +5: two BalanceChanged, then the accounts.
    records = risk.trade({ALICE: -10, BOB: 4}, fees=1)
    closed = [fold.apply(4 + i, 0, r) for i, r in enumerate(records)]
    # Expectation: nothing closes before the last record; the batch nets to 0.
    assert closed[:2] == [None, None]
    assert closed[2] is not None and closed[2].total == 0
    assert closed[2].deltas == tuple(sorted(((ALICE, -10), (BOB, 4))))


def test_traders_netting_to_zero_are_dropped_and_deltas_are_sorted() -> None:
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, WIDE)
    records = risk.deposit(CAROL, 100) + risk.deposit(ALICE, 100) + risk.deposit(BOB, 100)
    records += risk.trade({CAROL: 7, ALICE: -7}, fees=0) + risk.trade({CAROL: -7, BOB: 3, ALICE: 2}, fees=2)
    feed(fold, records, time_us=0)
    batch = fold.tick(10 * SECOND)
    assert batch is not None
    assert batch.deltas == tuple(sorted(((ALICE, -5), (BOB, 3))))
    assert (batch.fees_delta, batch.clearing_delta) == (2, 0)


# -- closing rules --------------------------------------------------------------------------------


def test_the_window_closes_at_the_first_cut_after_it_in_log_time_or_on_a_tick() -> None:
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, WIDE)
    assert feed(fold, risk.deposit(ALICE, 100), time_us=0) == []  # deposits move nothing: no batch
    assert feed(fold, risk.trade({ALICE: -1}, fees=1), start=2, time_us=5 * SECOND) == []
    assert fold.tick(9 * SECOND) is None  # not yet 10 s since the batch's first record
    closed = feed(fold, risk.trade({ALICE: -1}, fees=1), start=4, time_us=10 * SECOND)
    assert [(b.from_offset, b.to_offset) for b in closed] == [(0, 6)]
    feed(fold, risk.trade({ALICE: -1}, fees=1), start=6, time_us=11 * SECOND)
    closed_by_tick = fold.tick(21 * SECOND)
    assert closed_by_tick is not None and (closed_by_tick.from_offset, closed_by_tick.to_offset) == (6, 8)


def test_max_traders_closes_at_the_first_cut_after_reaching_it() -> None:
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, FoldConfig(max_traders=2, window_us=10**12))
    feed(fold, risk.deposit(ALICE, 100) + risk.deposit(BOB, 100) + risk.deposit(CAROL, 100))
    assert feed(fold, risk.trade({ALICE: -1}, fees=1), start=6) == []
    closed = feed(fold, risk.trade({BOB: -1, CAROL: -1}, fees=2), start=8)
    assert len(closed) == 1 and closed[0].deltas == tuple(sorted(((ALICE, -1), (BOB, -1), (CAROL, -1))))


def test_an_idle_batch_that_moves_nothing_never_closes_and_grows_into_the_next() -> None:
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, FoldConfig(max_traders=1, window_us=0))
    feed(fold, risk.deposit(ALICE, 100) + risk.noise(ALICE))
    assert fold.tick(10**15) is None
    closed = feed(fold, risk.trade({ALICE: -1}, fees=1), start=3)
    assert [(b.from_offset, b.to_offset) for b in closed] == [(0, 5)]


# -- rebuild --------------------------------------------------------------------------------------


def test_recorded_cuts_are_where_a_rebuild_closes_whatever_the_rules_say() -> None:
    # State: batches first cut by ticks at (0, 4) — a range the rules alone would not pick.
    risk = RiskPartition(0)
    records = risk.deposit(ALICE, 100) + risk.trade({ALICE: -1}, fees=1) + risk.trade({ALICE: -2}, fees=2)
    fold = PartitionFold(TOPIC, 0, WIDE)
    feed(fold, records[:4])
    first = fold.tick(10**12)
    assert first is not None and first.to_offset == 4
    # Action: a new fold told where the recorded batch ends, fed everything without ticks.
    rebuilt = PartitionFold(TOPIC, 0, FoldConfig(max_traders=1, window_us=0))
    rebuilt.expect_cut(4)
    closed = feed(rebuilt, records)
    # Expectation: the same first batch, then the rules again (max 1 trader: the next cut).
    assert closed[0] == first
    assert [(b.from_offset, b.to_offset) for b in closed] == [(0, 4), (4, 6)]


def test_a_recorded_cut_that_is_not_consistent_fails_loudly() -> None:
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, WIDE)
    fold.expect_cut(3)  # the first record of the trade: Alice's BalanceChanged, before the accounts
    with pytest.raises(SettlementInvariantError):
        feed(fold, risk.deposit(ALICE, 100) + risk.trade({ALICE: -1}, fees=1))


def test_exchange_accounts_that_do_not_follow_from_their_deltas_fail_loudly() -> None:
    fold = PartitionFold(TOPIC, 0, WIDE)
    body = ExchangeAccountsChanged(
        partition=0, fees=10, clearing=0, insurance=0, delta_fees=5, delta_clearing=-5, delta_insurance=0
    )
    with pytest.raises(SettlementInvariantError):
        fold.apply(0, 0, AccountEvent(event_id="x", trader="~exchange:0", ts_event=0, body=body))


def test_a_negative_bucket_fails_loudly() -> None:
    body = BalanceChanged(
        trader=ALICE,
        free=-1,
        reserved=0,
        withdrawing=0,
        locked=0,
        delta_free=-1,
        reason="ORDER_FILLED",
        ref="",
    )
    with pytest.raises(SettlementInvariantError):
        PartitionFold(TOPIC, 0, WIDE).apply(
            0, 0, AccountEvent(event_id="x", trader=ALICE, ts_event=0, body=body)
        )


def test_a_redelivered_offset_is_ignored() -> None:
    risk = RiskPartition(0)
    fold = PartitionFold(TOPIC, 0, WIDE)
    records = risk.deposit(ALICE, 100)
    feed(fold, records)
    feed(fold, records)
    assert fold.totals == {ALICE: 100}


# -- statuses and the confirmed prefix -------------------------------------------------------------


def test_the_status_table() -> None:
    S = BatchStatus  # noqa: N806 - the table's own shorthand
    assert advance(None, S.BUILT) is S.BUILT
    allowed: list[tuple[BatchStatus | None, BatchStatus]] = [
        (S.BUILT, S.SUBMITTED), (S.SUBMITTED, S.CONFIRMED), (S.FAILED, S.SUBMITTED),
        (S.SUBMITTED, S.SUBMITTED),
    ]  # fmt: skip
    for current, new in allowed:
        assert advance(current, new) is new
    refused: list[tuple[BatchStatus | None, BatchStatus]] = [
        (None, S.SUBMITTED), (S.CONFIRMED, S.SUBMITTED), (S.CONFIRMED, S.FAILED), (S.SUBMITTED, S.BUILT),
    ]  # fmt: skip
    for current, new in refused:
        with pytest.raises(IllegalTransition):
            advance(current, new)


def test_the_confirmed_prefix_grows_only_over_consecutive_confirmed_batches() -> None:
    risk = RiskPartition(0)
    core = Settlement(TOPIC, 1, FoldConfig(max_traders=1, window_us=0), 31337, VAULT)
    records = risk.deposit(ALICE, 100) + risk.trade({ALICE: -1}, fees=1) + risk.trade({ALICE: -1}, fees=1)
    built = [b for i, r in enumerate(records) for b in core.apply(0, i, 0, r)]
    assert [(b.batch.from_offset, b.batch.to_offset) for b in built] == [(0, 4), (4, 6)]
    first, second = (b.batch_id for b in built)
    for status in (BatchStatus.SUBMITTED, BatchStatus.CONFIRMED):
        core.set_status(second, status)
    assert core.confirmed_through(0) == 0  # the first is not confirmed: nothing before 6 is covered
    core.set_status(first, BatchStatus.SUBMITTED)
    core.set_status(first, BatchStatus.CONFIRMED)
    assert core.confirmed_through(0) == 6
    assert core.unconfirmed() == []


def test_a_restored_batch_must_be_the_one_rebuilt() -> None:
    risk = RiskPartition(0)
    records = risk.deposit(ALICE, 100) + risk.trade({ALICE: -1}, fees=1)
    core = Settlement(TOPIC, 1, WIDE, 31337, VAULT)
    wrong = Batch(TOPIC, 0, 0, 4, ((ALICE, -2),), 2, 0, 0)  # type: ignore[arg-type]
    core.restore(wrong.id(31337, VAULT), wrong, BatchStatus.BUILT)
    with pytest.raises(SettlementInvariantError):
        for i, r in enumerate(records):
            core.apply(0, i, 0, r)


def test_a_restored_batch_must_continue_its_partition() -> None:
    core = Settlement(TOPIC, 1, WIDE, 31337, VAULT)
    gap = Batch(TOPIC, 0, 3, 4, (), 0, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(SettlementInvariantError):
        core.restore(gap.id(31337, VAULT), gap, BatchStatus.BUILT)
