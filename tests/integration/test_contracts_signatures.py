"""One signature, three verifiers: eth-account's typed-data signing (what MetaMask's
eth_signTypedData_v4 produces) must verify in the gateway (services/gateway/core/typed_data.py) and
recover the same signer in the Vault's Solidity library (CxptTypes + EIP712), on the real anvil.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3

from services.chain import client
from services.common.codes import GatewayReject
from services.common.settings import Settings
from services.gateway.core import typed_data as td
from tests.integration.chain import funded_key
from tests.unit.chain.vault_kit import VaultKit, cancel_tuple, order_tuple, withdrawal_tuple

NONCE = 1_795_392_000_000_000


@pytest.fixture(scope="module")
def kit(infra: Any) -> VaultKit:
    w3 = client.connect(infra.eth_rpc_url)

    def funded() -> str:
        return funded_key(w3)

    return VaultKit(w3, funded(), funded(), new_key=funded)


def metamask_sign(kit: VaultKit, struct: td.Struct, key: str) -> bytes:
    """eth_signTypedData_v4 as a wallet does it: the full JSON message, signed by eth-account."""
    full = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **struct.message_types(),
        },
        "primaryType": struct.PRIMARY_TYPE,
        "domain": kit.domain.as_eip712(),
        "message": struct.message(),
    }
    return bytes(Account.sign_typed_data(key, full_message=full).signature)


def structs(trader: str) -> list[tuple[td.Struct, str, tuple[Any, ...]]]:
    order = td.Order(
        trader=trader, market="BTC-PERP", order_id=uuid.uuid4(), client_order_id="c-ü1",
        side=td.SideCode.SELL,
        order_type=td.OrderTypeCode.LIMIT, price=-650_005, size=3, time_in_force=td.TimeInForceCode.GTT,
        post_only=True, reduce_only=False, expire_at=NONCE + 5, stp=td.StpCode.CANCEL_BOTH, nonce=NONCE,
        deadline=NONCE + 60_000_000,
    )  # fmt: skip
    cancel = td.Cancel(
        trader=trader,
        market="ETH-PERP",
        order_id=None,
        client_order_id="mine-7",
        nonce=NONCE + 1,
        deadline=NONCE + 2,
    )
    withdrawal = td.Withdrawal(
        trader=trader,
        withdrawal_id=uuid.uuid4(),
        amount=123_456_789,
        as_cxpt=True,
        nonce=NONCE + 3,
        deadline=2**64 - 1,
    )
    return [
        (order, "hashOrder", order_tuple(order)),
        (cancel, "hashCancel", cancel_tuple(cancel)),
        (withdrawal, "hashWithdrawal", withdrawal_tuple(withdrawal)),
    ]


def test_a_wallet_signature_verifies_in_the_gateway_and_in_the_vault(kit: VaultKit) -> None:
    # State: a trader's key; an Order, a Cancel and a Withdrawal with awkward values (negative
    # price, non-ASCII client id, optional members absent, the largest uint64 deadline).
    key = kit.new_key()
    trader = client.address_of(key).lower()
    for struct, view, args in structs(trader):
        # Action: sign as a wallet does.
        signature = metamask_sign(kit, struct, key)
        # Expectation: the same bytes as the gateway's own signing, accepted by the gateway, and
        # the Vault computes the same struct hash and digest and recovers the same signer.
        assert signature == td.sign(kit.domain, struct, key)
        assert td.verify(kit.domain, struct, signature) == trader
        struct_hash = td.struct_hash(struct)
        assert getattr(kit.vault.functions, view)(args).call() == struct_hash, view
        assert kit.vault.functions.hashTypedData(struct_hash).call() == td.digest(kit.domain, struct)
        assert kit.vault.functions.recoverSigner(struct_hash, signature).call().lower() == trader


def test_every_struct_hashes_alike_on_chain_and_in_the_gateway(kit: VaultKit) -> None:
    # State: one of each remaining struct. Expectation: the Vault's struct hashes equal the gateway's.
    trader = client.address_of(kit.new_key()).lower()
    cancel_all = td.CancelAll(trader=trader, market=None, side=None, nonce=NONCE, deadline=NONCE + 1)
    amend = td.Amend(
        trader=trader, market="BTC-PERP", order_id=uuid.uuid4(), new_price=None, new_size=-4, nonce=NONCE,
        deadline=NONCE + 1,
    )  # fmt: skip
    session = td.Session(trader=trader, nonce=NONCE, deadline=NONCE + 1)
    v = kit.vault.functions
    checksum = Web3.to_checksum_address(trader)
    assert v.hashCancelAll((checksum, "", 0, NONCE, NONCE + 1)).call() == td.struct_hash(cancel_all)
    amend_args = (checksum, "BTC-PERP", amend.order_id.bytes, 0, -4, NONCE, NONCE + 1)
    assert v.hashAmend(amend_args).call() == td.struct_hash(amend)
    assert v.hashSession((checksum, NONCE, NONCE + 1)).call() == td.struct_hash(session)
    # The domain separator too, and the type hashes are the type strings' (docs/signing.md).
    assert v.domainSeparator().call() == td.domain_separator(kit.domain)
    assert td.type_hash("Withdrawal") == keccak(text=td.WITHDRAWAL_TYPE)


def test_a_malleable_or_foreign_signature_is_refused_alike(kit: VaultKit) -> None:
    # State: a valid withdrawal signature, its high-s twin and one under another chain id.
    key = kit.new_key()
    trader = client.address_of(key).lower()
    struct, _, _ = structs(trader)[2]
    signature = td.sign(kit.domain, struct, key)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    twin = r + (td.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    other_chain = td.ExchangeDomain(chain_id=1, verifying_contract=kit.domain.verifying_contract)
    foreign = td.sign(other_chain, struct, key)
    # Expectation: the gateway says MALLEABLE_SIGNATURE / SIGNER_MISMATCH; the Vault reverts
    # ECDSAInvalidSignatureS / recovers someone else.
    assert td.verify(kit.domain, struct, twin) == td.SignatureRejected(GatewayReject.MALLEABLE_SIGNATURE)
    kit.expect_revert(
        kit.vault.functions.recoverSigner(td.struct_hash(struct), twin), key, "ECDSAInvalidSignatureS"
    )
    assert td.verify(kit.domain, struct, foreign) == td.SignatureRejected(GatewayReject.SIGNER_MISMATCH)
    assert kit.vault.functions.recoverSigner(td.struct_hash(struct), foreign).call().lower() != trader


def test_settings_fixture_is_the_same_anvil(settings: Settings, kit: VaultKit) -> None:
    # The module's deployment lives on the chain the other integration tests use.
    assert client.connect(settings.eth_rpc_url).eth.chain_id == kit.w3.eth.chain_id
