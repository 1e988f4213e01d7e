"""The deployment file: round trip, unknown keys kept, checksummed addresses, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.chain.deployments import Deployment, DeploymentError, deployment_path, read, write

BTC_FEED = "0x700b6A60ce7EaaEA56F065753d8dcB9653dbAD35"


def test_the_local_file_lives_under_the_run_dir(tmp_path: Path) -> None:
    assert deployment_path(tmp_path) == tmp_path / "deployments" / "local.json"


def test_no_file_reads_as_none(tmp_path: Path) -> None:
    assert read(tmp_path / "deployments" / "local.json") is None


def test_a_written_deployment_reads_back_checksummed(tmp_path: Path) -> None:
    # State: a feed recorded in lower case, as another tool might write it.
    path = deployment_path(tmp_path)
    write(path, Deployment(chain_id=31337, chainlink_feeds={"BTC-USD": BTC_FEED.lower()}))
    # Action / Expectation: read back with a checksummed address.
    assert read(path) == Deployment(chain_id=31337, chainlink_feeds={"BTC-USD": BTC_FEED})


def test_keys_this_version_does_not_know_survive_a_rewrite(tmp_path: Path) -> None:
    # State: a file that also records a Vault (a later issue's key).
    path = deployment_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"chain_id": 31337, "chainlink_feeds": {}, "contracts": {"Vault": "0x1"}}))
    # Action: add a feed.
    current = read(path)
    assert current is not None
    write(path, Deployment(current.chain_id, {"BTC-USD": BTC_FEED}, current.extra))
    # Expectation: the Vault entry is still there; no temporary file is left behind.
    assert json.loads(path.read_text())["contracts"] == {"Vault": "0x1"}
    assert [p.name for p in path.parent.iterdir()] == ["local.json"]


@pytest.mark.parametrize("body", ["not json", "{}", '{"chain_id": 1, "chainlink_feeds": {"X": "0x12"}}'])
def test_a_broken_file_is_an_error_naming_it(tmp_path: Path, body: str) -> None:
    path = tmp_path / "local.json"
    path.write_text(body)
    with pytest.raises(DeploymentError, match=r"local\.json"):
        read(path)
