"""Runs a real exactly-once service until its input has been quiet for a while (crash tests).

    python -m tests.integration.run_until_idle {echo,echo-sparse,matcher,risk} [--idle-exit 4]

Settings come from the environment, like any service's. It exits `--idle-exit` seconds after the
last record, or after `--first-wait` seconds if none came at all.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from services.common.bus import Bus, TransactionalProcessor
from services.common.settings import Settings
from services.matcher.service import MatcherService
from services.risk.service import RiskService
from tests.integration.echo_processor import build as build_echo
from tests.integration.echo_processor import copy_sparsely

BUILDERS: dict[str, Callable[[Settings], TransactionalProcessor]] = {
    "echo": build_echo,
    "echo-sparse": lambda settings: build_echo(settings, copy_sparsely),
    "matcher": lambda settings: MatcherService(Bus(settings)).processor,
    "risk": lambda settings: RiskService(Bus(settings)).processor,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("service", choices=sorted(BUILDERS))
    parser.add_argument("--idle-exit", type=float, default=4.0, help="exit this long after the last record")
    parser.add_argument("--first-wait", type=float, default=60.0, help="give up if no record comes at all")
    args = parser.parse_args()
    processor = BUILDERS[args.service](Settings())
    started = last = time.monotonic()
    seen = 0
    while time.monotonic() - (last if seen else started) <= (args.idle_exit if seen else args.first_wait):
        if done := processor.run_once():
            seen += done
            last = time.monotonic()
    processor.close()


if __name__ == "__main__":
    main()
