"""A minimal exactly-once service for crash tests: copies accounts.events to echo.out.

Run as `python -m tests.integration.echo_processor`; settings come from the environment like any
service's; it exits after `--idle-exit` seconds without input.
"""

from __future__ import annotations

import argparse
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-exit", type=float, default=5.0, help="exit this long after the last record")
    parser.add_argument("--first-wait", type=float, default=60.0, help="give up if no record comes at all")
    args = parser.parse_args()
    processor = build(Settings())
    started = last_record = time.monotonic()
    seen = 0
    while True:
        if done := processor.run_once():
            seen += done
            last_record = time.monotonic()
        elif time.monotonic() - (last_record if seen else started) > (
            args.idle_exit if seen else args.first_wait
        ):
            break
    processor.close()


if __name__ == "__main__":
    main()
