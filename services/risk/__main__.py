"""Entry point: `python -m services.risk`."""

from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.observability import serve, watch_stats
from services.common.settings import get_settings
from services.risk.service import RiskService


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="risk")
    service = RiskService(Bus(settings))
    serve(
        settings.risk_metrics_port, service="risk", host=settings.observability_host,
        ready=service.processor.ready.is_set,
    )  # fmt: skip
    watch_stats("risk", lambda: service.processor.stats)
    service.run(stop_on_signals())


if __name__ == "__main__":
    main()
