"""When artifacts must be rebuilt: the inputs hash and the npm check (no Node needed)."""

from __future__ import annotations

import json
from pathlib import Path

from services.chain.artifacts import Artifact, inputs_hash, npm_current


def contracts_dir(tmp_path: Path) -> Path:
    """A minimal contracts/ tree: script, lock pinning solc 0.8.28, one source."""
    root = tmp_path / "contracts"
    (root / "src" / "mocks").mkdir(parents=True)
    (root / "compile.mjs").write_text("// compile\n")
    lock = {"packages": {"": {}, "node_modules/solc": {"version": "0.8.28"}}}
    (root / "package-lock.json").write_text(json.dumps(lock))
    (root / "src" / "mocks" / "A.sol").write_text("contract A {}\n")
    return root


def test_the_hash_moves_with_a_source_a_move_the_script_and_the_lock(tmp_path: Path) -> None:
    root = contracts_dir(tmp_path)
    seen = {inputs_hash(root)}
    # Action: each change that alters what solc produces. Expectation: a new hash each time.
    (root / "src" / "mocks" / "A.sol").write_text("contract A { uint x; }\n")
    seen.add(inputs_hash(root))
    (root / "src" / "mocks" / "A.sol").rename(root / "src" / "A.sol")
    seen.add(inputs_hash(root))
    (root / "compile.mjs").write_text("// compile, optimizer runs changed\n")
    seen.add(inputs_hash(root))
    (root / "package-lock.json").write_text('{"packages": {}}')
    seen.add(inputs_hash(root))
    assert len(seen) == 5


def test_the_hash_ignores_outputs_and_non_sources(tmp_path: Path) -> None:
    root = contracts_dir(tmp_path)
    before = inputs_hash(root)
    # Action: artifacts written, a note beside the sources.
    (root / "out").mkdir()
    (root / "out" / "A.json").write_text("{}")
    (root / "src" / "NOTES.md").write_text("notes")
    # Expectation: nothing to rebuild.
    assert inputs_hash(root) == before


def test_npm_is_current_only_when_every_locked_package_is_installed_at_its_version(tmp_path: Path) -> None:
    root = contracts_dir(tmp_path)
    # State: nothing installed.
    assert not npm_current(root)
    # State: solc installed at another version.
    (root / "node_modules" / "solc").mkdir(parents=True)
    (root / "node_modules" / "solc" / "package.json").write_text('{"version": "0.8.27"}')
    assert not npm_current(root)
    # State: the locked version.
    (root / "node_modules" / "solc" / "package.json").write_text('{"version": "0.8.28"}')
    assert npm_current(root)


def test_interfaces_are_not_deployable() -> None:
    assert not Artifact("I", "src/I.sol", [], "0x", "0x").deployable
    assert Artifact("A", "src/A.sol", [], "0x6080", "0x6080").deployable
