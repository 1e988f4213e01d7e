"""A minimal exactly-once service for crash tests: copies accounts.events to echo.out.

Run it with `python -m tests.integration.run_until_idle echo`.
"""

from __future__ import annotations

from collections.abc import Iterator

from services.common.bus import Bus, Inbound, Outbound, TransactionalProcessor
from services.common.settings import Settings
from services.common.topics import ACCOUNTS_EVENTS, DAY_MS, TopicSpec

ECHO_OUT = TopicSpec("echo.out", 4, "trader address", "AccountEvent", DAY_MS, "crash-test output")
GROUP_ID = "echo"


def copy_with_source_id(message: Inbound) -> Iterator[Outbound]:
    """Each input record once, re-keyed by trader, with an id naming its source position."""
    yield Outbound(
        ECHO_OUT, key=message.value["trader"], value=message.value | {"event_id": message.event_id()}
    )


def build(settings: Settings) -> TransactionalProcessor:
    return TransactionalProcessor(
        Bus(settings),
        group_id=GROUP_ID,
        inputs=[ACCOUNTS_EVENTS],
        handler=copy_with_source_id,
        transactional_id=f"{settings.topic_prefix}echo-0",
    )
