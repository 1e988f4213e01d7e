"""Avro schemas: where they live, which ids they have, and whether a change is safe.

Layout of `schemas/`:

* `avro/<namespace>.<Name>.avsc` — the current version of every named type, one per file; a
  top-level value schema refers to the others by name and `load_current` inlines them.
* `history/<namespace>.<Name>/v<N>.avsc` — every version of every top-level value schema ever
  registered, self-contained, never edited.
* `manifest.json` — the id of each registered version (ids are global, as in Confluent's registry).

Compatibility rule: BACKWARD_TRANSITIVE — the current schema must read data written with every
historical version, so consumers are upgraded before producers.

Command line (run from the repository root):

    python -m services.common.schemas check      # current == registered, and compatible
    python -m services.common.schemas register   # record changed schemas as new versions
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro.schema import load_schema

from services.common.settings import REPO_ROOT
from services.common.topics import TOPICS

SCHEMA_DIR = REPO_ROOT / "schemas"
NAMESPACE = "exchange.cxpt"

JsonSchema = dict[str, Any]


class SchemaError(Exception):
    """A schema is missing, unregistered or incompatible."""


def load_current(name: str, schema_dir: Path = SCHEMA_DIR) -> JsonSchema:
    """The current version of top-level schema `name`, self-contained (named types inlined)."""
    path = schema_dir / "avro" / f"{_full_name(name)}.avsc"
    if not path.exists():
        raise SchemaError(f"no schema file {path}")
    loaded: JsonSchema = _strip_fastavro_keys(load_schema(str(path), _write_hint=False))
    return loaded


def fingerprint(schema: JsonSchema) -> str:
    """SHA-256 over a normalised JSON form that keeps defaults and docs (they matter to readers)."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_backward(reader: JsonSchema, writer: JsonSchema) -> str | None:
    """None when `reader` can read data written with `writer`; else the incompatibility."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(  # type: ignore[no-untyped-call]
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    return "; ".join(sorted(result.messages)) or "incompatible"


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered version of a top-level schema."""

    id: int
    name: str
    version: int
    sha256: str
    file: str


class Manifest:
    """The committed list of registered schema versions (`schemas/manifest.json`)."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self.schema_dir = schema_dir
        self.path = schema_dir / "manifest.json"
        raw = json.loads(self.path.read_text()) if self.path.exists() else {"schemas": []}
        self.versions = [RegisteredVersion(**v) for v in raw["schemas"]]

    def history(self, name: str) -> list[RegisteredVersion]:
        full = _full_name(name)
        return sorted((v for v in self.versions if v.name == full), key=lambda v: v.version)

    def by_id(self, schema_id: int) -> RegisteredVersion | None:
        return next((v for v in self.versions if v.id == schema_id), None)

    def by_fingerprint(self, sha256: str) -> RegisteredVersion | None:
        return next((v for v in self.versions if v.sha256 == sha256), None)

    def load(self, version: RegisteredVersion) -> JsonSchema:
        loaded: JsonSchema = json.loads((self.schema_dir / version.file).read_text())
        return loaded

    def top_level_names(self) -> list[str]:
        return sorted({v.name for v in self.versions})

    def problems(self, name: str) -> list[str]:
        """Why the current `name` may not be used as is: unregistered, or not backward compatible."""
        current = load_current(name, self.schema_dir)
        found = [
            f"{v.name} v{v.version}: {why}"
            for v in self.history(name)
            if (why := check_backward(current, self.load(v))) is not None
        ]
        if self.by_fingerprint(fingerprint(current)) is None:
            found.append(f"{_full_name(name)}: changed since last registered — run `register`")
        return found

    def register(self, name: str) -> RegisteredVersion:
        """Record the current `name` as a new version (no-op when unchanged); refuse if incompatible."""
        current = load_current(name, self.schema_dir)
        known = self.by_fingerprint(fingerprint(current))
        if known is not None:
            return known
        incompatible = [why for why in self.problems(name) if "changed since" not in why]
        if incompatible:
            raise SchemaError("not BACKWARD_TRANSITIVE compatible: " + "; ".join(incompatible))
        full = _full_name(name)
        version = len(self.history(name)) + 1
        rel = f"history/{full}/v{version}.avsc"
        (self.schema_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.schema_dir / rel).write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n")
        entry = RegisteredVersion(
            id=max((v.id for v in self.versions), default=0) + 1,
            name=full,
            version=version,
            sha256=fingerprint(current),
            file=rel,
        )
        self.versions.append(entry)
        self._save()
        return entry

    def _save(self) -> None:
        body = {
            "doc": "Registered Avro schema versions; ids are written in the Confluent wire format. "
            "Edit only through `python -m services.common.schemas register`.",
            "schemas": [v.__dict__ for v in sorted(self.versions, key=lambda v: v.id)],
        }
        self.path.write_text(json.dumps(body, indent=2) + "\n")


def _full_name(name: str) -> str:
    return name if "." in name else f"{NAMESPACE}.{name}"


def _strip_fastavro_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_fastavro_keys(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_strip_fastavro_keys(v) for v in node]
    return node


def _value_schema_names() -> list[str]:
    return sorted({t.value_schema for t in TOPICS})


def main(argv: Iterable[str] | None = None) -> int:
    """`check` or `register` every schema that a topic uses."""
    parser = argparse.ArgumentParser(prog="python -m services.common.schemas")
    parser.add_argument("action", choices=["check", "register"])
    args = parser.parse_args(list(argv) if argv is not None else None)
    manifest = Manifest()
    failures: list[str] = []
    for name in _value_schema_names():
        if args.action == "register":
            try:
                v = manifest.register(name)
                print(f"{v.name}: v{v.version} (id {v.id})")
            except SchemaError as exc:
                failures.append(f"{name}: {exc}")
        else:
            failures.extend(manifest.problems(name))
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    if args.action == "check" and not failures:
        print(f"ok: {len(_value_schema_names())} value schemas registered and compatible")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
