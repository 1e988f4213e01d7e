"""Entry point: `python -m services.funding`."""

from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.observability import serve, watch_stats
from services.common.settings import get_settings
from services.funding.service import FundingService


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="funding")
    service = FundingService(Bus(settings))
    serve(settings.funding_metrics_port, service="funding", host=settings.observability_host)
    watch_stats("funding", lambda: {"commands_sent": service.sent})
    service.run(stop_on_signals())


if __name__ == "__main__":
    main()
