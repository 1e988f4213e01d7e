"""A minimal exactly-once service for crash tests: copies accounts.events to echo.out.

Run it with `python -m tests.integration.run_until_idle echo` (every record) or `echo-sparse`
(some records write nothing).
"""

from __future__ import annotations

from collections.abc import Iterator

from services.common.bus import Bus, Handler, Inbound, Outbound, TransactionalProcessor
from services.common.settings import Settings
from services.common.topics import ACCOUNTS_EVENTS, DAY_MS, TopicSpec

ECHO_OUT = TopicSpec("echo.out", 4, "trader address", "AccountEvent", DAY_MS, "crash-test output")
GROUP_ID = "echo"


def copy_with_source_id(message: Inbound) -> Iterator[Outbound]:
    """Each input record once, re-keyed by trader, with an id naming its source position."""
    yield Outbound(
        ECHO_OUT, key=message.value["trader"], value=message.value | {"event_id": message.event_id()}
    )


SILENT_AMOUNTS = range(1_100, 1_250)
"""Amounts `copy_sparsely` writes nothing for: a run long enough for whole batches of them."""


def copy_sparsely(message: Inbound) -> Iterator[Outbound]:
    """As `copy_with_source_id`, but inputs of an amount in `SILENT_AMOUNTS` write nothing (and
    change no state): whole batches of them open no transaction, their offsets wait for the next."""
    if message.value["body"][1]["amount"] not in SILENT_AMOUNTS:
        yield from copy_with_source_id(message)


def build(settings: Settings, handler: Handler = copy_with_source_id) -> TransactionalProcessor:
    return TransactionalProcessor(
        Bus(settings),
        group_id=GROUP_ID,
        inputs=[ACCOUNTS_EVENTS],
        handler=handler,
        transactional_id=f"{settings.topic_prefix}echo-0",
    )
