"""Convert between the generated record structs (`records.py`) and fastavro's dicts.

A record inside a union of several records travels as fastavro's `(full name, dict)` tuple, which
is also what the serde returns on decode; enums travel as their symbol strings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

from msgspec import Struct

from services.common import records
from services.common.schemas import NAMESPACE

RECORD_CLASSES: dict[str, type[Any]] = {
    name: cls
    for name, cls in vars(records).items()
    if isinstance(cls, type) and issubclass(cls, Struct) and cls is not Struct
}
"""Every generated record class by its schema's short name (`PlaceOrder`)."""

ENUM_CLASSES: dict[str, type[Enum]] = {
    name: cls for name, cls in vars(records).items() if isinstance(cls, type) and issubclass(cls, Enum)
}
"""Every generated enum class by its schema's short name (`Side`)."""


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    enum: type[Enum] | None  # the enum class, when the field is an enum (or optional enum)
    records: tuple[type[Any], ...]  # record classes the field may hold
    tagged: bool  # True when the field is a union of several records (tuple notation)
    many: bool  # True when the field is an array of such values


_PLANS: dict[type[Any], tuple[_Field, ...]] = {}


def _plan(cls: type[Any]) -> tuple[_Field, ...]:
    if cls not in _PLANS:
        _PLANS[cls] = _make_plan(cls)
    return _PLANS[cls]


def _make_plan(cls: type[Any]) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls, vars(records))
    plan = []
    for name in cls.__struct_fields__:
        hint = hints[name]
        many = typing.get_origin(hint) is list
        if many:
            (hint,) = typing.get_args(hint)
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        enums = [o for o in options if isinstance(o, type) and issubclass(o, Enum)]
        recs = tuple(o for o in options if isinstance(o, type) and issubclass(o, Struct))
        plan.append(_Field(name, enums[0] if enums else None, recs, len(recs) > 1, many))
    return tuple(plan)


def to_avro(record: Any) -> dict[str, Any]:
    """The fastavro dict for a generated record instance."""
    cls = type(record)
    convert = _TO_AVRO.get(cls) or _TO_AVRO.setdefault(cls, _compile_to_avro(cls))
    return convert(record)


def from_avro(cls: type[Any], data: dict[str, Any]) -> Any:
    """The `cls` instance for a fastavro dict (as decoded by the serde)."""
    convert = _FROM_AVRO.get(cls) or _FROM_AVRO.setdefault(cls, _compile_from_avro(cls))
    return convert(data)


# -- one converter per record class, compiled on first use -----------------------------------------
# These run for every record on every topic, so each class gets a straight-line function (the way
# `dataclasses` builds __init__) instead of a loop over its fields: 3-4x faster than the loop.

_TO_AVRO: dict[type[Any], Callable[[Any], dict[str, Any]]] = {}
_FROM_AVRO: dict[type[Any], Callable[[dict[str, Any]], Any]] = {}


def _tagged(value: Any) -> tuple[str, dict[str, Any]]:
    """A record inside a union of records: fastavro's (full name, fields) notation."""
    return f"{NAMESPACE}.{type(value).__name__}", to_avro(value)


def _untagged(value: tuple[str, dict[str, Any]]) -> Any:
    name, body = value
    return from_avro(RECORD_CLASSES[name.rsplit(".", 1)[-1]], body)


def _compile_to_avro(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
    def item(f: _Field, v: str) -> str:
        # Enums are StrEnums: fastavro takes them as their symbol, no conversion.
        if f.tagged:
            return f"_tagged({v})"
        if f.records:
            return f"to_avro({v})"
        return v

    def field(f: _Field) -> str:
        value = f"r.{f.name}"
        if f.many:
            return f"[{item(f, 'x')} for x in {value}]"
        converted = item(f, value)
        if converted == value:
            return value
        return f"(None if {value} is None else {converted})"

    body = ", ".join(f"{f.name!r}: {field(f)}" for f in _plan(cls))
    convert: Callable[[Any], dict[str, Any]] = _compile(f"def convert(r):\n    return {{{body}}}\n", {})
    return convert


def _compile_from_avro(cls: type[Any]) -> Callable[[dict[str, Any]], Any]:
    env: dict[str, Any] = {"cls": cls}

    def item(f: _Field, v: str) -> str:
        if f.enum is not None:
            env[f"enum_{f.name}"] = f.enum._value2member_map_
            return f"enum_{f.name}[{v}]"
        if f.tagged:
            return f"_untagged({v})"
        if f.records:
            env[f"cls_{f.name}"] = f.records[0]
            return f"from_avro(cls_{f.name}, {v})"
        return v

    def field(f: _Field) -> str:
        value = f"d[{f.name!r}]"
        if f.many:
            return f"[{item(f, 'x')} for x in {value}]"
        converted = item(f, value)
        if converted == value:
            return value
        return f"(None if {value} is None else {converted})"

    args = ", ".join(f"{f.name}={field(f)}" for f in _plan(cls))
    convert: Callable[[dict[str, Any]], Any] = _compile(f"def convert(d):\n    return cls({args})\n", env)
    return convert


def _compile(source: str, env: dict[str, Any]) -> Callable[[Any], Any]:
    namespace = {"to_avro": to_avro, "from_avro": from_avro, "_tagged": _tagged, "_untagged": _untagged} | env
    exec(source, namespace)  # the source is built above from the generated record classes only
    convert: Callable[[Any], Any] = namespace["convert"]
    return convert
