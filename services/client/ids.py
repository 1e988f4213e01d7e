"""Ids the client generates: UUIDv7 order and withdrawal ids (RFC 9562), UUIDv4 idempotency keys.

Python 3.11 has no `uuid.uuid7` (3.14 adds one), hence this helper: a 48-bit Unix timestamp in
milliseconds, the version (7) and variant (0b10) bits, and 74 random bits from `os.urandom`. Ids of
one client therefore sort by creation time to the millisecond, which keeps the exchange's indexes
local, and two ids never collide in practice (74 random bits per millisecond).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Final

_MS_MASK: Final = (1 << 48) - 1


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A fresh UUIDv7 stamped `unix_ms` (default: now)."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    if not 0 <= ms <= _MS_MASK:
        raise ValueError(f"a UUIDv7 timestamp is 48 bits of milliseconds, got {ms}")
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def uuid7_unix_ms(value: uuid.UUID) -> int:
    """The millisecond timestamp of a UUIDv7."""
    if value.version != 7:
        raise ValueError(f"{value} is not a UUIDv7")
    return value.int >> 80


def idempotency_key() -> str:
    """A new `Idempotency-Key`: a random UUIDv4 (reused, with the same body, by every retry)."""
    return str(uuid.uuid4())
