"""Where the oracle's time comes from: the one clock the service reads, passed into the core."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""Microseconds since the epoch."""


def system_clock() -> int:
    """The host's wall clock, in microseconds since the epoch."""
    return time.time_ns() // 1000
