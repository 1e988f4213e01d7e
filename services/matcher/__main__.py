"""Entry point: `python -m services.matcher`."""

from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.settings import get_settings
from services.matcher.service import MatcherService


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="matcher")
    MatcherService(Bus(settings)).run(stop_on_signals())


if __name__ == "__main__":
    main()
