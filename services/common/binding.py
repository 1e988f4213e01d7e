"""Convert between the generated record dataclasses (`records.py`) and fastavro's dicts.

A record inside a union of several records travels as fastavro's `(full name, dict)` tuple, which
is also what the serde returns on decode; enums travel as their symbol strings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any

from services.common import records
from services.common.schemas import NAMESPACE

_CLASSES: dict[str, type[Any]] = {
    name: cls
    for name, cls in vars(records).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls)
}


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    enum: type[Enum] | None  # the enum class, when the field is an enum (or optional enum)
    records: tuple[type[Any], ...]  # record classes the field may hold
    tagged: bool  # True when the field is a union of several records (tuple notation)


_PLANS: dict[type[Any], tuple[_Field, ...]] = {}


def _plan(cls: type[Any]) -> tuple[_Field, ...]:
    if cls not in _PLANS:
        _PLANS[cls] = _make_plan(cls)
    return _PLANS[cls]


def _make_plan(cls: type[Any]) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls, vars(records))
    plan = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        enums = [o for o in options if isinstance(o, type) and issubclass(o, Enum)]
        recs = tuple(o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o))
        plan.append(_Field(field.name, enums[0] if enums else None, recs, len(recs) > 1))
    return tuple(plan)


def to_avro(record: Any) -> dict[str, Any]:
    """The fastavro dict for a generated record instance."""
    out: dict[str, Any] = {}
    for f in _plan(type(record)):
        value = getattr(record, f.name)
        if value is None:
            out[f.name] = None
        elif f.enum is not None:
            out[f.name] = value.value
        elif f.records:
            body = to_avro(value)
            out[f.name] = (f"{NAMESPACE}.{type(value).__name__}", body) if f.tagged else body
        else:
            out[f.name] = value
    return out


def from_avro(cls: type[Any], data: dict[str, Any]) -> Any:
    """The `cls` instance for a fastavro dict (as decoded by the serde)."""
    kwargs: dict[str, Any] = {}
    for f in _plan(cls):
        value = data[f.name]
        if value is None:
            kwargs[f.name] = None
        elif f.enum is not None:
            kwargs[f.name] = f.enum(value)
        elif f.tagged:
            name, body = value
            kwargs[f.name] = from_avro(_CLASSES[name.rsplit(".", 1)[-1]], body)
        elif f.records:
            kwargs[f.name] = from_avro(f.records[0], value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)
