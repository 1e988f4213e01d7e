"""A stand-in for risk partition p: the accounts.events records risk writes for complete
transactions (BalanceChanged per trader step, then ExchangeAccountsChanged last), plus the records
other writers interleave (the chain watcher's deposits and paid withdrawals, risk's refusals).

Used by the property tests and by the integration test, which produces the same records to Kafka.
It tracks the ledger it describes, so tests can compare what settlement built with the truth.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.common.records import (
    AccountEvent,
    BalanceChanged,
    DepositConfirmed,
    ExchangeAccountsChanged,
    OrderRejected,
    WithdrawalFailed,
    WithdrawalPaid,
    WithdrawalRequested,
)


@dataclass
class Buckets:
    free: int = 0
    reserved: int = 0
    withdrawing: int = 0
    locked: int = 0

    @property
    def total(self) -> int:
        return self.free + self.reserved + self.withdrawing + self.locked


@dataclass
class RiskPartition:
    """The ledger of one risk partition and the records that describe its changes."""

    partition: int
    chain_id: int = 31337
    accounts: dict[str, Buckets] = field(default_factory=dict)
    fees: int = 0
    clearing: int = 0
    insurance: int = 0
    deposited: dict[str, int] = field(default_factory=dict)
    paid_out: dict[str, int] = field(default_factory=dict)
    withdrawing: dict[str, tuple[str, int]] = field(default_factory=dict)
    """withdrawal id → (trader, amount) requested and not resolved."""
    _seq: int = 0

    # -- what tests compare with -----------------------------------------------------------------

    def net_change(self, trader: str) -> int:
        """What settlement must have moved for `trader`: T − deposits + withdrawals paid."""
        return self.account(trader).total - self.deposited.get(trader, 0) + self.paid_out.get(trader, 0)

    def account(self, trader: str) -> Buckets:
        return self.accounts.setdefault(trader, Buckets())

    # -- transactions (each returns its records, in the order risk writes them) ------------------

    def deposit(self, trader: str, amount: int, tx_hash: str | None = None) -> list[AccountEvent]:
        """The watcher's DepositConfirmed, then risk's BalanceChanged(DEPOSIT)."""
        tx_hash = tx_hash or "0x" + uuid.uuid4().hex * 2
        confirmed = self._event(
            trader, DepositConfirmed(amount=amount, chain_id=self.chain_id, tx_hash=tx_hash, log_index=0,
                                     block_number=1),
        )  # fmt: skip
        account = self.account(trader)
        account.free += amount
        self.deposited[trader] = self.deposited.get(trader, 0) + amount
        return [confirmed, self._balance(trader, amount, "DEPOSIT", tx_hash)]

    def trade(
        self, moves: dict[str, int], fees: int, insurance: int = 0, lock: dict[str, int] | None = None
    ) -> list[AccountEvent]:
        """One risk transaction: each trader's free moves by `moves[t]` (and `lock[t]` moves from free
        to locked), FEES by `fees`, INSURANCE by `insurance`, CLEARING by the rest (so it balances).
        Raises if a trader's free would go negative (risk would not have written it)."""
        lock = lock or {}
        out = []
        for trader in sorted(set(moves) | set(lock)):
            account = self.account(trader)
            delta, locked = moves.get(trader, 0), lock.get(trader, 0)
            if account.free + delta - locked < 0 or account.locked + locked < 0:
                raise ValueError(f"{trader} cannot move {delta} / lock {locked}: {account}")
            account.free += delta - locked
            account.locked += locked
            out.append(self._balance(trader, delta - locked, "ORDER_FILLED", "fill"))
        clearing = -sum(moves.values()) - fees - insurance
        if fees or clearing or insurance:
            self.fees += fees
            self.clearing += clearing
            self.insurance += insurance
            body = ExchangeAccountsChanged(
                partition=self.partition, fees=self.fees, clearing=self.clearing, insurance=self.insurance,
                delta_fees=fees, delta_clearing=clearing, delta_insurance=insurance,
            )  # fmt: skip
            out.append(self._event(f"~exchange:{self.partition}", body))
        return out

    def request_withdrawal(
        self, trader: str, amount: int, *, withdrawal_id: str | None = None, expire_at: int = 2**62,
        signature: bytes = b"\x01" * 65, nonce: int = 1,
    ) -> list[AccountEvent]:  # fmt: skip
        """Risk's WithdrawalRequested and BalanceChanged(WITHDRAWAL_REQUESTED): free → withdrawing."""
        account = self.account(trader)
        if account.free < amount:
            raise ValueError(f"{trader} cannot withdraw {amount}: {account}")
        withdrawal_id = withdrawal_id or str(uuid.uuid4())
        account.free -= amount
        account.withdrawing += amount
        self.withdrawing[withdrawal_id] = (trader, amount)
        requested = WithdrawalRequested(
            withdrawal_id=withdrawal_id, amount=amount, as_cxpt=False, nonce=nonce, expire_at=expire_at,
            signature=signature,
        )  # fmt: skip
        return [
            self._event(trader, requested),
            self._balance(trader, -amount, "WITHDRAWAL_REQUESTED", withdrawal_id),
        ]

    def withdrawal_paid(self, withdrawal_id: str) -> list[AccountEvent]:
        """The watcher's WithdrawalPaid, then risk's BalanceChanged(WITHDRAWAL_PAID)."""
        trader, amount = self.withdrawing.pop(withdrawal_id)
        paid = WithdrawalPaid(
            trader=trader, withdrawal_id=withdrawal_id, amount=amount, as_cxpt=False, chain_id=self.chain_id,
            tx_hash="0x" + "ab" * 32, log_index=0, block_number=1,
        )  # fmt: skip
        account = self.account(trader)
        account.withdrawing -= amount
        self.paid_out[trader] = self.paid_out.get(trader, 0) + amount
        return [self._event(trader, paid), self._balance(trader, 0, "WITHDRAWAL_PAID", withdrawal_id)]

    def withdrawal_failed(self, withdrawal_id: str) -> list[AccountEvent]:
        """Settlement's WithdrawalFailed, then risk's BalanceChanged(WITHDRAWAL_FAILED)."""
        trader, amount = self.withdrawing.pop(withdrawal_id)
        failed = WithdrawalFailed(
            trader=trader, withdrawal_id=withdrawal_id, amount=amount, reason="REVERTED"
        )
        account = self.account(trader)
        account.withdrawing -= amount
        account.free += amount
        return [
            self._event(trader, failed),
            self._balance(trader, amount, "WITHDRAWAL_FAILED", withdrawal_id),
        ]

    def noise(self, trader: str) -> list[AccountEvent]:
        """A record that moves no money (a refusal)."""
        body = OrderRejected(trader=trader, reason_code=2001, reason="INSUFFICIENT_COLLATERAL")
        return [self._event(trader, body)]

    # -- internals -------------------------------------------------------------------------------

    def _balance(self, trader: str, delta_free: int, reason: str, ref: str) -> AccountEvent:
        a = self.account(trader)
        body = BalanceChanged(
            trader=trader, free=a.free, reserved=a.reserved, withdrawing=a.withdrawing, locked=a.locked,
            delta_free=delta_free, reason=reason, ref=ref,
        )  # fmt: skip
        return self._event(trader, body)

    def _event(self, trader: str, body: object) -> AccountEvent:
        self._seq += 1
        return AccountEvent(
            event_id=f"test:{self.partition}:{self._seq}", trader=trader, ts_event=self._seq,
            body=body,  # type: ignore[arg-type]
        )  # fmt: skip
