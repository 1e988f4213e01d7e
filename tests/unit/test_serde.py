"""Serde: Confluent wire format, exact round trips, and clear refusals for poison bytes."""

import struct

import pytest

from services.common.binding import from_avro
from services.common.records import AccountEvent
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
    for decode in (account_serde.decode, account_serde.decode_record):
        with pytest.raises(UndecodableRecord) as refused:
            decode(data)
        assert refused.value.reason_code == code


def test_a_record_and_its_dict_encode_alike_and_decode_back(account_serde: AvroSerde) -> None:
    # State: one deposit as fastavro's dict and as the generated record.
    as_dict = deposit_event(trader="0x" + "d4" * 20, amount=7_000_000, n=4)
    record = from_avro(AccountEvent, as_dict)
    # Action: encode both (the record through the compiled codec, the dict through fastavro).
    data = account_serde.encode(record)
    # Expectation: the same bytes; decode_record gives the record back, decode the dict.
    assert data == account_serde.encode(as_dict)
    assert account_serde.decode_record(data) == record
    assert account_serde.decode(data) == as_dict


def test_trailing_bytes_are_refused(account_serde: AvroSerde) -> None:
    data = account_serde.encode(deposit_event(trader="0x" + "b2" * 20, amount=1, n=2))
    for decode in (account_serde.decode, account_serde.decode_record):
        with pytest.raises(UndecodableRecord, match="trailing"):
            decode(data + b"\x00")


def test_record_that_does_not_fit_is_a_value_error(account_serde: AvroSerde) -> None:
    bad = deposit_event(trader="0x" + "c3" * 20, amount=1, n=3) | {"trader": 42}
    with pytest.raises(ValueError, match="does not fit"):
        account_serde.encode(bad)
