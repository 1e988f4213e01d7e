"""services.chain.deploy without a node: role ids, the storage namespace, the deployment-file keys,
the settings fallback; and on py-evm, the synth address Python predicts is the Vault's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils.crypto import keccak
from web3 import Web3

from services.chain import client, deploy, deployments
from services.chain.artifacts import load
from services.common.settings import PLACEHOLDER_VAULT, Settings
from tests.unit.chain.vault_kit import VaultKit, pyevm_chain

A, B, C, D = (f"0x{c * 40}" for c in "abcd")


def exchange(chain_id: int = 31337) -> deploy.ExchangeDeployment:
    return deploy.ExchangeDeployment(
        vault=Web3.to_checksum_address(A), vault_implementation=Web3.to_checksum_address(B),
        usdc=Web3.to_checksum_address(C), cxpt=Web3.to_checksum_address(D),
        chain_id=chain_id, block=7,
    )  # fmt: skip


def test_role_ids_are_access_controls() -> None:
    assert deploy.role_id("DEFAULT_ADMIN_ROLE") == bytes(32)
    assert deploy.role_id("SETTLEMENT_ROLE") == keccak(text="SETTLEMENT_ROLE")
    with pytest.raises(ValueError, match="unknown role"):
        deploy.role_id("OWNER")


def test_the_vault_storage_slot_is_the_erc7201_namespace() -> None:
    # Expectation: the constant in Vault.sol is erc7201("cxpt.storage.Vault").
    inner = int.from_bytes(keccak(text="cxpt.storage.Vault"), "big") - 1
    slot = int.from_bytes(keccak(inner.to_bytes(32, "big")), "big") & ~0xFF
    source = (Path(__file__).resolve().parents[3] / "contracts/src/Vault.sol").read_text()
    assert f"VAULT_STORAGE = 0x{slot:064x};" in source


def test_record_keeps_other_keys_and_reads_back(tmp_path: Path) -> None:
    # State: a file with feeds and an unknown key. Action: record an exchange.
    path = deployments.deployment_path(tmp_path)
    deployments.write(path, deployments.Deployment(31337, {"BTC-USD": Web3.to_checksum_address(A)}, {"x": 1}))
    deploy.record(path, exchange())
    # Expectation: every key kept, the exchange's added, read back equal.
    body = json.loads(path.read_text())
    assert body["x"] == 1 and body["chainlink_feeds"] == {"BTC-USD": Web3.to_checksum_address(A)}
    assert {k: body[k] for k in ("vault", "vault_implementation", "vault_block", "usdc", "cxpt")} == {
        "vault": exchange().vault, "vault_implementation": exchange().vault_implementation, "vault_block": 7,
        "usdc": exchange().usdc, "cxpt": exchange().cxpt,
    }  # fmt: skip
    assert deploy.read_exchange(path) == exchange()
    with pytest.raises(deployments.DeploymentError, match="chain"):
        deploy.record(path, exchange(chain_id=1))


def test_settings_read_the_vault_from_the_file_of_the_same_chain_only(tmp_path: Path) -> None:
    # State: no file → the placeholder; a file for chain 31337 → its Vault; VAULT_ADDRESS wins.
    assert Settings(cxpt_run_dir=tmp_path).vault_address == PLACEHOLDER_VAULT
    deploy.record(deployments.deployment_path(tmp_path), exchange())
    assert Settings(cxpt_run_dir=tmp_path, chain_id=31337).vault_address == exchange().vault
    assert Settings(cxpt_run_dir=tmp_path, chain_id=1).vault_address == PLACEHOLDER_VAULT
    assert Settings(cxpt_run_dir=tmp_path, vault_address=B).vault_address == B


def test_python_predicts_the_synth_address_the_vault_deploys_to() -> None:
    # State: an exchange on py-evm. Action: deploy sBTC. Expectation: the address Python computed.
    w3, keys = pyevm_chain()
    kit = VaultKit(w3, keys[0], keys[1], new_key=lambda: keys[2])
    predicted = deploy.synth_address(kit.exchange.vault, "sBTC")
    assert kit.vault.functions.synthAddress("sBTC").call() == predicted
    kit.send(kit.vault.functions.deploySynth("sBTC"), kit.admin_key)
    assert kit.vault.functions.synthOf("sBTC").call() == predicted
    assert client.has_code(w3, predicted)
    assert load(deploy.SYNTH).deployable
