"""Which partition a key lands on: Kafka's default partitioner, in Python.

The producers use librdkafka's `murmur2_random` partitioner, which hashes keys exactly as the Java
client does. Services that must know a key's partition without producing it (the matcher routing
trade-log entries to risk partitions; risk deciding which traders it owns) use `partition_for`,
which is the same function, so all of them agree with the broker-side layout of keyed topics.
"""

from __future__ import annotations

from functools import lru_cache

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of `data` (as an unsigned int; Java's is the same bits, signed)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    remaining = length & 3
    if remaining:
        if remaining == 3:
            h ^= data[tail + 2] << 16
        if remaining >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=1 << 16)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` among `partitions`.

    Cached: murmur2 in Python costs microseconds, and the matcher asks it for every trader of every
    event; keys (traders, markets) repeat.
    """
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
