"""Self-describing record factories for tests (the project's test kit)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from msgspec.structs import replace

from services.common.presets import preset
from services.common.records import (
    AmendOrder,
    ApplyFunding,
    CancelAllOrders,
    CancelOrder,
    CreateMarket,
    MarketDefinition,
    MarketKind,
    MarketStatus,
    MatcherCommand,
    OptionType,
    OrderType,
    PlaceOrder,
    SetMarketStatus,
    SetMarkPrice,
    SettleMarket,
    Side,
    TimeInForce,
)

DEPOSIT = "exchange.cxpt.DepositConfirmed"
TS_2026_11_23 = 1_795_392_000_000_000  # 2026-11-23T00:00:00Z in microseconds


def trader_address(n: int) -> str:
    """A distinct, valid-looking lower-case address for trader number `n`."""
    return "0x" + f"{n:040x}"


def deposit_event(*, trader: str, amount: int, n: int, ts_event: int = TS_2026_11_23) -> dict[str, Any]:
    """An `AccountEvent` crediting `amount` micro-USDC to `trader`; `n` makes its ids unique."""
    return {
        "event_id": f"dev:0:{n}",
        "trader": trader,
        "ts_event": ts_event + n,
        "body": (
            DEPOSIT,
            {"amount": amount, "chain_id": 0, "tx_hash": f"dev-{n}", "log_index": 0, "block_number": 0},
        ),
    }


# -- matcher commands ---------------------------------------------------------------------------

ALICE = trader_address(0xA11CE)
BOB = trader_address(0xB0B)
CAROL = trader_address(0xCA201)


def wait_until_ready(gateway_url: str, timeout_s: float = 60) -> None:
    """Return once the gateway at `gateway_url` answers `/ready` with 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{gateway_url}/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the gateway at {gateway_url} was not ready within {timeout_s} s")


def btc_perp(
    *, status: MarketStatus = MarketStatus.ACTIVE, min_size: int = 1, fee_bps: int = 50
) -> MarketDefinition:
    """BTC-PERP: tick 0.1 USDC, lot 0.001 BTC, so one tick on one lot is 100 micro-USDC."""
    return preset("BTC-PERP", status=status, min_size=min_size, fee_bps=fee_bps)


EXPIRY_2026_12_25 = 1_798_156_800_000_000  # 2026-12-25T00:00:00Z in microseconds


def btc_future_dec26() -> MarketDefinition:
    """BTC-20261225: a dated future on the BTC-PERP grid (100 micro-USDC per tick-lot)."""
    return replace(btc_perp(), market="BTC-20261225", kind=MarketKind.FUTURE, expiry=EXPIRY_2026_12_25)


def btc_option_dec26(option_type: OptionType, strike: int) -> MarketDefinition:
    """A European BTC option on the BTC-PERP grid; `strike` in ticks (600_000 = 60,000 USDC)."""
    letter = "C" if option_type is OptionType.CALL else "P"
    return replace(
        btc_perp(),
        market=f"BTC-20261225-{strike // 10}-{letter}",
        kind=MarketKind.OPTION,
        expiry=EXPIRY_2026_12_25,
        strike=strike,
        option_type=option_type,
    )


def order_id(n: int) -> str:
    """The n-th order id: a valid UUIDv7-shaped string that sorts by n."""
    return f"00000000-0000-7000-8000-{n:012x}"


def limit_order(n: int, side: Side, size: int, price: int, **options: Any) -> PlaceOrder:
    """The n-th order of a flow: a GTC limit on BTC-PERP, ids order_id(n) and c<n>, nonce the µs
    timestamp TS_2026_11_23 + n (unique per n, inside risk's window around the flows' ts_init);
    `options` override any PlaceOrder field (market and nonce included)."""
    fields: dict[str, Any] = {
        "market": "BTC-PERP",
        "order_id": order_id(n),
        "client_order_id": f"c{n}",
        "side": side,
        "order_type": OrderType.LIMIT,
        "price": price,
        "size": size,
        "time_in_force": TimeInForce.GTC,
        "nonce": TS_2026_11_23 + n,
        "signature": b"",
    } | options
    return PlaceOrder(**fields)


class Commands:
    """Builds a market's MatcherCommands with increasing ids and times (1 ms apart by default)."""

    def __init__(self, market: str = "BTC-PERP", *, start_us: int = TS_2026_11_23) -> None:
        self.market = market
        self.now = start_us
        self.n = 0

    def _wrap(self, trader: str | None, body: Any, *, at: int | None = None) -> MatcherCommand:

        self.n += 1
        self.now = at if at is not None else self.now + 1_000
        return MatcherCommand(
            command_id=order_id(1_000_000 + self.n),
            market=self.market,
            trader=trader,
            ts_init=self.now,
            body=body,
        )

    def create(self, definition: MarketDefinition | None = None) -> MatcherCommand:

        return self._wrap(None, CreateMarket(definition=definition or btc_perp()))

    def set_status(self, status: MarketStatus, reason: str = "test") -> MatcherCommand:

        return self._wrap(None, SetMarketStatus(status=status, reason=reason))

    def set_mark(
        self, mark_price: int, index_price: int | None = None, *, at: int | None = None
    ) -> MatcherCommand:
        """A mark (and index, by default the same) price from the funding/expiry service."""
        body = SetMarkPrice(mark_price=mark_price, index_price=index_price or mark_price)
        return self._wrap(None, body, at=at)

    def apply_funding(
        self, start: int, end: int, rate_e9: int, index_price: int, *, at: int | None = None
    ) -> MatcherCommand:
        """Funding for [start, end) at `rate_e9`, sent at `at` (default: 1 ms after the interval)."""
        body = ApplyFunding(
            interval_start=start,
            interval_end=end,
            rate_e9=rate_e9,
            index_price=index_price,
            mark_twap=index_price,
            index_twap=index_price,
        )
        return self._wrap(None, body, at=at if at is not None else max(end + 1_000, self.now + 1_000))

    def settle(self, settlement_price: int, *, at: int | None = None) -> MatcherCommand:
        return self._wrap(None, SettleMarket(settlement_price=settlement_price, method="test"), at=at)

    def limit(self, trader: str, side: Side, size: int, price: int, **options: Any) -> MatcherCommand:
        """A limit order; `options` override PlaceOrder fields (time_in_force, post_only, stp, ...)."""
        at = options.pop("at", None)
        body = limit_order(self.n + 1, side, size, price, **({"market": self.market} | options))
        return self._wrap(trader, body, at=at)

    def market_order(
        self, trader: str, side: Side, size: int, worst_price: int, **options: Any
    ) -> MatcherCommand:

        options = {"order_type": OrderType.MARKET, "time_in_force": TimeInForce.IOC} | options
        return self.limit(trader, side, size, worst_price, **options)

    def cancel(
        self, trader: str, order: str | None = None, *, client_order_id: str | None = None
    ) -> MatcherCommand:

        return self._wrap(
            trader,
            CancelOrder(
                market=self.market, order_id=order, client_order_id=client_order_id, nonce=0, signature=b""
            ),
        )

    def cancel_all(self, trader: str, side: Side | None = None) -> MatcherCommand:

        return self._wrap(trader, CancelAllOrders(market=self.market, side=side, nonce=0, signature=b""))

    def amend(
        self, trader: str, order: str, *, new_price: int | None = None, new_size: int | None = None
    ) -> MatcherCommand:

        return self._wrap(
            trader,
            AmendOrder(
                market=self.market,
                order_id=order,
                new_price=new_price,
                new_size=new_size,
                nonce=0,
                signature=b"",
            ),
        )
