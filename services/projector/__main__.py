"""Entry point: `python -m services.projector`."""

from services.common.bus import stop_on_signals
from services.common.logs import configure_logging
from services.common.settings import get_settings
from services.projector.service import build


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="projector")
    build(settings).run(stop_on_signals())


if __name__ == "__main__":
    main()
