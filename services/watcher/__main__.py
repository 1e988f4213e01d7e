"""Entry point: `python -m services.watcher` (docs/watcher.md).

Until a Vault is known (`VAULT_ADDRESS`, or the deployment file written by
``python -m services.chain.deploy``) it waits, checking every `WATCHER_POLL_S`, so that
``deploy/dev.sh up`` may start it before the contracts are deployed.

Exit codes: 0 stopped by a signal; 1 a misconfiguration or a log the Vault cannot have written;
2 a deep reorg (a final block replaced): the operator decides what happens next.
"""

from __future__ import annotations

import logging
import sys

from services.common.bus import stop_on_signals
from services.common.logs import configure_logging
from services.common.observability import serve, watch_stats
from services.common.settings import get_settings
from services.watcher.core import MalformedVaultLog
from services.watcher.service import DeepReorgError, WatcherService, build, resolve_vault

log = logging.getLogger("services.watcher")


def main() -> int:
    settings = get_settings()
    configure_logging(settings, service="watcher")
    stop = stop_on_signals()
    watching: list[WatcherService] = []  # ready once a Vault is known and the watcher built
    serve(
        settings.watcher_metrics_port, service="watcher", host=settings.observability_host,
        ready=lambda: bool(watching),
    )  # fmt: skip
    if resolve_vault(settings) is None:
        log.warning("no Vault deployed yet (run: python -m services.chain.deploy); waiting")
        while resolve_vault(settings) is None:
            if stop.wait(settings.watcher_poll_s):
                return 0
    try:
        watching.append(build(settings))
        watch_stats("watcher", lambda: watching[0].stats)
        watching[0].run(stop)
    except DeepReorgError as exc:
        log.critical("%s", exc)
        return 2
    except (MalformedVaultLog, RuntimeError) as exc:
        log.critical("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
