"""Which Vault the service watches and from which block; the dev command's amount parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.watcher.deposit import parse_usdc
from services.watcher.service import PLACEHOLDER_VAULT, resolve_vault

VAULT = "0x8d79b76622176685160Ae1D3e4192488898ffA08"
OTHER = "0x15d28CD0DBB8D47c14f6A74a821C51AB1957E252"


def run_dir(tmp_path: Path, *, vault: str | None = VAULT, chain_id: int = 31337) -> Path:
    body: dict[str, object] = {"chain_id": chain_id, "chainlink_feeds": {}}
    if vault is not None:
        body |= {
            "vault": vault,
            "vault_implementation": OTHER,
            "vault_block": 156,
            "usdc": OTHER,
            "cxpt": OTHER,
        }
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments" / "local.json").write_text(json.dumps(body))
    return tmp_path


def test_the_deployment_files_vault_from_its_deployment_block(tmp_path: Path) -> None:
    settings = Settings(cxpt_run_dir=run_dir(tmp_path))
    assert resolve_vault(settings) == (VAULT, 156)


def test_an_explicit_start_block_wins(tmp_path: Path) -> None:
    settings = Settings(cxpt_run_dir=run_dir(tmp_path), watcher_start_block=200)
    assert resolve_vault(settings) == (VAULT, 200)


def test_another_vault_than_the_files_starts_at_block_zero(tmp_path: Path) -> None:
    settings = Settings(cxpt_run_dir=run_dir(tmp_path), vault_address=OTHER)
    assert resolve_vault(settings) == (OTHER, 0)


def test_a_file_of_another_chain_is_not_used(tmp_path: Path) -> None:
    settings = Settings(cxpt_run_dir=run_dir(tmp_path, chain_id=1), vault_address=PLACEHOLDER_VAULT)
    assert resolve_vault(settings) is None


def test_no_vault_anywhere_means_nothing_to_watch(tmp_path: Path) -> None:
    settings = Settings(cxpt_run_dir=run_dir(tmp_path, vault=None))
    assert settings.vault_address == PLACEHOLDER_VAULT
    assert resolve_vault(settings) is None


def test_the_default_depth_is_the_production_one() -> None:
    # dev.sh exports WATCHER_CONFIRMATIONS=2 for anvil; unset, the safe 12 applies.
    assert Settings.model_fields["watcher_confirmations"].default == 12


@pytest.mark.parametrize("text, micro", [("1000", 1_000_000_000), ("0.000001", 1), ("12.5", 12_500_000)])
def test_usdc_amounts_parse_exactly(text: str, micro: int) -> None:
    assert parse_usdc(text) == micro


@pytest.mark.parametrize("text", ["0", "-1", "1.0000001", "abc", ""])
def test_bad_usdc_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_usdc(text)
