"""Compiled contracts: build `contracts/out/` when its inputs changed, then load from it.

The project's one way to compile Solidity (docs/contracts.md). Artifacts are not committed; they
are built here, on first use, on any machine that has Node/npm and reaches the npm registry:

1. ``npm ci`` in ``contracts/`` when ``node_modules`` lacks a package at the version
   ``package-lock.json`` pins (the pinned solcjs compiler and OpenZeppelin);
2. ``node contracts/compile.mjs`` when the hash of the inputs (every ``src/**/*.sol`` with its
   path, ``compile.mjs``, ``package-lock.json``) differs from the one recorded in
   ``out/.inputs-sha256`` after the last successful build.

Both run under an exclusive lock on ``out/.lock``, so parallel test workers or services build once
and never read a half-built directory. `load` does all of this, so callers just name a contract:

    python -m services.chain.artifacts build    # what deploy/dev.sh runs; prints the artifacts
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"
"""contracts/ at the repository root: package.json, compile.mjs, src/, out/."""


class ArtifactError(RuntimeError):
    """npm or the compiler failed, or a contract has no artifact."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract, as `compile.mjs` writes it."""

    name: str
    source: str
    """Source unit it came from, e.g. ``src/mocks/MockV3Aggregator.sol``."""
    abi: list[dict[str, Any]]
    bytecode: str
    """Creation code, 0x-prefixed; ``0x`` for an interface or abstract contract."""
    deployed_bytecode: str
    """Runtime code, 0x-prefixed: what `eth_getCode` returns once deployed (immutables aside)."""

    @property
    def deployable(self) -> bool:
        """False for interfaces and abstract contracts (no creation code)."""
        return self.bytecode not in ("", "0x")


def inputs_hash(contracts_dir: Path = CONTRACTS_DIR) -> str:
    """SHA-256 over everything that decides the artifacts' contents.

    Paths are hashed with the contents so that moving a file rebuilds too (source unit names are
    paths and end up in the metadata, hence in the bytecode).
    """
    digest = hashlib.sha256()
    src = contracts_dir / "src"
    files = sorted(src.rglob("*.sol")) if src.is_dir() else []
    for path in [contracts_dir / "compile.mjs", contracts_dir / "package-lock.json", *files]:
        digest.update(path.relative_to(contracts_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def npm_current(contracts_dir: Path = CONTRACTS_DIR) -> bool:
    """Every package the lock file pins is installed at that version (whoever ran npm ci)."""
    try:
        lock = json.loads((contracts_dir / "package-lock.json").read_text())
    except (OSError, ValueError):
        return False
    for key, entry in lock.get("packages", {}).items():
        if not key.startswith("node_modules/"):
            continue
        try:
            installed = json.loads((contracts_dir / key / "package.json").read_text())
        except (OSError, ValueError):
            return False
        if installed.get("version") != entry.get("version"):
            return False
    return True


def ensure_built(contracts_dir: Path = CONTRACTS_DIR, *, force: bool = False) -> Path:
    """The artifact directory, after installing the compiler and compiling if anything changed."""
    out = contracts_dir / "out"
    with _build_lock(out):
        _ensure_built_locked(contracts_dir, force=force)
    return out


def load(name: str, contracts_dir: Path = CONTRACTS_DIR) -> Artifact:
    """The artifact of contract `name` (e.g. ``MockV3Aggregator``), built first if needed."""
    out = contracts_dir / "out"
    with _build_lock(out):
        _ensure_built_locked(contracts_dir, force=False)
        # Read under the lock: another process may be about to rebuild the directory.
        path = out / f"{name}.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            known = sorted(p.stem for p in out.glob("*.json"))
            raise ArtifactError(f"no contract {name!r} in {contracts_dir / 'src'} (have {known})") from None
    return Artifact(
        name=raw["contractName"],
        source=raw["sourceName"],
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
    )


def _ensure_built_locked(contracts_dir: Path, *, force: bool) -> None:
    out = contracts_dir / "out"
    stamp = out / ".inputs-sha256"
    if not npm_current(contracts_dir):
        _run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], contracts_dir)
        if not npm_current(contracts_dir):
            raise ArtifactError(f"npm ci in {contracts_dir} did not install what package-lock.json pins")
        force = True  # a different compiler may have arrived
    want = inputs_hash(contracts_dir)
    have = stamp.read_text().strip() if stamp.is_file() else None
    if force or have != want:
        stamp.unlink(missing_ok=True)  # a failed build must not leave the old stamp behind
        _run(["node", "compile.mjs", "--out", str(out)], contracts_dir)
        stamp.write_text(want + "\n")


def _run(cmd: list[str], cwd: Path) -> None:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise ArtifactError(f"{cmd[0]} is not on PATH; install Node.js 20+ (it ships npm)")
    done = subprocess.run([exe, *cmd[1:]], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # npm and solc put the cause first; keep the top of a long report.
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[:40])
        raise ArtifactError(f"`{' '.join(cmd)}` in {cwd} failed ({done.returncode}):\n{output}")


@contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    """``build [--force]``: make the artifacts current and list them."""
    parser = argparse.ArgumentParser(prog="python -m services.chain.artifacts", description=__doc__)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--force", action="store_true", help="compile even if nothing changed")
    args = parser.parse_args(argv)
    try:
        out = ensure_built(force=args.force)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    names = sorted(p.stem for p in out.glob("*.json"))
    print(f"{len(names)} artifacts in {out}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
