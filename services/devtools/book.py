"""Drive the exchange through Kafka — a developer's shortcut past the gateway (no signatures).

    python -m services.devtools.book list BTC-PERP
    python -m services.devtools.book order 0x1111111111111111111111111111111111111111 sell 0.003 65000.5
    python -m services.devtools.book order 0x2222222222222222222222222222222222222222 buy 0.005 65001
    python -m services.devtools.book tail BTC-PERP
    python -m services.devtools.book account 0x2222222222222222222222222222222222222222

`list` goes straight to the matcher (an admin command). `order` goes on `orders.commands` as the
gateway will send it, so risk checks collateral first (credit traders with
`services.devtools.credit`). There is deliberately no way around risk: a fill risk never reserved
for breaks its ledger, and risk stops rather than trade on a broken ledger. Prices and sizes are
decimals converted exactly to ticks and lots; off-grid values are refused.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from typing import Any

from services.common.binding import from_avro, to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.presets import PRESETS, preset
from services.common.records import (
    AccountEvent,
    CreateMarket,
    MatcherCommand,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    TradeLogEntry,
    TraderCommand,
)
from services.common.settings import get_settings
from services.common.topics import ACCOUNTS_EVENTS, MATCHER_COMMANDS, ORDERS_COMMANDS, TRADE_LOG
from services.replay.cli import read_topic

E9 = 1_000_000_000
_DECIMAL = re.compile(r"^(\d+)(?:\.(\d{1,9}))?$")


def to_units(text: str, unit_e9: int, what: str) -> int:
    """`text` (a decimal) as a whole number of `unit_e9`/1e9 units; refuses anything off the grid."""
    match = _DECIMAL.match(text)
    if not match:
        raise ValueError(f"{what} {text!r} is not a positive decimal")
    scaled = int(match[1]) * E9 + int((match[2] or "").ljust(9, "0"))
    units, remainder = divmod(scaled, unit_e9)
    if remainder or units <= 0:
        raise ValueError(f"{what} {text} is not a positive multiple of {unit_e9 / E9:g}")
    return units


def _send(bus: Bus, record: Outbound) -> None:
    producer = TypedProducer(bus)
    producer.send(record)
    producer.flush()


def cmd_list(bus: Bus, args: argparse.Namespace) -> None:
    command = MatcherCommand(
        command_id=str(uuid.uuid4()), market=args.market, trader=None, ts_init=time.time_ns() // 1000,
        body=CreateMarket(definition=preset(args.market)),
    )  # fmt: skip
    _send(bus, Outbound(MATCHER_COMMANDS, key=args.market, value=command))
    print(f"sent: list {args.market}")


def cmd_order(bus: Bus, args: argparse.Namespace) -> None:
    market = preset(args.market)
    price = to_units(args.price, market.tick_size_e9, "price")
    size = to_units(args.size, market.lot_size_e9, "size")
    order_id = str(uuid.uuid4())
    now_us = time.time_ns() // 1000  # signed and received at once: risk refuses a nonce far from ts_init
    body = PlaceOrder(
        market=args.market, order_id=order_id, client_order_id=f"dev-{order_id[:8]}",
        side=Side(args.side.upper()), order_type=OrderType.LIMIT, price=price, size=size,
        time_in_force=TimeInForce.GTC, nonce=now_us, signature=b"",
    )  # fmt: skip
    trader = args.trader.lower()
    command = TraderCommand(command_id=str(uuid.uuid4()), trader=trader, ts_init=now_us, body=body)
    _send(bus, Outbound(ORDERS_COMMANDS, key=trader, value=command))
    print(f"sent to risk: {args.side} {size} lots @ {price} ticks on {args.market} (order {order_id})")


def cmd_tail(bus: Bus, args: argparse.Namespace) -> None:
    for _, value in read_topic(bus, TRADE_LOG, None, 0, None):
        entry: TradeLogEntry = from_avro(TradeLogEntry, value)
        if entry.market == args.market:
            for index, event in enumerate(entry.events):
                print(f"{entry.first_seq + index:>6}  {_describe(event)}")


def cmd_account(bus: Bus, args: argparse.Namespace) -> None:
    trader = args.trader.lower()
    for _, value in read_topic(bus, ACCOUNTS_EVENTS, None, 0, None):
        event: AccountEvent = from_avro(AccountEvent, value)
        if event.trader == trader:
            print(f"  {_describe(event.body)}")


def _describe(body: Any) -> str:
    shown = ", ".join(
        f"{k}={v}"
        for k, v in to_avro(body).items()
        if k not in ("definition", "trader") and v not in (None, "")
    )
    return f"{type(body).__name__:<20} {shown}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devtools.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="list a preset market")
    listing.add_argument("market", choices=sorted(PRESETS))
    listing.set_defaults(run=cmd_list)
    order = sub.add_parser("order", help="place a GTC limit order")
    order.add_argument("trader")
    order.add_argument("side", choices=["buy", "sell"])
    order.add_argument("size", help="in base units, e.g. 0.003")
    order.add_argument("price", help="in USDC, e.g. 65000.5")
    order.add_argument("--market", default="BTC-PERP", choices=sorted(PRESETS))
    order.set_defaults(run=cmd_order)
    tail = sub.add_parser("tail", help="print a market's trade log")
    tail.add_argument("market", choices=sorted(PRESETS))
    tail.set_defaults(run=cmd_tail)
    account = sub.add_parser(
        "account", help="print a trader's account events (deposits, rejections, balances)"
    )
    account.add_argument("trader")
    account.set_defaults(run=cmd_account)
    args = parser.parse_args(argv)
    try:
        args.run(Bus(get_settings()), args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
