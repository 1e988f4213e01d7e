"""partition_for agrees with Kafka's Java partitioner (vectors from Kafka's own UtilsTest)."""

import pytest

from services.common.partitioning import murmur2, partition_for


def _signed(h: int) -> int:
    return h - (1 << 32) if h >= 1 << 31 else h


@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: str, java_murmur2: int) -> None:
    assert _signed(murmur2(key.encode())) == java_murmur2


def test_partition_is_the_positive_hash_modulo_the_count() -> None:
    # State: "21" hashes to a negative Java int. Expectation: the sign bit is dropped, not abs().
    assert partition_for("21", 8) == (-973932308 & 0x7FFFFFFF) % 8
