"""The compiled Avro codec against fastavro, the reference: same bytes out, same records back, and
nothing but a ValueError for bytes that are not a record."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.avro_codec import INT_RANGE, LONG_RANGE, CompiledCodec, compile_codec
from services.common.binding import ENUM_CLASSES, RECORD_CLASSES, from_avro, to_avro
from services.common.records import MatcherCommand, PlaceOrder, Side
from services.common.schemas import load_current
from services.common.serde import without_logical_types
from services.common.topics import TOPICS
from tests.kit import Commands, trader_address

VALUE_SCHEMAS = sorted({t.value_schema for t in TOPICS})


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def records_of(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Generated records (msgspec structs) of every shape `schema` allows."""
    named = {} if named is None else named
    schema = named.get(schema, schema) if isinstance(schema, str) else schema
    if isinstance(schema, dict) and not isinstance(schema["type"], str):
        schema = schema["type"]  # {"type": {...}} or {"type": [...]}
    if isinstance(schema, list):
        return st.one_of([records_of(branch, named) for branch in schema])
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind in _PRIMITIVE:
        return _PRIMITIVE[kind]
    if kind == "array":
        return st.lists(records_of(schema["items"], named), max_size=4)
    named[schema["name"]] = schema
    if kind == "enum":
        return st.sampled_from(list(ENUM_CLASSES[_short(schema["name"])]))
    fields = {f["name"]: records_of(f["type"], named) for f in schema["fields"]}
    return st.builds(RECORD_CLASSES[_short(schema["name"])], **fields)


_PRIMITIVE: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(*INT_RANGE),
    "long": st.one_of(st.integers(-100, 100), st.integers(*LONG_RANGE)),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=80),
    "bytes": st.binary(max_size=80),
}


def codec_and_reference(name: str) -> tuple[CompiledCodec, Any, type[Any]]:
    schema = without_logical_types(load_current(name))
    return compile_codec(schema, RECORD_CLASSES, ENUM_CLASSES), parse_schema(schema), RECORD_CLASSES[name]


def fastavro_bytes(reference: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, reference, to_avro(record))
    return buf.getvalue()


def fastavro_record(reference: Any, cls: type[Any], data: bytes) -> Any:
    buf = io.BytesIO(data)
    value = schemaless_reader(buf, reference, None, return_record_name=True, return_record_name_override=True)
    assert buf.tell() == len(data), "fastavro left bytes over"
    return from_avro(cls, value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", VALUE_SCHEMAS)
def test_every_record_encodes_to_fastavros_bytes_and_decodes_back(name: str) -> None:
    codec, reference, cls = codec_and_reference(name)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records_of(without_logical_types(load_current(name))))
    def check(record: Any) -> None:
        # Action: encode with both; decode the reference's bytes with the codec.
        data = codec.encode(record)
        # Expectation: identical bytes, and both decoders give back the record.
        assert data == fastavro_bytes(reference, record)
        assert codec.decode(data) == record == fastavro_record(reference, cls, data)

    check()


@pytest.mark.parametrize("name", ["TradeLogEntry", "MatcherCommand", "AccountEvent"])
def test_damaged_bytes_are_a_value_error_or_what_fastavro_reads(name: str) -> None:
    codec, reference, cls = codec_and_reference(name)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records_of(without_logical_types(load_current(name))), st.data())
    def check(record: Any, data: st.DataObject) -> None:
        # State: a valid encoding, then truncated, extended or with one byte replaced.
        good = codec.encode(record)
        cut = data.draw(st.integers(0, len(good)))
        damage = data.draw(st.sampled_from(["truncate", "extend", "replace"]) if good else st.just("extend"))
        if damage == "truncate":
            bad = good[:cut]
        elif damage == "extend":
            bad = good + data.draw(st.binary(min_size=1, max_size=3))
        else:
            at = min(cut, len(good) - 1)
            bad = good[:at] + bytes([data.draw(st.integers(0, 255))]) + good[at + 1 :]
        # Action / Expectation: a ValueError, or exactly the record fastavro reads from them
        # (fastavro is laxer in one place: it wraps a varint beyond 64 bits; the codec refuses it).
        try:
            decoded = codec.decode(bad)
        except ValueError:
            return
        assert decoded == fastavro_record(reference, cls, bad)

    check()


def test_a_varint_beyond_64_bits_is_refused_not_wrapped() -> None:
    # State: a RiskStateRecord whose first string length is a 10-byte varint worth 2**64 (fastavro
    # wraps it to 0 and reads on).
    codec, _, _ = codec_and_reference("RiskStateRecord")
    data = b"\x80" * 9 + b"\x02" + b"\x00\x00\x00"
    # Action / Expectation: refused.
    with pytest.raises(ValueError, match="beyond 64 bits"):
        codec.decode(data)


def test_values_outside_their_avro_type_are_refused() -> None:
    # State: a command codec and a valid order.
    codec, _, _ = codec_and_reference("MatcherCommand")
    command = a_limit_order()
    cases = [
        _replace(command, ts_init=2**63),  # beyond a long
        _replace(command, body=_replace(command.body, price=-(2**63) - 1)),
        _replace(command, body=_replace(command.body, side="SIDEWAYS")),  # not a symbol
        _replace(command, body=command),  # not a union branch
        _replace(command, body=_replace(command.body, order_id=None)),  # not a string
        _replace(command, body=_replace(command.body, size=1.5)),  # floats are not longs
    ]
    # Action / Expectation: each is a ValueError naming the problem, never wrong bytes.
    for bad in cases:
        with pytest.raises(ValueError):
            codec.encode(bad)


def test_enum_members_and_their_symbols_encode_alike() -> None:
    codec, _, _ = codec_and_reference("MatcherCommand")
    command = a_limit_order()
    as_symbol = _replace(command, body=_replace(command.body, side="BUY"))
    assert codec.encode(as_symbol) == codec.encode(
        _replace(command, body=_replace(command.body, side=Side.BUY))
    )


def a_limit_order() -> MatcherCommand:
    command = Commands().limit(trader_address(1), Side.BUY, 3, 650_000)
    assert isinstance(command.body, PlaceOrder)
    return command


def _replace(record: Any, **changes: Any) -> Any:
    """`record` with `changes`, unchecked (msgspec.structs.replace would not validate either)."""
    fields = {name: getattr(record, name) for name in record.__struct_fields__} | changes
    return type(record)(**fields)


def test_records_laid_end_to_end_decode_together_and_must_fill_the_block_exactly() -> None:
    # State: three commands encoded back to back, as in an Avro container block.
    codec, _, _ = codec_and_reference("MatcherCommand")
    commands = Commands()
    alice = trader_address(1)
    records = [commands.create(), commands.limit(alice, Side.BUY, 3, 650_000), commands.cancel_all(alice)]
    block = b"".join(codec.encode(r) for r in records)
    # Action / Expectation: all three back; one byte short or over is refused.
    assert codec.decode_many(block, 3) == records
    with pytest.raises(ValueError):
        codec.decode_many(block[:-1], 3)
    with pytest.raises(ValueError, match="1 trailing bytes after 3 records"):
        codec.decode_many(block + b"\x00", 3)
