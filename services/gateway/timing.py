"""Where a request's time went inside the gateway: marks answered as a `Server-Timing` header.

The HTTP middleware opens a request's marks (`begin`), the Kafka adapter adds `appended` (the
command acknowledged by the brokers) and `decided` (its outcome seen by the event loop), and the
middleware writes them, with `answered`, into the standard `Server-Timing` response header:

    Server-Timing: received;desc="1733550000123456", appended;dur=1.21, decided;dur=12.84, answered;dur=13.02

`received` carries the wall clock in µs since the epoch (so a benchmark can line the marks up with
Kafka record timestamps); every other mark is milliseconds after it. A batch request's orders run
side by side: the first order to reach each mark sets it. Browsers' developer tools show the
header as they are; `bench/gateway_e2e.py` reads it for its per-hop table.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

_MARKS: ContextVar[dict[str, int] | None] = ContextVar("gateway_timing_marks", default=None)


def begin() -> dict[str, int]:
    """Open the current request's marks at `received` (now)."""
    marks = {"received": time.time_ns() // 1_000}
    _MARKS.set(marks)
    return marks


def mark(name: str) -> None:
    """Record `name` at now for the current request, unless it was already reached."""
    marks = _MARKS.get()
    if marks is not None and name not in marks:
        marks[name] = time.time_ns() // 1_000


def header(marks: dict[str, int]) -> str:
    """The `Server-Timing` value of `marks`, closed with `answered` at now."""
    received = marks["received"]
    parts = [f'received;desc="{received}"']
    marks.setdefault("answered", time.time_ns() // 1_000)
    for name, at in marks.items():
        if name != "received":
            parts.append(f"{name};dur={(at - received) / 1000:.2f}")
    return ", ".join(parts)
