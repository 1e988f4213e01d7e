"""Entry point: `python -m services.funding`."""

from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.settings import get_settings
from services.funding.service import FundingService


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="funding")
    FundingService(Bus(settings)).run(stop_on_signals())


if __name__ == "__main__":
    main()
