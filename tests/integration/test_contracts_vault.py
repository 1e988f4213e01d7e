"""The Vault, CXPT, SynthERC20 and MockUSDC on the real anvil: every external function, every revert.

Each test deploys its own exchange with freshly funded accounts (anvil_setBalance), so tests side by
side, or other sessions on the same anvil, never race for a nonce or share state. The chain's clock
is never moved: expired deadlines are deadlines in the past.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from services.chain import client, deploy, deployments
from services.chain.artifacts import load
from services.common.settings import REPO_ROOT, Settings
from services.gateway.core import typed_data as td
from tests.integration.chain import funded_key
from tests.unit.chain.vault_kit import (
    ONE_USDC,
    SHARES_PER_UNIT,
    VaultKit,
    cancel_tuple,
    error_selector,
)


@pytest.fixture
def w3(settings: Settings) -> Web3:
    return client.connect(settings.eth_rpc_url)


@pytest.fixture
def kit(w3: Web3) -> VaultKit:
    return VaultKit(w3, funded_key(w3), funded_key(w3), new_key=lambda: funded_key(w3))


def addr(key: str) -> str:
    return client.address_of(key)


# -- deployment and initialisation --------------------------------------------------------------------


def test_deploy_wires_roles_tokens_domain_and_the_cxpt_minter(kit: VaultKit) -> None:
    # State: a fresh deployment. Expectation: roles as documented, tokens wired, domain = gateway's.
    v = kit.vault.functions
    admin, settler = addr(kit.admin_key), addr(kit.settler_key)
    for role in ("DEFAULT_ADMIN_ROLE", "PAUSER_ROLE", "UPGRADER_ROLE"):
        assert v.hasRole(deploy.role_id(role), admin).call()
        assert not v.hasRole(deploy.role_id(role), settler).call()
    assert v.hasRole(deploy.role_id("SETTLEMENT_ROLE"), settler).call()
    assert not v.hasRole(deploy.role_id("SETTLEMENT_ROLE"), admin).call()
    assert v.usdc().call() == kit.exchange.usdc and v.cxpt().call() == kit.exchange.cxpt
    assert kit.cxpt.functions.minter().call() == kit.exchange.vault
    _, name, version, chain_id, contract, _, _ = v.eip712Domain().call()
    assert (name, version, chain_id, contract) == (
        td.DOMAIN_NAME,
        td.DOMAIN_VERSION,
        kit.w3.eth.chain_id,
        kit.exchange.vault,
    )
    assert v.domainSeparator().call() == td.domain_separator(kit.domain)
    assert kit.cxpt.functions.decimals().call() == 6 and kit.usdc.functions.decimals().call() == 6
    assert v.SHARE_DECIMALS_OFFSET().call() == 6
    # Implementation slot (ERC-1967) holds the implementation.
    slot = int.from_bytes(Web3.keccak(text="eip1967.proxy.implementation"), "big") - 1
    raw = kit.w3.eth.get_storage_at(kit.exchange.vault, slot)
    assert Web3.to_checksum_address(raw[-20:]) == kit.exchange.vault_implementation


def test_initialize_runs_once_and_never_on_the_implementation(kit: VaultKit) -> None:
    # Action: initialize again, on the proxy and on the implementation. Expectation: InvalidInitialization.
    z = addr(kit.admin_key)
    kit.expect_revert(kit.vault.functions.initialize(z, z, z, z), kit.admin_key, "InvalidInitialization")
    impl = client.bind(kit.w3, load("Vault"), kit.exchange.vault_implementation)
    kit.expect_revert(impl.functions.initialize(z, z, z, z), kit.admin_key, "InvalidInitialization")


def test_initialize_refuses_a_zero_address(w3: Web3) -> None:
    # Action: a proxy initialised with a zero settlement address. Expectation: the deployment reverts.
    key = funded_key(w3)
    implementation = client.deploy(w3, load("Vault"), key=key)
    init = w3.eth.contract(abi=load("Vault").abi).encode_abi(
        "initialize", [addr(key), "0x" + "00" * 20, addr(key), addr(key)]
    )
    with pytest.raises(ContractCustomError) as raised:
        client.deploy(w3, load("VaultProxy"), implementation, init, key=key)
    assert str(raised.value.data) == error_selector(load("Vault").abi, "ZeroAddress")


# -- deposit -------------------------------------------------------------------------------------------


def test_deposit_credits_the_trader_exactly_and_emits_deposited(kit: VaultKit) -> None:
    # State: a payer with USDC. Action: deposit 12.345678 USDC for another trader.
    payer, trader = kit.new_key(), kit.new_key()
    receipt = kit.deposit(payer, 12_345_678, trader=addr(trader))
    # Expectation: the trader's balance is exactly the amount; shares = amount × 1e6; one event.
    (event,) = kit.vault.events.Deposited().process_receipt(receipt, errors=DISCARD)
    assert dict(event["args"]) == {
        "trader": addr(trader),
        "from": addr(payer),
        "amount": 12_345_678,
        "shares": 12_345_678 * SHARES_PER_UNIT,
    }
    assert kit.balance(trader) == 12_345_678 and kit.balance(payer) == 0
    assert kit.usdc_held() == 12_345_678


def test_deposit_reverts(kit: VaultKit) -> None:
    payer = kit.new_key()
    v = kit.vault.functions
    # Zero amount, zero trader.
    kit.expect_revert(v.deposit(addr(payer), 0), payer, "ZeroAmount")
    kit.expect_revert(v.deposit("0x" + "00" * 20, 1), payer, "ZeroAddress")
    # No allowance: the token refuses (OpenZeppelin ERC20InsufficientAllowance).
    kit.send(kit.usdc.functions.mint(addr(payer), 5), payer)
    kit.expect_revert(v.deposit(addr(payer), 5), payer, "ERC20InsufficientAllowance")


# -- withdraw ------------------------------------------------------------------------------------------


def test_withdraw_in_usdc_pays_the_trader(kit: VaultKit) -> None:
    # State: Alice holds 10 USDC. Action: settlement posts her signed withdrawal of 4 USDC.
    alice = kit.new_key()
    kit.deposit(alice, 10 * ONE_USDC)
    struct, args, signature = kit.withdrawal(alice, 4 * ONE_USDC)
    receipt = kit.send(kit.vault.functions.withdraw(args, signature), kit.settler_key)
    # Expectation: 4 USDC to Alice, 6 left, the id spent, a Withdrawn event.
    assert kit.usdc.functions.balanceOf(addr(alice)).call() == 4 * ONE_USDC
    assert kit.balance(alice) == 6 * ONE_USDC
    assert kit.vault.functions.withdrawalPaid(struct.withdrawal_id.bytes).call()
    (event,) = kit.vault.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["amount"] == 4 * ONE_USDC and event["args"]["asCxpt"] is False
    assert event["args"]["shares"] == 4 * ONE_USDC * SHARES_PER_UNIT


def test_withdraw_as_cxpt_mints_cxpt_backed_by_the_usdc_sent_to_the_treasury(kit: VaultKit) -> None:
    # State: Bob holds 10 USDC; the treasury is the admin (deploy_exchange's default).
    bob = kit.new_key()
    kit.deposit(bob, 10 * ONE_USDC)
    treasury = kit.vault.functions.treasury().call()
    before = kit.usdc.functions.balanceOf(treasury).call()
    # Action: a withdrawal of 3 USDC as CXPT.
    kit.withdraw(bob, 3 * ONE_USDC, as_cxpt=True)
    # Expectation: 3 CXPT minted to Bob; the 3 USDC left the Vault for the treasury, which backs
    # them; the exchange accounts did not move (the books read as for a USDC withdrawal).
    assert treasury == addr(kit.admin_key)
    assert kit.cxpt.functions.balanceOf(addr(bob)).call() == 3 * ONE_USDC
    assert kit.usdc.functions.balanceOf(treasury).call() == before + 3 * ONE_USDC
    assert kit.usdc_held() == 7 * ONE_USDC
    assert kit.accounts() == (0, 0, 0)
    assert kit.balance(bob) == 7 * ONE_USDC


def test_a_withdrawal_beyond_the_usdc_held_is_refused_clearly(kit: VaultKit) -> None:
    # State: Alice deposited 5 USDC; a batch credits Bob 8 USDC of PnL out of CLEARING, which goes
    # to −8 (his counterparty's position is still open): Bob's balance exceeds the USDC held.
    alice, bob = kit.new_key(), kit.new_key()
    kit.deposit(alice, 5 * ONE_USDC)
    kit.settle([(bob, 8 * ONE_USDC)], clearing=-8 * ONE_USDC)
    assert kit.balance(bob) == 8 * ONE_USDC and kit.usdc_held() == 5 * ONE_USDC
    # Action: Bob withdraws 6 USDC. Expectation: InsufficientLiquidity(available, needed), nothing moved.
    _, args, signature = kit.withdrawal(bob, 6 * ONE_USDC)
    kit.expect_revert(kit.vault.functions.withdraw(args, signature), kit.settler_key, "InsufficientLiquidity")
    assert kit.balance(bob) == 8 * ONE_USDC and kit.usdc_held() == 5 * ONE_USDC


def test_withdraw_reverts(kit: VaultKit) -> None:
    alice, mallory = kit.new_key(), kit.new_key()
    kit.deposit(alice, 5 * ONE_USDC)
    v = kit.vault.functions
    # Only the settlement role.
    _, args, signature = kit.withdrawal(alice, ONE_USDC)
    kit.expect_revert(v.withdraw(args, signature), alice, "AccessControlUnauthorizedAccount")
    # Expired: the deadline (µs) is before the block's time × 1e6.
    _, args, signature = kit.withdrawal(alice, ONE_USDC, deadline=kit.chain_now_us() - 1)
    kit.expect_revert(v.withdraw(args, signature), kit.settler_key, "SignatureExpired")
    # Signed by someone else.
    _, args, signature = kit.withdrawal(alice, ONE_USDC, signer_key=mallory)
    kit.expect_revert(v.withdraw(args, signature), kit.settler_key, "SignerMismatch")
    # A field changed after signing.
    _, args, signature = kit.withdrawal(alice, ONE_USDC)
    kit.expect_revert(
        v.withdraw((*args[:2], 2 * ONE_USDC, *args[3:]), signature), kit.settler_key, "SignerMismatch"
    )
    # Malformed and malleable signatures, as the gateway refuses them.
    kit.expect_revert(v.withdraw(args, signature[:64]), kit.settler_key, "ECDSAInvalidSignatureLength")
    r, s, v_ = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high_s = (
        r + (td.SECP256K1_N - s).to_bytes(32, "big") + bytes([v_ ^ 1 ^ 27 ^ 28 if v_ in (27, 28) else v_])
    )
    kit.expect_revert(v.withdraw(args, high_s), kit.settler_key, "ECDSAInvalidSignatureS")
    # More than the balance; zero.
    _, args, signature = kit.withdrawal(alice, 5 * ONE_USDC + 1)
    kit.expect_revert(v.withdraw(args, signature), kit.settler_key, "InsufficientBalance")
    _, args, signature = kit.withdrawal(alice, 0)
    kit.expect_revert(v.withdraw(args, signature), kit.settler_key, "ZeroAmount")
    # The same withdrawal id twice.
    wid = uuid.uuid4()
    _, args, signature = kit.withdrawal(alice, ONE_USDC, withdrawal_id=wid)
    kit.send(v.withdraw(args, signature), kit.settler_key)
    _, args, signature = kit.withdrawal(alice, ONE_USDC, withdrawal_id=wid)
    kit.expect_revert(v.withdraw(args, signature), kit.settler_key, "WithdrawalAlreadyPaid")


# -- settle --------------------------------------------------------------------------------------------


def test_settle_applies_deltas_and_exchange_accounts_once(kit: VaultKit) -> None:
    # State: Alice 100, Bob 50 USDC. Action: Alice −30, Bob +25, FEES +3, CLEARING +4, INSURANCE −2.
    alice, bob = kit.new_key(), kit.new_key()
    kit.deposit(alice, 100 * ONE_USDC)
    kit.deposit(bob, 50 * ONE_USDC)
    batch = uuid.uuid4().bytes * 2
    receipt = kit.settle(
        [(alice, -30 * ONE_USDC), (bob, 25 * ONE_USDC)], 3 * ONE_USDC, 4 * ONE_USDC, -2 * ONE_USDC, batch
    )
    # Expectation: exact balances and accounts, events per trader and per batch, the id spent.
    assert (kit.balance(alice), kit.balance(bob)) == (70 * ONE_USDC, 75 * ONE_USDC)
    assert kit.accounts() == (3 * ONE_USDC, 4 * ONE_USDC, -2 * ONE_USDC)
    assert kit.vault.functions.batchSettled(batch).call()
    traders = kit.vault.events.TraderSettled().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["trader"], e["args"]["delta"]) for e in traders] == [
        (addr(alice), -30 * ONE_USDC), (addr(bob), 25 * ONE_USDC)
    ]  # fmt: skip
    (settled,) = kit.vault.events.BatchSettled().process_receipt(receipt, errors=DISCARD)
    assert settled["args"]["traders"] == 2 and settled["args"]["insuranceDelta"] == -2 * ONE_USDC
    kit.expect_revert(kit.settle_call([], batch_id=batch), kit.settler_key, "BatchAlreadySettled")


def test_settle_reverts(kit: VaultKit) -> None:
    alice = kit.new_key()
    kit.deposit(alice, 10)
    v = kit.vault.functions
    s = kit.settler_key
    kit.expect_revert(kit.settle_call([(alice, 1)], fees=-1), alice, "AccessControlUnauthorizedAccount")
    kit.expect_revert(kit.settle_call([(alice, 1)]), s, "BatchNotBalanced")
    kit.expect_revert(kit.settle_call([(alice, -11)], clearing=11), s, "InsufficientBalance")
    kit.expect_revert(kit.settle_call([(alice, 1)], fees=-1), s, "NegativeFees")
    kit.expect_revert(kit.settle_call([("0x" + "00" * 20, 0)]), s, "ZeroAddress")
    kit.expect_revert(v.settle(b"\x01" * 32, [addr(alice)], [], 0, 0, 0), s, "LengthMismatch")
    kit.expect_revert(v.settle(b"\x01" * 32, [], [], 2**255 - 1, 1, 0), s, "Panic")  # int256 overflow


# -- pause ---------------------------------------------------------------------------------------------


def test_a_paused_vault_moves_no_money_but_proves_cancels(kit: VaultKit) -> None:
    # State: Alice holds 10 USDC; the pauser pauses.
    alice = kit.new_key()
    kit.deposit(alice, 10 * ONE_USDC)
    kit.donate(alice, 7)
    v = kit.vault.functions
    kit.expect_revert(v.pause(), alice, "AccessControlUnauthorizedAccount")
    kit.send(v.pause(), kit.admin_key)
    kit.expect_revert(v.pause(), kit.admin_key, "EnforcedPause")
    # Action: every money move. Expectation: EnforcedPause each time.
    kit.send(kit.usdc.functions.approve(kit.vault.address, 10), alice)
    kit.send(kit.usdc.functions.mint(addr(alice), 10), alice)
    kit.expect_revert(v.deposit(addr(alice), 10), alice, "EnforcedPause")
    _, args, signature = kit.withdrawal(alice, 1)
    kit.expect_revert(v.withdraw(args, signature), kit.settler_key, "EnforcedPause")
    kit.expect_revert(kit.settle_call([(alice, 0)]), kit.settler_key, "EnforcedPause")
    kit.expect_revert(v.sweepSurplus(addr(alice)), kit.admin_key, "EnforcedPause")
    kit.send(v.deploySynth("sBTC"), kit.admin_key)  # creates an empty token: allowed
    kit.expect_revert(v.mintSynth("sBTC", addr(alice), 1), kit.settler_key, "EnforcedPause")
    kit.expect_revert(v.depositSynth("sBTC", addr(alice), 1), alice, "EnforcedPause")
    # Cancel proofs still work.
    cancel = _cancel(kit, alice)
    kit.send(v.cancelBySignature(cancel_tuple(cancel), td.sign(kit.domain, cancel, alice)), kit.new_key())
    # Action: unpause. Expectation: money moves again.
    kit.expect_revert(v.unpause(), alice, "AccessControlUnauthorizedAccount")
    kit.send(v.unpause(), kit.admin_key)
    kit.expect_revert(v.unpause(), kit.admin_key, "ExpectedPause")
    kit.withdraw(alice, ONE_USDC)
    assert kit.balance(alice) == 9 * ONE_USDC


# -- surplus -------------------------------------------------------------------------------------------


def test_donations_belong_to_no_one_and_only_they_can_be_swept(kit: VaultKit) -> None:
    # State: Alice deposited 5; someone sends 1,000 USDC straight to the Vault.
    alice, treasury = kit.new_key(), kit.new_key()
    kit.deposit(alice, 5 * ONE_USDC)
    kit.donate(alice, 1_000 * ONE_USDC)
    v = kit.vault.functions
    # Expectation: Alice's balance and the share price do not move.
    assert kit.balance(alice) == 5 * ONE_USDC
    assert v.previewDeposit(1).call() == SHARES_PER_UNIT
    assert (v.owed().call(), v.surplus().call()) == (5 * ONE_USDC, 1_000 * ONE_USDC)
    # Action: the admin sweeps. Expectation: exactly the surplus leaves; a second sweep finds none.
    kit.expect_revert(v.sweepSurplus(addr(treasury)), alice, "AccessControlUnauthorizedAccount")
    kit.expect_revert(v.sweepSurplus("0x" + "00" * 20), kit.admin_key, "ZeroAddress")
    kit.send(v.sweepSurplus(addr(treasury)), kit.admin_key)
    assert kit.usdc.functions.balanceOf(addr(treasury)).call() == 1_000 * ONE_USDC
    assert kit.usdc_held() == 5 * ONE_USDC
    kit.expect_revert(v.sweepSurplus(addr(treasury)), kit.admin_key, "NoSurplus")


# -- cancel by signature ---------------------------------------------------------------------------------


def _cancel(kit: VaultKit, trader: str, *, deadline: int | None = None) -> td.Cancel:
    return td.Cancel(
        trader=addr(trader), market="BTC-PERP", order_id=uuid.uuid4(), client_order_id=None,
        nonce=kit.next_nonce(), deadline=kit.chain_now_us() + 60_000_000 if deadline is None else deadline,
    )  # fmt: skip


def test_cancel_by_signature_emits_a_proof_once(kit: VaultKit) -> None:
    # State: Alice signed a cancel. Action: anyone submits it.
    alice, relayer = kit.new_key(), kit.new_key()
    cancel = _cancel(kit, alice)
    signature = td.sign(kit.domain, cancel, alice)
    receipt = kit.send(kit.vault.functions.cancelBySignature(cancel_tuple(cancel), signature), relayer)
    # Expectation: CancelProven with the cancel's fields and struct hash; a second time refused.
    (event,) = kit.vault.events.CancelProven().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["trader"] == addr(alice)
    assert event["args"]["cancelHash"] == td.struct_hash(cancel)
    assert event["args"]["orderId"] == cancel.order_id.bytes if cancel.order_id else False
    assert kit.vault.functions.cancelProven(td.struct_hash(cancel)).call()
    kit.expect_revert(
        kit.vault.functions.cancelBySignature(cancel_tuple(cancel), signature), relayer, "CancelAlreadyProven"
    )


def test_cancel_by_signature_reverts(kit: VaultKit) -> None:
    alice, mallory = kit.new_key(), kit.new_key()
    v = kit.vault.functions
    late = _cancel(kit, alice, deadline=kit.chain_now_us() - 1)
    kit.expect_revert(
        v.cancelBySignature(cancel_tuple(late), td.sign(kit.domain, late, alice)), mallory, "SignatureExpired"
    )
    forged = _cancel(kit, alice)
    kit.expect_revert(
        v.cancelBySignature(cancel_tuple(forged), td.sign(kit.domain, forged, mallory)),
        mallory,
        "SignerMismatch",
    )
    kit.expect_revert(
        v.cancelBySignature(cancel_tuple(forged), b"\x01" * 65), mallory, "ECDSAInvalidSignature"
    )


# -- synths --------------------------------------------------------------------------------------------


def test_synths_deploy_at_the_address_known_from_their_symbol(kit: VaultKit) -> None:
    # State: no synth yet. Expectation: the Vault and Python agree on the address before deployment.
    v = kit.vault.functions
    predicted = v.synthAddress("sBTC").call()
    assert predicted == deploy.synth_address(kit.exchange.vault, "sBTC")
    assert v.synthOf("sBTC").call() == "0x" + "00" * 20
    # Action: the admin deploys it. Expectation: at the predicted address, named, decimals 18.
    kit.expect_revert(v.deploySynth("sBTC"), kit.settler_key, "AccessControlUnauthorizedAccount")
    receipt = kit.send(v.deploySynth("sBTC"), kit.admin_key)
    (event,) = kit.vault.events.SynthDeployed().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["synth"] == predicted == v.synthOf("sBTC").call()
    synth = client.bind(kit.w3, load("SynthERC20"), predicted)
    assert (synth.functions.symbol().call(), synth.functions.name().call()) == ("sBTC", "CXPT Synth sBTC")
    assert synth.functions.vault().call() == kit.exchange.vault
    kit.expect_revert(v.deploySynth("sBTC"), kit.admin_key, "SynthAlreadyDeployed")
    kit.expect_revert(v.deploySynth(""), kit.admin_key, "InvalidSymbol")
    kit.expect_revert(v.deploySynth("X" * 33), kit.admin_key, "InvalidSymbol")


def test_synths_are_minted_by_settlement_and_burned_on_deposit(kit: VaultKit) -> None:
    alice = kit.new_key()
    v = kit.vault.functions
    kit.send(v.deploySynth("sETH"), kit.admin_key)
    synth = client.bind(kit.w3, load("SynthERC20"), v.synthOf("sETH").call())
    # Only the settlement role mints; unknown symbols and zero amounts refused.
    kit.expect_revert(v.mintSynth("sETH", addr(alice), 5), alice, "AccessControlUnauthorizedAccount")
    kit.expect_revert(v.mintSynth("sXYZ", addr(alice), 5), kit.settler_key, "UnknownSynth")
    kit.expect_revert(v.mintSynth("sETH", addr(alice), 0), kit.settler_key, "ZeroAmount")
    kit.send(v.mintSynth("sETH", addr(alice), 5), kit.settler_key)
    assert synth.functions.balanceOf(addr(alice)).call() == 5
    # Nobody but the Vault mints or burns the token itself.
    kit.expect_revert(synth.functions.mint(addr(alice), 1), alice, "NotVault")
    kit.expect_revert(synth.functions.burn(addr(alice), 1), kit.admin_key, "NotVault")
    # Alice deposits 3 back: burned from her, SynthDeposited for the watcher.
    kit.expect_revert(v.depositSynth("sETH", addr(alice), 6), alice, "ERC20InsufficientBalance")
    kit.expect_revert(v.depositSynth("sETH", "0x" + "00" * 20, 1), alice, "ZeroAddress")
    kit.expect_revert(v.depositSynth("sETH", addr(alice), 0), alice, "ZeroAmount")
    receipt = kit.send(v.depositSynth("sETH", addr(alice), 3), alice)
    (event,) = kit.vault.events.SynthDeposited().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["amount"] == 3 and event["args"]["trader"] == addr(alice)
    assert synth.functions.totalSupply().call() == 2


# -- tokens ------------------------------------------------------------------------------------------


def test_cxpt_is_minted_only_by_the_vault_and_its_minter_is_wired_once(kit: VaultKit) -> None:
    c = kit.cxpt.functions
    someone = kit.new_key()
    kit.expect_revert(c.mint(addr(someone), 1), kit.admin_key, "NotMinter")
    kit.expect_revert(c.setMinter(addr(someone)), someone, "NotDeployer")
    kit.expect_revert(c.setMinter(addr(someone)), kit.admin_key, "MinterAlreadySet")
    assert (c.name().call(), c.symbol().call(), c.deployer().call()) == ("CXPT", "CXPT", addr(kit.admin_key))
    fresh = client.bind(kit.w3, load("CXPT"), client.deploy(kit.w3, load("CXPT"), key=someone))
    kit.expect_revert(fresh.functions.setMinter("0x" + "00" * 20), someone, "ZeroMinter")


def test_cxpt_votes_permit_and_burn(kit: VaultKit) -> None:
    # State: Bob got 2 CXPT from a withdrawal. Action: he delegates to himself, burns 0.5.
    bob, spender = kit.new_key(), kit.new_key()
    kit.deposit(bob, 2 * ONE_USDC)
    kit.withdraw(bob, 2 * ONE_USDC, as_cxpt=True)
    c = kit.cxpt.functions
    kit.send(c.delegate(addr(bob)), bob)
    assert c.getVotes(addr(bob)).call() == 2 * ONE_USDC
    # anvil estimates at the latest block's number, where the delegation's checkpoint can be
    # updated in place; mined one block later, the burn writes new checkpoints: give it gas.
    kit.send(c.burn(ONE_USDC // 2), bob, gas=300_000)
    assert c.getVotes(addr(bob)).call() == c.balanceOf(addr(bob)).call() == 3 * ONE_USDC // 2
    # Permit (ERC-2612): an off-chain signature sets an allowance.
    deadline = kit.chain_now_us() // 1_000_000 + 3600
    nonce = c.nonces(addr(bob)).call()
    signed = Account.sign_typed_data(
        bob,
        domain_data={"name": "CXPT", "version": "1", "chainId": kit.w3.eth.chain_id,
                     "verifyingContract": kit.cxpt.address},
        message_types={"Permit": [
            {"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]},
        message_data={"owner": addr(bob), "spender": addr(spender), "value": 7, "nonce": nonce,
                      "deadline": deadline},
    )  # fmt: skip
    call = c.permit(
        addr(bob),
        addr(spender),
        7,
        deadline,
        signed.v,
        signed.r.to_bytes(32, "big"),
        signed.s.to_bytes(32, "big"),
    )
    kit.send(call, spender)
    assert c.allowance(addr(bob), addr(spender)).call() == 7


def test_mock_usdc_mints_freely_with_6_decimals(kit: VaultKit) -> None:
    someone = kit.new_key()
    kit.send(kit.usdc.functions.mint(addr(someone), 42), someone)
    assert kit.usdc.functions.balanceOf(addr(someone)).call() == 42
    assert kit.usdc.functions.symbol().call() == "USDC"


# -- upgrade -------------------------------------------------------------------------------------------


def test_only_the_upgrader_upgrades_and_storage_survives(kit: VaultKit) -> None:
    # State: balances, accounts and a spent batch.
    alice = kit.new_key()
    kit.deposit(alice, 9 * ONE_USDC)
    batch = uuid.uuid4().bytes * 2
    kit.settle([(alice, -ONE_USDC)], fees=ONE_USDC, batch_id=batch)
    before = kit.snapshot([alice])
    implementation = client.deploy(kit.w3, load("VaultV2Mock"), key=kit.admin_key)
    v = kit.vault.functions
    # Action: a non-upgrader, then a non-UUPS target, then the upgrader.
    kit.expect_revert(
        v.upgradeToAndCall(implementation, b""), kit.settler_key, "AccessControlUnauthorizedAccount"
    )
    kit.expect_revert(
        v.upgradeToAndCall(kit.exchange.usdc, b""), kit.admin_key, "ERC1967InvalidImplementation"
    )
    impl = client.bind(kit.w3, load("Vault"), kit.exchange.vault_implementation)
    kit.expect_revert(
        impl.functions.upgradeToAndCall(implementation, b""), kit.admin_key, "UUPSUnauthorizedCallContext"
    )
    kit.send(v.upgradeToAndCall(implementation, b""), kit.admin_key)
    # Expectation: the same state through the proxy, the spent batch still spent, V2's function.
    kit.bind(kit.exchange.vault, "VaultV2Mock")
    assert kit.snapshot([alice]) == before
    assert kit.vault.functions.v2().call() == "VaultV2Mock"
    kit.expect_revert(kit.settle_call([], batch_id=batch), kit.settler_key, "BatchAlreadySettled")


# -- deploy CLI ----------------------------------------------------------------------------------------


def test_deploy_cli_records_the_exchange_and_keeps_other_keys(
    settings: Settings, w3: Web3, tmp_path: Path
) -> None:
    # State: a deployment file with mock feeds (someone else's keys).
    path = deployments.deployment_path(tmp_path)
    deployments.write(
        path, deployments.Deployment(w3.eth.chain_id, {"BTC-USD": addr(funded_key(w3))}, {"other": 1})
    )
    env = {"CHAIN_DEPLOYER_KEY": funded_key(w3), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cmd = [
        sys.executable,
        "-m",
        "services.chain.deploy",
        "--rpc",
        settings.eth_rpc_url,
        "--deployment",
        str(path),
    ]
    # Action: deploy, then run it again.
    first = subprocess.run(
        cmd, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    body = json.loads(path.read_text())
    second = subprocess.run(
        cmd, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    # Expectation: the keys written, the others kept; the second run keeps the same Vault.
    assert second.returncode == 0 and "kept" in second.stdout
    assert json.loads(path.read_text()) == body
    assert body["other"] == 1 and "BTC-USD" in body["chainlink_feeds"]
    recorded = deploy.read_exchange(path)
    assert recorded is not None and client.has_code(w3, recorded.vault)
    vault = client.bind(w3, load("Vault"), recorded.vault)
    assert vault.functions.hasRole(
        deploy.role_id("SETTLEMENT_ROLE"), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    ).call()
    # And the gateway's settings read the Vault from that file when VAULT_ADDRESS is not set.
    assert Settings(cxpt_run_dir=tmp_path, chain_id=w3.eth.chain_id).vault_address == recorded.vault
