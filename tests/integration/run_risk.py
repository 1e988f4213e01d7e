"""Runs the real RiskService until its input has been quiet for a while (crash tests).

`python -m tests.integration.run_risk --idle-exit 4`; settings from the environment.
"""

from __future__ import annotations

import argparse
import time

from services.common.bus import Bus
from services.common.settings import Settings
from services.risk.service import RiskService


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-exit", type=float, default=4.0)
    parser.add_argument("--first-wait", type=float, default=60.0)
    args = parser.parse_args()
    service = RiskService(Bus(Settings()))
    started = last = time.monotonic()
    seen = 0
    while time.monotonic() - (last if seen else started) <= (args.idle_exit if seen else args.first_wait):
        if done := service.processor.run_once():
            seen += done
            last = time.monotonic()
    service.processor.close()


if __name__ == "__main__":
    main()
