"""The Vault as settlement uses it, over web3: reads, simulations, and signed transactions with
explicit nonces, EIP-1559 fees, retries of transient RPC errors and confirmation depth.

* **Nonces.** One key, one sender: the next nonce is the chain's *pending* count when first needed
  (so transactions a killed predecessor left in the mempool are counted), then incremented locally
  after each accepted send. A node answering "nonce too low" for a transaction it does not know
  makes the manager forget its count and read it again.
* **Fees.** `maxPriorityFeePerGas` = SETTLEMENT_PRIORITY_FEE_GWEI; `maxFeePerGas` = 2 × the latest
  base fee + the priority fee (room for the base fee to double before inclusion), capped at
  SETTLEMENT_MAX_FEE_GWEI. Gas limit: the node's estimate + 20 % + 10,000.
* **Stuck transactions.** One not mined SETTLEMENT_STUCK_AFTER_S after its send (the base fee rose
  past its cap) is replaced (`replace`): the same call and nonce, both fees raised by 12.5 % (the
  least most nodes accept for a replacement, geth's rule being 10 %) or to the market's, if higher,
  within the cap. Every hash sent for a nonce is kept: whichever is mined is the one that counts.
* **Retries.** Connection errors, timeouts, HTTP 429 and 5xx are retried SETTLEMENT_RPC_RETRIES
  times with exponential back-off (0.2 s, 0.4 s, … ≤ 5 s). Sending the same signed transaction twice
  is harmless (same hash): "already known" ("already imported" on anvil), or "nonce too low" for a
  transaction the node has, means it was sent.
* **Reverts** are decoded against the Vault's ABI (custom errors, OpenZeppelin's included) into a
  `Revert(name, args)`; simulating (`eth_call`) before sending avoids paying for a certain revert.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import Nonce, TxParams, Wei

from services.chain.artifacts import Artifact
from services.settlement.core import Batch, PendingWithdrawal

log = logging.getLogger(__name__)

GWEI = 10**9
_T = TypeVar("_T")


class ChainUnavailable(RuntimeError):
    """The RPC kept failing after every retry."""


class FeeRefused(RuntimeError):
    """The node refused a transaction for its fee: its cap is below the base fee, or a replacement
    does not pay enough more. Nothing was sent; try again later or raise SETTLEMENT_MAX_FEE_GWEI."""


@dataclass(frozen=True, slots=True)
class Revert:
    """Why a call reverts: the custom error's name and arguments (or Error(string), Panic, unknown)."""

    name: str
    args: tuple[Any, ...] = ()
    raw: str = ""

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.args))})"


@dataclass(frozen=True, slots=True)
class Sent:
    """A transaction the node accepted."""

    tx_hash: str
    nonce: int
    max_fee_wei: int = 0
    priority_fee_wei: int = 0
    replaces: tuple[str, ...] = ()
    """Earlier sends of the same call with this nonce, at lower fees: any of them may be mined."""

    @property
    def hashes(self) -> tuple[str, ...]:
        """This send's hash first, then those it replaces."""
        return (self.tx_hash, *self.replaces)


@dataclass(frozen=True, slots=True)
class Mined:
    """A transaction's receipt, and how deep it is."""

    tx_hash: str
    block_number: int
    gas_used: int
    succeeded: bool
    depth: int
    """Blocks from its own to the latest, both included (1 = just mined)."""


@dataclass(frozen=True, slots=True)
class GasPolicy:
    """EIP-1559 settings (module docstring)."""

    max_fee_wei: int
    priority_fee_wei: int


class NonceManager:
    """The next nonce of one sender: the pending count once, then local increments."""

    def __init__(self, read_pending: Callable[[], int]) -> None:
        self._read_pending = read_pending
        self._next: int | None = None

    def peek(self) -> int:
        """The nonce the next transaction takes."""
        if self._next is None:
            self._next = self._read_pending()
        return self._next

    def used(self, nonce: int) -> None:
        """A transaction with `nonce` was accepted by the node."""
        self._next = max(self.peek(), nonce + 1)

    def forget(self) -> None:
        """Read the chain's count again before the next transaction."""
        self._next = None


class VaultClient:
    """Settlement's calls to one Vault, signed by the settlement key."""

    def __init__(
        self,
        w3: Web3,
        artifact: Artifact,
        address: str,
        key: str,
        *,
        gas: GasPolicy,
        retries: int = 5,
        from_block: int = 0,
        backoff_s: float = 0.2,
    ) -> None:
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)
        self.address = self.contract.address
        self._key = key
        self.sender = Web3.to_checksum_address(Account.from_key(key).address)
        self.gas = gas
        self.retries = retries
        self.from_block = from_block
        self._backoff_s = backoff_s
        self.chain_id = self._rpc(lambda: w3.eth.chain_id)
        self.nonces = NonceManager(
            lambda: self._rpc(lambda: w3.eth.get_transaction_count(self.sender, "pending"))
        )
        self._errors = _error_table(artifact.abi)

    # -- reads -----------------------------------------------------------------------------------

    def batch_settled(self, batch_id: str) -> bool:
        return bool(self._rpc(lambda: self.contract.functions.batchSettled(HexBytes(batch_id)).call()))

    def withdrawal_paid(self, withdrawal_id: str) -> bool:
        wid = uuid.UUID(withdrawal_id).bytes
        return bool(self._rpc(lambda: self.contract.functions.withdrawalPaid(wid).call()))

    def balance_of(self, trader: str) -> int:
        return int(
            self._rpc(lambda: self.contract.functions.balanceOf(Web3.to_checksum_address(trader)).call())
        )

    def exchange_accounts(self) -> tuple[int, int, int]:
        fees, clearing, insurance = self._rpc(lambda: self.contract.functions.exchangeAccounts().call())
        return int(fees), int(clearing), int(insurance)

    def latest(self) -> tuple[int, int]:
        """(number, time in µs) of the latest block."""
        block = self._rpc(lambda: self.w3.eth.get_block("latest"))
        return int(block["number"]), int(block["timestamp"]) * 1_000_000

    def settled_by(self, batch_id: str) -> str | None:
        """The transaction whose `BatchSettled` names `batch_id`, if any (from the deployment block)."""
        event = self.contract.events.BatchSettled()
        logs = self._rpc(
            lambda: event.get_logs(
                from_block=self.from_block, argument_filters={"batchId": HexBytes(batch_id)}
            )
        )
        return logs[0]["transactionHash"].to_0x_hex() if logs else None

    def mined_any(self, sent: Sent) -> Mined | None:
        """The receipt of whichever of `sent`'s hashes was mined (one at most: they share a nonce)."""
        for tx_hash in sent.hashes:
            mined = self.mined(tx_hash)
            if mined is not None:
                return mined
        return None

    def pending(self, tx_hash: str) -> Sent | None:
        """`tx_hash` as a `Sent` if the node holds it unmined (its nonce and fees), else None."""
        try:
            tx = self._rpc(lambda: self.w3.eth.get_transaction(HexBytes(tx_hash)))
        except TransactionNotFound:
            return None
        if tx.get("blockNumber") is not None:
            return None
        return Sent(tx_hash, int(tx["nonce"]), int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"]))

    def mined(self, tx_hash: str) -> Mined | None:
        """The receipt of `tx_hash` and its depth; None while it is not mined (or was reorganised out)."""
        try:
            receipt = self._rpc(lambda: self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
        except TransactionNotFound:
            return None
        latest, _ = self.latest()
        block = int(receipt["blockNumber"])
        return Mined(
            tx_hash=tx_hash,
            block_number=block,
            gas_used=int(receipt["gasUsed"]),
            succeeded=receipt["status"] == 1,
            depth=latest - block + 1,
        )

    # -- settle ----------------------------------------------------------------------------------

    def settle_call(self, batch_id: str, batch: Batch) -> ContractFunction:
        traders = [Web3.to_checksum_address(t) for t, _ in batch.deltas]
        deltas = [d for _, d in batch.deltas]
        return self.contract.functions.settle(
            HexBytes(batch_id), traders, deltas, batch.fees_delta, batch.clearing_delta, batch.insurance_delta
        )

    def withdraw_call(self, w: PendingWithdrawal) -> ContractFunction:
        struct = (
            Web3.to_checksum_address(w.trader),
            uuid.UUID(w.withdrawal_id).bytes,
            w.amount,
            w.as_cxpt,
            w.nonce,
            w.expire_at,
        )
        return self.contract.functions.withdraw(struct, w.signature)

    def simulate(self, call: ContractFunction) -> Revert | None:
        """How `call` would revert if sent now from the settlement key, or None if it would not."""
        try:
            self._rpc(lambda: call.call({"from": self.sender}))
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            return self._decode(exc)
        return None

    def submit(self, call: ContractFunction) -> Sent | Revert:
        """Simulate `call`, then send it: the transaction sent, or how it reverts (at either step).
        Raises FeeRefused if the node will not take it at the fees allowed."""
        revert = self.simulate(call)
        if revert is not None:
            return revert
        try:
            return self.send(call)
        except RevertedError as exc:
            return exc.revert

    def send(self, call: ContractFunction) -> Sent:
        """Sign and send `call` with the next nonce (module docstring); raises on a revert at estimate."""
        gas = self._gas_limit(call)
        max_fee, priority = self._fees()
        for _ in range(3):
            nonce = self.nonces.peek()
            signed = self._signed(call, nonce, gas, max_fee, priority)
            try:
                self._send_raw(signed)
            except Web3RPCError as exc:
                text = str(exc).lower()
                if not ("nonce too low" in text or "nonce too high" in text):
                    raise
                log.warning("settlement: nonce %s refused (%s); reading the pending count again", nonce, exc)
                self.nonces.forget()
                continue
            self.nonces.used(nonce)
            return Sent(signed.hash.to_0x_hex(), nonce, max_fee, priority)
        raise ChainUnavailable(f"no nonce accepted for {call.fn_name} after 3 tries")

    def replace(self, call: ContractFunction, stuck: Sent) -> Sent | None:
        """Send `call` again with `stuck`'s nonce and higher fees (module docstring); None when the
        fees are already at the cap, or the nonce has been mined meanwhile (`mined_any` finds it)."""
        market_fee, market_priority = self._fees()
        max_fee = min(self.gas.max_fee_wei, max(market_fee, bumped_fee(stuck.max_fee_wei)))
        priority = min(max_fee, max(market_priority, bumped_fee(stuck.priority_fee_wei)))
        if max_fee <= stuck.max_fee_wei:
            return None
        try:
            gas = self._gas_limit(call)
        except RevertedError:  # the stuck one's effect is already on-chain (e.g. the batch settled)
            return None
        signed = self._signed(call, stuck.nonce, gas, max_fee, priority)
        try:
            self._send_raw(signed)
        except FeeRefused:
            return None
        except Web3RPCError as exc:
            if "nonce too low" in str(exc).lower():
                return None
            raise
        return Sent(signed.hash.to_0x_hex(), stuck.nonce, max_fee, priority, replaces=stuck.hashes)

    # -- internals -------------------------------------------------------------------------------

    def _gas_limit(self, call: ContractFunction) -> int:
        """The node's estimate + 20 % + 10,000; raises RevertedError if the call would revert."""
        try:
            estimate = int(self._rpc(lambda: call.estimate_gas({"from": self.sender})))
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            raise RevertedError(self._decode(exc)) from exc
        return estimate * 12 // 10 + 10_000

    def _signed(self, call: ContractFunction, nonce: int, gas: int, max_fee: int, priority: int) -> Any:
        params: TxParams = {
            "from": self.sender,
            "chainId": self.chain_id,
            "nonce": Nonce(nonce),
            "gas": gas,
            "maxFeePerGas": Wei(max_fee),
            "maxPriorityFeePerGas": Wei(priority),
        }
        return Account.sign_transaction(call.build_transaction(params), self._key)

    def _send_raw(self, signed: Any) -> None:
        """Send a signed transaction; a node that already holds it ("already known", anvil's
        "already imported", or "nonce too low" for a hash it has) means a retry reached it."""
        try:
            self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        except Web3RPCError as exc:
            text = str(exc).lower()
            if "already known" in text or "already imported" in text:
                return
            if "nonce too low" in text and self._known(signed.hash.to_0x_hex()):
                return
            if "base fee" in text or "underpriced" in text:
                raise FeeRefused(str(exc)) from exc
            raise

    def _fees(self) -> tuple[int, int]:
        block = self._rpc(lambda: self.w3.eth.get_block("latest"))
        base = int(block.get("baseFeePerGas", 0))
        max_fee = min(self.gas.max_fee_wei, 2 * base + self.gas.priority_fee_wei)
        return max_fee, min(self.gas.priority_fee_wei, max_fee)

    def _known(self, tx_hash: str) -> bool:
        try:
            self._rpc(lambda: self.w3.eth.get_transaction(HexBytes(tx_hash)))
        except TransactionNotFound:
            return False
        return True

    def _rpc(self, fn: Callable[[], _T]) -> _T:
        """`fn()`, retried on transient transport errors with exponential back-off."""
        delay = self._backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
                error: Exception = exc
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status != 429 and status < 500:
                    raise
                error = exc
            if attempt == self.retries:
                raise ChainUnavailable(f"RPC failed {self.retries + 1} times: {error}") from error
            log.warning("settlement: transient RPC error (%s); retry in %.1f s", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _decode(self, exc: Exception) -> Revert:
        data = getattr(exc, "data", None)
        raw = data if isinstance(data, str) else ""
        if raw.startswith("0x") and len(raw) >= 10:
            found = self._errors.get(raw[2:10].lower())
            if found is not None:
                name, types = found
                try:
                    return Revert(name, tuple(abi_decode(types, bytes.fromhex(raw[10:]))), raw)
                except Exception:  # noqa: BLE001 - malformed arguments: keep the name
                    return Revert(name, (), raw)
        message = getattr(exc, "message", None) or str(exc)
        return Revert(type(exc).__name__, (str(message)[:300],), raw)


class RevertedError(RuntimeError):
    """The node's gas estimate says the call reverts."""

    def __init__(self, revert: Revert) -> None:
        super().__init__(str(revert))
        self.revert = revert


def bumped_fee(fee_wei: int) -> int:
    """`fee_wei` + 12.5 %, rounded up (a replacement must pay strictly more)."""
    return fee_wei + -(-fee_wei // 8) if fee_wei else 1


def _error_table(abi: list[dict[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    """Custom-error selector (8 hex digits) → (name, argument types), from an ABI."""
    table = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [_abi_type(i) for i in entry.get("inputs", [])]
        signature = f"{entry['name']}({','.join(types)})"
        table[keccak(text=signature)[:4].hex()] = (entry["name"], types)
    return table


def _abi_type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + kind[len("tuple") :]
    return kind
