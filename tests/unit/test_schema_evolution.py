"""Schemas: every registered version stays readable (BACKWARD_TRANSITIVE); breaking changes fail."""

import io
import json
import shutil
import struct
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from services.common.schemas import SCHEMA_DIR, Manifest, SchemaError, load_current
from services.common.serde import AvroSerde, ManifestRegistry
from services.common.topics import TOPICS

VALUE_SCHEMAS = sorted({t.value_schema for t in TOPICS})


def test_every_topic_schema_is_registered_and_compatible() -> None:
    manifest = Manifest()
    assert {f"exchange.cxpt.{n}" for n in VALUE_SCHEMAS} <= set(manifest.top_level_names())
    for name in VALUE_SCHEMAS:
        assert manifest.problems(name) == []


@pytest.mark.parametrize("name", VALUE_SCHEMAS)
def test_data_written_with_every_version_reads_with_the_current(name: str) -> None:
    manifest = Manifest()
    reader = parse_schema(load_current(name))
    serde = AvroSerde(ManifestRegistry(manifest), name)
    for version in manifest.history(name):
        writer = parse_schema(manifest.load(version))
        for record in generate_many(writer, 25):
            buf = io.BytesIO()
            schemaless_writer(buf, writer, record)
            buf.seek(0)
            schemaless_reader(buf, writer, reader)  # raises if resolution fails
            # The service path: the serde resolves old versions through fastavro into the record.
            wire = struct.pack(">bI", 0, version.id) + buf.getvalue()
            assert isinstance(serde.decode_record(wire), serde.record_class)  # type: ignore[arg-type]


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    shutil.copytree(SCHEMA_DIR, tmp_path / "schemas")
    return tmp_path / "schemas"


def _edit(schema_dir: Path, type_name: str, edit: dict[str, object]) -> None:
    path = schema_dir / "avro" / f"exchange.cxpt.{type_name}.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append(edit)
    path.write_text(json.dumps(schema))


def test_new_required_field_is_a_breaking_change(schema_copy: Path) -> None:
    # State: the committed schemas. Action: add a field with no default to a nested record.
    _edit(schema_copy, "DepositConfirmed", {"name": "memo", "type": "string", "doc": "x"})
    manifest = Manifest(schema_copy)
    # Expectation: the check names the version that could no longer be read, and registration fails.
    assert any(p.startswith("exchange.cxpt.AccountEvent v1:") for p in manifest.problems("AccountEvent"))
    with pytest.raises(SchemaError, match="BACKWARD_TRANSITIVE"):
        manifest.register("AccountEvent")


def test_new_optional_field_registers_as_next_version(schema_copy: Path) -> None:
    _edit(
        schema_copy,
        "DepositConfirmed",
        {"name": "memo", "type": ["null", "string"], "default": None, "doc": "x"},
    )
    manifest = Manifest(schema_copy)
    before = manifest.history("AccountEvent")[-1]
    added = manifest.register("AccountEvent")
    assert (added.version, added.id) == (before.version + 1, max(v.id for v in manifest.versions))
    assert Manifest(schema_copy).problems("AccountEvent") == []


def test_removing_a_union_branch_is_a_breaking_change(schema_copy: Path) -> None:
    path = schema_copy / "avro" / "exchange.cxpt.AccountEvent.avsc"
    schema = json.loads(path.read_text())
    body = next(f for f in schema["fields"] if f["name"] == "body")
    body["type"] = [t for t in body["type"] if not t.endswith("OrderRejected")]
    path.write_text(json.dumps(schema))
    assert Manifest(schema_copy).problems("AccountEvent")
