"""Token buckets: burst, refill, Retry-After rounding, bounded memory, and the rate never exceeded."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway.core.ratelimit import MICRO, Allowed, Limited, RateLimiter
from tests.unit.gateway.kit import MINUTE, NOW, SECOND

IP_1, IP_2 = "ip:192.0.2.1", "ip:192.0.2.2"


def limiter_5_burst_1_per_s(max_keys: int = 1_000) -> RateLimiter:
    """Five requests at once, then one a second."""
    return RateLimiter(capacity=5, refill_per_s=1, max_keys=max_keys)


def limiter_ip_1_drained_at_now() -> RateLimiter:
    """IP_1 spent its whole burst of 5 at NOW."""
    limiter = limiter_5_burst_1_per_s()
    for _ in range(5):
        assert isinstance(limiter.take(IP_1, NOW), Allowed)
    return limiter


def test_a_full_burst_passes_then_the_next_request_is_limited() -> None:
    limiter = limiter_5_burst_1_per_s()

    answers = [limiter.take(IP_1, NOW) for _ in range(6)]

    assert answers == [Allowed(4), Allowed(3), Allowed(2), Allowed(1), Allowed(0), Limited(1)]


def test_tokens_come_back_at_the_refill_rate() -> None:
    # State: IP_1 is drained.
    limiter = limiter_ip_1_drained_at_now()

    # Expectation: nothing just before a second, one token at a second, none more at once.
    assert limiter.take(IP_1, NOW + SECOND - 1) == Limited(1)
    assert limiter.take(IP_1, NOW + SECOND) == Allowed(0)
    assert limiter.take(IP_1, NOW + SECOND) == Limited(1)
    # a minute later the bucket is full again, not fuller
    assert limiter.take(IP_1, NOW + MINUTE) == Allowed(4)


def test_keys_do_not_share_a_bucket() -> None:
    limiter = limiter_ip_1_drained_at_now()

    assert limiter.take(IP_2, NOW) == Allowed(4)


class RetryCase(NamedTuple):
    capacity: int
    refill_per_s: int
    spent_ago_us: int
    """The bucket was emptied this long before the request."""
    cost: int
    retry_after_s: int


@pytest.mark.parametrize(
    "case",
    [
        RetryCase(5, 1, 0, 1, 1),  # exactly one second to wait
        RetryCase(5, 1, 0, 5, 5),
        RetryCase(5, 1, SECOND // 2, 1, 1),  # half a second: rounds up to 1
        RetryCase(5, 1, 0, 3, 3),
        RetryCase(5, 1, 1, 3, 3),  # 2.999999 s: 3
        RetryCase(5, 2, 0, 5, 3),  # 2.5 s: 3
        RetryCase(10, 3, 0, 1, 1),  # 0.333334 s: at least 1
        RetryCase(100, 1_000, 0, 100, 1),  # 0.1 s: at least 1
    ],
    ids=repr,
)
def test_retry_after_is_the_wait_rounded_up_to_whole_seconds_and_at_least_one(case: RetryCase) -> None:
    # State: the bucket was emptied `spent_ago_us` before NOW.
    limiter = RateLimiter(capacity=case.capacity, refill_per_s=case.refill_per_s)
    assert limiter.take(IP_1, NOW - case.spent_ago_us, cost=case.capacity) == Allowed(0)

    # Action.
    answer = limiter.take(IP_1, NOW, cost=case.cost)

    # Expectation: refused, and waiting exactly Retry-After is enough.
    assert answer == Limited(case.retry_after_s)
    assert isinstance(limiter.take(IP_1, NOW + case.retry_after_s * SECOND, cost=case.cost), Allowed)


def test_a_cost_the_bucket_cannot_hold_is_a_configuration_error() -> None:
    limiter = limiter_5_burst_1_per_s()

    for cost in (0, 6):
        with pytest.raises(ValueError, match="cost"):
            limiter.take(IP_1, NOW, cost=cost)


def test_a_clock_going_back_refills_nothing_and_does_not_rewind_the_bucket() -> None:
    # State: IP_1 drained at NOW.
    limiter = limiter_ip_1_drained_at_now()

    # Action: another replica's clock, a second behind.
    assert limiter.take(IP_1, NOW - SECOND) == Limited(1)

    # Expectation: a second after NOW (not after NOW − 1 s) gives one token.
    assert limiter.take(IP_1, NOW + SECOND) == Allowed(0)


def test_idle_keys_are_forgotten_once_their_bucket_is_full() -> None:
    # State: two keys drained at NOW.
    limiter = limiter_ip_1_drained_at_now()
    limiter.take(IP_2, NOW, cost=5)
    assert len(limiter) == 2

    # Action: five seconds later (both full again), a third key arrives.
    limiter.take("ip:192.0.2.3", NOW + 5 * SECOND)

    # Expectation: only the newcomer is held; the others answer as full buckets.
    assert len(limiter) == 1
    assert limiter.level(IP_1, NOW + 5 * SECOND) == 5 * MICRO


def test_past_max_keys_the_least_recently_used_key_is_forgotten() -> None:
    # State: a table for two keys, holding IP_1 (older) and IP_2, both partly spent.
    limiter = limiter_5_burst_1_per_s(max_keys=2)
    limiter.take(IP_1, NOW)
    limiter.take(IP_2, NOW + 1)

    # Action: a third key.
    limiter.take("ip:192.0.2.3", NOW + 2)

    # Expectation: IP_1 is forgiven (full), IP_2 is remembered.
    assert len(limiter) == 2
    assert limiter.level(IP_1, NOW + 2) == 5 * MICRO
    assert limiter.level(IP_2, NOW + 2) < 5 * MICRO


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=20),
    refill_per_s=st.integers(min_value=1, max_value=50),
    requests=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2 * SECOND), st.integers(min_value=1, max_value=20)),
        max_size=200,
    ),
)
def test_never_more_than_the_burst_plus_what_has_refilled(
    capacity: int, refill_per_s: int, requests: list[tuple[int, int]]
) -> None:
    limiter = RateLimiter(capacity=capacity, refill_per_s=refill_per_s)
    now, spent = NOW, 0
    for gap, cost in requests:
        now += gap
        answer = limiter.take(IP_1, now, cost=min(cost, capacity))
        if isinstance(answer, Allowed):
            spent += min(cost, capacity)
            assert 0 <= answer.remaining < capacity
        else:
            assert answer.retry_after_s >= 1
        # Expectation: spending since NOW fits the burst plus whole elapsed micro-token refills.
        assert spent * MICRO <= capacity * MICRO + (now - NOW) * refill_per_s
