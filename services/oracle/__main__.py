"""Entry point: `python -m services.oracle` (sources and policy from ORACLE_* settings)."""

from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.observability import serve
from services.common.settings import get_settings
from services.oracle.adapters.clock import system_clock
from services.oracle.service import OracleMetrics, OracleService
from services.oracle.wiring import policy_from, sources_from


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="oracle")
    bus = Bus(settings)
    metrics = OracleMetrics()
    serve(
        settings.oracle_metrics_port, service="oracle", host=settings.observability_host,
        registries=[metrics.registry],
    )  # fmt: skip
    sources = sources_from(settings, system_clock)
    service = OracleService(bus, sources, policy_from(settings), clock=system_clock, metrics=metrics)
    service.run(stop_on_signals())


if __name__ == "__main__":
    main()
