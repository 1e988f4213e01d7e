"""UUIDv7 ids (RFC 9562) and idempotency keys."""

from __future__ import annotations

import time
from uuid import UUID

import pytest

from services.client.ids import idempotency_key, uuid7, uuid7_unix_ms

MS_2026_11_23 = 1_795_392_000_000


def test_uuid7_has_version_variant_and_timestamp() -> None:
    value = uuid7(MS_2026_11_23)

    assert value.version == 7
    assert value.variant == "specified in RFC 4122"
    assert uuid7_unix_ms(value) == MS_2026_11_23
    assert str(value).startswith("01a205b3-d000-7")  # the worked example of docs/signing.md


def test_uuid7_defaults_to_now() -> None:
    assert abs(uuid7_unix_ms(uuid7()) - time.time_ns() // 1_000_000) < 5_000


def test_uuid7s_sort_by_their_millisecond() -> None:
    ids = [uuid7(MS_2026_11_23 + n) for n in range(50)]

    assert sorted(ids, key=str) == ids
    assert len(set(uuid7(MS_2026_11_23) for _ in range(1_000))) == 1_000


def test_uuid7_refuses_timestamps_beyond_48_bits() -> None:
    with pytest.raises(ValueError, match="48 bits"):
        uuid7(2**48)
    with pytest.raises(ValueError, match="not a UUIDv7"):
        uuid7_unix_ms(UUID(int=0))


def test_idempotency_keys_are_fresh_uuid4s() -> None:
    first, second = idempotency_key(), idempotency_key()

    assert first != second and UUID(first).version == 4
