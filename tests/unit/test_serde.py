"""Serde: Confluent wire format, exact round trips, and clear refusals for poison bytes."""

import struct

import pytest

from services.common.serde import AvroSerde, ManifestRegistry, UndecodableRecord
from tests.kit import deposit_event


@pytest.fixture(scope="module")
def account_serde() -> AvroSerde:
    return AvroSerde(ManifestRegistry(), "AccountEvent")


def test_round_trip_is_exact(account_serde: AvroSerde) -> None:
    event = deposit_event(trader="0x" + "a1" * 20, amount=5_000_000, n=1)
    data = account_serde.encode(event)
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == account_serde.schema_id
    assert account_serde.decode(data) == event


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (None, "UNDECODABLE"),
        (b"", "UNDECODABLE"),
        (b"\x01\x00\x00\x00\x01abc", "UNDECODABLE"),  # wrong magic byte
        (b"\x00\x00\x00\x99\x99abc", "UNKNOWN_SCHEMA_ID"),
        (b"\x00\x00\x00\x00\x01\xff\xff\xff", "UNDECODABLE"),  # right header, garbage body
    ],
)
def test_poison_bytes_are_refused_with_a_code(
    account_serde: AvroSerde, data: bytes | None, code: str
) -> None:
    with pytest.raises(UndecodableRecord) as refused:
        account_serde.decode(data)
    assert refused.value.reason_code == code


def test_trailing_bytes_are_refused(account_serde: AvroSerde) -> None:
    data = account_serde.encode(deposit_event(trader="0x" + "b2" * 20, amount=1, n=2))
    with pytest.raises(UndecodableRecord, match="trailing"):
        account_serde.decode(data + b"\x00")


def test_record_that_does_not_fit_is_a_value_error(account_serde: AvroSerde) -> None:
    bad = deposit_event(trader="0x" + "c3" * 20, amount=1, n=3) | {"trader": 42}
    with pytest.raises(ValueError, match="does not fit"):
        account_serde.encode(bad)
