"""Fixtures of the deployment tests: tools from deploy/tools.sh, built or fetched once per session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TOOLS = ROOT / "deploy" / "tools.sh"


def _tool(name: str) -> Path:
    """`deploy/tools.sh <name>`: the pinned tool's path (built or fetched on the first call only)."""
    done = subprocess.run(
        ["bash", str(TOOLS), name], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"deploy/tools.sh {name} failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def helm() -> Path:
    return _tool("helm")


@pytest.fixture(scope="session")
def compose_schema() -> Path:
    return _tool("compose-schema")
