"""The read model's pure core: what each event writes, and why writing it again changes nothing.

Scenario tests read State / Action / Expectation on entries the real matching engine produced;
property tests replay realistic logs with redeliveries, restarts and half-landed batches against
`FakeTables`, a model of Cassandra's last-write-wins by write timestamp.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codes import CancelReason, MatcherReject, RiskReject
from services.common.lifecycle import OrderStatus
from services.common.records import (
    AccountEvent,
    BalanceChanged,
    DepositConfirmed,
    InventoryChanged,
    LiquiditySide,
    MarketStatus,
    MatcherCommand,
    OrderFilled,
    OrderRejected,
    PositionChanged,
    Side,
    TimeInForce,
    TradeLogEntry,
)
from services.matcher.core.engine import MatchingEngine, log_entry
from services.projector.views import (
    USDC,
    BalanceUpsert,
    LogPosition,
    MarketProgress,
    MarketStatusUpdate,
    MarketUpsert,
    OpenOrderDelete,
    OpenOrderUpsert,
    OrderRow,
    OrderStates,
    OrderUpsert,
    PositionUpsert,
    ProjectionError,
    Write,
    account_writes,
    coalesce,
    is_placement_refusal,
    order_update,
)
from tests.kit import ALICE, BOB, Commands, order_id
from tests.unit.projector.flows import MID, trade_log, varied_flow
from tests.unit.projector.store import FakeTables

S = OrderStatus
AccountBody = BalanceChanged | InventoryChanged | PositionChanged | OrderRejected | DepositConfirmed


class Book:
    """The matching engine and the projector's state side by side: each command's entry is
    projected at once into `tables`."""

    def __init__(self) -> None:
        self.c = Commands()
        self.engine = MatchingEngine()
        self.states = OrderStates()
        self.tables = FakeTables()
        self.offset = 0
        self.entries: list[TradeLogEntry] = []
        self.last: list[Write] = []
        self.send(self.c.create())

    def send(self, command: MatcherCommand) -> list[Write]:
        entry = log_entry(command, self.engine.apply(command), f"matcher.commands:0:{self.offset}")
        self.offset += 1
        self.entries.append(entry)
        self.last = project(self.states, self.tables, [entry])
        return self.last

    def order(self, n: int) -> OrderRow:
        found = self.tables.order(order_id(n))
        assert found is not None, f"no order {n}"
        return found


def project(states: OrderStates, tables: FakeTables, entries: Sequence[TradeLogEntry]) -> list[Write]:
    """What the service does for one batch: fold each entry (loading what it needs), write it all."""
    writes: list[Write] = []
    for entry in entries:
        missing = states.needs(entry)
        if missing:
            tables.execute(coalesce(writes))
            writes = []
            states.load(tables.load_orders(missing))
        writes += states.apply(entry)
    tables.execute(coalesce(writes))
    return writes


def kinds(writes: Sequence[Write]) -> list[str]:
    return [type(w).__name__ for w in writes]


# -- orders, event by event ------------------------------------------------------------------------


def test_a_resting_order_is_open_then_fills_at_two_prices_then_is_cancelled() -> None:
    # State: Alice rests 10 lots to buy at MID.
    book = Book()
    book.send(book.c.limit(ALICE, Side.BUY, 10, MID))
    resting = book.tables.order(order_id(2))
    assert resting is not None
    assert (resting.status, resting.rested, resting.leaves_qty, resting.cum_qty) == (S.RESTING, True, 10, 0)
    assert set(book.tables.rows("open_orders_by_market")) == {("BTC-PERP", order_id(2))}

    # Action: Bob sells 3 then 4 lots into it (the second at a better price for him is impossible:
    # makers set the price, so both fill at MID); then Alice cancels the rest.
    book.send(book.c.limit(BOB, Side.SELL, 3, MID - 5))
    book.send(book.c.limit(BOB, Side.SELL, 4, MID))
    book.send(book.c.cancel(ALICE, order_id(2)))

    # Expectation: absolute cum/leaves, the sums for the average price and fees, then closed.
    final = book.tables.order(order_id(2))
    assert final is not None
    assert (final.status, final.cum_qty, final.leaves_qty) == (S.CANCELLED, 7, 0)
    assert final.avg_px_num == 7 * MID and final.last_px == MID
    fee_per_fill = [e.fee for entry in book.entries for e in entry.events if isinstance(e, OrderFilled)]
    assert final.fees_paid == sum(fee_per_fill[0::2])  # the maker's fill comes first in each trade
    assert (final.reason_code, final.reason) == (int(CancelReason.USER_CANCELLED), "USER_CANCELLED")
    assert final.created_at == resting.created_at and final.updated_at > resting.updated_at
    assert book.tables.rows("open_orders_by_market") == {}
    assert kinds(book.last) == ["OrderUpsert", "OpenOrderDelete", "MarketProgress"]


def test_an_order_that_never_rests_never_enters_the_open_orders_table() -> None:
    # State: a resting ask of 2 lots.
    book = Book()
    book.send(book.c.limit(ALICE, Side.SELL, 2, MID))

    # Action: Bob's IOC buys 5: 2 fill, 3 are cancelled as the IOC remainder.
    writes = book.send(book.c.limit(BOB, Side.BUY, 5, MID, time_in_force=TimeInForce.IOC))

    # Expectation: Bob's order is FILLED 2 / CANCELLED, and no open-order row nor tombstone exists for it.
    bob = book.order(3)
    assert (bob.status, bob.cum_qty, bob.leaves_qty, bob.reason) == (S.CANCELLED, 2, 0, "IOC_REMAINDER")
    open_writes = [w for w in writes if isinstance(w, OpenOrderUpsert | OpenOrderDelete)]
    assert [w.key[2] for w in open_writes] == [order_id(2)]  # only Alice's, which rested and filled


def test_an_amend_changes_terms_but_not_the_orders_place_in_its_traders_history() -> None:
    # State: a resting bid.
    book = Book()
    book.send(book.c.limit(ALICE, Side.BUY, 5, MID - 10))
    before = book.order(2)

    # Action: Alice moves it to MID - 3 and 8 lots.
    book.send(book.c.amend(ALICE, order_id(2), new_price=MID - 3, new_size=8))

    # Expectation: new terms, same created time (same orders_by_trader row), still open.
    after = book.tables.order(order_id(2))
    assert after is not None
    assert (after.price, after.size, after.leaves_qty, after.status) == (MID - 3, 8, 8, S.RESTING)
    assert after.created_at == before.created_at
    assert len(book.tables.rows("orders_by_trader")) == 1


def test_a_gtt_order_expires_as_cancelled_with_reason_expired() -> None:
    # State: a GTT bid expiring in 2 ms.
    book = Book()
    book.send(
        book.c.limit(ALICE, Side.BUY, 5, MID, time_in_force=TimeInForce.GTT, expire_at=book.c.now + 2_000)
    )

    # Action: time moves on with later commands.
    book.send(book.c.limit(BOB, Side.SELL, 1, MID + 50))
    book.send(book.c.limit(BOB, Side.SELL, 1, MID + 51))

    # Expectation: the order left the book as EXPIRED.
    expired = book.tables.order(order_id(2))
    assert expired is not None
    assert (expired.status, expired.reason_code, expired.reason) == (
        S.CANCELLED,
        int(CancelReason.EXPIRED),
        "EXPIRED",
    )
    assert ("BTC-PERP", order_id(2)) not in book.tables.rows("open_orders_by_market")


def test_a_refused_placement_is_a_rejected_order_and_a_refused_amend_or_cancel_changes_nothing() -> None:
    # State: Alice's resting ask and Bob's resting bid below it.
    book = Book()
    book.send(book.c.limit(ALICE, Side.SELL, 3, MID))
    book.send(book.c.limit(BOB, Side.BUY, 3, MID - 10))
    orders_before = book.tables.rows("orders_by_id")

    # Action: Bob's post-only bid that would cross; Alice's amend that would cross; Bob cancelling
    # Alice's order by her client order id (refused: not his).
    book.send(book.c.limit(BOB, Side.BUY, 1, MID, post_only=True))
    book.send(book.c.amend(ALICE, order_id(2), new_price=MID - 10))
    book.send(book.c.cancel(BOB, client_order_id="c2"))

    # Expectation: one REJECTED order, without terms (the refusal does not repeat them); the
    # refused amend and cancel are in the log but change no order.
    rejected = book.tables.order(order_id(4))
    assert rejected is not None
    assert (rejected.status, rejected.trader, rejected.market, rejected.client_order_id) == (
        S.REJECTED, BOB, "BTC-PERP", "c4",
    )  # fmt: skip
    assert (rejected.reason_code, rejected.side, rejected.price) == (
        int(MatcherReject.POST_ONLY_WOULD_CROSS), None, None,
    )  # fmt: skip
    reasons = [e.reason for entry in book.entries[-2:] for e in entry.events if isinstance(e, OrderRejected)]
    assert reasons == ["AMEND_WOULD_CROSS", "UNKNOWN_ORDER"]
    assert book.tables.rows("orders_by_id") == orders_before | {
        (order_id(4),): book.tables.rows("orders_by_id")[(order_id(4),)]
    }


@pytest.mark.parametrize(
    ("order", "client", "code", "placement"),
    [
        ("o-1", "c-1", MatcherReject.FOK_WOULD_NOT_FILL, True),
        ("o-1", "c-1", RiskReject.INSUFFICIENT_COLLATERAL, True),
        ("o-1", None, MatcherReject.AMEND_WOULD_CROSS, False),  # an amend names no client id
        (None, "c-1", MatcherReject.UNKNOWN_ORDER, False),  # a cancel by client id
        ("o-1", "c-1", MatcherReject.UNKNOWN_ORDER, False),  # a cancel naming both ids
        ("o-1", "c-1", MatcherReject.DUPLICATE_ORDER_ID, False),  # the id is someone's open order
        ("o-1", "c-1", RiskReject.DUPLICATE_ORDER_ID, False),
        ("o-1", "c-1", RiskReject.NONCE_REUSED, False),  # a retry of an order risk already took
        (None, None, RiskReject.MARKET_NOT_ACTIVE, False),  # a cancel-all
    ],
)
def test_which_refusals_are_refused_orders(
    order: str | None, client: str | None, code: int, placement: bool
) -> None:
    rejected = OrderRejected(
        order_id=order, client_order_id=client, trader=ALICE, reason_code=int(code), reason="X"
    )
    assert is_placement_refusal(rejected) is placement


def test_a_fill_that_contradicts_the_held_state_stops_the_projection() -> None:
    # State: an order that rested 5 lots, and a fill claiming cum 4 after 3 lots.
    book = Book()
    book.send(book.c.limit(ALICE, Side.BUY, 5, MID))
    held = book.states.get(order_id(2))
    bad = OrderFilled(
        order_id=order_id(2), trader=ALICE, trade_id=1, side=Side.BUY, liquidity_side=LiquiditySide.MAKER,
        last_px=MID, last_qty=3, cum_qty=4, leaves_qty=2, fee=1,
    )  # fmt: skip

    # Action / Expectation: refused loudly.
    with pytest.raises(ProjectionError, match="cum/leaves"):
        order_update(held, "BTC-PERP", bad, LogPosition(99, 0))
    with pytest.raises(ProjectionError, match="unknown order"):
        order_update(None, "BTC-PERP", bad, LogPosition(99, 0))


# -- following a market, restarts and redeliveries -------------------------------------------------


def test_after_a_restart_the_orders_an_entry_updates_are_loaded_once_then_followed() -> None:
    # State: a resting bid projected by a process that then stopped.
    book = Book()
    book.send(book.c.limit(ALICE, Side.BUY, 5, MID))
    book.states = OrderStates()

    # Action: Bob's sell fills it; then he sells again.
    fill = log_entry(
        book.c.limit(BOB, Side.SELL, 2, MID), book.engine.apply(book.c.limit(BOB, Side.SELL, 2, MID)), "m:0:9"
    )
    needed = book.states.needs(fill)
    book.states.load(book.tables.load_orders(needed))
    book.tables.execute(book.states.apply(fill))
    nxt = book.c.limit(BOB, Side.SELL, 1, MID)
    again = log_entry(nxt, book.engine.apply(nxt), "m:0:10")

    # Expectation: the resting order was needed once (Bob's own order is accepted in the entry).
    assert needed == {order_id(2)}
    assert book.states.needs(again) == set()


def test_redelivered_entries_change_nothing() -> None:
    # State: Alice's bid rested, Bob half filled it, then Bob's ask above it rested.
    book = Book()
    book.send(book.c.limit(ALICE, Side.BUY, 4, MID))
    book.send(book.c.limit(BOB, Side.SELL, 2, MID))
    book.send(book.c.limit(BOB, Side.SELL, 1, MID + 5))
    before = book.tables.snapshot()

    # Action: the same process gets the entry that placed Alice's order again (the market's seq
    # goes back): it folds the order again from its OrderAccepted.
    replayed = project(book.states, book.tables, [book.entries[1]])

    # Expectation: older versions than the store holds: nothing changes.
    _accepted, rested = [w for w in replayed if isinstance(w, OrderUpsert)]
    assert (rested.row.cum_qty, rested.version) == (0, book.entries[1].first_seq + 1)
    assert book.tables.snapshot() == before

    # Action: a restarted process gets the fill again: Alice's order is loaded, already past it.
    restarted = OrderStates()
    reissued = project(restarted, book.tables, [book.entries[2]])

    # Expectation: Alice's current state is re-issued as it is (this is what repairs a batch that
    # only partly landed), and nothing changes.
    alice = [w for w in reissued if isinstance(w, OrderUpsert) and w.row.trader == ALICE]
    assert [(w.row.cum_qty, w.row.leaves_qty) for w in alice] == [(2, 2)]
    assert book.tables.snapshot() == before


def test_market_listing_status_and_progress() -> None:
    # State / Action: a listing, a pause with a reason, a resume.
    book = Book()
    listing = book.last
    book.send(book.c.set_status(MarketStatus.PAUSED, "circuit breaker"))
    book.send(book.c.set_status(MarketStatus.ACTIVE, "resumed"))

    # Expectation: the definition once, the latest status and its reason, progress to seq 3.
    assert kinds(listing) == ["MarketUpsert", "MarketProgress"]
    market = book.tables.rows("markets")[("BTC-PERP",)]
    assert (market["status"], market["status_reason"], market["last_seq"]) == (
        MarketStatus.ACTIVE,
        "resumed",
        3,
    )
    assert market["quote_per_tick_lot"] == 100
    assert isinstance(listing[0], MarketUpsert)
    assert isinstance(book.last[0], MarketStatusUpdate) and isinstance(book.last[1], MarketProgress)


def test_an_entry_about_no_market_writes_nothing() -> None:
    book = Book()
    stray = Commands("NO-SUCH")
    assert book.send(stray.limit(ALICE, Side.BUY, 1, MID)) == []


# -- accounts.events -------------------------------------------------------------------------------


def _account(body: AccountBody, n: int = 1) -> AccountEvent:
    return AccountEvent(event_id=f"risk.postings:0:{n}:0", trader=ALICE, ts_event=1_000_000 + n, body=body)


def test_balance_inventory_and_position_events_are_whole_rows_versioned_by_offset() -> None:
    balance = BalanceChanged(
        trader=ALICE,
        free=7,
        reserved=3,
        withdrawing=1,
        locked=2,
        delta_free=-3,
        reason="ORDER_PLACED",
        ref="o",
    )
    inventory = InventoryChanged(
        trader=ALICE, market="BTC-USDC", held=5, reserved=1, delta_held=-1, reason="X", ref="o"
    )
    position = PositionChanged(
        trader=ALICE, market="BTC-PERP", order_id="o", trade_id=9, size=-4, delta_size=-4, basis=2_600_000,
        collateral=2_600_000, realized_pnl=-12, last_px=MID,
    )  # fmt: skip

    (usdc,) = account_writes(_account(balance), 41)
    (synth,) = account_writes(_account(inventory), 42)
    (pos,) = account_writes(_account(position), 43)

    assert (
        isinstance(usdc, BalanceUpsert)
        and isinstance(synth, BalanceUpsert)
        and isinstance(pos, PositionUpsert)
    )
    assert (usdc.row.asset, usdc.row.free, usdc.row.reserved, usdc.row.withdrawing, usdc.row.locked) == (
        USDC,
        7,
        3,
        1,
        2,
    )
    assert (synth.row.asset, synth.row.free, synth.row.reserved, synth.version) == ("BTC-USDC", 5, 1, 42)
    assert (pos.row.size, pos.row.basis, pos.row.realized_pnl, pos.row.last_trade_id, pos.version) == (
        -4,
        2_600_000,
        -12,
        9,
        43,
    )


def test_risk_refusals_of_new_orders_become_rejected_orders_without_a_market() -> None:
    refused = OrderRejected(
        order_id="o-1",
        client_order_id="c-1",
        trader=ALICE,
        reason_code=2001,
        reason="INSUFFICIENT_COLLATERAL",
    )
    amend_refused = OrderRejected(order_id="o-2", trader=ALICE, reason_code=2009, reason="AMEND_PENDING")

    (write,) = account_writes(_account(refused), 5)
    assert isinstance(write, OrderUpsert)
    assert (write.row.status, write.row.market, write.row.reason, write.version) == (
        S.REJECTED,
        None,
        "INSUFFICIENT_COLLATERAL",
        0,
    )
    assert account_writes(_account(amend_refused), 6) == []
    deposit = DepositConfirmed(amount=1, chain_id=0, tx_hash="t", log_index=0, block_number=0)
    assert account_writes(_account(deposit), 7) == []


def test_coalesce_keeps_the_highest_version_per_key() -> None:
    rows = [account_writes(_account(BalanceChanged(
        trader=ALICE, free=f, reserved=0, withdrawing=0, locked=0, delta_free=0, reason="X", ref="r")), v)[0]
        for f, v in [(1, 10), (3, 30), (2, 20)]]  # fmt: skip
    (kept,) = coalesce(rows)
    assert isinstance(kept, BalanceUpsert) and (kept.row.free, kept.version) == (3, 30)


# -- properties on realistic logs ------------------------------------------------------------------


def straight(entries: Sequence[TradeLogEntry]) -> FakeTables:
    tables = FakeTables()
    project(OrderStates(), tables, entries)
    return tables


def test_an_entry_without_events_projects_nothing() -> None:
    # State: a listing, then a command that changed nothing (a cancel-all with nothing open gives
    # an entry with no events, numbered after the listing).
    listing = trade_log(varied_flow(1, seed=1))[0]
    empty = TradeLogEntry(
        market=listing.market, first_seq=listing.first_seq + 1, source="matcher.commands:0:9",
        command_id="c-empty", ts_event=listing.ts_event + 1_000, events=[],
    )  # fmt: skip
    # Action / Expectation: it writes nothing (its progress would tie the listing's seq).
    assert OrderStates().apply(empty) == []
    assert straight([listing, empty]).snapshot() == straight([listing]).snapshot()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 250), settle=st.booleans(), data=st.data())
def test_projecting_any_prefix_twice_equals_projecting_it_once(
    seed: int, n: int, settle: bool, data: st.DataObject
) -> None:
    entries = trade_log(varied_flow(n, seed=seed, settle=settle))
    k = data.draw(st.integers(0, len(entries)), label="prefix")
    once = straight(entries[:k])

    twice = straight(entries[:k])
    project(OrderStates(), twice, entries[:k])  # a new process, everything redelivered

    assert twice.snapshot() == once.snapshot()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 250), settle=st.booleans(), data=st.data())
def test_a_crash_with_half_a_batch_written_then_redelivery_ends_in_the_straight_state(
    seed: int, n: int, settle: bool, data: st.DataObject
) -> None:
    # State: a log projected straight, in batches of any size.
    entries = trade_log(varied_flow(n, seed=seed, settle=settle))
    expected = straight(entries)

    # Action: project up to a crash in the middle of a batch, where only some of that batch's
    # writes landed (in any order); the restarted process (no state) gets everything from the
    # batch's first entry, and the older process's last writes land late, after some new ones.
    crash = data.draw(st.integers(0, len(entries)), label="crash at")
    start = data.draw(st.integers(0, crash), label="batch start")
    tables = FakeTables()
    states = OrderStates()
    project(states, tables, entries[:start])
    lost = []
    for entry in entries[start:crash]:
        states.load(tables.load_orders(states.needs(entry)))
        lost += states.apply(entry)
    rng = random.Random(data.draw(st.integers(0, 2**32), label="which landed"))
    landed = [w for w in coalesce(lost) if rng.random() < 0.5]
    tables.execute(landed)
    restarted = OrderStates()
    size = data.draw(st.integers(1, 20), label="batch size")
    for i in range(start, len(entries), size):
        project(restarted, tables, entries[i : i + size])
        if i == start:
            tables.execute(reversed(coalesce(lost)))  # a fenced-out writer's late writes

    # Expectation: what a reader sees is exactly the straight projection.
    assert tables.snapshot() == expected.snapshot()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300), settle=st.booleans())
def test_the_projection_agrees_with_the_book(seed: int, n: int, settle: bool) -> None:
    # State / Action: a realistic flow through the engine, projected.
    commands = varied_flow(n, seed=seed, settle=settle)
    engine = MatchingEngine()
    entries = [log_entry(c, engine.apply(c), f"matcher.commands:0:{i}") for i, c in enumerate(commands)]
    tables = straight(entries)

    # Expectation: open orders = the orders resting on the book, with their terms and fills;
    # every order's fills and fees add up; closed orders hold nothing open.
    book = engine.markets["BTC-PERP"].book
    open_rows = tables.rows("open_orders_by_market")
    assert {key[1] for key in open_rows} == set(book.orders)
    for (_, oid), row in open_rows.items():
        resting = book.orders[oid]
        assert (row["price"], row["size"], row["leaves_qty"], row["cum_qty"]) == (
            resting.price, resting.size, resting.leaves_qty, resting.cum_qty,
        )  # fmt: skip
        assert row["status"] in (S.RESTING, S.PARTIALLY_FILLED)
    fills: dict[str, list[OrderFilled]] = {}
    for entry in entries:
        for event in entry.events:
            if isinstance(event, OrderFilled):
                fills.setdefault(event.order_id, []).append(event)
    for (oid,), row in tables.rows("orders_by_id").items():
        mine = fills.get(oid, [])
        assert row["cum_qty"] == sum(f.last_qty for f in mine)
        assert row["avg_px_num"] == sum(f.last_px * f.last_qty for f in mine)
        assert row["fees_paid"] == sum(f.fee for f in mine)
        if row["status"] in (S.FILLED, S.CANCELLED, S.REJECTED):
            assert row["leaves_qty"] == 0 and oid not in book.orders
        if row["status"] is S.FILLED:
            assert row["cum_qty"] == row["size"]
