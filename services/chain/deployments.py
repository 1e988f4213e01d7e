"""Where the project's contracts live on a chain: one JSON file per network.

On the local chain the file is ``<run dir>/deployments/local.json`` (``CXPT_RUN_DIR``, default
``.run``), written by ``python -m services.chain.mocks`` and read by the oracle service::

    {
      "chain_id": 31337,
      "chainlink_feeds": {"BTC-USD": "0x…", "ETH-USD": "0x…"}
    }

``chainlink_feeds`` maps an index symbol to its AggregatorV3 feed address. Writers keep the keys
they do not know (a later issue adds the Vault and token addresses to the same file), and every
write replaces the file atomically, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

LOCAL_NETWORK = "local"


def deployment_path(run_dir: Path, network: str = LOCAL_NETWORK) -> Path:
    """``<run_dir>/deployments/<network>.json``."""
    return run_dir / "deployments" / f"{network}.json"


class DeploymentError(ValueError):
    """The deployment file is unreadable or does not describe the chain it is used with."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """The addresses recorded for one chain."""

    chain_id: int
    chainlink_feeds: dict[str, str] = field(default_factory=dict)
    """index symbol → checksummed AggregatorV3 address."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys this version does not know, written back unchanged."""


def read(path: Path) -> Deployment | None:
    """The deployment recorded at `path`, or None if there is no file yet."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DeploymentError(f"{path}: {exc}") from exc
    try:
        chain_id = int(raw.pop("chain_id"))
        feeds: dict[str, str] = {
            str(k): Web3.to_checksum_address(v) for k, v in raw.pop("chainlink_feeds", {}).items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DeploymentError(f"{path}: not a deployment file ({exc!r})") from exc
    return Deployment(chain_id=chain_id, chainlink_feeds=feeds, extra=raw)


def write(path: Path, deployment: Deployment) -> None:
    """Replace the file at `path` with `deployment` (atomically: written beside, then renamed)."""
    body = {
        **deployment.extra,
        "chain_id": deployment.chain_id,
        "chainlink_feeds": dict(sorted(deployment.chainlink_feeds.items())),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
