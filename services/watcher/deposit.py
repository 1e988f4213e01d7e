"""Deposit MockUSDC into the Vault on the local chain: the on-chain way to fund a test trader.

    python -m services.watcher.deposit --trader 0x1111111111111111111111111111111111111111 --usdc 1000

A throwaway payer account gets gas (``anvil_setBalance``) and freshly minted MockUSDC, approves
the Vault and calls ``Vault.deposit(trader, amount)``; then ``WATCHER_CONFIRMATIONS − 1`` empty
blocks are mined (``anvil_mine``: anvil only mines on transactions) so that the watcher sees the
deposit final at once and puts a `DepositConfirmed` on accounts.events, which risk credits.
``--key`` pays from a key of your own instead (it needs gas and is minted the USDC).

Local chain (31337) only: MockUSDC mints for anyone and anvil's cheat methods exist nowhere else.
The Vault and MockUSDC addresses come from the deployment file (``python -m services.chain.deploy``).
Replaces ``python -m services.devtools.credit`` whenever the chain and the watcher run.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD

from services.chain import client, deployments
from services.chain.accounts import LOCAL_CHAIN_ID
from services.chain.artifacts import ArtifactError, load
from services.chain.client import TransactionFailedError
from services.chain.deployments import DeploymentError, deployment_path
from services.common.money import MicroUsdc, format_usdc, usdc_to_micro
from services.common.settings import get_settings
from services.watcher.core import event_id

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_AMOUNT = re.compile(r"^(\d+)(?:\.(\d{1,6}))?$")
VAULT = "Vault"
MOCK_USDC = "MockUSDC"
GAS_WEI = 10**18
"""Gas money given to a throwaway payer: 1 ETH, far more than three transactions use."""


@dataclass(frozen=True, slots=True)
class DepositDone:
    """Where the deposit landed."""

    tx_hash: str
    block_number: int
    log_index: int
    event_id: str
    """The AccountEvent id the watcher will give it."""


def parse_usdc(text: str) -> MicroUsdc:
    """``"1000.5"`` → 1_000_500_000 micro-USDC; raises ValueError unless positive with ≤ 6 decimals."""
    match = _AMOUNT.match(text.strip())
    amount = usdc_to_micro(int(match[1]), match[2] or "") if match else MicroUsdc(0)
    if amount <= 0:
        raise ValueError(f"{text!r} is not a positive USDC amount with at most 6 decimals")
    return amount


def deposit(
    w3: Web3, deployment: Path, trader: str, amount: int, *, key: str | None, mine: int
) -> DepositDone:
    """Mint `amount` MockUSDC to the payer, approve the Vault, deposit for `trader`, mine `mine` blocks."""
    chain_id = int(w3.eth.chain_id)
    if chain_id != LOCAL_CHAIN_ID:
        raise DeploymentError(f"chain {chain_id} is not the local anvil ({LOCAL_CHAIN_ID}): MockUSDC only")
    recorded = deployments.read(deployment)
    extra = recorded.extra if recorded is not None and recorded.chain_id == chain_id else {}
    vault_address, usdc_address = extra.get("vault"), extra.get("usdc")
    known = isinstance(vault_address, str) and isinstance(usdc_address, str)
    if not known or not client.has_code(w3, str(vault_address)):
        raise DeploymentError(
            f"no Vault recorded in {deployment} on this chain; run: python -m services.chain.deploy"
        )
    if key is None:
        account = Account.create()
        key = "0x" + bytes(account.key).hex()
        # A fresh account per deposit: no nonce races with the exchange's keys or other sessions.
        w3.provider.make_request("anvil_setBalance", [account.address, hex(GAS_WEI)])  # type: ignore[arg-type]
    payer = client.address_of(key)
    usdc = client.bind(w3, load(MOCK_USDC), str(usdc_address))
    vault = client.bind(w3, load(VAULT), str(vault_address))
    client.transact(w3, usdc.functions.mint(payer, amount), key=key)
    client.transact(w3, usdc.functions.approve(vault.address, amount), key=key)
    receipt = client.transact(w3, vault.functions.deposit(Web3.to_checksum_address(trader), amount), key=key)
    # DISCARD: the receipt also holds MockUSDC's Transfer log, which is not a Deposited.
    [deposited] = vault.events.Deposited().process_receipt(receipt, errors=DISCARD)
    if mine > 0:
        w3.provider.make_request("anvil_mine", [hex(mine)])  # type: ignore[arg-type]
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    log_index = int(deposited["logIndex"])
    return DepositDone(
        tx_hash, int(receipt["blockNumber"]), log_index, event_id(chain_id, tx_hash, log_index)
    )


def main(argv: list[str] | None = None) -> int:
    """The command line in the module docstring."""
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m services.watcher.deposit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trader", required=True, help="trader credited, 0x + 40 hex digits")
    parser.add_argument("--usdc", required=True, help="amount in USDC, up to 6 decimals, e.g. 1000.5")
    parser.add_argument("--key", help="pay from this private key (default: a throwaway funded account)")
    parser.add_argument(
        "--mine",
        type=int,
        default=max(settings.watcher_confirmations - 1, 0),
        help="empty blocks mined after the deposit (default: WATCHER_CONFIRMATIONS − 1)",
    )
    parser.add_argument("--rpc-url", default=settings.eth_rpc_url, help="default: ETH_RPC_URL")
    parser.add_argument(
        "--deployment",
        type=Path,
        default=deployment_path(settings.cxpt_run_dir),
        help="deployment file (default: <CXPT_RUN_DIR>/deployments/local.json)",
    )
    args = parser.parse_args(argv)
    if not _ADDRESS.match(args.trader):
        parser.error(f"{args.trader!r} is not an address (0x followed by 40 hex digits)")
    try:
        amount = parse_usdc(args.usdc)
    except ValueError as exc:
        parser.error(str(exc))
    trader = args.trader.lower()
    try:
        done = deposit(
            client.connect(args.rpc_url), args.deployment, trader, amount, key=args.key, mine=args.mine
        )
    except (ArtifactError, DeploymentError, TransactionFailedError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"deposited {format_usdc(amount)} USDC for {trader} in block {done.block_number} "
        f"(tx {done.tx_hash}); the watcher emits {done.event_id} once final"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
