"""Entry point: `python -m services.gateway` — the order gateway on GATEWAY_HOST:GATEWAY_PORT."""

import uvicorn

from services.common.logs import configure_logging
from services.common.observability import InstrumentedApp
from services.common.settings import get_settings
from services.gateway.wiring import build_app


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="gateway")
    uvicorn.run(
        # Spans only: the gateway's own /metrics (gateway_*) already counts and times requests.
        InstrumentedApp(build_app(settings), service="gateway", measure=False),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,  # structlog, configured above
        access_log=False,  # the metrics count requests; an access log line each costs ~10 % at load
        timeout_keep_alive=75,  # longer than clients' idle pools: no close racing a reused connection
    )


if __name__ == "__main__":
    main()
