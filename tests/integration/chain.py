"""Accounts on the shared anvil for tests: each test signs with its own, so tests side by side (or
other sessions on the same anvil) never race for a nonce."""

from __future__ import annotations

from eth_account import Account
from web3 import Web3

ONE_ETH = 10**18


def funded_key(w3: Web3, eth: int = 100) -> str:
    """The private key (0x-hex) of a new account holding `eth` ETH, set directly in anvil's state
    (`anvil_setBalance`: no transaction, no nonce)."""
    account = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(eth * ONE_ETH)])  # type: ignore[arg-type]
    return "0x" + bytes(account.key).hex()
