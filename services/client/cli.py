"""`cxpt` (or `python -m services.client`): trade on the CXPT Exchange from a terminal.

    cxpt key new                                   # an encrypted keystore at ~/.cxpt/key.json
    cxpt markets
    cxpt order limit BTC-PERP buy 0.003 65000.5    # size in BTC, price in USDC (exact grid)
    cxpt order market BTC-PERP sell 0.003 64000    # 64000: the worst price accepted
    cxpt orders --market BTC-PERP
    cxpt cancel BTC-PERP 01a205b3-d000-7000-8000-000000000001
    cxpt balance --json

The gateway is `--gateway`, else $CXPT_GATEWAY_URL, else http://127.0.0.1:8080. The key is
$CXPT_PRIVATE_KEY (raw hex), else the keystore `--key` (default ~/.cxpt/key.json) unlocked with
$CXPT_KEY_PASSWORD or a prompt. Exit status: 0 done (PENDING included), 1 refused by the exchange,
2 bad input or no key, 3 gateway unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import httpx

from services.client import keys
from services.client.client import CxptClient
from services.client.errors import CxptError, Unreachable
from services.client.models import Market, OrderResult
from services.client.units import OffGrid, micro_to_usdc, usdc_to_micro

DEFAULT_GATEWAY: Final = "http://127.0.0.1:8080"
ENV_GATEWAY: Final = "CXPT_GATEWAY_URL"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


@dataclasses.dataclass
class _Context:
    args: argparse.Namespace
    http: httpx.Client | None

    @property
    def gateway(self) -> str:
        return str(self.args.gateway or os.environ.get(ENV_GATEWAY) or DEFAULT_GATEWAY)

    def client(self, *, signed: bool = True) -> CxptClient:
        account = keys.load_account(self.args.key) if signed else None
        return CxptClient(self.gateway, account, http=self.http, max_retries=self.args.retries)

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        if self.args.json:
            print(json.dumps(_jsonable(data), indent=2))
        else:
            human()


def main(argv: Sequence[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Run one command; the exit status. `http` replaces the HTTP client (tests)."""
    parser = _parser()
    args = parser.parse_args(argv)
    context = _Context(args, http)
    try:
        args.run(context)
    except CxptError as error:
        return _report(error)
    except (OffGrid, keys.KeyProblem, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def _report(error: CxptError) -> int:
    where = f", HTTP {error.status}" if error.status is not None else ""
    print(f"error: {error.error} ({error.code}{where}): {error.message}", file=sys.stderr)
    print(f"hint: {error.hint}", file=sys.stderr)
    return EXIT_UNREACHABLE if isinstance(error, Unreachable) else EXIT_REFUSED


# -- commands ----------------------------------------------------------------------------------------


def cmd_key_new(ctx: _Context) -> None:
    path = Path(ctx.args.path or ctx.args.key or keys.DEFAULT_KEY_PATH).expanduser()
    if path.exists() and not ctx.args.force:
        raise keys.KeyProblem(f"{path} exists already (--force replaces it: the old key is then gone)")
    account = keys.new_account()
    secret = keys.password(f"password for the new keystore {path}: ", confirm=True)
    saved = keys.save_keystore(account, path, secret, overwrite=ctx.args.force)
    address = account.address.lower()
    ctx.emit(
        {"address": address, "path": str(saved)},
        lambda: print(f"new key {address}\nsaved to {saved} (encrypted; keep the password safe)"),
    )


def cmd_key_show(ctx: _Context) -> None:
    raw = os.environ.get(keys.ENV_PRIVATE_KEY)
    if raw:
        address, source = keys.account_from_hex(raw).address.lower(), f"${keys.ENV_PRIVATE_KEY}"
    else:
        path = Path(ctx.args.path or ctx.args.key or keys.DEFAULT_KEY_PATH).expanduser()
        address, source = keys.keystore_address(path), str(path)
    ctx.emit({"address": address, "source": source}, lambda: print(f"{address}  ({source})"))


def cmd_info(ctx: _Context) -> None:
    with ctx.client(signed=False) as client:
        info = client.info()
    skew_ms = (info.server_time_us - time.time_ns() // 1_000) / 1_000
    rows = [
        ("gateway", ctx.gateway),
        ("domain", f"{info.name} v{info.version}"),
        ("chain id", str(info.chain_id)),
        ("vault (verifying contract)", info.verifying_contract),
        ("server time", f"{_iso(info.server_time_us)} ({skew_ms:+.0f} ms from your clock)"),
    ]
    ctx.emit(info, lambda: _pairs(rows))


def cmd_markets(ctx: _Context) -> None:
    with ctx.client(signed=False) as client:
        markets = client.markets()

    def human() -> None:
        _table(
            ["MARKET", "KIND", "STATUS", "TICK", "LOT", "MIN LOTS", "MAKER/TAKER BPS"],
            [
                [m.market, m.kind or "", m.status or "", _dec(m.tick_size), _dec(m.lot_size),
                 _opt(m.min_size), f"{_opt(m.maker_fee_bps)}/{_opt(m.taker_fee_bps)}"]
                for m in markets
            ],
        )  # fmt: skip

    ctx.emit(markets, human)


def cmd_order(ctx: _Context) -> None:
    a = ctx.args
    with ctx.client() as client:
        market = None if (a.lots and a.ticks) else client.market(a.market)
        size = _units(a.size, a.lots, market, "lots")
        price = _units(a.price, a.ticks, market, "ticks")
        if a.order_type == "limit":
            result = client.place_limit(
                a.market, a.side, size, price, tif=a.tif, post_only=a.post_only, reduce_only=a.reduce_only,
                client_order_id=a.client_order_id, expire_at=_expiry(a.expire_at), stp=a.stp,
            )  # fmt: skip
        else:
            result = client.place_market(
                a.market, a.side, size, price, tif=a.tif, reduce_only=a.reduce_only,
                client_order_id=a.client_order_id, stp=a.stp,
            )  # fmt: skip
    ctx.emit(result, lambda: _show_order(result, market))


def cmd_cancel(ctx: _Context) -> None:
    with ctx.client() as client:
        if ctx.args.client_id:
            result = client.cancel_by_client_id(ctx.args.market, ctx.args.order_id)
        else:
            result = client.cancel(ctx.args.market, _uuid(ctx.args.order_id))
    ctx.emit(result, lambda: _show_command(result, "cancel"))


def cmd_cancel_all(ctx: _Context) -> None:
    with ctx.client() as client:
        result = client.cancel_all(ctx.args.market, ctx.args.side)
    ctx.emit(result, lambda: _show_command(result, "cancel-all"))


def cmd_orders(ctx: _Context) -> None:
    a = ctx.args
    with ctx.client() as client:
        if a.all:
            rows, more = list(client.iter_orders(market=a.market, status=a.status, page_size=a.limit)), None
        else:
            page = client.orders(market=a.market, status=a.status, limit=a.limit)
            rows, more = page.orders, page.next_cursor
        grids = _grids(client) if not a.json else {}

    def human() -> None:
        table = []
        for o in rows:
            m = grids.get(o.market or "")
            price, size, filled = (
                _human(o.price, m, "price"),
                _human(o.size, m, "size"),
                _human(o.filled_qty, m, "size"),
            )
            table.append(
                [
                    o.order_id,
                    o.market or "",
                    o.side or "",
                    price,
                    size,
                    filled,
                    o.status or "",
                    o.client_order_id or "",
                ]
            )
        _table(["ORDER ID", "MARKET", "SIDE", "PRICE", "SIZE", "FILLED", "STATUS", "CLIENT ID"], table)
        if more:
            print("(more orders: --all lists every page; --limit up to 500 per page)")

    ctx.emit({"orders": rows, "nextCursor": more}, human)


def cmd_positions(ctx: _Context) -> None:
    with ctx.client() as client:
        positions = client.positions()
        grids = _grids(client) if positions and not ctx.args.json else {}

    def human() -> None:
        table = []
        for p in positions:
            market = grids.get(p.market)
            entry = p.entry_price(market) if market else None
            table.append([
                p.market, _human(p.size, market, "size"), "" if entry is None else _dec(entry),
                _human(p.last_px, market, "price"), _usdc(p.realized_pnl), _usdc(p.collateral),
            ])  # fmt: skip
        _table(["MARKET", "SIZE", "ENTRY", "LAST PRICE", "REALIZED PNL", "COLLATERAL"], table)

    ctx.emit(positions, human)


def cmd_balance(ctx: _Context) -> None:
    with ctx.client() as client:
        balance = client.balance()
    rows = [
        ("trader", balance.trader),
        ("free", f"{_usdc(balance.free)} USDC"),
        ("reserved", f"{_usdc(balance.reserved)} USDC"),
        ("withdrawing", f"{_usdc(balance.withdrawing)} USDC"),
        ("locked", f"{_usdc(balance.locked)} USDC"),
    ]
    rows += [(h.asset, f"{h.free} lots held, {h.reserved} on sale") for h in balance.holdings]
    ctx.emit(balance, lambda: _pairs(rows))


def cmd_withdraw(ctx: _Context) -> None:
    amount = usdc_to_micro(ctx.args.amount)
    with ctx.client() as client:
        result = client.withdraw(amount, as_cxpt=ctx.args.cxpt)
    ctx.emit(result, lambda: _show_command(result, f"withdrawal of {_usdc(amount)} USDC"))


# -- rendering --------------------------------------------------------------------------------------


def _show_order(result: OrderResult, market: Market | None) -> None:
    rows = [
        ("order id", str(result.order_id)),
        ("client order id", result.client_order_id),
        ("status", result.status),
        ("filled", _human(result.filled_qty, market, "size")),
        ("resting", _human(result.leaves_qty, market, "size")),
    ]
    if result.cancelled_qty:
        rows.append(("cancelled", _human(result.cancelled_qty, market, "size")))
    _pairs(rows)
    if result.pending:
        print("queued: the exchange has it, the decision is not known yet (see `cxpt orders`)")


def _show_command(result: Any, what: str) -> None:
    line = f"{what}: {result.status}"
    if result.cancelled_qty:
        line += f" ({result.cancelled_qty} lots off the book)"
    if result.withdrawal_id is not None:
        line += f" (withdrawal id {result.withdrawal_id})"
    print(line)
    if result.pending:
        print("queued: the exchange has it, the decision is not known yet")


def _table(header: list[str], rows: Iterable[list[str]]) -> None:
    body = [[str(cell) for cell in row] for row in rows]
    if not body:
        print("(none)")
        return
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _pairs(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def _human(value: int | None, market: Market | None, what: str) -> str:
    if value is None:
        return ""
    if market is None:
        return f"{value} {'ticks' if what == 'price' else 'lots'}"
    return _dec(market.price(value) if what == "price" else market.size(value))


def _dec(value: Decimal) -> str:
    return format(value, "f")


def _usdc(micro: int | None) -> str:
    return "" if micro is None else _dec(micro_to_usdc(micro))


def _opt(value: object) -> str:
    return "" if value is None else str(value)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, UUID | Decimal):
        return str(value)
    return value


# -- parsing -----------------------------------------------------------------------------------------


def _grids(client: CxptClient) -> dict[str, Market]:
    """Markets by symbol for human units; empty if the gateway cannot list them (ticks/lots then)."""
    try:
        return {m.market: m for m in client.markets()}
    except (CxptError, ValueError):
        return {}


def _units(text: str, raw: bool, market: Market | None, what: str) -> int:
    if raw:
        try:
            return int(text)
        except ValueError:
            raise OffGrid(f"{text!r} is not a whole number of {what}") from None
    assert market is not None
    try:
        return market.lots(text) if what == "lots" else market.ticks(text)
    except OffGrid as error:
        grid = market.lot_size if what == "lots" else market.tick_size
        flag = "--lots" if what == "lots" else "--ticks"
        raise OffGrid(
            f"{error} ({market.market}'s grid: {_dec(grid)}; {flag} takes a raw {what} count)"
        ) from None


def _expiry(text: str | None) -> int | None:
    """--expire-at: µs since the epoch, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--expire-at {text!r}: give µs since the epoch or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an order id (a UUID)") from None


def _side(text: str) -> str:
    side = text.upper()
    if side not in ("BUY", "SELL"):
        raise argparse.ArgumentTypeError(f"side is buy or sell, not {text!r}")
    return side


def _options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--gateway", default=default(None), help=f"gateway URL (default ${ENV_GATEWAY} or {DEFAULT_GATEWAY})"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="machine output")
    parser.add_argument(
        "--key", default=default(None), help=f"keystore path (default {keys.DEFAULT_KEY_PATH})"
    )
    parser.add_argument(
        "--retries", type=int, default=default(0),
        help="retry 429s, timeouts and 5xx this many times (the same signed request; default 0)",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxpt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _options(parser, defaults=True)
    # The same options after the command too (`cxpt orders --json`); SUPPRESS keeps the subcommand's
    # parser from resetting what was given before the command.
    common = argparse.ArgumentParser(add_help=False)
    _options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, run: Callable[[_Context], None], help: str, into: Any = sub
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = into.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(run=run)
        return p

    key = sub.add_parser("key", help="create or show your key").add_subparsers(
        dest="key_command", required=True
    )
    for name, run, help in (("new", cmd_key_new, "create a key in an encrypted keystore"),
                            ("show", cmd_key_show, "print your address (never the key)")):  # fmt: skip
        p = command(name, run, help, into=key)
        p.add_argument("--path", help=f"keystore file (default {keys.DEFAULT_KEY_PATH})")
        if name == "new":
            p.add_argument("--force", action="store_true", help="replace an existing keystore")

    command("info", cmd_info, "the gateway's EIP-712 domain and clock")
    command("markets", cmd_markets, "markets, their grids and status")

    order = sub.add_parser("order", help="place an order").add_subparsers(dest="order_type", required=True)
    for kind, tifs, default_tif in (
        ("limit", ["GTC", "IOC", "FOK", "GTT"], "GTC"),
        ("market", ["IOC", "FOK"], "IOC"),
    ):
        p = command(kind, cmd_order, f"place a {kind} order", into=order)
        p.add_argument("market")
        p.add_argument("side", type=_side, help="buy or sell")
        p.add_argument("size", help="in base units (e.g. 0.003 BTC), or lots with --lots")
        p.add_argument("price", help="in quote units (e.g. 65000.5 USDC), or ticks with --ticks"
                       + ("; the worst price accepted" if kind == "market" else ""))  # fmt: skip
        p.add_argument("--lots", action="store_true", help="SIZE is a count of lots")
        p.add_argument("--ticks", action="store_true", help="PRICE is a count of ticks")
        p.add_argument("--tif", default=default_tif, type=str.upper, choices=tifs, help="time in force")
        p.add_argument("--reduce-only", action="store_true")
        p.add_argument(
            "--client-order-id", help="your id (unique among your open orders; default: the order id)"
        )
        p.add_argument(
            "--stp", default="CANCEL_TAKER", type=str.upper, help="self-trade prevention",
            choices=["CANCEL_MAKER", "CANCEL_TAKER", "CANCEL_BOTH"],
        )  # fmt: skip
        if kind == "limit":
            p.add_argument("--post-only", action="store_true")
            p.add_argument("--expire-at", help="GTT expiry: µs since the epoch or ISO 8601 (UTC by default)")

    p = command("cancel", cmd_cancel, "cancel one order")
    p.add_argument("market")
    p.add_argument("order_id", help="the order id (or, with --client-id, your client order id)")
    p.add_argument("--client-id", action="store_true", help="ORDER_ID is the client order id you chose")
    p = command("cancel-all", cmd_cancel_all, "cancel all your open orders (or one market's, one side's)")
    p.add_argument("--market")
    p.add_argument("--side", type=_side)

    p = command("orders", cmd_orders, "your orders, newest first")
    p.add_argument("--market")
    p.add_argument(
        "--status",
        type=str.upper,
        choices=[
            "OPEN",
            "NEW",
            "ACCEPTED",
            "RESTING",
            "PARTIALLY_FILLED",
            "FILLED",
            "CANCELLED",
            "REJECTED",
            "EXPIRED",
        ],
    )
    p.add_argument("--all", action="store_true", help="every page, not only the first")
    p.add_argument("--limit", type=int, default=100, help="orders per page (1-500)")

    command("positions", cmd_positions, "your positions")
    command("balance", cmd_balance, "your collateral")
    p = command("withdraw", cmd_withdraw, "withdraw free collateral to your address on chain")
    p.add_argument("amount", help="USDC, e.g. 250 or 12.5 (at most 6 decimals)")
    p.add_argument("--cxpt", action="store_true", help="paid in CXPT instead of USDC")
    return parser


if __name__ == "__main__":
    sys.exit(main())
