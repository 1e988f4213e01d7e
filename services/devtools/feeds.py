"""Keep the local mock Chainlink feeds moving: each follows the simulated price path.

    python -m services.devtools.feeds [--every 20]

On the local chain the mock aggregators (`python -m services.chain.mocks ensure`) answer only what
someone sets, so without this their rounds go STALE after `ORACLE_MAX_AGE_S` and the oracle prices
from the simulated feed alone. This loop publishes, every `--every` seconds, a new round on each
recorded feed at the simulated price of its index for that second (`ORACLE_SIMULATED` start
prices, `ORACLE_SIMULATED_SEED`): the Chainlink source and the simulated source then agree, and
the oracle's median runs on two real code paths. `deploy/dev.sh up` starts it; local use only.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from decimal import Decimal

from web3.exceptions import Web3Exception

from services.chain import client, deployments, mocks
from services.common.bus import stop_on_signals
from services.common.logs import configure_logging
from services.common.settings import Settings, get_settings
from services.oracle.adapters.simulated import simulated_price
from services.oracle.wiring import decimal_e9, pairs

log = logging.getLogger(__name__)


def target_prices(settings: Settings, now_s: int) -> dict[str, str]:
    """Each simulated index's price at second `now_s`, as the decimal string `set_price` takes."""
    prices = {}
    for symbol, start in pairs(settings.oracle_simulated, "ORACLE_SIMULATED"):
        e9 = simulated_price(
            settings.oracle_simulated_seed, symbol, decimal_e9(start, "ORACLE_SIMULATED"), now_s
        )
        prices[symbol] = str(Decimal(e9) / 10**9)
    return prices


def follow(settings: Settings, every_s: float, stop: threading.Event) -> None:
    """Publish a round on every recorded mock feed each `every_s` seconds until `stop` is set."""
    w3 = client.connect(settings.eth_rpc_url)
    path = deployments.deployment_path(settings.cxpt_run_dir)
    while not stop.is_set():
        recorded = deployments.read(path)
        feeds = recorded.chainlink_feeds if recorded is not None else {}
        for symbol, price in target_prices(settings, int(time.time())).items():
            if symbol not in feeds:
                continue
            try:
                round_id, answer = mocks.set_price(w3, path, symbol, price)
                log.info("feed %s round %s answer %s", symbol, round_id, answer)
            except (Web3Exception, OSError, ValueError) as exc:
                # the chain restarting, the file rewritten: say so, try again next time
                log.warning("feed %s not updated: %s", symbol, exc)
        stop.wait(every_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.devtools.feeds", description=__doc__)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between rounds (default 20)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings, service="feeds")
    follow(settings, args.every, stop_on_signals())


if __name__ == "__main__":
    main()
