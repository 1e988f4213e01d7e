"""Token buckets keyed by any string (an IP, an API key), in integer arithmetic.

A bucket holds at most `capacity` tokens and gains `refill_per_s` tokens per second; a request
takes `cost` tokens or is refused with how long to wait. Levels are kept in micro-tokens, so that
`refill_per_s` tokens per second is exactly `refill_per_s` micro-tokens per microsecond: no floats,
no drift, the same answer on every replica given the same times.

A key absent from the table is a full bucket, so a full bucket carries no information and is
dropped (idle keys cost nothing). Past `max_keys` live buckets, the least recently used one is
forgotten — that forgives its holder a partial bucket, which is preferred to refusing new keys
(refusing would let whoever fills the table lock everyone else out).

Pure: `now` is a parameter (µs since epoch). A `now` earlier than a bucket's last update (another
clock) refills nothing and never moves the bucket back in time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

MICRO: Final = 1_000_000
"""Micro-tokens per token, and microseconds per second."""
DEFAULT_MAX_KEYS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Allowed:
    """The request may go; `remaining` whole tokens are left (for a RateLimit-Remaining header)."""

    remaining: int


@dataclass(frozen=True, slots=True)
class Limited:
    """Refused (RATE_LIMITED, HTTP 429); come back after `retry_after_s` whole seconds (>= 1)."""

    retry_after_s: int


@dataclass(slots=True)
class _Bucket:
    level: int
    """Micro-tokens."""
    at: int
    """When `level` was last brought up to date (µs)."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class RateLimiter:
    """One rate-limit policy (capacity, refill rate) over many keys, in bounded memory."""

    def __init__(self, *, capacity: int, refill_per_s: int, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if capacity < 1 or refill_per_s < 1 or max_keys < 1:
            raise ValueError("capacity, refill_per_s and max_keys must be >= 1")
        self.capacity = capacity
        self.refill_per_s = refill_per_s
        self.max_keys = max_keys
        self._full = capacity * MICRO
        # Least recently used first: the front is the best candidate to be idle (hence full).
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """How many keys hold a partial bucket (at their last update)."""
        return len(self._buckets)

    def level(self, key: str, now: int) -> int:
        """The micro-tokens `key` has at `now` (capacity × 1e6 for an unknown key). No change."""
        bucket = self._buckets.get(key)
        return self._full if bucket is None else self._refilled(bucket, now)

    def take(self, key: str, now: int, cost: int = 1) -> Allowed | Limited:
        """Take `cost` tokens from `key`'s bucket at `now`, or say how long until it could."""
        if not 1 <= cost <= self.capacity:
            # A cost the bucket can never hold would be refused forever: a configuration bug.
            raise ValueError(f"cost must be in [1, {self.capacity}], got {cost}")
        self._evict_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(self._full, now)
        else:
            self._buckets.move_to_end(key)
        bucket.level, bucket.at = self._refilled(bucket, now), max(bucket.at, now)
        need = cost * MICRO
        if bucket.level >= need:
            bucket.level -= need
            return Allowed(bucket.level // MICRO)
        wait_us = _ceil_div(need - bucket.level, self.refill_per_s)
        # Round up: a client that waits exactly Retry-After seconds must find its tokens there.
        return Limited(max(1, _ceil_div(wait_us, MICRO)))

    def _refilled(self, bucket: _Bucket, now: int) -> int:
        elapsed = max(0, now - bucket.at)
        return min(self._full, bucket.level + elapsed * self.refill_per_s)

    def _evict_idle(self, now: int) -> None:
        # Amortised O(1): each key is dropped at most once per time it was added.
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if self._refilled(bucket, now) < self._full:
                return
            del self._buckets[key]
