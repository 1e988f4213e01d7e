"""Avro serde in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.

Schema ids come from a registry: a real Confluent Schema Registry when `SCHEMA_REGISTRY_URL` is
set, otherwise the committed `schemas/manifest.json`. Decoding resolves the writer's version
against the current one, so old records stay readable after a compatible change.

Logical types (uuid, timestamp-micros) document the schemas but are stripped before encoding and
decoding: records are plain `str` and `int` both ways, so decode(encode(x)) == x holds exactly and
replays compare equal without datetime or UUID conversions in the hot path.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
from functools import cache
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from msgspec import Struct

from services.common.avro_codec import CompiledCodec, UnsupportedSchema, compile_codec
from services.common.binding import ENUM_CLASSES, RECORD_CLASSES, from_avro, to_avro
from services.common.schemas import JsonSchema, Manifest, SchemaError, fingerprint, load_current

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

Record = dict[str, Any]


class UndecodableRecord(Exception):
    """Bytes on a topic that are not a record this consumer can read; they go to dead letters."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(f"{reason_code}: {reason}")
        self.reason_code = reason_code
        self.reason = reason


class SchemaRegistry(Protocol):
    """Where schema ids come from."""

    def id_for(self, name: str) -> int:
        """The id of the current version of top-level schema `name`."""

    def writer_schema(self, schema_id: int) -> JsonSchema | None:
        """The schema registered under `schema_id`, or None if there is none."""


class ManifestRegistry:
    """Ids from `schemas/manifest.json`: no server, ids fixed at commit time."""

    def __init__(self, manifest: Manifest | None = None) -> None:
        self._manifest = manifest or Manifest()

    def id_for(self, name: str) -> int:
        version = self._manifest.by_fingerprint(fingerprint(load_current(name)))
        if version is None:
            raise SchemaError(
                f"schema {name} changed but is not registered; "
                "run `python -m services.common.schemas register` and commit schemas/"
            )
        return version.id

    def writer_schema(self, schema_id: int) -> JsonSchema | None:
        version = self._manifest.by_id(schema_id)
        return None if version is None else self._manifest.load(version)


class ConfluentRegistry:
    """A Confluent Schema Registry; subjects are record names (one schema serves several topics)."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})

    def id_for(self, name: str) -> int:
        from confluent_kafka.schema_registry import Schema

        current = load_current(name)
        schema_id: int = self._client.register_schema(current["name"], Schema(json.dumps(current), "AVRO"))
        return schema_id

    def writer_schema(self, schema_id: int) -> JsonSchema | None:
        try:
            schema = self._client.get_schema(schema_id)
        except Exception:  # noqa: BLE001 - the client raises its own error type for 404
            return None
        loaded: JsonSchema = json.loads(schema.schema_str or "null")
        return loaded


def registry_for(schema_registry_url: str | None) -> SchemaRegistry:
    """The registry the settings name: Confluent when a URL is given, else the manifest."""
    return ConfluentRegistry(schema_registry_url) if schema_registry_url else ManifestRegistry()


@cache
def compiled_codec(name: str) -> CompiledCodec | None:
    """The codec compiled from the current schema `name` into the generated record classes, or None
    for a schema it does not compile (`UnsupportedSchema`)."""
    with contextlib.suppress(UnsupportedSchema):
        return compile_codec(without_logical_types(load_current(name)), RECORD_CLASSES, ENUM_CLASSES)
    return None


class AvroSerde:
    """Encodes and decodes one top-level schema (e.g. `TradeLogEntry`) in the wire format.

    Generated records (msgspec structs) go through the codec compiled from the current schema
    (`avro_codec.py`: same bytes as fastavro, 3-4x cheaper); plain dicts, and records written with
    an older schema version, go through fastavro.
    """

    def __init__(self, registry: SchemaRegistry, name: str) -> None:
        self.name = name
        self._registry = registry
        current = without_logical_types(load_current(name))
        self._schema = parse_schema(current)
        self.schema_id = registry.id_for(name)
        self._header = _HEADER.pack(MAGIC_BYTE, self.schema_id)
        self._writers: dict[int, Any] = {self.schema_id: self._schema}
        self._last: tuple[Record | Struct | None, bytes] = (None, b"")
        self.record_class: type[Any] | None = RECORD_CLASSES.get(name.rsplit(".", 1)[-1])
        self._codec = compiled_codec(name)  # None: fastavro both ways

    def encode(self, record: Record | Struct) -> bytes:
        """Wire bytes for `record` (a generated record or its fastavro dict); raises ValueError
        when it does not fit the schema.

        Records are immutable by convention: the bytes of the last one are reused when the same
        object is encoded again.
        """
        last_record, last_bytes = self._last
        if record is last_record:
            # One record often goes to two topics (trade.log and risk.postings): encode it once.
            return last_bytes
        if isinstance(record, Struct):
            if self._codec is None:
                return self.encode(to_avro(record))
            try:
                data = self._codec.encode(record, self._header)
            except ValueError as exc:
                raise ValueError(f"record does not fit {self.name}: {exc}") from exc
        else:
            data = self._fastavro_encode(record)
        self._last = (record, data)
        return data

    def decode_record(self, data: bytes | None) -> Any:
        """The generated record in `data`, resolved to the current schema; raises UndecodableRecord."""
        data, schema_id = _framed(data)
        if schema_id == self.schema_id and self._codec is not None:
            try:
                return self._codec.decode(data, _HEADER.size)
            except ValueError as exc:
                raise UndecodableRecord("UNDECODABLE", f"not a valid {self.name}: {exc}") from exc
        if self.record_class is None:
            raise UndecodableRecord("UNDECODABLE", f"{self.name} has no generated record class")
        try:
            return from_avro(self.record_class, self.decode(data))
        except (KeyError, ValueError, TypeError) as exc:  # resolved, but not a valid record value
            raise UndecodableRecord("UNDECODABLE", f"not a valid {self.name}: {exc!r}") from exc

    def decode(self, data: bytes | None) -> Record:
        """The record in `data` as fastavro's dict, resolved to the current schema; raises
        UndecodableRecord."""
        data, schema_id = _framed(data)
        writer = self._writer(schema_id)
        buf = io.BytesIO(data)
        buf.seek(_HEADER.size)
        try:
            reader = None if schema_id == self.schema_id else self._schema
            record: Record = schemaless_reader(  # type: ignore[assignment]
                buf, writer, reader, return_record_name=True, return_record_name_override=True
            )
        except Exception as exc:
            raise UndecodableRecord("UNDECODABLE", f"not a valid {self.name}: {exc!r}") from exc
        if buf.tell() != len(data):
            raise UndecodableRecord("UNDECODABLE", f"{len(data) - buf.tell()} trailing bytes")
        return record

    def _fastavro_encode(self, record: Record) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            schemaless_writer(buf, self._schema, record)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"record does not fit {self.name}: {exc}") from exc
        return buf.getvalue()

    def _writer(self, schema_id: int) -> Any:
        if schema_id not in self._writers:
            schema = self._registry.writer_schema(schema_id)
            if schema is None:
                raise UndecodableRecord("UNKNOWN_SCHEMA_ID", f"no schema registered with id {schema_id}")
            self._writers[schema_id] = parse_schema(without_logical_types(schema))
        return self._writers[schema_id]


def _framed(data: bytes | None) -> tuple[bytes, int]:
    """`data` and the schema id in its wire header; raises UndecodableRecord if there is none."""
    if data is None or len(data) < _HEADER.size:
        raise UndecodableRecord("UNDECODABLE", "empty or shorter than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise UndecodableRecord("UNDECODABLE", f"magic byte {magic}, expected {MAGIC_BYTE}")
    return data, int(schema_id)


def without_logical_types(node: Any) -> Any:
    """`node` (a schema) with every logicalType annotation removed: plain ints and strings."""
    if isinstance(node, dict):
        return {k: without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [without_logical_types(v) for v in node]
    return node
