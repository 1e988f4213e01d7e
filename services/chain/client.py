"""web3.py plumbing for the project's own transactions: connect, deploy, send, bind.

Transactions are signed here with a private key (`services.chain.accounts`) and sent raw, so the
same code works against anvil and any remote RPC; nothing relies on anvil's unlocked accounts.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxParams, TxReceipt

from services.chain.artifacts import Artifact, ArtifactError

DEFAULT_TIMEOUT_S = 10.0
"""Per-request HTTP timeout and receipt wait: anvil mines at once; a remote L2 within seconds."""


class TransactionFailedError(RuntimeError):
    """A transaction was mined but reverted (status 0)."""


def connect(rpc_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, retries: bool = True) -> Web3:
    """A Web3 over HTTP to `rpc_url`.

    `retries=False` turns off web3's retry with back-off on connection errors: a poller (the
    oracle) would rather report a failed round at once and try again next round.
    """
    provider = (
        Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s})
        if retries
        else Web3.HTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
        )
    )
    return Web3(provider)


def address_of(key: str) -> ChecksumAddress:
    """The address a private key signs for."""
    return Web3.to_checksum_address(Account.from_key(key).address)


def deploy(w3: Web3, artifact: Artifact, *args: Any, key: str) -> ChecksumAddress:
    """Deploy `artifact` with constructor `args`, signed by `key`; the new contract's address."""
    address, _ = deploy_with_receipt(w3, artifact, *args, key=key)
    return address


def deploy_with_receipt(
    w3: Web3, artifact: Artifact, *args: Any, key: str
) -> tuple[ChecksumAddress, TxReceipt]:
    """`deploy`, also answering the receipt (its block, its gas)."""
    if not artifact.deployable:
        raise ArtifactError(f"{artifact.name} is an interface or abstract contract: nothing to deploy")
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor(*args).build_transaction(_base_tx(w3, key))
    receipt = _send(w3, tx, key, what=f"deploy {artifact.name}")
    address = receipt["contractAddress"]
    if address is None:
        raise TransactionFailedError(f"deploy {artifact.name}: the receipt names no contract address")
    return Web3.to_checksum_address(address), receipt


def bind(w3: Web3, artifact: Artifact, address: str) -> Contract:
    """The contract at `address`, called through `artifact`'s ABI."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)


def transact(w3: Web3, call: ContractFunction, *, key: str) -> TxReceipt:
    """Send a state-changing call signed by `key`; the receipt once mined. Raises if it reverted."""
    tx = call.build_transaction(_base_tx(w3, key))
    return _send(w3, tx, key, what=call.fn_name)


def has_code(w3: Web3, address: str) -> bool:
    """Whether a contract lives at `address` (false after the local chain was reset)."""
    return len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0


def _base_tx(w3: Web3, key: str) -> TxParams:
    sender = address_of(key)
    # "pending": consecutive sends from one process do not wait for each other to be mined.
    return {"from": sender, "nonce": w3.eth.get_transaction_count(sender, "pending")}


def _send(w3: Web3, tx: TxParams, key: str, *, what: str) -> TxReceipt:
    signed = w3.eth.account.sign_transaction(tx, key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEFAULT_TIMEOUT_S)
    if receipt["status"] != 1:
        raise TransactionFailedError(f"{what}: transaction {tx_hash.to_0x_hex()} reverted")
    return receipt
