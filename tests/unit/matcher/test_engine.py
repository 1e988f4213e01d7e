"""Matching engine, by example. Each test: State (the book), Action (one command), Expectation."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from services.common.codes import CancelReason, MatcherReject
from services.common.records import (
    CommandRejected,
    LiquiditySide,
    MarketStatus,
    MatcherCommand,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRested,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TradeExecuted,
)
from services.matcher.core.book import ORDER_FIELDS, RestingOrder
from services.matcher.core.engine import CommandResult, Event, MatchingEngine, export_state, import_state
from tests.kit import ALICE, BOB, CAROL, Commands, btc_perp, order_id

BUY, SELL = Side.BUY, Side.SELL


class Market:
    """An engine with BTC-PERP listed, and the command builder for it."""

    def __init__(self, **definition: object) -> None:
        self.engine = MatchingEngine()
        self.commands = Commands()
        self.apply(self.commands.create(btc_perp(**definition)))  # type: ignore[arg-type]

    def apply(self, command: MatcherCommand) -> CommandResult:
        result = self.engine.apply(command)
        self.engine.validate()
        return result

    def run(self, commands: Iterable[MatcherCommand]) -> list[Event]:
        return [e for c in commands for e in self.apply(c).events]

    def place(self, trader: str, side: Side, size: int, price: int, **options: object) -> list[Event]:
        return self.apply(self.commands.limit(trader, side, size, price, **options)).events

    @property
    def book(self):  # type: ignore[no-untyped-def]
        return self.engine.markets[self.commands.market].book


def kinds(events: Iterable[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def rejection(events: list[Event]) -> str:
    assert len(events) == 1 and isinstance(events[0], OrderRejected | CommandRejected), events
    return events[0].reason


@pytest.fixture
def market() -> Market:
    return Market()


def test_limit_order_that_does_not_cross_rests(market: Market) -> None:
    # Action: Alice bids 5 lots at 650,000 ticks on an empty book.
    events = market.place(ALICE, BUY, 5, 650_000)
    # Expectation: accepted, then resting with all 5 lots; it is the best bid.
    assert kinds(events) == ["OrderAccepted", "OrderRested"]
    assert events[1] == OrderRested(order_id=order_id(2), trader=ALICE, side=BUY, price=650_000, leaves_qty=5)
    assert market.book.best_price(BUY) == 650_000


def test_crossing_order_trades_at_the_makers_price_and_rests_the_remainder(market: Market) -> None:
    # State: Alice offers 3 @ 650,000.
    market.place(ALICE, SELL, 3, 650_000)
    # Action: Bob bids 5 @ 650,010.
    events = market.place(BOB, BUY, 5, 650_010)
    # Expectation: 3 trade at Alice's price; fees 0.5 % each, rounded up; Bob's 2 lots rest.
    assert kinds(events) == ["OrderAccepted", "TradeExecuted", "OrderFilled", "OrderFilled", "OrderRested"]
    trade = events[1]
    assert isinstance(trade, TradeExecuted)
    notional = 650_000 * 3 * 100  # ticks × lots × micro-USDC per tick-lot = 195 USDC
    assert (trade.price, trade.size, trade.notional) == (650_000, 3, notional)
    assert trade.maker_fee == trade.taker_fee == notional * 50 // 10_000
    maker_fill, taker_fill = events[2], events[3]
    assert isinstance(maker_fill, OrderFilled) and isinstance(taker_fill, OrderFilled)
    assert (maker_fill.trader, maker_fill.liquidity_side, maker_fill.leaves_qty) == (
        ALICE,
        LiquiditySide.MAKER,
        0,
    )
    assert (taker_fill.trader, taker_fill.liquidity_side, taker_fill.leaves_qty) == (
        BOB,
        LiquiditySide.TAKER,
        2,
    )
    assert events[4] == OrderRested(order_id=order_id(3), trader=BOB, side=BUY, price=650_010, leaves_qty=2)


def test_price_then_time_priority(market: Market) -> None:
    # State: asks at 101 (Alice, first), 100 (Bob), 100 (Carol, later).
    market.place(ALICE, SELL, 1, 101)
    market.place(BOB, SELL, 1, 100)
    market.place(CAROL, SELL, 1, 100)
    # Action: a buyer takes 3.
    events = market.place(trader="0x" + "d" * 40, side=BUY, size=3, price=101)
    # Expectation: better price first, then earlier arrival within the price.
    makers = [(e.maker_trader, e.price) for e in events if isinstance(e, TradeExecuted)]
    assert makers == [(BOB, 100), (CAROL, 100), (ALICE, 101)]


def test_market_order_stops_at_its_protective_price_and_cancels_the_rest(market: Market) -> None:
    market.place(ALICE, SELL, 2, 100)
    market.place(ALICE, SELL, 2, 105)
    events = market.apply(market.commands.market_order(BOB, BUY, 5, worst_price=102)).events
    assert sum(e.size for e in events if isinstance(e, TradeExecuted)) == 2
    cancelled = events[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.cancelled_qty, cancelled.reason) == (3, CancelReason.IOC_REMAINDER.name)
    assert market.book.best_price(SELL) == 105


def test_ioc_fills_what_it_can_and_never_rests(market: Market) -> None:
    market.place(ALICE, SELL, 1, 100)
    events = market.place(BOB, BUY, 4, 100, time_in_force=TimeInForce.IOC)
    assert kinds(events)[-1] == "OrderCancelled" and market.book.best_price(BUY) is None


def test_fok_that_cannot_fill_completely_is_rejected_without_side_effects(market: Market) -> None:
    # State: Alice offers 2 @ 100.
    market.place(ALICE, SELL, 2, 100)
    book_before = market.book.state_hash()
    # Action: Bob wants 3 @ 100, fill or kill.
    events = market.place(BOB, BUY, 3, 100, time_in_force=TimeInForce.FOK)
    # Expectation: refused; the book is exactly as it was.
    assert rejection(events) == MatcherReject.FOK_WOULD_NOT_FILL.name
    assert market.book.state_hash() == book_before


def test_fok_that_can_fill_completely_trades_everything(market: Market) -> None:
    market.place(ALICE, SELL, 2, 100)
    market.place(CAROL, SELL, 2, 101)
    events = market.place(BOB, BUY, 3, 101, time_in_force=TimeInForce.FOK)
    assert sum(e.size for e in events if isinstance(e, TradeExecuted)) == 3
    assert kinds(events)[-1] == "OrderFilled"


def test_post_only_that_would_take_is_rejected_and_one_that_would_not_rests(market: Market) -> None:
    market.place(ALICE, SELL, 1, 100)
    assert rejection(market.place(BOB, BUY, 1, 100, post_only=True)) == "POST_ONLY_WOULD_CROSS"
    assert kinds(market.place(BOB, BUY, 1, 99, post_only=True)) == ["OrderAccepted", "OrderRested"]


@pytest.mark.parametrize(
    ("mode", "expected_kinds", "maker_left"),
    [
        # Cancel maker: Alice's own resting ask goes, her bid then rests.
        (SelfTradePrevention.CANCEL_MAKER, ["OrderAccepted", "OrderCancelled", "OrderRested"], False),
        # Cancel taker: the incoming bid is cancelled, the resting ask stays.
        (SelfTradePrevention.CANCEL_TAKER, ["OrderAccepted", "OrderCancelled"], True),
        # Cancel both.
        (SelfTradePrevention.CANCEL_BOTH, ["OrderAccepted", "OrderCancelled", "OrderCancelled"], False),
    ],
)
def test_self_trade_prevention_modes(
    market: Market, mode: SelfTradePrevention, expected_kinds: list[str], maker_left: bool
) -> None:
    # State: Alice offers 1 @ 100. Action: Alice bids 1 @ 100 with an STP mode.
    market.place(ALICE, SELL, 1, 100)
    events = market.place(ALICE, BUY, 1, 100, stp=mode)
    # Expectation: no trade ever; who is cancelled depends on the mode.
    assert kinds(events) == expected_kinds
    assert all(
        e.reason == CancelReason.SELF_TRADE_PREVENTED.name for e in events if isinstance(e, OrderCancelled)
    )
    assert (order_id(2) in market.book.orders) is maker_left


def test_self_trade_prevention_lets_the_taker_trade_with_others_behind_its_own_order(market: Market) -> None:
    market.place(ALICE, SELL, 1, 100)
    market.place(BOB, SELL, 1, 100)
    events = market.place(ALICE, BUY, 1, 100, stp=SelfTradePrevention.CANCEL_MAKER)
    assert [e.maker_trader for e in events if isinstance(e, TradeExecuted)] == [BOB]


def test_cancel_of_own_order_unknown_order_and_someone_elses_order(market: Market) -> None:
    market.place(ALICE, BUY, 1, 100)
    # Bob cannot cancel Alice's order — and cannot even tell it exists.
    assert rejection(market.apply(market.commands.cancel(BOB, order_id(2))).events) == "UNKNOWN_ORDER"
    assert rejection(market.apply(market.commands.cancel(ALICE, order_id(99))).events) == "UNKNOWN_ORDER"
    events = market.apply(market.commands.cancel(ALICE, client_order_id="c2")).events
    assert kinds(events) == ["OrderCancelled"] and not market.book.orders


def test_cancel_all_narrowed_to_a_side(market: Market) -> None:
    market.place(ALICE, BUY, 1, 90)
    market.place(ALICE, SELL, 1, 110)
    market.place(BOB, BUY, 1, 91)
    events = market.apply(market.commands.cancel_all(ALICE, side=BUY)).events
    assert [(e.trader, e.side) for e in events if isinstance(e, OrderCancelled)] == [(ALICE, BUY)]
    assert {o.trader for o in market.book.orders.values()} == {ALICE, BOB}


def test_amend_smaller_size_keeps_priority_but_new_price_loses_it(market: Market) -> None:
    market.place(ALICE, SELL, 5, 100)
    market.place(BOB, SELL, 5, 100)
    kept = market.apply(market.commands.amend(ALICE, order_id(2), new_size=3)).events[0]
    assert isinstance(kept, OrderAmended) and kept.priority_kept and kept.leaves_qty == 3
    events = market.place(CAROL, BUY, 1, 100)
    assert [e.maker_trader for e in events if isinstance(e, TradeExecuted)] == [ALICE]
    moved = market.apply(market.commands.amend(ALICE, order_id(2), new_price=101)).events[0]
    assert isinstance(moved, OrderAmended) and not moved.priority_kept
    # Action: a larger size loses priority too.
    grown = market.apply(market.commands.amend(BOB, order_id(3), new_size=9)).events[0]
    assert isinstance(grown, OrderAmended) and not grown.priority_kept


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"new_price": 100}, "AMEND_WOULD_CROSS"),
        ({"new_size": 1}, "INVALID_AMEND"),  # not above the 2 lots already filled
        ({}, "INVALID_AMEND"),
        ({"new_price": 0}, "INVALID_PRICE"),
    ],
)
def test_amends_that_are_refused(market: Market, change: dict[str, int], code: str) -> None:
    # State: Alice bids 5 @ 99 of which 2 filled; Bob offers 1 @ 100.
    market.place(ALICE, BUY, 5, 99)
    market.place(BOB, SELL, 2, 99)
    market.place(BOB, SELL, 1, 100)
    events = market.apply(market.commands.amend(ALICE, order_id(2), **change)).events
    assert rejection(events) == code


def test_gtt_orders_expire_by_command_time_not_by_a_clock(market: Market) -> None:
    start = market.commands.now
    market.place(ALICE, BUY, 1, 100, time_in_force=TimeInForce.GTT, expire_at=start + 10_000_000)
    # A command before the expiry leaves it; the first command at or after it cancels it first.
    assert kinds(market.place(BOB, BUY, 1, 90, at=start + 9_000_000)) == ["OrderAccepted", "OrderRested"]
    events = market.place(BOB, BUY, 1, 91, at=start + 10_000_000)
    assert kinds(events) == ["OrderCancelled", "OrderAccepted", "OrderRested"]
    assert isinstance(events[0], OrderCancelled) and events[0].reason == CancelReason.EXPIRED.name


def test_time_never_goes_back_for_a_market(market: Market) -> None:
    start = market.commands.now
    market.place(ALICE, BUY, 1, 100, time_in_force=TimeInForce.GTT, expire_at=start + 5_000)
    market.place(BOB, BUY, 1, 90, at=start + 6_000)
    # A late-stamped command cannot revive the expired order or place a GTT in the past.
    events = market.place(CAROL, BUY, 1, 80, time_in_force=TimeInForce.GTT, expire_at=start + 5_500, at=start)
    assert rejection(events) == "INVALID_EXPIRY"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"size": 0}, "INVALID_SIZE"),
        ({"size": -3}, "INVALID_SIZE"),
        ({"price": 0}, "INVALID_PRICE"),
        ({"price": -1}, "INVALID_PRICE"),
        ({"time_in_force": TimeInForce.GTT}, "INVALID_EXPIRY"),
        ({"expire_at": 1}, "INVALID_EXPIRY"),
        ({"post_only": True, "time_in_force": TimeInForce.IOC}, "INVALID_ORDER_FLAGS"),
        ({"market": "ETH-PERP"}, "MARKET_MISMATCH"),
    ],
)
def test_bad_orders_are_rejected_with_stable_codes(
    market: Market, options: dict[str, object], code: str
) -> None:
    size = options.pop("size", 1)
    price = options.pop("price", 100)
    events = market.place(ALICE, BUY, size, price, **options)  # type: ignore[arg-type]
    assert rejection(events) == code
    assert isinstance(events[0], OrderRejected) and events[0].reason_code == MatcherReject[code].value


def test_min_size_duplicate_ids_and_market_order_flags() -> None:
    market = Market(min_size=2)
    assert rejection(market.place(ALICE, BUY, 1, 100)) == "BELOW_MIN_SIZE"
    market.place(ALICE, BUY, 2, 100, client_order_id="mine")
    assert rejection(market.place(ALICE, BUY, 2, 99, client_order_id="mine")) == "DUPLICATE_CLIENT_ORDER_ID"
    assert rejection(market.place(BOB, BUY, 2, 99, order_id=order_id(3))) == "DUPLICATE_ORDER_ID"
    gtc_market = market.commands.market_order(BOB, SELL, 2, 1, time_in_force=TimeInForce.GTC)
    assert rejection(market.apply(gtc_market).events) == "INVALID_ORDER_FLAGS"


def test_orders_without_a_client_order_id_rest_side_by_side() -> None:
    # State: Alice rests an order without a client order id ("" = none).
    market = Market()
    market.place(ALICE, BUY, 1, 100, client_order_id="")
    # Action: a second one.
    events = market.place(ALICE, BUY, 1, 99, client_order_id="")
    # Expectation: it rests too — an empty client id is not an id that must be unique.
    assert type(events[-1]).__name__ == "OrderRested"
    market.engine.validate()


def test_unknown_market_is_rejected_and_not_numbered() -> None:
    engine = MatchingEngine()
    result = engine.apply(Commands("NOPE-PERP").limit(ALICE, BUY, 1, 100))
    assert result.first_seq == 0 and rejection(result.events) == "UNKNOWN_MARKET"
    assert engine.markets == {}


def test_paused_market_refuses_orders_but_allows_cancels_and_resumes(market: Market) -> None:
    market.place(ALICE, BUY, 1, 100)
    market.apply(market.commands.set_status(MarketStatus.PAUSED))
    assert rejection(market.place(BOB, SELL, 1, 100)) == "MARKET_NOT_ACTIVE"
    assert (
        rejection(market.apply(market.commands.amend(ALICE, order_id(2), new_size=2)).events)
        == "MARKET_NOT_ACTIVE"
    )
    assert kinds(market.apply(market.commands.cancel(ALICE, order_id(2))).events) == ["OrderCancelled"]
    market.apply(market.commands.set_status(MarketStatus.ACTIVE))
    assert kinds(market.place(BOB, SELL, 1, 100)) == ["OrderAccepted", "OrderRested"]


def test_settling_a_market_closes_its_book_and_it_stays_closed(market: Market) -> None:
    market.place(ALICE, BUY, 1, 100)
    market.place(BOB, SELL, 1, 110)
    events = market.apply(market.commands.set_status(MarketStatus.SETTLED, "expiry")).events
    assert kinds(events) == ["MarketStatusChanged", "OrderCancelled", "OrderCancelled"]
    assert {e.reason for e in events if isinstance(e, OrderCancelled)} == {CancelReason.MARKET_CLOSED.name}
    assert rejection(market.place(ALICE, BUY, 1, 100)) == "MARKET_NOT_ACTIVE"
    assert rejection(market.apply(market.commands.set_status(MarketStatus.ACTIVE)).events) == (
        "ILLEGAL_STATUS_TRANSITION"
    )


def test_listing_rules() -> None:
    engine, commands = MatchingEngine(), Commands()
    engine.apply(commands.create())
    assert rejection(engine.apply(commands.create()).events) == "MARKET_EXISTS"
    broken = btc_perp(fee_bps=20_000)
    assert rejection(MatchingEngine().apply(Commands().create(broken)).events) == "INVALID_MARKET_DEFINITION"


def test_sequence_numbers_are_gap_free_per_market(market: Market) -> None:
    seqs: list[int] = []
    for command in [
        market.commands.limit(ALICE, SELL, 2, 100),
        market.commands.limit(BOB, BUY, 1, 100),
        market.commands.cancel(BOB, order_id(99)),
    ]:
        result = market.apply(command)
        seqs.extend(range(result.first_seq, result.first_seq + len(result.events)))
    assert seqs == list(range(2, 2 + len(seqs)))


def test_replaying_the_same_commands_gives_the_same_events_and_hash() -> None:
    commands = Commands()
    flow = [
        commands.create(),
        commands.limit(ALICE, SELL, 3, 100),
        commands.limit(BOB, BUY, 5, 101),
        commands.amend(BOB, order_id(3), new_size=4),
        commands.limit(CAROL, SELL, 9, 99, time_in_force=TimeInForce.IOC),
    ]
    first, second = MatchingEngine(), MatchingEngine()
    assert [first.apply(c) for c in flow] == [second.apply(c) for c in flow]
    assert first.state_hash() == second.state_hash()


def test_accepted_event_echoes_the_order(market: Market) -> None:
    accepted = market.place(ALICE, BUY, 2, 100, client_order_id="bot-7")[0]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.client_order_id, accepted.size, accepted.price, accepted.trader) == (
        "bot-7",
        2,
        100,
        ALICE,
    )


def test_exported_state_imports_to_an_engine_that_behaves_identically() -> None:
    # State: a book with resting orders on both sides, a partial fill, a GTT and an amend.
    commands = Commands()
    history = [
        commands.create(),
        commands.limit(ALICE, SELL, 3, 100),
        commands.limit(BOB, SELL, 2, 100),
        commands.limit(CAROL, BUY, 1, 100),
        commands.limit(ALICE, BUY, 4, 95, time_in_force=TimeInForce.GTT, expire_at=commands.now + 60_000_000),
        commands.amend(BOB, order_id(3), new_size=1),
    ]
    original = MatchingEngine()
    for command in history:
        original.apply(command)
    # Action: export, import, then run the same future through both.
    restored = import_state(export_state(original))
    future = [
        commands.limit(CAROL, BUY, 5, 100),
        commands.limit(BOB, SELL, 9, 95, at=commands.now + 90_000_000),
    ]
    # Expectation: same hash now, same events and same hash afterwards.
    assert restored.state_hash() == original.state_hash()
    assert [restored.apply(c) for c in future] == [original.apply(c) for c in future]
    assert restored.state_hash() == original.state_hash()


def test_best_price_stays_right_after_many_price_levels_come_and_go(market: Market) -> None:
    # State: 200 bids at 200 distinct prices, all cancelled but the worst; new levels keep coming.
    # (Emptied levels are cleaned lazily; past a threshold the price heap is rebuilt.)
    for n in range(200):
        market.place(ALICE, BUY, 1, 1_000 + n)
    for n in range(1, 200):
        market.apply(market.commands.cancel(ALICE, order_id(2 + n)))
    assert market.book.best_price(BUY) == 1_000
    # Action: a few new levels, better and worse.
    market.place(BOB, BUY, 1, 1_050)
    market.place(BOB, BUY, 1, 999)
    # Expectation: the best bid is the best live price, and a seller trades there first.
    assert market.book.best_price(BUY) == 1_050
    trade = next(e for e in market.place(CAROL, SELL, 1, 1) if isinstance(e, TradeExecuted))
    assert (trade.maker_trader, trade.price) == (BOB, 1_050)


def test_a_resting_orders_state_lists_its_fields_in_snapshot_order() -> None:
    # State: an order whose every field holds a different value.
    order = RestingOrder("o-1", "c-1", ALICE, Side.SELL, 101, 7, 99, SelfTradePrevention.CANCEL_BOTH, 3, 5, 2)
    # Expectation: state() is the fields in ORDER_FIELDS order — what snapshots write and read back.
    assert order.state() == tuple(getattr(order, name) for name in ORDER_FIELDS)
    assert set(ORDER_FIELDS) == set(RestingOrder.__struct_fields__)
