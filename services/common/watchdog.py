"""A call that never returns ends the process, so that it is restarted.

librdkafka's transactional calls take a timeout, but after the transaction coordinator's broker
restarts, `send_offsets_to_transaction` can wait for ever whatever its timeout (librdkafka issues
#5456 and #5511, open in 2.16: the coordinator request's deadline is never checked, and a
decommissioned coordinator is never looked up again). A stateful service stuck there holds its
partitions and serves nothing, and no error ever surfaces. The soak found it
(docs/reliability.md). Exiting is safe: the open transaction aborts, and the restarted process
resumes from the committed offsets — exactly once, as after any crash.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

EXIT_STALLED = 75
"""The process's exit status when a watched call stalled (EX_TEMPFAIL: restart me)."""


def _exit_stalled(what: str, waited_s: float) -> None:
    log.critical("%s has not returned after %.0f s; exiting to be restarted", what, waited_s)
    logging.shutdown()
    os._exit(EXIT_STALLED)


class StallWatchdog:
    """Calls `on_stall` (default: exit the process) once a call inside `watching` has taken longer
    than `limit_s`. `check` is the whole rule; `start` runs it in a daemon thread."""

    def __init__(
        self,
        limit_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_stall: Callable[[str, float], None] = _exit_stalled,
    ) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._on_stall = on_stall
        self._watched: tuple[str, float] | None = None
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, what: str) -> Iterator[None]:
        """The block is one watched call, named `what` in the log line if it stalls."""
        self._watched = (what, self._clock())
        try:
            yield
        finally:
            self._watched = None

    def check(self) -> bool:
        """Call `on_stall` if the watched call is overdue; whether it was."""
        watched = self._watched  # one read: the block may end meanwhile
        if watched is None:
            return False
        what, since = watched
        waited = self._clock() - since
        if waited <= self.limit_s:
            return False
        self._on_stall(what, waited)
        return True

    def start(self) -> None:
        """Check every tenth of the limit, in a daemon thread, for the life of the process."""
        if self._thread is not None:
            return

        def loop() -> None:
            while True:
                time.sleep(self.limit_s / 10)
                self.check()

        self._thread = threading.Thread(target=loop, name="stall-watchdog", daemon=True)
        self._thread.start()
