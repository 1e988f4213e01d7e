"""Properties of the Vault over random sequences of moves, on py-evm in process (same bytecode as anvil).

A model (plain integers, like the off-chain ledger) runs beside the contract. After every step:
the Vault holds at least what it owes — exactly what it owes plus what was donated —, every
balance equals the model's to the unit, shares are exactly 10**6 per micro-USDC, and the share
previews round against the caller. Steps include donations, replayed batches, settlements by an
account without the role, pausing (a paused Vault moves no money; cancelBySignature still works)
and one UUPS upgrade to a V2 that must keep every stored value.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from web3.logs import DISCARD

from services.chain import client
from services.chain.artifacts import load
from services.gateway.core import typed_data as td
from tests.unit.chain.vault_kit import SHARES_PER_UNIT, VaultKit, cancel_tuple, pyevm_chain

N_TRADERS = 4
AMOUNT = st.integers(min_value=1, max_value=10**13)


@cache
def _chain() -> tuple[VaultKit, list[str]]:
    """One py-evm chain with the exchange deployed, shared by every example (each reverts to a snapshot)."""
    w3, keys = pyevm_chain()
    kit = VaultKit(w3, keys[0], keys[1], new_key=lambda: keys[9])
    return kit, keys


class VaultMachine(RuleBasedStateMachine):
    """The contract and a model of it, moved by the same random steps."""

    def __init__(self) -> None:
        super().__init__()
        self.kit, keys = _chain()
        self.tester: Any = self.kit.w3.provider.ethereum_tester  # type: ignore[attr-defined]
        self.snapshot_id = self.tester.take_snapshot()
        self.kit.bind(self.kit.exchange.vault)
        self.admin, self.settler = keys[0], keys[1]
        self.traders = keys[2 : 2 + N_TRADERS]
        self.intruder, self.donor = keys[7], keys[8]
        self.model = dict.fromkeys(self.traders, 0)
        self.fees = self.clearing = self.insurance = 0
        self.donated = 0
        self.cxpt_paid = dict.fromkeys(self.traders, 0)
        self.paused = False
        self.upgraded = False
        self.batches: list[bytes] = []

    def teardown(self) -> None:
        self.tester.revert_to_snapshot(self.snapshot_id)

    # -- moves -------------------------------------------------------------------------------------

    @initialize(amounts=st.lists(AMOUNT, min_size=N_TRADERS, max_size=N_TRADERS))
    def everyone_deposits(self, amounts: list[int]) -> None:
        for trader, amount in zip(self.traders, amounts, strict=True):
            self._deposit(trader, amount)

    @rule(i=st.integers(0, N_TRADERS - 1), amount=AMOUNT)
    def deposit(self, i: int, amount: int) -> None:
        # State: any. Action: a trader deposits. Expectation: credited exactly, or refused while paused.
        trader = self.traders[i]
        if self.paused:
            self.kit.send(self.kit.usdc.functions.mint(client.address_of(trader), amount), trader)
            self.kit.send(self.kit.usdc.functions.approve(self.kit.vault.address, amount), trader)
            self.kit.expect_revert(
                self.kit.vault.functions.deposit(client.address_of(trader), amount), trader, "EnforcedPause"
            )
            return
        self._deposit(trader, amount)

    def _deposit(self, trader: str, amount: int) -> None:
        receipt = self.kit.deposit(trader, amount)
        (event,) = self.kit.vault.events.Deposited().process_receipt(receipt, errors=DISCARD)
        assert event["args"]["shares"] == amount * SHARES_PER_UNIT
        self.model[trader] += amount

    @rule(amount=AMOUNT)
    def donate(self, amount: int) -> None:
        # State: any. Action: USDC sent to the Vault without deposit. Expectation: nobody's balance moves.
        self.kit.donate(self.donor, amount)
        self.donated += amount

    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        # State: any. Action: a balanced batch (traders never below 0, FEES never below 0).
        # Expectation: applied exactly; refused while paused.
        deltas = [
            (t, data.draw(st.integers(-self.model[t], 10**12), label=f"delta {i}"))
            for i, t in enumerate(self.traders)
            if data.draw(st.booleans(), label=f"listed {i}")
        ]
        fees = data.draw(st.integers(-self.fees, 10**9), label="fees")
        clearing = data.draw(st.integers(-(10**12), 10**12), label="clearing")
        insurance = -(sum(d for _, d in deltas) + fees + clearing)
        batch_id = uuid.uuid4().bytes * 2
        call = self.kit.settle_call(deltas, fees, clearing, insurance, batch_id)
        if self.paused:
            self.kit.expect_revert(call, self.settler, "EnforcedPause")
            return
        self.kit.send(call, self.settler)
        self.batches.append(batch_id)
        for trader, delta in deltas:
            self.model[trader] += delta
        self.fees, self.clearing, self.insurance = (
            self.fees + fees,
            self.clearing + clearing,
            self.insurance + insurance,
        )

    @rule(data=st.data())
    def unbalanced_or_overdrawn_batch_is_refused(self, data: st.DataObject) -> None:
        # State: not paused. Action: a batch off by `skew`, or taking a trader below 0. Expectation: refused.
        if self.paused:
            return
        trader = data.draw(st.sampled_from(self.traders))
        if data.draw(st.booleans(), label="overdraw"):
            call = self.kit.settle_call([(trader, -self.model[trader] - 1)], clearing=self.model[trader] + 1)
            self.kit.expect_revert(call, self.settler, "InsufficientBalance")
        else:
            skew = data.draw(st.integers(-(10**6), 10**6).filter(bool), label="skew")
            self.kit.expect_revert(
                self.kit.settle_call([(trader, 0)], clearing=skew), self.settler, "BatchNotBalanced"
            )

    @precondition(lambda self: bool(self.batches))
    @rule(data=st.data())
    def replayed_batch_is_refused(self, data: st.DataObject) -> None:
        # State: a batch settled. Action: its id again. Expectation: BatchAlreadySettled (or EnforcedPause).
        batch_id = data.draw(st.sampled_from(self.batches))
        call = self.kit.settle_call([], 0, 0, 0, batch_id)
        self.kit.expect_revert(call, self.settler, "EnforcedPause" if self.paused else "BatchAlreadySettled")

    @rule()
    def only_the_settlement_role_settles(self) -> None:
        # State: any. Action: another account posts a balanced batch. Expectation: AccessControl refusal.
        call = self.kit.settle_call([(self.traders[0], 0)])
        for who in (self.intruder, self.admin, self.traders[0]):
            self.kit.expect_revert(call, who, "AccessControlUnauthorizedAccount")

    @rule(i=st.integers(0, N_TRADERS - 1), share=st.floats(0.0, 1.0), as_cxpt=st.booleans())
    def withdraw(self, i: int, share: float, as_cxpt: bool) -> None:
        # State: any. Action: a signed withdrawal of part of a balance. Expectation: paid exactly in
        # USDC or CXPT (its USDC then at the treasury); refused while paused; more than the balance
        # refused; more than backs the claims (negative exchange accounts: Σ balances + accounts)
        # refused, nothing moved — a donated surplus pays no one.
        trader = self.traders[i]
        if self.model[trader] == 0:
            return
        amount = max(1, int(self.model[trader] * share))
        _, args, signature = self.kit.withdrawal(trader, amount, as_cxpt=as_cxpt)
        call = self.kit.vault.functions.withdraw(args, signature)
        if self.paused:
            self.kit.expect_revert(call, self.settler, "EnforcedPause")
            return
        if amount > self.owed():
            self.kit.expect_revert(call, self.settler, "InsufficientLiquidity")
            return
        receipt = self.kit.send(call, self.settler)
        (event,) = self.kit.vault.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
        assert event["args"]["shares"] == amount * SHARES_PER_UNIT
        self.model[trader] -= amount
        if as_cxpt:
            self.cxpt_paid[trader] += amount
        _, args, signature = self.kit.withdrawal(trader, self.model[trader] + 1)
        self.kit.expect_revert(
            self.kit.vault.functions.withdraw(args, signature), self.settler, "InsufficientBalance"
        )

    @precondition(lambda self: self.donated > 0)
    @rule()
    def admin_sweeps_the_donations(self) -> None:
        # State: donations held. Action: the admin sweeps. Expectation: exactly the donations leave.
        call = self.kit.vault.functions.sweepSurplus(client.address_of(self.donor))
        if self.paused:
            self.kit.expect_revert(call, self.admin, "EnforcedPause")
            return
        self.kit.send(call, self.admin)
        self.donated = 0

    @rule()
    def toggle_pause(self) -> None:
        # Action: the pauser pauses or unpauses. Expectation: cancelBySignature works either way.
        fn = self.kit.vault.functions
        self.kit.send(fn.unpause() if self.paused else fn.pause(), self.admin)
        self.paused = not self.paused
        trader = self.traders[0]
        cancel = td.Cancel(
            trader=client.address_of(trader), market="BTC-PERP", order_id=uuid.uuid4(), client_order_id=None,
            nonce=self.kit.next_nonce(), deadline=self.kit.chain_now_us() + 10**9,
        )  # fmt: skip
        self.kit.send(
            fn.cancelBySignature(cancel_tuple(cancel), td.sign(self.kit.domain, cancel, trader)),
            self.intruder,
        )

    @precondition(lambda self: not self.upgraded)
    @rule()
    def upgrade_keeps_storage(self) -> None:
        # State: any. Action: the upgrader moves the proxy to VaultV2Mock. Expectation: every stored
        # value reads the same through the proxy, and the new function answers.
        before = self.kit.snapshot(self.traders)
        implementation = client.deploy(self.kit.w3, load("VaultV2Mock"), key=self.admin)
        self.kit.expect_revert(
            self.kit.vault.functions.upgradeToAndCall(implementation, b""),
            self.settler,
            "AccessControlUnauthorizedAccount",
        )
        self.kit.send(self.kit.vault.functions.upgradeToAndCall(implementation, b""), self.admin)
        self.kit.bind(self.kit.exchange.vault, "VaultV2Mock")
        assert self.kit.vault.functions.v2().call() == "VaultV2Mock"
        assert self.kit.snapshot(self.traders) == before
        self.upgraded = True

    def owed(self) -> int:
        """What the model says the Vault owes: Σ balances + FEES + CLEARING + INSURANCE."""
        return sum(self.model.values()) + self.fees + self.clearing + self.insurance

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def the_vault_holds_what_it_owes(self) -> None:
        owed = self.owed()
        assert owed >= 0
        held = self.kit.usdc_held()
        assert held >= owed
        assert held == owed + self.donated
        v = self.kit.vault.functions
        assert v.owed().call() == owed
        assert v.surplus().call() == self.donated

    @invariant()
    def balances_are_the_models_to_the_unit(self) -> None:
        v = self.kit.vault.functions
        for trader, amount in self.model.items():
            assert self.kit.balance(trader) == amount
            assert v.sharesOf(client.address_of(trader)).call() == amount * SHARES_PER_UNIT
            assert (
                self.kit.cxpt.functions.balanceOf(client.address_of(trader)).call() == self.cxpt_paid[trader]
            )
        assert self.kit.accounts() == (self.fees, self.clearing, self.insurance)
        pooled = v.pooledAssets().call()
        assert pooled == sum(self.model.values())
        assert v.totalShares().call() == pooled * SHARES_PER_UNIT
        assert v.paused().call() == self.paused

    @invariant()
    def share_rounding_never_favours_the_caller(self) -> None:
        v = self.kit.vault.functions
        shares, pooled = v.totalShares().call(), v.pooledAssets().call()
        for assets in (1, 7, 999_999, 10**12 + 3):
            exact_num, den = assets * (shares + SHARES_PER_UNIT), pooled + 1
            # deposit / credit: at most the exact share count; withdraw / debit: at least it.
            assert v.previewDeposit(assets).call() * den <= exact_num
            assert v.previewWithdraw(assets).call() * den >= exact_num


TestVaultProperties = VaultMachine.TestCase
TestVaultProperties.settings = settings(
    max_examples=10, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
