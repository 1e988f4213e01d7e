"""Entry point: `python -m services.matcher`."""

from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.observability import serve, watch_stats
from services.common.settings import get_settings
from services.matcher.service import MatcherService


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="matcher")
    service = MatcherService(Bus(settings))
    serve(
        settings.matcher_metrics_port, service="matcher", host=settings.observability_host,
        ready=service.processor.ready.is_set,
    )  # fmt: skip
    watch_stats("matcher", lambda: service.processor.stats)
    service.run(stop_on_signals())


if __name__ == "__main__":
    main()
