"""The exchange's services running in threads of the test process, on the real infrastructure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Protocol

from services.common.bus import Bus
from services.common.settings import Settings
from services.matcher.service import MatcherService
from services.risk.service import RiskService


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...


@contextmanager
def running(service: Runnable) -> Iterator[None]:
    """`service` processing in a thread of this process until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


@contextmanager
def exchange(settings: Settings, *extra: Runnable) -> Iterator[None]:
    """Matcher and risk (and `extra` services, e.g. a projector) running on `settings`' topics."""
    services: list[Runnable] = [MatcherService(Bus(settings)), RiskService(Bus(settings)), *extra]
    with ExitStack() as stack:
        for service in services:
            stack.enter_context(running(service))
        yield
