"""docker-compose.yml is valid without Docker: the Compose Specification's JSON schema (from the npm
package dclint, fetched by deploy/tools.sh) plus the checks `docker compose config` would make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[3]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # merges <<
    return loaded


def test_compose_file_validates_against_the_compose_spec(compose_schema: Path) -> None:
    schema = json.loads(compose_schema.read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(_compose())
    ]
    assert not errors


def test_the_schema_catches_a_misspelt_key(compose_schema: Path) -> None:
    compose = _compose()
    compose["services"]["gateway"]["restartt"] = "always"
    assert not jsonschema.Draft7Validator(json.loads(compose_schema.read_text())).is_valid(compose)


def test_dependencies_volumes_and_service_modules_exist() -> None:
    compose = _compose()
    services: dict[str, Any] = compose["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in svc.get("volumes", []):
            assert volume.split(":")[0] in compose.get("volumes", {}), f"{name}: {volume}"
        command = svc.get("command", [])
        if command[:2] == ["python", "-m"]:
            module = command[2].split(".")
            assert (ROOT.joinpath(*module) / "__main__.py").exists() or ROOT.joinpath(
                *module[:-1], module[-1] + ".py"
            ).exists(), f"{name}: no module {command[2]}"
