"""Property: random deposits, orders, cancels, amends and withdrawals — and signed commands sent
again, which risk refuses as replays — run through risk and the real matcher (lagging behind risk
by a random number of commands, as in production), keep the ledger balanced after every input,
agree with the matcher's books whenever it has caught up, and replay to the same state hash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.codes import RiskReject
from services.common.records import MarketKind, MarketStatus, OrderFilled, Side, TimeInForce, TraderCommand
from services.risk.core.ledger import Order
from tests.kit import ALICE, BOB, CAROL, trader_address
from tests.unit.risk.exchange import ALL_MARKETS, USDC, Exchange

DAVE = trader_address(0xDA7E)
TRADERS = (ALICE, BOB, CAROL, DAVE)
SYMBOLS = tuple(d.market for d in ALL_MARKETS)
KINDS = {d.market: d.kind for d in ALL_MARKETS}
MID_PRICE = {
    "BTC-USDC": 500_000,
    "BTC-PERP": 500_000,
    "BTC-20261225": 500_000,
    "BTC-20261225-60000-C": 20_000,
    "BTC-20261225-40000-P": 20_000,
    "ODD-PERP": 1_000,
}
PRICE_STEP = {"ODD-PERP": 7}

traders = st.sampled_from(TRADERS)
sides = st.sampled_from((Side.BUY, Side.SELL))
offsets = st.integers(-3, 3)


def action_strategy(symbols: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    """Inputs on `symbols`: 70 % orders priced around each market's mid so that books cross."""
    markets = st.sampled_from(symbols)
    places = st.tuples(
        st.just("place"),
        traders,
        markets,
        sides,
        st.integers(1, 4),
        st.integers(-2, 2),
        st.sampled_from(("GTC", "GTC", "GTC", "IOC", "FOK", "MARKET", "POST", "GTT")),
        st.sampled_from((False, False, False, True)),  # reduce-only
        st.sampled_from((1, 1, 1, 1, 1, 1, 1, 1, 3)),  # now and then the price jumps threefold
    )
    others = st.one_of(
        st.tuples(st.just("deposit"), traders, st.integers(1, 400)),
        st.tuples(st.just("synth"), traders, st.integers(1, 6)),
        st.tuples(st.just("cancel"), traders, st.integers(0, 20)),
        st.tuples(st.just("cancel_all"), traders, st.one_of(st.none(), markets), st.one_of(st.none(), sides)),
        st.tuples(
            st.just("amend"),
            traders,
            st.integers(0, 20),
            st.one_of(st.none(), offsets),
            st.one_of(st.none(), st.integers(1, 8)),
        ),
        st.tuples(
            st.just("race"),
            traders,
            st.integers(0, 20),
            traders,
            st.integers(1, 4),
            st.integers(-2, 1),
            st.integers(-1, 3),
        ),
        st.tuples(st.just("withdraw"), traders, st.integers(1, 300)),
        st.tuples(st.just("settle_withdrawal"), traders, st.booleans()),
        st.tuples(st.just("spike"), traders, markets, st.sampled_from((2, 3))),
        st.tuples(st.just("spike"), traders, markets, st.sampled_from((2, 3))),
        st.tuples(st.just("status"), markets, st.sampled_from((MarketStatus.PAUSED, MarketStatus.ACTIVE))),
        st.tuples(st.just("replay"), st.integers(0, 10**6)),
        st.tuples(st.just("mark"), markets, st.sampled_from((1, 1, 2, 3))),
        st.tuples(st.just("fund"), markets, st.integers(-3, 3)),
    )
    return st.integers(0, 9).flatmap(lambda n: places if n < 7 else others)


scenarios = st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=3, unique=True).flatmap(
    lambda symbols: st.lists(action_strategy(tuple(symbols)), min_size=10, max_size=60)
)
"""A random history on one to three markets (few markets, so that orders meet)."""

deliveries = st.lists(st.sampled_from((0, 0, 1, 1, 2, 3, None)), min_size=60, max_size=60)
"""After each input, how many forwarded commands the matcher catches up on (None: all)."""


# -- the actions ------------------------------------------------------------------------------------


def _price(symbol: str, offset: int) -> int:
    return MID_PRICE[symbol] + offset * PRICE_STEP.get(symbol, 1_000)


def _pick(x: Exchange, trader: str, index: int) -> Order | None:
    orders = sorted((o for o in x.risk.ledger.trader_orders(trader) if o.leaves), key=lambda o: o.order_id)
    return orders[index % len(orders)] if orders else None


def _place(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    _, trader, symbol, side, size, offset, how, reduce_only, jump = action
    # buyers lean up and sellers down, so that most orders meet the other side
    price = _price(symbol, offset + (1 if side is Side.BUY else -1)) * jump
    options: dict[str, Any] = {"reduce_only": reduce_only and KINDS[symbol] is not MarketKind.SPOT}
    if how == "MARKET":  # protective prices far through the book: sells fill well above their limit
        worst = price * 4 if side is Side.BUY else max(1, price // 2)
        x.market_order(trader, symbol, side, size, worst, **options)
        return
    if how in ("IOC", "FOK"):
        options["time_in_force"] = TimeInForce(how)
    elif how == "POST":
        options["post_only"] = True
    elif how == "GTT":
        options |= {"time_in_force": TimeInForce.GTT, "expire_at": x.now + 1_000 * (2 + k % 7)}
    x.place(trader, symbol, side, size, price, **options)


def _cancel(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    _, trader, index = action
    order = _pick(x, trader, index)
    if order is not None:
        x.cancel(trader, order.market, order.order_id)


def _amend(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    _, trader, index, offset, size = action
    order = _pick(x, trader, index)
    if order is not None:
        new_price = None if offset is None else _price(order.market, offset)
        x.amend(trader, order.market, order.order_id, new_price=new_price, new_size=size)


def _race(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    """A crossing order reaches the matcher before an amendment risk has already accepted."""
    _, trader, index, other, size, steps, more = action
    order = _pick(x, trader, index)
    if order is not None:
        x.place(other, order.market, Side.SELL if order.side is Side.BUY else Side.BUY, size, order.price)
        new_price = max(1, order.price + steps * PRICE_STEP.get(order.market, 1_000))
        x.amend(trader, order.market, order.order_id, new_price=new_price, new_size=order.size + more)


def _settle_withdrawal(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    _, trader, paid = action
    account = x.risk.ledger.accounts.get(trader)
    if account is not None and account.withdrawals:
        withdrawal_id = min(account.withdrawals)
        settle = x.risk.apply_withdrawal_paid if paid else x.risk.apply_withdrawal_failed
        x.inputs.append(("paid" if paid else "failed", (trader, withdrawal_id)))
        settle(trader, withdrawal_id)
        x.risk.validate()


def _spike(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    """The price jumps: a maker offers at factor × mid and the largest short buys back through it."""
    _, maker, symbol, factor = action
    spiked = MID_PRICE[symbol] * factor
    x.place(maker, symbol, Side.SELL, 1, spiked)
    shorts = sorted(
        (p.size, t) for (t, m), p in x.risk.ledger.positions.items() if m == symbol and p.size < 0
    )
    if shorts:
        size, trader = shorts[0]
        x.market_order(trader, symbol, Side.BUY, -size, spiked, reduce_only=True)


def _replay(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    """A signed command risk already judged arrives again (another gateway, a retry): refused as
    a replay, and nothing changes."""
    _, index = action
    sent = [item for kind, item in x.inputs if kind == "command" and isinstance(item, TraderCommand)]
    if sent:
        command = sent[index % len(sent)]
        state = x.risk.state_hash()
        assert x.submit(command.trader, command.body).code == RiskReject.NONCE_REUSED
        assert x.risk.state_hash() == state


def _status(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    _, symbol, status = action
    if x.matcher.markets[symbol].status is not status:
        x.set_status(symbol, status)


def _mark(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    """A mark at the mid or far above it: shorts get alerts, and at 2-3× the mid liquidations."""
    _, symbol, factor = action
    if x.matcher.markets[symbol].status in (MarketStatus.ACTIVE, MarketStatus.PAUSED):
        x.mark(symbol, MID_PRICE[symbol] * factor)


def _fund(x: Exchange, k: int, action: tuple[Any, ...]) -> None:
    """Funding of the hour on a perpetual, at a rate whose per-lot payment needs no rounding (so
    the FEES and CLEARING checks stay exact; rounding has its own tests)."""
    _, symbol, steps = action
    if KINDS[symbol] is MarketKind.PERPETUAL:
        x.fund(symbol, steps * 1_000_000, MID_PRICE[symbol])


ACTIONS: dict[str, Callable[[Exchange, int, tuple[Any, ...]], object]] = {
    "deposit": lambda x, k, a: x.deposit(a[1], a[2] * USDC),
    "synth": lambda x, k, a: x.deposit_synth(a[1], "BTC-USDC", a[2]),
    "place": _place,
    "cancel": _cancel,
    "cancel_all": lambda x, k, a: x.cancel_all(a[1], a[2], a[3]),
    "amend": _amend,
    "race": _race,
    "withdraw": lambda x, k, a: x.withdraw(a[1], a[2] * USDC, withdrawal_id=f"w{k}"),
    "settle_withdrawal": _settle_withdrawal,
    "spike": _spike,
    "status": _status,
    "replay": _replay,
    "mark": _mark,
    "fund": _fund,
}


def _run(x: Exchange, action: tuple[Any, ...], k: int) -> None:
    ACTIONS[action[0]](x, k, action)


def _new_exchange(*, in_flight: bool) -> Exchange:
    x = Exchange(*ALL_MARKETS, in_flight=in_flight)
    for trader in TRADERS:
        x.deposit(trader, 300 * USDC)
        x.deposit_synth(trader, "BTC-USDC", 4)
    return x


# -- the checks -------------------------------------------------------------------------------------


def _check_agrees_with_matcher(x: Exchange) -> None:
    """Once the matcher has caught up, both sides of every trade are in the ledger."""
    ledger = x.risk.ledger
    # Every open order in risk rests in the matcher with the same price and leaves, and vice versa.
    resting = {
        oid: (o.price, o.leaves_qty) for m in x.matcher.markets.values() for oid, o in m.book.orders.items()
    }
    assert {oid: (o.price, o.leaves) for oid, o in ledger.orders.items()} == resting
    assert all(o.amend is None for o in ledger.orders.values())
    # Positions net to zero per derivative market; spot lots are out of transit.
    for symbol, kind in KINDS.items():
        if kind is not MarketKind.SPOT:
            assert sum(p.size for (_, m), p in ledger.positions.items() if m == symbol) == 0
    assert all(v == 0 for v in ledger.clearing_inventory.values())
    # CLEARING holds minus the net realized PnL of perpetual and future positions.
    linear = (MarketKind.PERPETUAL, MarketKind.FUTURE)
    assert ledger.clearing == -sum(
        p.realized_pnl for (_, m), p in ledger.positions.items() if KINDS[m] in linear
    )
    # FEES holds exactly the fees the matcher charged.
    assert ledger.fees == sum(
        item.body.fee for kind, item in x.inputs if kind == "posting" and isinstance(item.body, OrderFilled)
    )


# -- the properties ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios, deliveries)
def test_random_flows_keep_the_ledger_balanced_and_replay_identically(
    steps: list[tuple[Any, ...]], lag: list[int | None]
) -> None:
    # State: every kind of market, four traders with collateral and synths; the matcher lags
    # behind risk, so amendments, cancels and fills interleave as they do in production.
    x = _new_exchange(in_flight=True)
    for k, action in enumerate(steps):
        # Action: one random input (validate() runs after every risk input inside the harness).
        _run(x, action, k)
        x.deliver(lag[k])
        # Expectation: whenever the matcher has caught up, risk agrees with it.
        if not x.queue:
            _check_agrees_with_matcher(x)
    x.deliver()
    _check_agrees_with_matcher(x)
    # Expectation: the same inputs give the same state.
    assert x.replay().state_hash() == x.risk.state_hash()


def _close_everything(x: Exchange) -> None:
    """Reopen every market, cancel every order, top every account up, then close each position
    against a deep-pocket counterparty, and that counterparty's positions against a second one."""
    for symbol in SYMBOLS:
        if x.matcher.markets[symbol].status is not MarketStatus.ACTIVE:
            x.set_status(symbol, MarketStatus.ACTIVE)
    for trader in TRADERS:
        x.cancel_all(trader)
    first, second = trader_address(0xF1257), trader_address(0x5EC0D)
    for trader in (*TRADERS, first, second):  # enough for every reduce-only close's fee
        x.deposit(trader, 10**9 * USDC)
    for closer, owners in ((first, TRADERS), (second, (first,))):
        for (trader, symbol), position in sorted(x.risk.ledger.positions.items()):
            if trader not in owners or position.size == 0:
                continue
            side = Side.SELL if position.size > 0 else Side.BUY
            other = Side.BUY if side is Side.SELL else Side.SELL
            x.place(closer, symbol, other, abs(position.size), MID_PRICE[symbol])
            x.place(trader, symbol, side, abs(position.size), MID_PRICE[symbol], reduce_only=True)
            x.cancel_all(closer)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios)
def test_closing_every_position_returns_clearing_to_zero(steps: list[tuple[Any, ...]]) -> None:
    # State: a random history.
    x = _new_exchange(in_flight=False)
    for k, action in enumerate(steps):
        _run(x, action, k)
    # Action: close every position.
    _close_everything(x)
    # Expectation: every position flat, CLEARING back to 0, nothing reserved, spot cash settled.
    assert all(p.size == 0 for p in x.risk.ledger.positions.values())
    assert x.risk.ledger.clearing == 0
    assert not x.risk.ledger.orders
    assert all(a.reserved == 0 and a.locked == 0 for a in x.risk.ledger.accounts.values())
