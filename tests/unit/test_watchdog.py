"""The stall watchdog fires for a call overdue, and only then."""

from __future__ import annotations

from services.common.watchdog import StallWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_call_overdue_fires_once_it_passes_the_limit_and_a_finished_one_never() -> None:
    # State: a 60 s watchdog on a fake clock, recording instead of exiting.
    clock, stalls = Clock(), []
    watchdog = StallWatchdog(60, clock=clock, on_stall=lambda what, waited: stalls.append((what, waited)))

    # Action: a call that returns in time, then one that does not.
    with watchdog.watching("quick commit"):
        clock.now += 59
        assert watchdog.check() is False
    clock.now += 1_000
    assert watchdog.check() is False  # nothing watched between calls
    with watchdog.watching("stuck commit"):
        clock.now += 61
        fired = watchdog.check()

    # Expectation: only the stuck call fired, with how long it had waited.
    assert fired is True
    assert stalls == [("stuck commit", 61)]
