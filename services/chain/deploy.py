"""Deploy the exchange's contracts and record them in the deployment file.

    python -m services.chain.deploy              # deploy unless the file's Vault still has code (idempotent)
    python -m services.chain.deploy --force      # always deploy a new set
    python -m services.chain.deploy --rpc URL --settlement 0x… --usdc 0x…

What `deploy_exchange` does, signed by the admin key (docs/contracts.md, "Deploying"):

1. `MockUSDC` when no USDC address is given (local chains only);
2. `CXPT` (the deployer may wire its minter once);
3. the `Vault` implementation (its initialisers disabled);
4. a `VaultProxy` (ERC-1967) whose constructor calls ``Vault.initialize(admin, settlement, usdc,
   cxpt)`` — the proxy address *is* the Vault: the EIP-712 verifying contract, the CXPT minter and
   the CREATE2 deployer of synths;
5. ``CXPT.setMinter(proxy)``;
6. ``Vault.setTreasury(treasury)`` (default: the admin), where CXPT withdrawals' USDC goes.

The deployment file gets the keys ``vault``, ``vault_implementation``, ``vault_block``, ``usdc`` and
``cxpt``; other keys (``chainlink_feeds``, …) are kept. ``vault_block`` is the block of the proxy's
deployment: where a chain watcher starts reading the Vault's events.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3

from services.chain import client, deployments
from services.chain.accounts import (
    DEPLOYER_KEY_ENV,
    SETTLEMENT_KEY_ENV,
    MissingKeyError,
    signing_key,
)
from services.chain.artifacts import ArtifactError, load
from services.chain.client import TransactionFailedError
from services.chain.deployments import DeploymentError
from services.common.settings import get_settings

VAULT = "Vault"
PROXY = "VaultProxy"
CXPT = "CXPT"
MOCK_USDC = "MockUSDC"
SYNTH = "SynthERC20"

ROLES = ("DEFAULT_ADMIN_ROLE", "SETTLEMENT_ROLE", "PAUSER_ROLE", "UPGRADER_ROLE")

_KEYS = ("vault", "vault_implementation", "vault_block", "usdc", "cxpt")
"""The deployment-file keys this module owns."""


@dataclass(frozen=True, slots=True)
class ExchangeDeployment:
    """Where the exchange's contracts live on one chain."""

    vault: ChecksumAddress
    """The Vault's proxy: the address everyone uses (EIP-712 verifying contract, CXPT minter)."""
    vault_implementation: ChecksumAddress
    """The logic contract behind the proxy (changes with each upgrade)."""
    usdc: ChecksumAddress
    cxpt: ChecksumAddress
    chain_id: int
    block: int
    """Block in which the proxy was deployed (and initialised)."""

    def file_keys(self) -> dict[str, Any]:
        """The deployment-file keys for this deployment (``chain_id`` apart)."""
        return {
            "vault": self.vault,
            "vault_implementation": self.vault_implementation,
            "vault_block": self.block,
            "usdc": self.usdc,
            "cxpt": self.cxpt,
        }


def role_id(name: str) -> bytes:
    """The AccessControl role id: 32 zero bytes for DEFAULT_ADMIN_ROLE, else keccak256(name)."""
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r}; one of {', '.join(ROLES)}")
    return bytes(32) if name == "DEFAULT_ADMIN_ROLE" else keccak(text=name)


def deploy_exchange(
    w3: Web3, *, admin_key: str, settlement_address: str, usdc: str | None = None, treasury: str | None = None
) -> ExchangeDeployment:
    """Deploy (MockUSDC,) CXPT, the Vault implementation and its initialised proxy; wire CXPT's minter.

    `admin_key` signs everything and its address receives DEFAULT_ADMIN_ROLE, PAUSER_ROLE and
    UPGRADER_ROLE; `settlement_address` receives SETTLEMENT_ROLE. Without `usdc`, a MockUSDC (free
    mint, 6 decimals) is deployed: only sensible on a local chain. `treasury` (default: the admin)
    receives the USDC of withdrawals paid as CXPT, which backs the CXPT supply.
    """
    admin = client.address_of(admin_key)
    settlement = Web3.to_checksum_address(settlement_address)
    usdc_address = (
        client.deploy(w3, load(MOCK_USDC), key=admin_key) if usdc is None else Web3.to_checksum_address(usdc)
    )
    cxpt_artifact = load(CXPT)
    cxpt = client.deploy(w3, cxpt_artifact, key=admin_key)
    vault_artifact = load(VAULT)
    implementation = client.deploy(w3, vault_artifact, key=admin_key)
    init = w3.eth.contract(abi=vault_artifact.abi).encode_abi(
        "initialize", [admin, settlement, usdc_address, cxpt]
    )
    proxy, receipt = client.deploy_with_receipt(w3, load(PROXY), implementation, init, key=admin_key)
    client.transact(w3, client.bind(w3, cxpt_artifact, cxpt).functions.setMinter(proxy), key=admin_key)
    vault = client.bind(w3, vault_artifact, proxy)
    client.transact(
        w3, vault.functions.setTreasury(Web3.to_checksum_address(treasury or admin)), key=admin_key
    )
    return ExchangeDeployment(
        vault=proxy,
        vault_implementation=implementation,
        usdc=usdc_address,
        cxpt=cxpt,
        chain_id=w3.eth.chain_id,
        block=int(receipt["blockNumber"]),
    )


def synth_address(vault: str, symbol: str) -> ChecksumAddress:
    """Where `vault` deploys (or deployed) `symbol`'s SynthERC20: the Vault's `synthAddress(symbol)`.

    CREATE2: keccak256(0xff ‖ vault ‖ keccak256(symbol) ‖ keccak256(init code))[12:], the init code
    being SynthERC20's creation code followed by the ABI-encoded constructor argument (the symbol).
    The creation code is the compiled artifact's, which the Vault's implementation embeds: both come
    from one build.
    """
    creation = bytes.fromhex(load(SYNTH).bytecode.removeprefix("0x"))
    init_code_hash = keccak(creation + abi_encode(["string"], [symbol]))
    salt = keccak(text=symbol)
    raw = keccak(b"\xff" + bytes.fromhex(vault.removeprefix("0x")) + salt + init_code_hash)
    return Web3.to_checksum_address(raw[12:])


def read_exchange(path: Path) -> ExchangeDeployment | None:
    """The exchange recorded in the deployment file at `path`, or None if it records none."""
    deployment = deployments.read(path)
    if deployment is None or "vault" not in deployment.extra:
        return None
    extra = deployment.extra
    try:
        return ExchangeDeployment(
            vault=Web3.to_checksum_address(extra["vault"]),
            vault_implementation=Web3.to_checksum_address(extra["vault_implementation"]),
            usdc=Web3.to_checksum_address(extra["usdc"]),
            cxpt=Web3.to_checksum_address(extra["cxpt"]),
            chain_id=deployment.chain_id,
            block=int(extra["vault_block"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DeploymentError(f"{path}: incomplete exchange entry ({exc!r})") from exc


def record(path: Path, exchange: ExchangeDeployment) -> None:
    """Write `exchange`'s keys into the deployment file at `path`, keeping every other key."""
    current = deployments.read(path) or deployments.Deployment(chain_id=exchange.chain_id)
    if current.chain_id != exchange.chain_id:
        raise DeploymentError(f"{path} describes chain {current.chain_id}, not chain {exchange.chain_id}")
    extra = {k: v for k, v in current.extra.items() if k not in _KEYS} | exchange.file_keys()
    deployments.write(path, deployments.Deployment(current.chain_id, dict(current.chainlink_feeds), extra))


def ensure_exchange(
    w3: Web3,
    path: Path,
    *,
    admin_key: str,
    settlement_address: str,
    usdc: str | None = None,
    force: bool = False,
) -> tuple[ExchangeDeployment, bool]:
    """The recorded exchange if its Vault still has code on this chain (and not `force`), else a new
    one, recorded. Returns (deployment, newly deployed)."""
    known = read_exchange(path)
    if (
        not force
        and known is not None
        and known.chain_id == w3.eth.chain_id
        and client.has_code(w3, known.vault)
    ):
        return known, False
    exchange = deploy_exchange(w3, admin_key=admin_key, settlement_address=settlement_address, usdc=usdc)
    record(path, exchange)
    return exchange, True


def main(argv: list[str] | None = None) -> int:
    """The command line in the module docstring."""
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m services.chain.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rpc", "--rpc-url", dest="rpc", default=settings.eth_rpc_url, help="default: ETH_RPC_URL"
    )
    parser.add_argument(
        "--deployment",
        type=Path,
        default=deployments.deployment_path(settings.cxpt_run_dir),
        help="deployment file (default: <CXPT_RUN_DIR>/deployments/local.json)",
    )
    parser.add_argument(
        "--settlement",
        help=f"address given SETTLEMENT_ROLE (default: {SETTLEMENT_KEY_ENV}'s address; anvil #1 locally)",
    )
    parser.add_argument("--usdc", help="USDC token address (default: deploy a MockUSDC)")
    parser.add_argument("--force", action="store_true", help="deploy even if the recorded Vault has code")
    args = parser.parse_args(argv)

    w3 = client.connect(args.rpc)
    try:
        chain_id = w3.eth.chain_id
        admin_key = signing_key(DEPLOYER_KEY_ENV, chain_id)
        settlement = args.settlement or client.address_of(signing_key(SETTLEMENT_KEY_ENV, chain_id))
        exchange, new = ensure_exchange(
            w3,
            args.deployment,
            admin_key=admin_key,
            settlement_address=settlement,
            usdc=args.usdc,
            force=args.force,
        )
    except (ArtifactError, DeploymentError, MissingKeyError, TransactionFailedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # connection errors are OSErrors; a malformed address a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, value in exchange.file_keys().items():
        print(f"{key:<22} {value}")
    print(f"{'deployed' if new else 'kept'}; recorded in {args.deployment}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
