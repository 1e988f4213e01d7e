"""Credit a test account with USDC through the same event an on-chain deposit produces.

    python -m services.devtools.credit 0x1111111111111111111111111111111111111111 1000.5

Until the chain watcher exists this is how a local trader gets collateral. The event is a
`DepositConfirmed` with chain id 0, so analytics can tell dev credits from real deposits.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid

from services.common.bus import Bus, Outbound, TypedProducer
from services.common.money import format_usdc, usdc_to_micro
from services.common.settings import get_settings
from services.common.topics import ACCOUNTS_EVENTS

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_AMOUNT = re.compile(r"^(\d+)(?:\.(\d{1,6}))?$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.devtools.credit", description=__doc__)
    parser.add_argument("trader", help="trader address, 0x + 40 hex digits")
    parser.add_argument("usdc", help="amount in USDC, up to 6 decimals, e.g. 1000.5")
    args = parser.parse_args(argv)
    if not _ADDRESS.match(args.trader):
        parser.error(f"{args.trader!r} is not an address (0x followed by 40 hex digits)")
    match = _AMOUNT.match(args.usdc)
    if not match or usdc_to_micro(int(match[1]), match[2] or "") <= 0:
        parser.error(f"{args.usdc!r} is not a positive USDC amount with at most 6 decimals")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    whole, _, frac = args.usdc.partition(".")
    amount = usdc_to_micro(int(whole), frac)
    trader = args.trader.lower()
    dev_id = f"dev-{uuid.uuid4()}"
    event = {
        "event_id": f"dev:{dev_id}",
        "trader": trader,
        "ts_event": time.time_ns() // 1000,
        "body": (
            "exchange.cxpt.DepositConfirmed",
            {"amount": amount, "chain_id": 0, "tx_hash": dev_id, "log_index": 0, "block_number": 0},
        ),
    }
    producer = TypedProducer(Bus(get_settings()))
    producer.send(Outbound(ACCOUNTS_EVENTS, key=trader, value=event))
    producer.flush()
    print(f"credited {format_usdc(amount)} USDC to {trader} ({dev_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
