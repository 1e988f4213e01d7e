"""The settlement service: accounts.events → net batches → `Vault.settle`; withdrawals → `Vault.withdraw`.

One process, one loop (docs/settlement.md):

    start:  init the transactional producer (fences any predecessor with the same id)
            read settlement.batches → restore every recorded batch and status (and where each ends)
            read accounts.events, every partition, from offset 0 to the ends seen now → the fold
            recover: every batch not CONFIRMED → Vault.batchSettled(id)? CONFIRMED : (re)submit
    loop:   read accounts.events → batches closed at consistent cuts → BUILT (committed first)
            tick (the clock) → batches whose window passed while idle → BUILT
            submit BUILT / FAILED-after-back-off batches → SUBMITTED (tx hash)
            receipts CONFIRMATION_DEPTH deep → CONFIRMED; reverted → CONFIRMED if the id is
              settled anyway (an earlier send won), else FAILED; not mined after
              SETTLEMENT_STUCK_AFTER_S → sent again with the same nonce, fees +12.5 % (SUBMITTED,
              the new hash; any hash sent for the nonce may be the one mined)
            withdrawals covered by confirmed batches → Vault.withdraw; past deadline / refused →
              WithdrawalFailed on accounts.events (keyed by trader)
            project settlement.batches → Cassandra

**One active instance.** Statuses and `WithdrawalFailed` are written in Kafka transactions under
the transactional id `settlement` (prefixed): a second instance started by mistake fences the first,
whose next commit fails and stops it. Whatever either sent on-chain is harmless twice: the Vault
accepts a batch id once and a withdrawal id once.

**Crash safety.** A batch is recorded BUILT (committed) before anything is sent, and its id is a
function of its offsets, so a crash anywhere leaves either nothing on-chain (the batch is rebuilt
with the same recorded range and submitted), or a settled id (found by `batchSettled`, recorded
CONFIRMED with the transaction from its `BatchSettled` event), never a second settlement.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from web3.contract.contract import ContractFunction

from services.common.bus import Bus, Outbound, TypedProducer, read_topic, take_batch, watermarks
from services.common.failpoints import failpoint
from services.common.observability import watch_consumer
from services.common.records import (
    AccountEvent,
    BatchStatus,
    OffsetRange,
    SettlementBatch,
    TraderDelta,
    WithdrawalFailed,
)
from services.common.topics import ACCOUNTS_EVENTS, SETTLEMENT_BATCHES
from services.settlement.core import (
    Batch,
    ExecuteWithdrawal,
    FailWithdrawal,
    FoldConfig,
    PendingWithdrawal,
    Settlement,
    WithdrawalFailure,
)
from services.settlement.core.settlement import BuiltBatch
from services.settlement.core.withdrawals import WithdrawalState, revert_rule
from services.settlement.store import BatchProjection
from services.settlement.vault import FeeRefused, Mined, Revert, Sent, VaultClient

log = logging.getLogger(__name__)

S = BatchStatus
MAX_IN_FLIGHT = 16
"""Settle transactions sent and not yet confirmed, at most (consecutive nonces)."""
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 60.0
"""Back-off of a FAILED batch's retries: doubling from the first to the maximum."""
WITHDRAW_RETRY_S = 10.0
"""Wait before sending again a withdrawal the node refused for its fee."""


def fold_config(bus: Bus) -> FoldConfig:
    """The batch rules from the settings."""
    settings = bus.settings
    return FoldConfig(
        max_traders=settings.settlement_batch_max_traders,
        window_us=settings.settlement_batch_window_s * 1_000_000,
    )


def status_record(
    batch_id: str, batch: Batch, status: BatchStatus, ts_event: int, *, tx_hash: str | None = None,
    block_number: int | None = None, gas_used: int | None = None, detail: str = "",
) -> SettlementBatch:  # fmt: skip
    """The settlement.batches record of one status of `batch` (each record carries the whole batch)."""
    return SettlementBatch(
        batch_id=batch_id,
        ranges=[
            OffsetRange(partition=batch.partition, from_offset=batch.from_offset, to_offset=batch.to_offset)
        ],
        deltas=[TraderDelta(trader=t, delta=d) for t, d in batch.deltas],
        fees_delta=batch.fees_delta,
        clearing_delta=batch.clearing_delta,
        insurance_delta=batch.insurance_delta,
        status=status,
        tx_hash=tx_hash,
        block_number=block_number,
        gas_used=gas_used,
        detail=detail,
        ts_event=ts_event,
    )


def batch_of(record: SettlementBatch, topic: str) -> Batch:
    """The batch a settlement.batches record describes (one range: one partition)."""
    (span,) = record.ranges
    return Batch(
        topic=topic,
        partition=span.partition,
        from_offset=span.from_offset,
        to_offset=span.to_offset,
        deltas=tuple((d.trader, d.delta) for d in record.deltas),  # type: ignore[misc]
        fees_delta=record.fees_delta,  # type: ignore[arg-type]
        clearing_delta=record.clearing_delta,  # type: ignore[arg-type]
        insurance_delta=record.insurance_delta,  # type: ignore[arg-type]
    )


@dataclass
class _Retry:
    at: float
    delay: float


@dataclass
class _Flight:
    """A transaction sent and not yet final: what to send again if it is stuck (None: nothing)."""

    sent: Sent
    since: float
    """When it was last sent (monotonic seconds)."""
    call: ContractFunction | None


class SettlementService:
    """The loop in the module docstring, over one Vault."""

    def __init__(
        self,
        bus: Bus,
        vault: VaultClient,
        *,
        projection: BatchProjection | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.bus = bus
        self.vault = vault
        self.projection = projection
        self._clock = clock or (lambda: time.time_ns() // 1_000)
        settings = bus.settings
        self.topic = bus.topic(ACCOUNTS_EVENTS).name
        self.core = Settlement(
            self.topic, ACCOUNTS_EVENTS.partitions, fold_config(bus), vault.chain_id, vault.address
        )
        self.confirmations = settings.settlement_confirmations
        self.stuck_after_s = settings.settlement_stuck_after_s
        self.margin_us = settings.settlement_withdrawal_margin_s * 1_000_000
        # The one active instance: a successor with the same transactional id fences this one.
        self._producer = TypedProducer(bus, transactional_id=f"{settings.topic_prefix}settlement")
        self._consumer = Consumer(bus.consumer_config(f"settlement-tail-{uuid.uuid4().hex}"))
        watch_consumer(self._consumer, "settlement")
        self._outbox: list[Outbound] = []
        self._last_ts: dict[str, int] = {}
        self._in_flight: dict[str, _Flight] = {}
        self._retry: dict[str, _Retry] = {}
        self._withdrawing: dict[str, _Flight] = {}
        self._withdraw_after: dict[str, float] = {}
        """Withdrawals the node refused for their fee: not sent again before this (monotonic s)."""
        self._last_tx: dict[str, str] = {}
        """The latest transaction recorded for each batch (a restart adopts it if still pending)."""
        self.caught_up = False
        self.stats = {"built": 0, "submitted": 0, "confirmed": 0, "failed": 0, "fee_bumps": 0,
                      "withdrawals_sent": 0, "withdrawals_failed": 0}  # fmt: skip

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Start, then loop until `stop` is set."""
        try:
            self.start()
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def start(self) -> None:
        """Restore the recorded batches, fold accounts.events to its current end, recover the chain side."""
        self._restore()
        self._catch_up()
        self._recover()
        self._flush()
        log.info(
            "settlement: started on vault %s (chain %s), %d batches recorded, %d unconfirmed, "
            "%d withdrawals waiting",
            self.vault.address, self.vault.chain_id, len(self.core.batches), len(self.core.unconfirmed()),
            len(self.core.withdrawals.pending()),
        )  # fmt: skip

    def step(self, timeout_s: float = 0.2) -> None:
        """One round of the loop (module docstring)."""
        self._read(timeout_s)
        for built in self.core.tick(self._clock()):
            self._built(built)
        self._flush()
        self._settle()
        self._track()
        self._withdrawals()
        self._flush()
        if self.projection is not None:
            self.projection.step()

    def close(self) -> None:
        self._consumer.close()
        if self.projection is not None:
            self.projection.close()

    # -- start -----------------------------------------------------------------------------------

    def _restore(self) -> None:
        serde = self.bus.serde(SETTLEMENT_BATCHES)
        for message in read_topic(self.bus, SETTLEMENT_BATCHES):
            record: SettlementBatch = serde.decode_record(message.value())
            self.core.restore(record.batch_id, batch_of(record, self.topic), record.status)
            self._last_ts[record.batch_id] = record.ts_event
            if record.tx_hash:
                self._last_tx[record.batch_id] = record.tx_hash

    def _catch_up(self) -> None:
        """Assign every accounts.events partition from 0 and read up to the ends seen now."""
        assignment, ends = [], {}
        for p in range(ACCOUNTS_EVENTS.partitions):
            _, high = watermarks(self._consumer, TopicPartition(self.topic, p))
            assignment.append(TopicPartition(self.topic, p, OFFSET_BEGINNING))
            if high > 0:
                ends[p] = high
        self._consumer.assign(assignment)
        while ends:
            self._read(0.5)
            # Positions, not offsets of records seen: transaction markers take offsets too.
            for tp in self._consumer.position([TopicPartition(self.topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
            self._flush()
        if self.core.rebuilding:
            raise RuntimeError("settlement.batches records batches beyond the end of accounts.events")
        self.caught_up = True

    def _recover(self) -> None:
        """Every batch built but not CONFIRMED: settled on-chain → CONFIRMED; its last transaction
        still pending at the node → tracked again (a later send would queue behind its nonce);
        else (re)submitted later."""
        for batch_id in self.core.unconfirmed():
            batch = self.core.batches[batch_id]
            if batch.empty:
                continue  # confirmed by _settle without a transaction
            if self.vault.batch_settled(batch_id):
                self._found_settled(batch_id)
                continue
            tx_hash = self._last_tx.get(batch_id)
            pending = self.vault.pending(tx_hash) if tx_hash else None
            if pending is not None:
                call = self.vault.settle_call(batch_id, batch)
                self._in_flight[batch_id] = _Flight(pending, time.monotonic(), call)

    # -- accounts.events -------------------------------------------------------------------------

    def _read(self, timeout_s: float) -> None:
        serde = self.bus.serde(ACCOUNTS_EVENTS)
        for message in take_batch(self._consumer, 500, timeout_s):
            if message.error() is not None:
                log.warning("settlement: consumer error (will retry): %s", message.error())
                continue
            # No dead letters here: a record settlement cannot read may move money, and skipping
            # it would settle a wrong sum. Stop (corrupt data is worse than no data).
            event: AccountEvent = serde.decode_record(message.value())
            for built in self.core.apply(
                message.partition() or 0, message.offset() or 0, _log_time_us(message), event
            ):
                self._built(built)

    def _built(self, built: BuiltBatch) -> None:
        if built.recorded:
            return
        self.stats["built"] += 1
        self._record(built.batch_id, S.BUILT, transition=False)

    # -- batches ---------------------------------------------------------------------------------

    def _settle(self) -> None:
        """Submit what is BUILT, or FAILED and due for a retry, in log order per partition."""
        now = time.monotonic()
        for batch_id in self.core.unconfirmed():
            if batch_id in self._in_flight:
                continue
            batch = self.core.batches[batch_id]
            if batch.empty:
                self._record(batch_id, S.CONFIRMED, detail="empty: nothing to settle on-chain")
                continue
            retry = self._retry.get(batch_id)
            if retry is not None and retry.at > now:
                continue
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                return
            call = self.vault.settle_call(batch_id, batch)
            try:
                sent = self.vault.submit(call)
            except FeeRefused as exc:
                self._failed(batch_id, f"refused by the node for its fee: {exc}", None)
                continue
            if isinstance(sent, Revert):
                self._refused(batch_id, sent)
                continue
            failpoint("settlement.after_submit")  # crash tests: sent, not yet recorded
            self._in_flight[batch_id] = _Flight(sent, time.monotonic(), call)
            self.stats["submitted"] += 1
            self._record(batch_id, S.SUBMITTED, tx_hash=sent.tx_hash)
            log.info("settlement: batch %s submitted in %s (nonce %s)", batch_id, sent.tx_hash, sent.nonce)

    def _track(self) -> None:
        """Receipts of the settle transactions in flight."""
        for batch_id, flight in list(self._in_flight.items()):
            mined = self.vault.mined_any(flight.sent)
            if mined is None:
                if self._replace_if_stuck(f"batch {batch_id}", flight):
                    replaced = ", ".join(flight.sent.replaces)
                    self._record(
                        batch_id,
                        S.SUBMITTED,
                        tx_hash=flight.sent.tx_hash,
                        detail=f"fees raised; replaces {replaced}",
                    )
                continue
            if not mined.succeeded:
                del self._in_flight[batch_id]
                if self.vault.batch_settled(batch_id):  # an earlier send of the same id won
                    self._found_settled(batch_id)
                else:
                    revert = self.vault.simulate(
                        self.vault.settle_call(batch_id, self.core.batches[batch_id])
                    )
                    self._failed(batch_id, f"reverted: {revert or 'no reason'}", mined)
            elif mined.depth >= self.confirmations:
                del self._in_flight[batch_id]
                self._confirmed(batch_id, mined)

    def _replace_if_stuck(self, what: str, flight: _Flight) -> bool:
        """Send `flight` again with higher fees if it has waited too long; True if it was."""
        now = time.monotonic()
        if flight.call is None or now - flight.since < self.stuck_after_s:
            return False
        flight.since = now
        replacement = self.vault.replace(flight.call, flight.sent)
        if replacement is None:
            log.warning(
                "settlement: %s not mined after %.0f s at the fee cap (%d wei) or already mined; "
                "raise SETTLEMENT_MAX_FEE_GWEI if it stays pending", what, self.stuck_after_s,
                flight.sent.max_fee_wei,
            )  # fmt: skip
            return False
        flight.sent = replacement
        self.stats["fee_bumps"] += 1
        log.warning(
            "settlement: %s not mined after %.0f s; sent again as %s (nonce %d, max fee %d wei)",
            what, self.stuck_after_s, replacement.tx_hash, replacement.nonce, replacement.max_fee_wei,
        )  # fmt: skip
        return True

    def _refused(self, batch_id: str, revert: Revert) -> None:
        if revert.name == "BatchAlreadySettled":
            self._found_settled(batch_id)
        else:
            self._failed(batch_id, f"would revert: {revert}", None)

    def _found_settled(self, batch_id: str) -> None:
        """The Vault has settled `batch_id` (an earlier send, maybe by a killed predecessor)."""
        tx_hash = self.vault.settled_by(batch_id)
        mined = self.vault.mined(tx_hash) if tx_hash else None
        if mined is None:
            self._record(batch_id, S.CONFIRMED, detail="settled on-chain; no BatchSettled log found")
        elif mined.depth >= self.confirmations:
            self._confirmed(batch_id, mined)
        else:  # wait for its depth like any other submission
            self._in_flight[batch_id] = _Flight(Sent(mined.tx_hash, -1), time.monotonic(), None)
            if self.core.statuses[batch_id] is not S.SUBMITTED:
                self._record(batch_id, S.SUBMITTED, tx_hash=mined.tx_hash)

    def _confirmed(self, batch_id: str, mined: Mined) -> None:
        self._retry.pop(batch_id, None)
        self.stats["confirmed"] += 1
        self._record(
            batch_id,
            S.CONFIRMED,
            tx_hash=mined.tx_hash,
            block_number=mined.block_number,
            gas_used=mined.gas_used,
        )

    def _failed(self, batch_id: str, detail: str, mined: Mined | None) -> None:
        previous = self._retry.get(batch_id)
        delay = RETRY_FIRST_S if previous is None else min(previous.delay * 2, RETRY_MAX_S)
        self._retry[batch_id] = _Retry(at=time.monotonic() + delay, delay=delay)
        self.stats["failed"] += 1
        log.warning("settlement: batch %s failed (%s); retry in %.0f s", batch_id, detail, delay)
        self._record(
            batch_id, S.FAILED, tx_hash=mined.tx_hash if mined else None,
            block_number=mined.block_number if mined else None, gas_used=mined.gas_used if mined else None,
            detail=detail[:1000],
        )  # fmt: skip

    # -- withdrawals -----------------------------------------------------------------------------

    def _withdrawals(self) -> None:
        queue = self.core.withdrawals
        for wid, flight in list(self._withdrawing.items()):
            mined = self.vault.mined_any(flight.sent)
            if mined is None:
                self._replace_if_stuck(f"withdrawal {wid}", flight)
                continue
            del self._withdrawing[wid]
            queue.move(wid, WithdrawalState.PAID_ON_CHAIN if mined.succeeded else WithdrawalState.WAITING)
        if not queue.pending():
            return
        _, chain_now_us = self.vault.latest()
        now = time.monotonic()
        for action in self.core.withdrawal_actions(chain_now_us, self.margin_us):
            w = action.withdrawal
            if isinstance(action, ExecuteWithdrawal) and self._withdraw_after.get(w.withdrawal_id, 0) > now:
                continue
            if self.vault.withdrawal_paid(w.withdrawal_id):  # paid: the watcher reports it, never fail it
                queue.move(w.withdrawal_id, WithdrawalState.PAID_ON_CHAIN)
            elif isinstance(action, FailWithdrawal):
                self._fail_withdrawal(action)
            else:
                self._execute(action)

    def _execute(self, action: ExecuteWithdrawal) -> None:
        w = action.withdrawal
        call = self.vault.withdraw_call(w)
        try:
            outcome = self.vault.submit(call)
        except FeeRefused as exc:
            self._withdraw_after[w.withdrawal_id] = time.monotonic() + WITHDRAW_RETRY_S
            log.warning(
                "settlement: withdrawal %s waits: refused by the node for its fee: %s", w.withdrawal_id, exc
            )
            return
        self._withdraw_after.pop(w.withdrawal_id, None)
        if isinstance(outcome, Sent):
            self._withdrawing[w.withdrawal_id] = _Flight(outcome, time.monotonic(), call)
            self.core.withdrawals.move(w.withdrawal_id, WithdrawalState.SENT)
            self.stats["withdrawals_sent"] += 1
            log.info("settlement: withdrawal %s of %s sent in %s", w.withdrawal_id, w.amount, outcome.tx_hash)
        else:
            rule = revert_rule(outcome.name)
            if isinstance(rule, WithdrawalFailure):
                self._fail_withdrawal(FailWithdrawal(w, rule, str(outcome)))
            elif rule is WithdrawalState.WAITING:
                log.warning("settlement: withdrawal %s waits: %s", w.withdrawal_id, outcome)
            else:
                self.core.withdrawals.move(w.withdrawal_id, rule)

    def _fail_withdrawal(self, action: FailWithdrawal) -> None:
        """WithdrawalFailed to accounts.events; the caller checked the Vault has not paid it."""
        w = action.withdrawal
        self.core.withdrawals.move(w.withdrawal_id, WithdrawalState.FAILING)
        self.stats["withdrawals_failed"] += 1
        log.warning("settlement: withdrawal %s failed: %s %s", w.withdrawal_id, action.reason, action.detail)
        self._outbox.append(withdrawal_failed(self.vault.chain_id, w, action, self._clock()))

    # -- records ---------------------------------------------------------------------------------

    def _record(
        self, batch_id: str, status: BatchStatus, *, transition: bool = True, tx_hash: str | None = None,
        block_number: int | None = None, gas_used: int | None = None, detail: str = "",
    ) -> None:  # fmt: skip
        """Queue a status record (committed by the next `_flush`); moves the core's status first."""
        if transition:
            self.core.set_status(batch_id, status)
        if tx_hash:
            self._last_tx[batch_id] = tx_hash
        # Strictly increasing per batch: Cassandra writes USING TIMESTAMP ts_event (status order).
        ts = max(self._clock(), self._last_ts.get(batch_id, 0) + 1)
        self._last_ts[batch_id] = ts
        record = status_record(
            batch_id, self.core.batches[batch_id], status, ts, tx_hash=tx_hash, block_number=block_number,
            gas_used=gas_used, detail=detail,
        )  # fmt: skip
        self._outbox.append(Outbound(SETTLEMENT_BATCHES, key=batch_id, value=record))

    def _flush(self) -> None:
        """Commit the queued records in one transaction (nothing is sent on-chain before BUILT is in)."""
        if not self._outbox:
            return
        with self._producer.transaction() as tx:
            for out in self._outbox:
                tx.send(out)
        self._outbox.clear()


def withdrawal_failed(chain_id: int, w: PendingWithdrawal, action: FailWithdrawal, ts_event: int) -> Outbound:
    """The `WithdrawalFailed` record for accounts.events, keyed by the trader (risk's partition)."""
    event = AccountEvent(
        event_id=f"settlement:{chain_id}:withdrawal-failed:{w.withdrawal_id}",
        trader=w.trader,
        ts_event=ts_event,
        body=WithdrawalFailed(
            trader=w.trader,
            withdrawal_id=w.withdrawal_id,
            amount=w.amount,
            reason=str(action.reason),
            detail=action.detail[:1000],
        ),
    )
    return Outbound(ACCOUNTS_EVENTS, key=w.trader, value=event)


def _log_time_us(message: Message) -> int:
    """The record's log time (its Kafka timestamp), µs: the batch window's clock."""
    return int(message.timestamp()[1]) * 1_000
