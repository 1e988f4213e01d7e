"""Entry point: `python -m services.risk`."""

from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.settings import get_settings
from services.risk.service import RiskService


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="risk")
    RiskService(Bus(settings)).run(stop_on_signals())


if __name__ == "__main__":
    main()
