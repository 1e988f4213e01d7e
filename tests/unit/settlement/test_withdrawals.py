"""The withdrawal queue: covered → execute, deadline → fail, the log resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.records import BatchStatus
from services.settlement.core import (
    ExecuteWithdrawal,
    FailWithdrawal,
    FoldConfig,
    Settlement,
    WithdrawalFailure,
)
from services.settlement.core.withdrawals import (
    REVERT_RULES,
    IllegalWithdrawalTransition,
    WithdrawalState,
    revert_rule,
)
from tests.kit import ALICE
from tests.unit.settlement.risk_stream import RiskPartition

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "accounts.events"
VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
WID = "0190b7a4-0000-7000-8000-000000000001"
SECOND = 1_000_000
NOW = 1_800_000_000 * SECOND


def alice_requests(
    expire_at: int = NOW + 3600 * SECOND, signature: bytes = b"\x01" * 65
) -> tuple[Settlement, str]:
    """State: Alice deposited and traded (batch 1), then requested a withdrawal (batch 2, closed at it)."""
    risk = RiskPartition(0)
    core = Settlement(TOPIC, 1, FoldConfig(max_traders=100, window_us=10**12), 31337, VAULT)
    records = risk.deposit(ALICE, 1_000) + risk.trade({ALICE: -10}, fees=10)
    records += risk.request_withdrawal(
        ALICE, 500, withdrawal_id=WID, expire_at=expire_at, signature=signature
    )
    built = [b for i, r in enumerate(records) for b in core.apply(0, i, 0, r)]
    assert [(b.batch.from_offset, b.batch.to_offset) for b in built] == [(0, 5)]  # closes at the request
    return core, built[0].batch_id


def confirm(core: Settlement, batch_id: str) -> None:
    core.set_status(batch_id, BatchStatus.SUBMITTED)
    core.set_status(batch_id, BatchStatus.CONFIRMED)


def test_a_withdrawal_waits_for_the_batch_covering_it_to_be_confirmed() -> None:
    core, batch_id = alice_requests()
    assert core.withdrawal_actions(NOW, 30 * SECOND) == []
    core.set_status(batch_id, BatchStatus.SUBMITTED)
    assert core.withdrawal_actions(NOW, 30 * SECOND) == []  # submitted is not confirmed
    core.set_status(batch_id, BatchStatus.CONFIRMED)
    (action,) = core.withdrawal_actions(NOW, 30 * SECOND)
    assert isinstance(action, ExecuteWithdrawal) and action.withdrawal.amount == 500


def test_past_its_deadline_a_withdrawal_fails_instead_of_being_sent() -> None:
    core, batch_id = alice_requests(expire_at=NOW)
    confirm(core, batch_id)
    assert core.withdrawal_actions(NOW - 10 * SECOND, 30 * SECOND) == []  # too close to send, not yet past
    (action,) = core.withdrawal_actions(NOW + 1, 30 * SECOND)
    assert isinstance(action, FailWithdrawal) and action.reason is WithdrawalFailure.DEADLINE_PASSED


def test_a_request_without_a_signature_fails_at_once() -> None:
    core, _ = alice_requests(signature=b"")
    (action,) = core.withdrawal_actions(NOW, 0)
    assert isinstance(action, FailWithdrawal) and action.reason is WithdrawalFailure.SIGNATURE_REFUSED


def test_only_waiting_requests_are_acted_on_and_the_log_resolves_them() -> None:
    core, batch_id = alice_requests()
    confirm(core, batch_id)
    core.withdrawals.move(WID, WithdrawalState.SENT)
    assert core.withdrawal_actions(NOW, 0) == []
    core.withdrawals.move(WID, WithdrawalState.PAID_ON_CHAIN)
    assert core.withdrawal_actions(NOW, 0) == []
    with pytest.raises(IllegalWithdrawalTransition):
        core.withdrawals.move(WID, WithdrawalState.FAILING)  # a paid withdrawal never fails
    core.withdrawals.resolved(WID)  # the watcher's WithdrawalPaid, read back
    assert core.withdrawals.pending() == []
    core.withdrawals.move(WID, WithdrawalState.SENT)  # resolved: ignored


@pytest.mark.parametrize(
    ("error_name", "expected"),
    [
        ("WithdrawalAlreadyPaid", WithdrawalState.PAID_ON_CHAIN),
        ("EnforcedPause", WithdrawalState.WAITING),
        ("AccessControlUnauthorizedAccount", WithdrawalState.WAITING),
        ("InsufficientLiquidity", WithdrawalState.WAITING),
        ("SignatureExpired", WithdrawalState.WAITING),
        ("SignerMismatch", WithdrawalFailure.SIGNATURE_REFUSED),
        ("ECDSAInvalidSignatureS", WithdrawalFailure.SIGNATURE_REFUSED),
        ("InsufficientBalance", WithdrawalFailure.REVERTED),
        ("SomethingNew", WithdrawalFailure.REVERTED),
    ],
)
def test_a_withdraw_revert_decides_wait_paid_or_failed_by_its_error_name(
    error_name: str, expected: WithdrawalState | WithdrawalFailure
) -> None:
    # State: a `Vault.withdraw` reverted with `error_name`. Expectation: the rule table's answer —
    # an unbacked Vault (InsufficientLiquidity) is an incident, not the trader's loss: it waits.
    assert revert_rule(error_name) is expected


def test_every_revert_rule_names_an_error_the_vault_or_openzeppelin_declares() -> None:
    vault = (ROOT / "contracts" / "src" / "Vault.sol").read_text()
    openzeppelin = {"EnforcedPause", "AccessControlUnauthorizedAccount"} | {
        name for name in REVERT_RULES if name.startswith("ECDSA")
    }
    for name in REVERT_RULES.keys() - openzeppelin:
        assert f"error {name}(" in vault, name
