"""Entry point: `python -m services.projector [--only accounts|read-model|prices]`.

`--only read-model` with a fresh CASSANDRA_KEYSPACE rebuilds the read model from offset 0 next to
the running projector (docs/read-model.md).
"""

import argparse

from services.common.bus import stop_on_signals
from services.common.logs import configure_logging
from services.common.observability import serve
from services.common.settings import get_settings
from services.projector.service import PARTS, build


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.projector")
    parser.add_argument("--only", choices=PARTS, help="run one projection (default: all)")
    args = parser.parse_args()
    settings = get_settings()
    configure_logging(settings, service="projector")
    projector = build(settings, (args.only,) if args.only else PARTS)
    # Ready once built: the stores are connected and migrated, the consumers subscribed.
    serve(settings.projector_metrics_port, service="projector", host=settings.observability_host)
    projector.run(stop_on_signals())


if __name__ == "__main__":
    main()
