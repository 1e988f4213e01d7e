"""Gas of the Vault's money moves on anvil (receipt gasUsed), through the ERC-1967 proxy.

    python bench/chain_gas.py [--rpc http://127.0.0.1:8545] [--traders 100]

Deploys a fresh exchange (MockUSDC, CXPT, Vault + proxy) with freshly funded accounts
(anvil_setBalance: no shared nonce), then measures:

- deposit: a trader's first deposit (a zero storage slot written) and a later one;
- withdraw: a signed withdrawal paid in USDC, and one paid as CXPT (first CXPT of the trader);
- settle: one batch of N traders who all hold a balance (half credited, half debited, fees and
  CLEARING balancing it), and one batch of N traders new to the Vault (every balance slot fresh).

Ends with one JSON line ``{"bench": "chain_gas", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account
from web3 import Web3

from services.chain import client, deploy
from services.chain.artifacts import load
from services.common.settings import get_settings
from services.gateway.core import typed_data as td

ONE_USDC = 1_000_000


def funded(w3: Web3) -> str:
    account = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10**21)])  # type: ignore[arg-type]
    return "0x" + bytes(account.key).hex()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rpc", default=get_settings().eth_rpc_url)
    parser.add_argument("--traders", type=int, default=100)
    args = parser.parse_args()
    w3 = client.connect(args.rpc)
    admin, settler, payer = funded(w3), funded(w3), funded(w3)
    ex = deploy.deploy_exchange(w3, admin_key=admin, settlement_address=client.address_of(settler))
    vault = client.bind(w3, load(deploy.VAULT), ex.vault)
    usdc = client.bind(w3, load(deploy.MOCK_USDC), ex.usdc)
    domain = td.ExchangeDomain(chain_id=ex.chain_id, verifying_contract=ex.vault)
    gas: dict[str, int] = {}

    def send(call: object, key: str) -> int:
        return int(client.transact(w3, call, key=key)["gasUsed"])  # type: ignore[arg-type]

    big = 10**15
    send(usdc.functions.mint(client.address_of(payer), big), payer)
    send(usdc.functions.approve(ex.vault, big), payer)

    alice_key = funded(w3)
    alice = client.address_of(alice_key)
    gas["deposit_first"] = send(vault.functions.deposit(alice, 1_000 * ONE_USDC), payer)
    gas["deposit_again"] = send(vault.functions.deposit(alice, 1_000 * ONE_USDC), payer)

    now_us = int(w3.eth.get_block("latest")["timestamp"]) * 1_000_000
    for as_cxpt in (False, True):
        w = td.Withdrawal(
            trader=alice, withdrawal_id=uuid.uuid4(), amount=10 * ONE_USDC, as_cxpt=as_cxpt,
            nonce=now_us + as_cxpt, deadline=now_us + 3_600_000_000,
        )  # fmt: skip
        call = vault.functions.withdraw(
            (alice, w.withdrawal_id.bytes, w.amount, w.as_cxpt, w.nonce, w.deadline),
            td.sign(domain, w, alice_key),
        )
        gas["withdraw_cxpt" if as_cxpt else "withdraw_usdc"] = send(call, settler)

    n = args.traders
    holders = [client.address_of(funded(w3)) for _ in range(n)]
    for trader in holders:
        send(vault.functions.deposit(trader, 100 * ONE_USDC), payer)
    deltas = [(ONE_USDC if i % 2 == 0 else -ONE_USDC - 7) for i in range(n)]
    fees = n * 3
    clearing = -(sum(deltas) + fees)
    started = time.perf_counter()
    gas[f"settle_{n}_holders"] = send(
        vault.functions.settle(uuid.uuid4().bytes * 2, holders, deltas, fees, clearing, 0), settler
    )
    settle_s = time.perf_counter() - started
    newcomers = [client.address_of(funded(w3)) for _ in range(n)]
    gas[f"settle_{n}_new_traders"] = send(
        vault.functions.settle(uuid.uuid4().bytes * 2, newcomers, [5] * n, 0, -5 * n, 0), settler
    )
    block_gas_limit = int(w3.eth.get_block("latest")["gasLimit"])
    result = {
        "bench": "chain_gas",
        "chain_id": ex.chain_id,
        **gas,
        f"settle_{n}_holders_per_trader": gas[f"settle_{n}_holders"] // n,
        f"settle_{n}_new_traders_per_trader": gas[f"settle_{n}_new_traders"] // n,
        "settle_wall_s": round(settle_s, 3),
        "block_gas_limit": block_gas_limit,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
