"""A connection's outbox: bounded, batched, and the slow-consumer drop rule.

Messages (already JSON text: encoded once, shared by every subscriber) wait here until the
connection's sender takes them. The sender takes everything queued at once as one frame, so
messages queued within one tick (one batch of log records, or while the previous frame was being
written) go out together: one message as itself, several as a JSON array.

A connection is slow when its socket does not take what it is given: the sender's write is
blocked on the client's TCP window while messages pile up behind it. So the bound applies while
a write is in progress (`take` starts one, `written` ends it): past `max_messages` queued then,
the connection is DROPPED, its queue discarded, and the adapter closes it with code 4008, reason
"slow consumer". An idle sender takes whatever one tick queued, however much (the tick's size is
bounded by the log tail's batch), so a burst never drops a client that keeps up. Nothing waits
for a slow client; the fan-out to everyone else never blocks.

| state | event | next state |
|---|---|---|
| OPEN | PUT (within the bound) | OPEN |
| OPEN | OVERFLOW (a put past the bound) | DROPPED |
| OPEN | CLOSE | CLOSED |
| DROPPED | PUT (ignored: the client is gone) | DROPPED |
| DROPPED | CLOSE | CLOSED |
| CLOSED | PUT (ignored) | CLOSED |
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

SLOW_CONSUMER_CODE = 4008
"""Close code of a dropped slow consumer (4000-4999: application codes; 4008 mirrors 1008)."""
SLOW_CONSUMER_REASON = "slow consumer"


class OutboxState(StrEnum):
    """Where a connection's outbox is."""

    OPEN = "OPEN"
    DROPPED = "DROPPED"
    CLOSED = "CLOSED"


class OutboxEvent(StrEnum):
    """What can happen to an outbox."""

    PUT = "PUT"
    OVERFLOW = "OVERFLOW"
    CLOSE = "CLOSE"


TRANSITIONS: dict[tuple[OutboxState, OutboxEvent], OutboxState] = {
    (OutboxState.OPEN, OutboxEvent.PUT): OutboxState.OPEN,
    (OutboxState.OPEN, OutboxEvent.OVERFLOW): OutboxState.DROPPED,
    (OutboxState.OPEN, OutboxEvent.CLOSE): OutboxState.CLOSED,
    (OutboxState.DROPPED, OutboxEvent.PUT): OutboxState.DROPPED,
    (OutboxState.DROPPED, OutboxEvent.CLOSE): OutboxState.CLOSED,
    (OutboxState.CLOSED, OutboxEvent.PUT): OutboxState.CLOSED,
}


class IllegalTransition(AssertionError):
    """An outbox event its state does not allow: a bug in the adapter, never a client's doing."""


class Outbox:
    """Up to `max_messages` encoded messages waiting for the connection's sender."""

    def __init__(self, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError("an outbox holds at least one message")
        self.max_messages = max_messages
        self.state = OutboxState.OPEN
        self.writing = False
        """A frame taken and not yet `written`: the socket has not accepted it yet."""
        self._queue: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, text: str) -> bool:
        """Queue one message; False if the connection is not (or no longer) OPEN — this put may
        itself have overflowed the bound (during a blocked write) and dropped it."""
        if self.state is not OutboxState.OPEN:
            self._step(OutboxEvent.PUT)
            return False
        if self.writing and len(self._queue) >= self.max_messages:
            self._step(OutboxEvent.OVERFLOW)
            self._queue.clear()  # the client will never get these: free them now
            return False
        self._queue.append(text)
        return True

    def take(self) -> tuple[str, int] | None:
        """Everything queued as one frame and how many messages it holds (a write begins: call
        `written` when the socket took it); None if empty or not OPEN."""
        if self.state is not OutboxState.OPEN or not self._queue:
            return None
        self.writing = True
        count = len(self._queue)
        if count == 1:
            return self._queue.popleft(), 1
        frame = "[" + ",".join(self._queue) + "]"
        self._queue.clear()
        return frame, count

    def written(self) -> None:
        """The socket accepted the frame last taken."""
        self.writing = False

    def close(self) -> None:
        """The connection ended; nothing is queued any more."""
        self._step(OutboxEvent.CLOSE)
        self._queue.clear()

    def _step(self, event: OutboxEvent) -> None:
        after = TRANSITIONS.get((self.state, event))
        if after is None:
            raise IllegalTransition(f"outbox {self.state} cannot {event}")
        self.state = after
