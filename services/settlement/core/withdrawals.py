"""Requested withdrawals, from the request on accounts.events until the log says paid or failed.

A `WithdrawalRequested` at offset o of partition p waits until every batch of p that starts at or
before o is CONFIRMED (the partition's confirmed watermark passes o): the trader's earlier PnL is
then on-chain before the money leaves, so `Vault.withdraw` never finds less than the ledger had.

Only the log removes a withdrawal: `WithdrawalPaid` (the chain watcher, after confirmations) or
`WithdrawalFailed` (this service, read back). In between the queue remembers what was done, so
nothing is sent twice and a paid withdrawal is never reported failed:

==============  ==============  =============================================================
from            to              when
==============  ==============  =============================================================
WAITING         SENT            covered and before its deadline: `withdraw` sent
WAITING         PAID_ON_CHAIN   the Vault already paid it (found after a restart)
WAITING         FAILING         no signature, or the chain's time is past the deadline
SENT            PAID_ON_CHAIN   mined; the chain watcher will report `WithdrawalPaid`
SENT            WAITING         not mined (dropped, transient error): decide again
SENT            FAILING         reverted: the Vault refused it (and has not paid it)
==============  ==============  =============================================================

`FAILING` means a `WithdrawalFailed` was produced; the service must have checked, at a block, that
the Vault has not paid the id — and for `DEADLINE_PASSED`, that this block's time is past the
deadline, after which no block can pay it — so that risk returning the amount to free can never
meet a paid withdrawal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from services.common.money import MicroUsdc
from services.common.records import WithdrawalRequested


class WithdrawalState(StrEnum):
    WAITING = "WAITING"
    SENT = "SENT"
    PAID_ON_CHAIN = "PAID_ON_CHAIN"
    FAILING = "FAILING"


class WithdrawalFailure(StrEnum):
    """`WithdrawalFailed.reason`: stable names (schema doc)."""

    DEADLINE_PASSED = "DEADLINE_PASSED"
    SIGNATURE_REFUSED = "SIGNATURE_REFUSED"
    ALREADY_PAID = "ALREADY_PAID"
    """Never emitted by this service: a paid withdrawal is the watcher's to report as paid."""
    REVERTED = "REVERTED"


W = WithdrawalState
TRANSITIONS: frozenset[tuple[WithdrawalState, WithdrawalState]] = frozenset(
    {
        (W.WAITING, W.SENT),
        (W.WAITING, W.PAID_ON_CHAIN),
        (W.WAITING, W.FAILING),
        (W.SENT, W.PAID_ON_CHAIN),
        (W.SENT, W.WAITING),
        (W.SENT, W.FAILING),
    }
)


@dataclass(frozen=True, slots=True)
class PendingWithdrawal:
    """A withdrawal request as read from accounts.events, with where it sits in the log."""

    partition: int
    offset: int
    trader: str
    withdrawal_id: str
    amount: MicroUsdc
    as_cxpt: bool
    nonce: int
    expire_at: int
    """The signed deadline, µs since the epoch: the Vault refuses once block time × 1e6 > it."""
    signature: bytes


@dataclass(frozen=True, slots=True)
class ExecuteWithdrawal:
    """Send `Vault.withdraw` for this request (after checking it is not paid already)."""

    withdrawal: PendingWithdrawal


@dataclass(frozen=True, slots=True)
class FailWithdrawal:
    """Report this request failed (after checking, at a block, that the Vault has not paid it)."""

    withdrawal: PendingWithdrawal
    reason: WithdrawalFailure
    detail: str


WAIT = W.WAITING
REVERT_RULES: dict[str, WithdrawalState | WithdrawalFailure] = {
    # Already done: the chain watcher reports it paid; never report it failed.
    "WithdrawalAlreadyPaid": W.PAID_ON_CHAIN,
    # Not the trader's fault, or not final yet: keep the request (and its amount set aside).
    "EnforcedPause": WAIT,  # the operator paused the Vault
    "AccessControlUnauthorizedAccount": WAIT,  # the settler lost its role: the operator's to fix
    "InsufficientLiquidity": WAIT,  # the claims are not backed (an incident): the claim stays good
    "SignatureExpired": WAIT,  # fails by the deadline rule once the chain's time is past it
    # The signature does not hold: it never will.
    "SignerMismatch": WithdrawalFailure.SIGNATURE_REFUSED,
    "ECDSAInvalidSignature": WithdrawalFailure.SIGNATURE_REFUSED,
    "ECDSAInvalidSignatureLength": WithdrawalFailure.SIGNATURE_REFUSED,
    "ECDSAInvalidSignatureS": WithdrawalFailure.SIGNATURE_REFUSED,
}
"""What a `Vault.withdraw` revert (by custom-error name) means for the request; any other revert
fails it as REVERTED (`revert_rule`)."""


def revert_rule(error_name: str) -> WithdrawalState | WithdrawalFailure:
    """The request's next state (PAID_ON_CHAIN or WAITING), or the reason it failed."""
    return REVERT_RULES.get(error_name, WithdrawalFailure.REVERTED)


class IllegalWithdrawalTransition(Exception):
    """A withdrawal state change the table does not allow (a bug)."""


class WithdrawalQueue:
    """Requests not yet resolved by the log, in log order per partition."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingWithdrawal] = {}
        self._state: dict[str, WithdrawalState] = {}
        self._resolved: set[str] = set()

    def requested(self, partition: int, offset: int, trader: str, body: WithdrawalRequested) -> None:
        """A `WithdrawalRequested` read at (partition, offset)."""
        if body.withdrawal_id in self._resolved or body.withdrawal_id in self._pending:
            return  # risk refuses a pending duplicate id; a resolved one is not ours to redo
        self._pending[body.withdrawal_id] = PendingWithdrawal(
            partition=partition,
            offset=offset,
            trader=trader,
            withdrawal_id=body.withdrawal_id,
            amount=MicroUsdc(body.amount),
            as_cxpt=body.as_cxpt,
            nonce=body.nonce,
            expire_at=body.expire_at,
            signature=body.signature,
        )
        self._state[body.withdrawal_id] = W.WAITING

    def resolved(self, withdrawal_id: str) -> None:
        """`WithdrawalPaid` or `WithdrawalFailed` read from the log: the request is over."""
        self._resolved.add(withdrawal_id)
        self._pending.pop(withdrawal_id, None)
        self._state.pop(withdrawal_id, None)

    def move(self, withdrawal_id: str, to: WithdrawalState) -> None:
        """Record what the service did (table above); unknown (resolved) ids are ignored."""
        current = self._state.get(withdrawal_id)
        if current is None:
            return
        if (current, to) not in TRANSITIONS:
            raise IllegalWithdrawalTransition(f"withdrawal {withdrawal_id}: {current} → {to}")
        self._state[withdrawal_id] = to

    def state(self, withdrawal_id: str) -> WithdrawalState | None:
        return self._state.get(withdrawal_id)

    def pending(self) -> list[PendingWithdrawal]:
        """Unresolved requests in log order (partition, offset)."""
        return sorted(self._pending.values(), key=lambda w: (w.partition, w.offset))

    def actions(
        self,
        chain_now_us: int,
        margin_us: int,
        covered: Callable[[int, int], bool],
    ) -> list[ExecuteWithdrawal | FailWithdrawal]:
        """What to do now with the WAITING requests.

        `chain_now_us` is the latest block's time; `covered(partition, offset)` whether the
        partition's confirmed batches reach past the offset. A request whose deadline is less than
        `margin_us` away is not sent (it would likely revert on the way) but failed only once the
        chain's time has passed it — from then on no block can pay it.
        """
        out: list[ExecuteWithdrawal | FailWithdrawal] = []
        for w in self.pending():
            if self._state[w.withdrawal_id] is not W.WAITING:
                continue
            if not w.signature:
                out.append(FailWithdrawal(w, WithdrawalFailure.SIGNATURE_REFUSED, "no signature carried"))
            elif chain_now_us > w.expire_at:
                out.append(
                    FailWithdrawal(
                        w, WithdrawalFailure.DEADLINE_PASSED, f"chain time {chain_now_us} > {w.expire_at}"
                    )
                )
            elif chain_now_us + margin_us <= w.expire_at and covered(w.partition, w.offset):
                out.append(ExecuteWithdrawal(w))
        return out
