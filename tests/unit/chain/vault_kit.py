"""A deployed exchange (MockUSDC, CXPT, Vault behind its proxy) and the moves tests make on it.

Works on any Web3: py-evm in process (`pyevm_chain`, for unit and property tests) or the real anvil
(tests/integration/test_contracts_*.py, with fresh accounts funded by anvil_setBalance).
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from services.chain import client, deploy
from services.chain.artifacts import load
from services.gateway.core import typed_data as td

ONE_USDC = 1_000_000
SHARES_PER_UNIT = 10**6
"""Shares per micro-USDC (the Vault's virtual offset, 10**SHARE_DECIMALS_OFFSET)."""


def key_hex(account: Any) -> str:
    return "0x" + bytes(account.key).hex()


def pyevm_chain() -> tuple[Web3, list[str]]:
    """A fresh in-process py-evm chain and the keys of its ten funded accounts."""
    from eth_tester import EthereumTester, PyEVMBackend

    backend = PyEVMBackend()
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    return w3, [
        "0x" + bytes(k).hex() if not hasattr(k, "to_hex") else k.to_hex() for k in backend.account_keys
    ]


def error_selector(abi: Sequence[Any], name: str) -> str:
    """0x-hex of the 4-byte selector of custom error `name` in `abi`."""
    if name == "Panic":  # Solidity's built-in Panic(uint256): overflow, division by zero, …
        return "0x4e487b71"
    for entry in abi:
        if entry.get("type") == "error" and entry["name"] == name:
            types = ",".join(_abi_type(i) for i in entry["inputs"])
            return "0x" + keccak(text=f"{name}({types})")[:4].hex()
    raise KeyError(f"no error {name} in the ABI")


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return str(item["type"])


def revert_data(call: ContractFunction, sender: str) -> str:
    """The revert data of `call` sent by `sender` (eth_call); fails the test if it does not revert."""
    try:
        call.call({"from": Web3.to_checksum_address(sender)})
    except ContractLogicError as error:  # anvil: custom errors and panics carry their data
        return str(error.data)
    except Exception as error:  # py-evm: TransactionFailed("execution reverted: b'<revert data>'")
        text = str(error.args[0]) if error.args else ""
        literal = text.removeprefix("execution reverted: ")
        if not literal.startswith(("b'", 'b"')):
            raise
        return "0x" + bytes(ast.literal_eval(literal)).hex()
    raise AssertionError(f"{call.fn_name} did not revert")


@dataclass
class VaultKit:
    """One exchange deployment plus the keys that drive it."""

    w3: Web3
    admin_key: str
    settler_key: str
    new_key: Callable[[], str]
    """A fresh funded account's key (gas money only)."""
    exchange: deploy.ExchangeDeployment = field(init=False)
    vault: Contract = field(init=False)
    usdc: Contract = field(init=False)
    cxpt: Contract = field(init=False)
    domain: td.ExchangeDomain = field(init=False)
    _nonce: int = field(default=1_795_392_000_000_000, init=False)

    def __post_init__(self) -> None:
        self.exchange = deploy.deploy_exchange(
            self.w3, admin_key=self.admin_key, settlement_address=client.address_of(self.settler_key)
        )
        self.bind(self.exchange.vault)

    def bind(self, vault: str, abi_of: str = deploy.VAULT) -> None:
        self.vault = client.bind(self.w3, load(abi_of), vault)
        self.usdc = client.bind(self.w3, load(deploy.MOCK_USDC), self.exchange.usdc)
        self.cxpt = client.bind(self.w3, load(deploy.CXPT), self.exchange.cxpt)
        self.domain = td.ExchangeDomain(
            chain_id=self.exchange.chain_id, verifying_contract=self.exchange.vault
        )

    # -- moves -----------------------------------------------------------------------------------

    def send(self, call: ContractFunction, key: str, *, gas: int | None = None) -> TxReceipt:
        """Send `call` signed by `key`; `gas` instead of the node's estimate when given."""
        if gas is None:
            return client.transact(self.w3, call, key=key)
        sender = client.address_of(key)
        tx = call.build_transaction(
            {"from": sender, "nonce": self.w3.eth.get_transaction_count(sender), "gas": gas}
        )
        signed = self.w3.eth.account.sign_transaction(tx, key)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        assert receipt["status"] == 1, f"{call.fn_name} reverted"
        return receipt

    def expect_revert(self, call: ContractFunction, sender_key_or_address: str, error: str) -> None:
        sender = (
            sender_key_or_address
            if len(sender_key_or_address) == 42
            else client.address_of(sender_key_or_address)
        )
        data = revert_data(call, sender)
        abi = [*self.vault.abi, *self.cxpt.abi, *self.usdc.abi, *load(deploy.SYNTH).abi]
        assert data.startswith(error_selector(abi, error)), (error, data)

    def deposit(self, key: str, amount: int, trader: str | None = None) -> TxReceipt:
        """Mint `amount` MockUSDC to `key`'s account, approve, deposit for `trader` (default: key's)."""
        owner = client.address_of(key)
        self.send(self.usdc.functions.mint(owner, amount), key)
        self.send(self.usdc.functions.approve(self.vault.address, amount), key)
        return self.send(self.vault.functions.deposit(Web3.to_checksum_address(trader or owner), amount), key)

    def donate(self, key: str, amount: int) -> None:
        """USDC sent to the Vault without `deposit`."""
        self.send(self.usdc.functions.mint(self.vault.address, amount), key)

    def settle_call(
        self,
        deltas: Sequence[tuple[str, int]],
        fees: int = 0,
        clearing: int = 0,
        insurance: int = 0,
        batch_id: bytes | None = None,
    ) -> ContractFunction:
        return self.vault.functions.settle(
            batch_id or uuid.uuid4().bytes + bytes(16),
            [_address(t) for t, _ in deltas],
            [d for _, d in deltas],
            fees,
            clearing,
            insurance,
        )

    def settle(self, deltas: Sequence[tuple[str, int]], fees: int = 0, clearing: int = 0, insurance: int = 0,
               batch_id: bytes | None = None) -> TxReceipt:  # fmt: skip
        return self.send(self.settle_call(deltas, fees, clearing, insurance, batch_id), self.settler_key)

    def chain_now_us(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"]) * 1_000_000

    def next_nonce(self) -> int:
        self._nonce += 1
        return self._nonce

    def withdrawal(
        self,
        trader_key: str,
        amount: int,
        *,
        as_cxpt: bool = False,
        deadline: int | None = None,
        withdrawal_id: uuid.UUID | None = None,
        signer_key: str | None = None,
    ) -> tuple[td.Withdrawal, tuple[Any, ...], bytes]:
        """A Withdrawal the trader signed (by `signer_key` if given): struct, ABI tuple, signature."""
        struct = td.Withdrawal(
            trader=client.address_of(trader_key),
            withdrawal_id=withdrawal_id or uuid.uuid4(),
            amount=amount,
            as_cxpt=as_cxpt,
            nonce=self.next_nonce(),
            deadline=self.chain_now_us() + 3_600_000_000 if deadline is None else deadline,
        )
        signature = td.sign(self.domain, struct, signer_key or trader_key)
        return struct, withdrawal_tuple(struct), signature

    def withdraw(self, trader_key: str, amount: int, *, as_cxpt: bool = False) -> TxReceipt:
        _, args, signature = self.withdrawal(trader_key, amount, as_cxpt=as_cxpt)
        return self.send(self.vault.functions.withdraw(args, signature), self.settler_key)

    # -- views -----------------------------------------------------------------------------------

    def balance(self, who: str) -> int:
        return int(self.vault.functions.balanceOf(_address(who)).call())

    def accounts(self) -> tuple[int, int, int]:
        fees, clearing, insurance = self.vault.functions.exchangeAccounts().call()
        return int(fees), int(clearing), int(insurance)

    def usdc_held(self) -> int:
        return int(self.usdc.functions.balanceOf(self.vault.address).call())

    def snapshot(self, traders: Sequence[str]) -> dict[str, Any]:
        """Every storage-backed view of the Vault, for before/after comparisons."""
        v = self.vault.functions
        return {
            "balances": [self.balance(t) for t in traders],
            "shares": [int(v.sharesOf(_address(t)).call()) for t in traders],
            "accounts": self.accounts(),
            "total_shares": int(v.totalShares().call()),
            "pooled": int(v.pooledAssets().call()),
            "usdc": v.usdc().call(),
            "cxpt": v.cxpt().call(),
            "paused": bool(v.paused().call()),
            "domain": v.domainSeparator().call(),
        }


def withdrawal_tuple(w: td.Withdrawal) -> tuple[Any, ...]:
    return (
        Web3.to_checksum_address(w.trader),
        w.withdrawal_id.bytes,
        w.amount,
        w.as_cxpt,
        w.nonce,
        w.deadline,
    )


def cancel_tuple(c: td.Cancel) -> tuple[Any, ...]:
    return (
        Web3.to_checksum_address(c.trader),
        c.market,
        (c.order_id or uuid.UUID(int=0)).bytes,
        c.client_order_id or "",
        c.nonce,
        c.deadline,
    )


def order_tuple(o: td.Order) -> tuple[Any, ...]:
    m = o.message()
    return (
        Web3.to_checksum_address(o.trader), m["market"], m["orderId"], m["clientOrderId"], m["side"],
        m["orderType"], m["price"], m["size"], m["timeInForce"], m["postOnly"], m["reduceOnly"],
        m["expireAt"], m["stp"], m["nonce"], m["deadline"],
    )  # fmt: skip


def _address(who: str) -> str:
    return Web3.to_checksum_address(who if len(who) == 42 else client.address_of(who))


def new_local_key() -> str:
    return key_hex(Account.create())
